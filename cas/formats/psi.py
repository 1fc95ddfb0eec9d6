"""PSI/SI tables: PAT, CAT, PMT (ISO/IEC 13818-1 §2.4.4) and SDT (ETSI EN 300 468 §5.2.3),
with their descriptors: CA_descriptor (tag 0x09, ISO/IEC 13818-1 §2.6.16),
scrambling_descriptor (0x65, EN 300 468 §6.2.32) and service_descriptor (0x48, §6.2.33).

Each table is one long section (:mod:`cas.formats.sections`): ``parse_<table>`` checks the
table_id, the section lengths and the CRC_32, ``build_<table>`` computes them.  Table bodies
are declared with ``construct``; 12/13-bit length and PID fields share a 16-bit word with
reserved bits, which are ignored on parse and written as ones on build.  Descriptors with a
tag we do not model are kept as :class:`RawDescriptor` (tag + bytes) and rebuilt unchanged.

:func:`find_ca_descriptors` is the hand-written fast path the STB demux and the stream probe
use to pull ECM/EMM PIDs out of a PMT or CAT without building any objects.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from construct import (
    ConstructError,
    ExprAdapter,
    FixedSized,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Prefixed,
    Struct,
    Terminated,
    this,
)

from cas.errors import ChecksumError, FormatError
from cas.formats.crc import crc32_mpeg2
from cas.formats.sections import (
    MAX_PSI_SECTION_LENGTH,
    LongSection,
    build_section,
    parse_section,
)

__all__ = [
    "CAT_PID",
    "EACEM_PRIVATE_DATA_SPECIFIER",
    "LOGICAL_CHANNEL_DESCRIPTOR_TAG",
    "PAT_PID",
    "PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG",
    "SDT_PID",
    "TABLE_ID_CAT",
    "TABLE_ID_PAT",
    "TABLE_ID_PMT",
    "TABLE_ID_SDT_ACTUAL",
    "TABLE_ID_SDT_OTHER",
    "CaDescriptor",
    "CaRef",
    "Cat",
    "Descriptor",
    "Pat",
    "PatProgram",
    "Pmt",
    "PmtStream",
    "RawDescriptor",
    "ScramblingDescriptor",
    "Sdt",
    "SdtService",
    "ServiceDescriptor",
    "build_cat",
    "build_descriptors",
    "build_pat",
    "build_pmt",
    "build_sdt",
    "decode_dvb_text",
    "describe",
    "encode_dvb_text",
    "find_ca_descriptors",
    "has_ca_system",
    "logical_channel_descriptor",
    "logical_channel_numbers",
    "parse_cat",
    "parse_descriptors",
    "parse_pat",
    "parse_pmt",
    "parse_psi",
    "parse_sdt",
    "private_data_specifier_descriptor",
    "split_sdt",
]

PAT_PID = 0x0000
CAT_PID = 0x0001
SDT_PID = 0x0011
TABLE_ID_PAT = 0x00
TABLE_ID_CAT = 0x01
TABLE_ID_PMT = 0x02
TABLE_ID_SDT_ACTUAL = 0x42
TABLE_ID_SDT_OTHER = 0x46

STREAM_TYPE_NAMES: dict[int, str] = {
    0x01: "MPEG-1 video",
    0x02: "MPEG-2 video",
    0x03: "MPEG-1 audio",
    0x04: "MPEG-2 audio",
    0x06: "PES private data",
    0x0F: "AAC audio (ADTS)",
    0x11: "AAC audio (LATM)",
    0x1B: "H.264 video",
    0x24: "HEVC video",
    0x81: "AC-3 audio (ATSC)",
}
SCRAMBLING_MODE_NAMES: dict[int, str] = {
    0x01: "DVB-CSA1",
    0x02: "DVB-CSA2",
    0x03: "DVB-CSA3 standard",
    0x04: "DVB-CSA3 minimally enhanced",
    0x05: "DVB-CSA3 fully enhanced",
    0x10: "DVB-CISSA v1",
}


def _check(path: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise FormatError(f"{value!r} does not fit in {bits} bits", path=path)


def _check_bytes(path: str, value: bytes, max_len: int) -> None:
    if not isinstance(value, bytes):
        raise FormatError(f"expected bytes, got {type(value).__name__}", path=path)
    if len(value) > max_len:
        raise FormatError(f"{len(value)} bytes, at most {max_len} fit", path=path)


# --- descriptors -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CaDescriptor:
    """CA_descriptor (ISO/IEC 13818-1 §2.6.16): in a CAT, CA_PID is the EMM PID; in a PMT the
    ECM PID (program level: all components; ES level: that component only)."""

    TAG: ClassVar[int] = 0x09
    ca_system_id: int
    ca_pid: int
    private_data: bytes = b""

    def __post_init__(self) -> None:
        _check("CA_descriptor.CA_system_ID", self.ca_system_id, 16)
        _check("CA_descriptor.CA_PID", self.ca_pid, 13)
        _check_bytes("CA_descriptor.private_data_byte", self.private_data, 251)


@dataclass(frozen=True, kw_only=True)
class ScramblingDescriptor:
    """scrambling_descriptor (EN 300 468 §6.2.32): 0x02 CSA2 (the default when absent),
    0x10 DVB-CISSA v1, ..."""

    TAG: ClassVar[int] = 0x65
    scrambling_mode: int

    def __post_init__(self) -> None:
        _check("scrambling_descriptor.scrambling_mode", self.scrambling_mode, 8)


@dataclass(frozen=True, kw_only=True)
class ServiceDescriptor:
    """service_descriptor (EN 300 468 §6.2.33).  Names are kept as the bytes on the wire
    (EN 300 468 Annex A text, possibly with a character-table prefix) so that rebuilding is
    exact; :meth:`of` and the ``*_text`` properties convert from/to ``str``."""

    TAG: ClassVar[int] = 0x48
    service_type: int
    service_provider_name: bytes = b""
    service_name: bytes = b""

    def __post_init__(self) -> None:
        _check("service_descriptor.service_type", self.service_type, 8)
        _check_bytes("service_descriptor.service_provider_name", self.service_provider_name, 252)
        _check_bytes(
            "service_descriptor.service_name",
            self.service_name,
            253 - len(self.service_provider_name),
        )

    @classmethod
    def of(cls, service_type: int, provider: str, name: str) -> ServiceDescriptor:
        return cls(
            service_type=service_type,
            service_provider_name=encode_dvb_text(provider),
            service_name=encode_dvb_text(name),
        )

    @property
    def provider_text(self) -> str:
        return decode_dvb_text(self.service_provider_name)

    @property
    def name_text(self) -> str:
        return decode_dvb_text(self.service_name)


@dataclass(frozen=True, kw_only=True)
class RawDescriptor:
    """Any descriptor we do not model: tag and body bytes, kept and rebuilt as they were."""

    tag: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check("descriptor.descriptor_tag", self.tag, 8)
        _check_bytes("descriptor.descriptor_length", self.data, 255)


Descriptor = CaDescriptor | ScramblingDescriptor | ServiceDescriptor | RawDescriptor


#: private_data_specifier_descriptor (EN 300 468 §6.2.31) and the EACEM value (ETSI TS 101 162)
#: under which tag 0x83 is the logical_channel_descriptor.
PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG = 0x5F
EACEM_PRIVATE_DATA_SPECIFIER = 0x00000028
#: logical_channel_descriptor (EACEM / IEC 62216, NorDig Unified): a private descriptor, so it
#: is kept as a :class:`RawDescriptor` (parsing stays tag-agnostic); these helpers build and
#: read its body.
LOGICAL_CHANNEL_DESCRIPTOR_TAG = 0x83


def private_data_specifier_descriptor(specifier: int) -> RawDescriptor:
    """private_data_specifier_descriptor (EN 300 468 §6.2.31): a 32-bit specifier."""
    _check("private_data_specifier_descriptor.private_data_specifier", specifier, 32)
    return RawDescriptor(tag=PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG,
                         data=specifier.to_bytes(4, "big"))


def logical_channel_descriptor(numbers: Iterable[tuple[int, int]], *,
                               visible: bool = True) -> RawDescriptor:
    """logical_channel_descriptor (EACEM / IEC 62216 §A.2.3): per service, service_id 16 bits,
    visible_service_flag 1, reserved 5 (all ones), logical_channel_number 10."""
    body = bytearray()
    for service_id, number in numbers:
        _check("logical_channel_descriptor.service_id", service_id, 16)
        _check("logical_channel_descriptor.logical_channel_number", number, 10)
        word = (0x8000 if visible else 0) | 0x7C00 | number
        body += service_id.to_bytes(2, "big") + word.to_bytes(2, "big")
    return RawDescriptor(tag=LOGICAL_CHANNEL_DESCRIPTOR_TAG, data=bytes(body))


def logical_channel_numbers(descriptor: Descriptor) -> dict[int, int]:
    """service_id → logical_channel_number of a logical_channel_descriptor (``{}`` for any
    other descriptor; a trailing partial entry is ignored)."""
    if not (isinstance(descriptor, RawDescriptor)
            and descriptor.tag == LOGICAL_CHANNEL_DESCRIPTOR_TAG):
        return {}
    data = descriptor.data
    return {(data[pos] << 8) | data[pos + 1]: ((data[pos + 2] & 0x03) << 8) | data[pos + 3]
            for pos in range(0, len(data) - 3, 4)}


def encode_dvb_text(text: str) -> bytes:
    """EN 300 468 Annex A text: plain bytes when ASCII, else 0x15 + UTF-8."""
    if text.isascii() and not (text and ord(text[0]) < 0x20):
        return text.encode("ascii")
    return b"\x15" + text.encode("utf-8")


_ISO8859_BY_PREFIX = {1: 5, 2: 6, 3: 7, 4: 8, 5: 9, 6: 10, 7: 11, 9: 13, 10: 14, 11: 15}


def decode_dvb_text(data: bytes) -> str:
    """Best-effort decoding of EN 300 468 Annex A text; never raises.

    The default table (no prefix) is ISO/IEC 6937, which Python lacks: it is read as Latin-1,
    exact for ASCII.
    """
    if not data:
        return ""
    first = data[0]
    try:
        if first >= 0x20:
            return data.decode("latin-1")
        if first in _ISO8859_BY_PREFIX:
            return data[1:].decode(f"iso8859-{_ISO8859_BY_PREFIX[first]}", errors="replace")
        if first == 0x10 and len(data) >= 3:
            codec = f"iso8859-{data[2]}"
            codecs.lookup(codec)
            return data[3:].decode(codec, errors="replace")
        if first == 0x11:
            return data[1:].decode("utf-16-be", errors="replace")
        if first == 0x13:
            return data[1:].decode("gb2312", errors="replace")
        if first == 0x14:
            return data[1:].decode("big5", errors="replace")
        if first == 0x15:
            return data[1:].decode("utf-8", errors="replace")
    except LookupError:
        pass
    return data[1:].decode("latin-1")


def _descriptor_from_raw(tag: int, data: bytes, path: str) -> Descriptor:
    if tag == CaDescriptor.TAG:
        if len(data) < 4:
            raise FormatError(f"descriptor_length {len(data)} < 4", path=f"{path}.CA_descriptor")
        return CaDescriptor(
            ca_system_id=(data[0] << 8) | data[1],
            ca_pid=((data[2] & 0x1F) << 8) | data[3],
            private_data=data[4:],
        )
    if tag == ScramblingDescriptor.TAG:
        if len(data) != 1:
            raise FormatError(
                f"descriptor_length {len(data)} != 1", path=f"{path}.scrambling_descriptor"
            )
        return ScramblingDescriptor(scrambling_mode=data[0])
    if tag == ServiceDescriptor.TAG:
        spath = f"{path}.service_descriptor"
        if len(data) < 2 or len(data) < 3 + data[1]:
            raise FormatError("truncated service_provider_name", path=spath)
        plen = data[1]
        nlen = data[2 + plen]
        if len(data) != 3 + plen + nlen:
            raise FormatError(
                f"descriptor_length {len(data)} != {3 + plen + nlen} implied by name lengths",
                path=spath,
            )
        return ServiceDescriptor(
            service_type=data[0],
            service_provider_name=data[2 : 2 + plen],
            service_name=data[3 + plen :],
        )
    return RawDescriptor(tag=tag, data=data)


def _descriptor_to_raw(d: Descriptor) -> tuple[int, bytes]:
    if isinstance(d, CaDescriptor):
        body = (
            bytes(
                (
                    d.ca_system_id >> 8,
                    d.ca_system_id & 0xFF,
                    0xE0 | (d.ca_pid >> 8),
                    d.ca_pid & 0xFF,
                )
            )
            + d.private_data
        )
        return CaDescriptor.TAG, body
    if isinstance(d, ScramblingDescriptor):
        return ScramblingDescriptor.TAG, bytes((d.scrambling_mode,))
    if isinstance(d, ServiceDescriptor):
        body = (
            bytes((d.service_type, len(d.service_provider_name)))
            + d.service_provider_name
            + bytes((len(d.service_name),))
            + d.service_name
        )
        return ServiceDescriptor.TAG, body
    if isinstance(d, RawDescriptor):
        return d.tag, d.data
    raise FormatError(f"not a descriptor: {type(d).__name__}", path="descriptor")


# --- construct schemas -------------------------------------------------------------------------


def _low_bits(bits: int) -> Any:
    """A ``bits``-wide uimsbf in the low bits of a 16-bit word whose high bits are reserved."""
    mask = (1 << bits) - 1
    return ExprAdapter(
        Int16ub,
        lambda obj, ctx: obj & mask,
        lambda obj, ctx: obj | (0xFFFF & ~mask),
    )


_PID = _low_bits(13)
_LENGTH12 = _low_bits(12)

#: descriptor(): descriptor_tag 8, descriptor_length 8, body.
DESCRIPTOR = Struct("descriptor_tag" / Int8ub, "data" / Prefixed(Int8ub, GreedyBytes))
#: A descriptor loop fills its space exactly; leftovers are an error, not silently dropped.
DESCRIPTOR_LOOP = FocusedSeq("descriptors", "descriptors" / GreedyRange(DESCRIPTOR), Terminated)

#: PAT body after the long section header (§2.4.4.3).
PAT_BODY = FocusedSeq(
    "programs",
    "programs" / GreedyRange(Struct("program_number" / Int16ub, "pid" / _PID)),
    Terminated,
)
#: CAT body: a bare descriptor loop (§2.4.4.6).
CAT_BODY = DESCRIPTOR_LOOP
#: PMT body (§2.4.4.8).
PMT_BODY = Struct(
    "PCR_PID" / _PID,
    "program_info" / Prefixed(_LENGTH12, DESCRIPTOR_LOOP),
    "streams"
    / GreedyRange(
        Struct(
            "stream_type" / Int8ub,
            "elementary_PID" / _PID,
            "ES_info" / Prefixed(_LENGTH12, DESCRIPTOR_LOOP),
        )
    ),
    Terminated,
)
#: SDT body (EN 300 468 §5.2.3).  ``status`` packs running_status 3, free_CA_mode 1 and
#: descriptors_loop_length 12.
SDT_BODY = Struct(
    "original_network_id" / Int16ub,
    "reserved_future_use" / Int8ub,
    "services"
    / GreedyRange(
        Struct(
            "service_id" / Int16ub,
            "flags" / Int8ub,  # reserved_future_use 6, EIT_schedule_flag 1, EIT_p/f_flag 1
            "status" / Int16ub,
            "descriptors" / FixedSized(this.status & 0x0FFF, DESCRIPTOR_LOOP),
        )
    ),
    Terminated,
)

_T = TypeVar("_T")


def _construct_path(exc: ConstructError, prefix: str) -> str:
    raw = str(getattr(exc, "path", "") or "")
    raw = raw.replace("(parsing)", "").replace("(building)", "")
    parts = [p.strip() for p in raw.split("->") if p.strip()]
    return ".".join([prefix, *parts])


def _run(prefix: str, fn: Callable[[], _T]) -> _T:
    """Run a construct parse/build; construct errors leave as FormatError with a field path."""
    try:
        return fn()
    except ConstructError as exc:
        message = str(exc).split("\n", 1)[-1]
        raise FormatError(message, path=_construct_path(exc, prefix)) from exc


def parse_descriptors(data: bytes, *, path: str = "descriptors") -> tuple[Descriptor, ...]:
    """Parse a whole descriptor loop (bytes exactly filled by descriptors)."""
    items = _run(path, lambda: DESCRIPTOR_LOOP.parse(data))
    return tuple(
        _descriptor_from_raw(item.descriptor_tag, item.data, f"{path}[{i}]")
        for i, item in enumerate(items)
    )


def build_descriptors(descriptors: Iterable[Descriptor]) -> bytes:
    out = bytearray()
    for d in descriptors:
        tag, body = _descriptor_to_raw(d)
        out += bytes((tag, len(body))) + body
    return bytes(out)


def _raw_list(descriptors: Iterable[Descriptor]) -> list[dict[str, Any]]:
    result = []
    for d in descriptors:
        tag, body = _descriptor_to_raw(d)
        result.append({"descriptor_tag": tag, "data": body})
    return result


def _descs(items: Sequence[Any], path: str) -> tuple[Descriptor, ...]:
    return tuple(
        _descriptor_from_raw(item.descriptor_tag, item.data, f"{path}[{i}]")
        for i, item in enumerate(items)
    )


def _as_tuple(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, tuple):
        object.__setattr__(obj, name, tuple(value))


def _check_descriptors(path: str, descriptors: tuple[Any, ...]) -> None:
    for i, d in enumerate(descriptors):
        if not isinstance(
            d, CaDescriptor | ScramblingDescriptor | ServiceDescriptor | RawDescriptor
        ):
            raise FormatError(f"not a descriptor: {type(d).__name__}", path=f"{path}[{i}]")


# --- tables ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _TableVersion:
    version_number: int = 0
    current_next_indicator: bool = True

    def _check_version(self, table: str) -> None:
        _check(f"{table}.version_number", self.version_number, 5)


@dataclass(frozen=True, kw_only=True)
class _MultiSection(_TableVersion):
    section_number: int = 0
    last_section_number: int = 0

    def _check_sections(self, table: str) -> None:
        self._check_version(table)
        _check(f"{table}.section_number", self.section_number, 8)
        _check(f"{table}.last_section_number", self.last_section_number, 8)
        if self.section_number > self.last_section_number:
            raise FormatError(
                "section_number > last_section_number", path=f"{table}.section_number"
            )


@dataclass(frozen=True, kw_only=True)
class PatProgram:
    """One PAT entry; program_number 0 announces the network_PID (NIT)."""

    program_number: int
    pid: int

    def __post_init__(self) -> None:
        _check("pat.program_number", self.program_number, 16)
        _check("pat.program_map_PID", self.pid, 13)


@dataclass(frozen=True, kw_only=True)
class Pat(_MultiSection):
    """program_association_section (ISO/IEC 13818-1 §2.4.4.3), table_id 0x00 on PID 0."""

    transport_stream_id: int
    programs: tuple[PatProgram, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "programs")
        self._check_sections("pat")
        _check("pat.transport_stream_id", self.transport_stream_id, 16)
        for i, p in enumerate(self.programs):
            if not isinstance(p, PatProgram):
                raise FormatError("expected PatProgram", path=f"pat.programs[{i}]")


@dataclass(frozen=True, kw_only=True)
class Cat(_MultiSection):
    """CA_section (ISO/IEC 13818-1 §2.4.4.6), table_id 0x01 on PID 1; its CA_descriptors give
    the EMM PIDs.  table_id_extension is reserved (written 0xFFFF, ignored on parse)."""

    descriptors: tuple[Descriptor, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "descriptors")
        self._check_sections("cat")
        _check_descriptors("cat.descriptors", self.descriptors)


@dataclass(frozen=True, kw_only=True)
class PmtStream:
    """One elementary stream of a PMT (stream_type, elementary_PID, ES_info descriptors)."""

    stream_type: int
    elementary_pid: int
    descriptors: tuple[Descriptor, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "descriptors")
        _check("pmt.stream_type", self.stream_type, 8)
        _check("pmt.elementary_PID", self.elementary_pid, 13)
        _check_descriptors("pmt.ES_info", self.descriptors)


@dataclass(frozen=True, kw_only=True)
class Pmt(_TableVersion):
    """TS_program_map_section (ISO/IEC 13818-1 §2.4.4.8), table_id 0x02.  Always a single
    section (section_number = last_section_number = 0)."""

    program_number: int
    pcr_pid: int = 0x1FFF
    descriptors: tuple[Descriptor, ...] = ()
    streams: tuple[PmtStream, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "descriptors")
        _as_tuple(self, "streams")
        self._check_version("pmt")
        _check("pmt.program_number", self.program_number, 16)
        _check("pmt.PCR_PID", self.pcr_pid, 13)
        _check_descriptors("pmt.program_info", self.descriptors)
        for i, s in enumerate(self.streams):
            if not isinstance(s, PmtStream):
                raise FormatError("expected PmtStream", path=f"pmt.streams[{i}]")


@dataclass(frozen=True, kw_only=True)
class SdtService:
    """One service of an SDT (EN 300 468 §5.2.3).  running_status 4 = running."""

    service_id: int
    eit_schedule_flag: bool = False
    eit_present_following_flag: bool = False
    running_status: int = 4
    free_ca_mode: bool = False
    descriptors: tuple[Descriptor, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "descriptors")
        _check("sdt.service_id", self.service_id, 16)
        _check("sdt.running_status", self.running_status, 3)
        _check_descriptors("sdt.descriptors", self.descriptors)


@dataclass(frozen=True, kw_only=True)
class Sdt(_MultiSection):
    """service_description_section (EN 300 468 §5.2.3): table_id 0x42 (actual TS) or 0x46
    (other TS), PID 0x0011."""

    transport_stream_id: int
    original_network_id: int
    services: tuple[SdtService, ...] = ()
    actual: bool = True

    def __post_init__(self) -> None:
        _as_tuple(self, "services")
        self._check_sections("sdt")
        _check("sdt.transport_stream_id", self.transport_stream_id, 16)
        _check("sdt.original_network_id", self.original_network_id, 16)
        for i, s in enumerate(self.services):
            if not isinstance(s, SdtService):
                raise FormatError("expected SdtService", path=f"sdt.services[{i}]")


def _parse_long(data: bytes, table: str, table_ids: tuple[int, ...]) -> LongSection:
    data = bytes(data)
    if not data:
        raise FormatError("empty section", path=f"{table}.table_id")
    if data[0] not in table_ids:
        raise FormatError(
            f"table_id 0x{data[0]:02X} is not {'/'.join(f'0x{t:02X}' for t in table_ids)}",
            path=f"{table}.table_id",
        )
    section = parse_section(data, max_section_length=MAX_PSI_SECTION_LENGTH)
    if not isinstance(section, LongSection):
        raise FormatError("section_syntax_indicator is 0", path=f"{table}.section_syntax_indicator")
    return section


def _build_long(section: LongSection, table: str) -> bytes:
    try:
        return build_section(section, max_section_length=MAX_PSI_SECTION_LENGTH)
    except FormatError as exc:
        raise FormatError(str(exc), path=f"{table}.section_length") from exc


def parse_pat(data: bytes) -> Pat:
    """Parse one PAT section (complete section bytes, CRC checked)."""
    s = _parse_long(data, "pat", (TABLE_ID_PAT,))
    programs = _run("pat", lambda: PAT_BODY.parse(s.payload))
    return Pat(
        transport_stream_id=s.table_id_extension,
        version_number=s.version_number,
        current_next_indicator=s.current_next_indicator,
        section_number=s.section_number,
        last_section_number=s.last_section_number,
        programs=tuple(PatProgram(program_number=p.program_number, pid=p.pid) for p in programs),
    )


def build_pat(pat: Pat) -> bytes:
    payload = _run(
        "pat",
        lambda: PAT_BODY.build(
            [{"program_number": p.program_number, "pid": p.pid} for p in pat.programs]
        ),
    )
    return _build_long(
        LongSection(
            table_id=TABLE_ID_PAT,
            table_id_extension=pat.transport_stream_id,
            version_number=pat.version_number,
            current_next_indicator=pat.current_next_indicator,
            section_number=pat.section_number,
            last_section_number=pat.last_section_number,
            payload=payload,
        ),
        "pat",
    )


def parse_cat(data: bytes) -> Cat:
    """Parse one CAT section (complete section bytes, CRC checked)."""
    s = _parse_long(data, "cat", (TABLE_ID_CAT,))
    items = _run("cat.descriptors", lambda: CAT_BODY.parse(s.payload))
    return Cat(
        version_number=s.version_number,
        current_next_indicator=s.current_next_indicator,
        section_number=s.section_number,
        last_section_number=s.last_section_number,
        descriptors=_descs(items, "cat.descriptors"),
    )


def build_cat(cat: Cat) -> bytes:
    payload = build_descriptors(cat.descriptors)
    return _build_long(
        LongSection(
            table_id=TABLE_ID_CAT,
            table_id_extension=0xFFFF,
            version_number=cat.version_number,
            current_next_indicator=cat.current_next_indicator,
            section_number=cat.section_number,
            last_section_number=cat.last_section_number,
            payload=payload,
        ),
        "cat",
    )


def parse_pmt(data: bytes) -> Pmt:
    """Parse one PMT section (complete section bytes, CRC checked)."""
    s = _parse_long(data, "pmt", (TABLE_ID_PMT,))
    if s.section_number != 0 or s.last_section_number != 0:
        raise FormatError(
            "a PMT is a single section (section_number = last_section_number = 0)",
            path="pmt.section_number",
        )
    body = _run("pmt", lambda: PMT_BODY.parse(s.payload))
    return Pmt(
        program_number=s.table_id_extension,
        version_number=s.version_number,
        current_next_indicator=s.current_next_indicator,
        pcr_pid=body.PCR_PID,
        descriptors=_descs(body.program_info, "pmt.program_info"),
        streams=tuple(
            PmtStream(
                stream_type=st.stream_type,
                elementary_pid=st.elementary_PID,
                descriptors=_descs(st.ES_info, f"pmt.streams[{i}].ES_info"),
            )
            for i, st in enumerate(body.streams)
        ),
    )


def build_pmt(pmt: Pmt) -> bytes:
    value = {
        "PCR_PID": pmt.pcr_pid,
        "program_info": _raw_list(pmt.descriptors),
        "streams": [
            {
                "stream_type": st.stream_type,
                "elementary_PID": st.elementary_pid,
                "ES_info": _raw_list(st.descriptors),
            }
            for st in pmt.streams
        ],
    }
    payload = _run("pmt", lambda: PMT_BODY.build(value))
    return _build_long(
        LongSection(
            table_id=TABLE_ID_PMT,
            table_id_extension=pmt.program_number,
            version_number=pmt.version_number,
            current_next_indicator=pmt.current_next_indicator,
            payload=payload,
        ),
        "pmt",
    )


def parse_sdt(data: bytes) -> Sdt:
    """Parse one SDT section, actual (0x42) or other (0x46) TS."""
    s = _parse_long(data, "sdt", (TABLE_ID_SDT_ACTUAL, TABLE_ID_SDT_OTHER))
    body = _run("sdt", lambda: SDT_BODY.parse(s.payload))
    return Sdt(
        actual=bytes(data)[0] == TABLE_ID_SDT_ACTUAL,
        transport_stream_id=s.table_id_extension,
        version_number=s.version_number,
        current_next_indicator=s.current_next_indicator,
        section_number=s.section_number,
        last_section_number=s.last_section_number,
        original_network_id=body.original_network_id,
        services=tuple(
            SdtService(
                service_id=sv.service_id,
                eit_schedule_flag=bool(sv.flags & 0x02),
                eit_present_following_flag=bool(sv.flags & 0x01),
                running_status=sv.status >> 13,
                free_ca_mode=bool(sv.status & 0x1000),
                descriptors=_descs(sv.descriptors, f"sdt.services[{i}].descriptors"),
            )
            for i, sv in enumerate(body.services)
        ),
    )


def build_sdt(sdt: Sdt) -> bytes:
    services = []
    for i, sv in enumerate(sdt.services):
        loop = build_descriptors(sv.descriptors)
        if len(loop) > 0x0FFF:
            raise FormatError("descriptor loop too long", path=f"sdt.services[{i}].descriptors")
        services.append(
            {
                "service_id": sv.service_id,
                "flags": 0xFC
                | (0x02 if sv.eit_schedule_flag else 0)
                | (0x01 if sv.eit_present_following_flag else 0),
                "status": (sv.running_status << 13)
                | (0x1000 if sv.free_ca_mode else 0)
                | len(loop),
                "descriptors": _raw_list(sv.descriptors),
            }
        )
    value = {
        "original_network_id": sdt.original_network_id,
        "reserved_future_use": 0xFF,
        "services": services,
    }
    payload = _run("sdt", lambda: SDT_BODY.build(value))
    return _build_long(
        LongSection(
            table_id=TABLE_ID_SDT_ACTUAL if sdt.actual else TABLE_ID_SDT_OTHER,
            # EN 300 468 SI tables set the private_indicator position ("reserved_future_use").
            private_indicator=True,
            table_id_extension=sdt.transport_stream_id,
            version_number=sdt.version_number,
            current_next_indicator=sdt.current_next_indicator,
            section_number=sdt.section_number,
            last_section_number=sdt.last_section_number,
            payload=payload,
        ),
        "sdt",
    )


#: Bytes of an SDT section that are not service loop: the 3-byte section header, the 5 bytes
#: from table_id_extension to last_section_number, original_network_id + reserved, CRC_32.
_SDT_SECTION_OVERHEAD = 3 + 5 + 3 + 4


def _sdt_service_size(sv: SdtService) -> int:
    return 5 + len(build_descriptors(sv.descriptors))


def split_sdt(sdt: Sdt) -> tuple[Sdt, ...]:
    """``sdt``'s services spread over as many sections as they need (EN 300 468 §5.1.4: an SI
    section is at most 1024 bytes), numbered 0..last_section_number, services in order.

    One section (section_number 0 of 0) when they fit; an SDT without services is one section.
    A single service too large for any section is a :class:`FormatError`.
    """
    room = 3 + MAX_PSI_SECTION_LENGTH - _SDT_SECTION_OVERHEAD
    groups: list[list[SdtService]] = [[]]
    used = 0
    for i, sv in enumerate(sdt.services):
        size = _sdt_service_size(sv)
        if size > room:
            raise FormatError(f"service {sv.service_id} does not fit an SDT section "
                              f"({size} bytes)", path=f"sdt.services[{i}]")
        if used + size > room:
            groups.append([])
            used = 0
        groups[-1].append(sv)
        used += size
    if len(groups) > 256:
        raise FormatError("the SDT needs more than 256 sections", path="sdt.services")
    last = len(groups) - 1
    return tuple(replace(sdt, services=tuple(g), section_number=n, last_section_number=last)
                 for n, g in enumerate(groups))


def parse_psi(data: bytes) -> Pat | Cat | Pmt | Sdt:
    """Parse a PAT, CAT, PMT or SDT section, chosen by its table_id."""
    data = bytes(data)
    if not data:
        raise FormatError("empty section", path="section.table_id")
    parser = _PARSERS.get(data[0])
    if parser is None:
        raise FormatError(
            f"table_id 0x{data[0]:02X} is not a PSI table we parse", path="section.table_id"
        )
    return parser(data)


_PARSERS: dict[int, Callable[[bytes], Pat | Cat | Pmt | Sdt]] = {
    TABLE_ID_PAT: parse_pat,
    TABLE_ID_CAT: parse_cat,
    TABLE_ID_PMT: parse_pmt,
    TABLE_ID_SDT_ACTUAL: parse_sdt,
    TABLE_ID_SDT_OTHER: parse_sdt,
}


# --- fast CA_descriptor lookup -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CaRef:
    """A CA_descriptor found by :func:`find_ca_descriptors`.

    ``elementary_pid`` is ``None`` for CAT and PMT program-level descriptors, the component's
    PID for PMT ES-level ones.
    """

    ca_system_id: int
    ca_pid: int
    elementary_pid: int | None = None
    private_data: bytes = b""


def _scan_loop(
    data: bytes, start: int, end: int, want: int | None, es: int | None, out: list[CaRef]
) -> None:
    pos = start
    while pos < end:
        if pos + 2 > end:
            raise FormatError("truncated descriptor header", path="descriptors")
        tag = data[pos]
        length = data[pos + 1]
        body = pos + 2
        pos = body + length
        if pos > end:
            raise FormatError("descriptor_length runs past its loop", path="descriptors")
        if tag == 0x09:
            if length < 4:
                raise FormatError(f"descriptor_length {length} < 4", path="CA_descriptor")
            system = (data[body] << 8) | data[body + 1]
            if want is None or system == want:
                out.append(
                    CaRef(
                        ca_system_id=system,
                        ca_pid=((data[body + 2] & 0x1F) << 8) | data[body + 3],
                        elementary_pid=es,
                        private_data=data[body + 4 : pos],
                    )
                )


def find_ca_descriptors(
    section: bytes, ca_system_id: int | None = None, *, check_crc: bool = True
) -> list[CaRef]:
    """CA_descriptors of a PMT (program and ES level) or CAT section, without building objects.

    With ``ca_system_id`` only that CA system's descriptors are returned.  Raises FormatError on
    malformed sections or other table_ids, ChecksumError on a bad CRC when ``check_crc``.
    """
    data = bytes(section)
    n = len(data)
    if n < 12:
        raise FormatError(f"{n} bytes is too short for a PMT/CAT section", path="section")
    table_id = data[0]
    if table_id not in (TABLE_ID_CAT, TABLE_ID_PMT):
        raise FormatError(
            f"table_id 0x{table_id:02X} is neither CAT nor PMT", path="section.table_id"
        )
    total = 3 + (((data[1] & 0x0F) << 8) | data[2])
    if total != n or not data[1] & 0x80:
        raise FormatError(
            f"section_length implies {total} bytes, got {n}", path="section.section_length"
        )
    if check_crc and crc32_mpeg2(data) != 0:
        raise ChecksumError("CRC_32 mismatch", path="section.CRC_32")
    end = n - 4
    out: list[CaRef] = []
    if table_id == TABLE_ID_CAT:
        _scan_loop(data, 8, end, ca_system_id, None, out)
        return out
    if end < 12:
        raise FormatError("PMT too short for PCR_PID and program_info_length", path="pmt")
    info_end = 12 + (((data[10] & 0x0F) << 8) | data[11])
    if info_end > end:
        raise FormatError(
            "program_info_length runs past the section", path="pmt.program_info_length"
        )
    _scan_loop(data, 12, info_end, ca_system_id, None, out)
    pos = info_end
    while pos < end:
        if pos + 5 > end:
            raise FormatError("truncated ES loop entry", path="pmt.streams")
        es_pid = ((data[pos + 1] & 0x1F) << 8) | data[pos + 2]
        es_end = pos + 5 + (((data[pos + 3] & 0x0F) << 8) | data[pos + 4])
        if es_end > end:
            raise FormatError("ES_info_length runs past the section", path="pmt.ES_info_length")
        _scan_loop(data, pos + 5, es_end, ca_system_id, es_pid, out)
        pos = es_end
    return out


def has_ca_system(section: bytes, ca_system_id: int) -> bool:
    """True if a PMT or CAT section carries a CA_descriptor for ``ca_system_id``."""
    return bool(find_ca_descriptors(section, ca_system_id))


# --- describe ----------------------------------------------------------------------------------


def _describe_descriptor(d: Descriptor) -> dict[str, Any]:
    if isinstance(d, CaDescriptor):
        return {
            "descriptor": "CA_descriptor",
            "descriptor_tag": CaDescriptor.TAG,
            "CA_system_ID": d.ca_system_id,
            "CA_PID": d.ca_pid,
            "private_data": d.private_data.hex(),
        }
    if isinstance(d, ScramblingDescriptor):
        return {
            "descriptor": "scrambling_descriptor",
            "descriptor_tag": ScramblingDescriptor.TAG,
            "scrambling_mode": d.scrambling_mode,
            "scrambling_mode_name": SCRAMBLING_MODE_NAMES.get(d.scrambling_mode, "unknown"),
        }
    if isinstance(d, ServiceDescriptor):
        return {
            "descriptor": "service_descriptor",
            "descriptor_tag": ServiceDescriptor.TAG,
            "service_type": d.service_type,
            "service_provider_name": d.provider_text,
            "service_name": d.name_text,
        }
    if isinstance(d, RawDescriptor):
        return {"descriptor": "unknown", "descriptor_tag": d.tag, "data": d.data.hex()}
    raise TypeError(f"cannot describe {type(d).__name__}")


def describe(obj: Pat | Cat | Pmt | Sdt | Descriptor) -> dict[str, Any]:
    """JSON-able view of a table or descriptor, for ``cas decode``."""
    if isinstance(obj, Pat):
        return {
            "table": "PAT",
            "table_id": TABLE_ID_PAT,
            "transport_stream_id": obj.transport_stream_id,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "section_number": obj.section_number,
            "last_section_number": obj.last_section_number,
            "programs": [
                {
                    "program_number": p.program_number,
                    ("network_PID" if p.program_number == 0 else "program_map_PID"): p.pid,
                }
                for p in obj.programs
            ],
        }
    if isinstance(obj, Cat):
        return {
            "table": "CAT",
            "table_id": TABLE_ID_CAT,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "section_number": obj.section_number,
            "last_section_number": obj.last_section_number,
            "descriptors": [_describe_descriptor(d) for d in obj.descriptors],
        }
    if isinstance(obj, Pmt):
        return {
            "table": "PMT",
            "table_id": TABLE_ID_PMT,
            "program_number": obj.program_number,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "PCR_PID": obj.pcr_pid,
            "program_info": [_describe_descriptor(d) for d in obj.descriptors],
            "streams": [
                {
                    "stream_type": s.stream_type,
                    "stream_type_name": STREAM_TYPE_NAMES.get(s.stream_type, "unknown"),
                    "elementary_PID": s.elementary_pid,
                    "ES_info": [_describe_descriptor(d) for d in s.descriptors],
                }
                for s in obj.streams
            ],
        }
    if isinstance(obj, Sdt):
        return {
            "table": "SDT",
            "table_id": TABLE_ID_SDT_ACTUAL if obj.actual else TABLE_ID_SDT_OTHER,
            "transport_stream_id": obj.transport_stream_id,
            "original_network_id": obj.original_network_id,
            "version_number": obj.version_number,
            "current_next_indicator": int(obj.current_next_indicator),
            "section_number": obj.section_number,
            "last_section_number": obj.last_section_number,
            "services": [
                {
                    "service_id": s.service_id,
                    "EIT_schedule_flag": int(s.eit_schedule_flag),
                    "EIT_present_following_flag": int(s.eit_present_following_flag),
                    "running_status": s.running_status,
                    "free_CA_mode": int(s.free_ca_mode),
                    "descriptors": [_describe_descriptor(d) for d in s.descriptors],
                }
                for s in obj.services
            ],
        }
    return _describe_descriptor(obj)
