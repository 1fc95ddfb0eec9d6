"""PSI/SI descriptors: CA_descriptor (tag 0x09, ISO/IEC 13818-1 §2.6.16),
scrambling_descriptor (0x65, EN 300 468 §6.2.32), service_descriptor (0x48, §6.2.33), any
other tag kept as :class:`RawDescriptor`; the EACEM logical_channel_descriptor helpers, DVB
text (EN 300 468 Annex A) and the descriptor loop every table body uses.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from construct import (
    ConstructError,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Prefixed,
    Struct,
    Terminated,
)

from cas.errors import FormatError
from cas.formats._common import check_bits


def check_bytes(path: str, value: bytes, max_len: int) -> None:
    if not isinstance(value, bytes):
        raise FormatError(f"expected bytes, got {type(value).__name__}", path=path).with_id(
            "formats.expected_bytes_2", field=path, name__=type(value).__name__)
    if len(value) > max_len:
        raise FormatError(f"{len(value)} bytes, at most {max_len} fit", path=path).with_id(
            "formats.bytes_most_fit", field=path, n=len(value), max_len=max_len)


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
        check_bits("CA_descriptor.CA_system_ID", self.ca_system_id, 16)
        check_bits("CA_descriptor.CA_PID", self.ca_pid, 13)
        check_bytes("CA_descriptor.private_data_byte", self.private_data, 251)


@dataclass(frozen=True, kw_only=True)
class ScramblingDescriptor:
    """scrambling_descriptor (EN 300 468 §6.2.32): 0x02 CSA2 (the default when absent),
    0x10 DVB-CISSA v1, ..."""

    TAG: ClassVar[int] = 0x65
    scrambling_mode: int

    def __post_init__(self) -> None:
        check_bits("scrambling_descriptor.scrambling_mode", self.scrambling_mode, 8)


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
        check_bits("service_descriptor.service_type", self.service_type, 8)
        check_bytes("service_descriptor.service_provider_name", self.service_provider_name, 252)
        check_bytes(
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
        check_bits("descriptor.descriptor_tag", self.tag, 8)
        check_bytes("descriptor.descriptor_length", self.data, 255)


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
    check_bits("private_data_specifier_descriptor.private_data_specifier", specifier, 32)
    return RawDescriptor(tag=PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG,
                         data=specifier.to_bytes(4, "big"))


def logical_channel_descriptor(numbers: Iterable[tuple[int, int]], *,
                               visible: bool = True) -> RawDescriptor:
    """logical_channel_descriptor (EACEM / IEC 62216 §A.2.3): per service, service_id 16 bits,
    visible_service_flag 1, reserved 5 (all ones), logical_channel_number 10."""
    body = bytearray()
    for service_id, number in numbers:
        check_bits("logical_channel_descriptor.service_id", service_id, 16)
        check_bits("logical_channel_descriptor.logical_channel_number", number, 10)
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


def descriptor_from_raw(tag: int, data: bytes, path: str) -> Descriptor:
    if tag == CaDescriptor.TAG:
        if len(data) < 4:
            raise FormatError(f"descriptor_length {len(data)} < 4", path=f"{path}.CA_descriptor").with_id(
                "formats.descriptor_length", field=f"{path}.CA_descriptor", n=len(data))
        return CaDescriptor(
            ca_system_id=(data[0] << 8) | data[1],
            ca_pid=((data[2] & 0x1F) << 8) | data[3],
            private_data=data[4:],
        )
    if tag == ScramblingDescriptor.TAG:
        if len(data) != 1:
            raise FormatError(
                f"descriptor_length {len(data)} != 1", path=f"{path}.scrambling_descriptor"
            ).with_id(
                "formats.descriptor_length_2", field=f"{path}.scrambling_descriptor", n=len(data))
        return ScramblingDescriptor(scrambling_mode=data[0])
    if tag == ServiceDescriptor.TAG:
        spath = f"{path}.service_descriptor"
        if len(data) < 2 or len(data) < 3 + data[1]:
            raise FormatError("truncated service_provider_name", path=spath).with_id(
                "formats.truncated_service_provider_name", field=spath)
        plen = data[1]
        nlen = data[2 + plen]
        if len(data) != 3 + plen + nlen:
            raise FormatError(
                f"descriptor_length {len(data)} != {3 + plen + nlen} implied by name lengths",
                path=spath,
            ).with_id(
                "formats.descriptor_length_implied_name", field=spath, n=len(data),
                value=3 + plen + nlen)
        return ServiceDescriptor(
            service_type=data[0],
            service_provider_name=data[2 : 2 + plen],
            service_name=data[3 + plen :],
        )
    return RawDescriptor(tag=tag, data=data)


def descriptor_to_raw(d: Descriptor) -> tuple[int, bytes]:
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
    raise FormatError(f"not a descriptor: {type(d).__name__}", path="descriptor").with_id(
        "formats.descriptor_not_descriptor", name__=type(d).__name__)


DESCRIPTOR = Struct("descriptor_tag" / Int8ub, "data" / Prefixed(Int8ub, GreedyBytes))
#: A descriptor loop fills its space exactly; leftovers are an error, not silently dropped.
DESCRIPTOR_LOOP = FocusedSeq("descriptors", "descriptors" / GreedyRange(DESCRIPTOR), Terminated)

_T = TypeVar("_T")


def _construct_path(exc: ConstructError, prefix: str) -> str:
    raw = str(getattr(exc, "path", "") or "")
    raw = raw.replace("(parsing)", "").replace("(building)", "")
    parts = [p.strip() for p in raw.split("->") if p.strip()]
    return ".".join([prefix, *parts])


def run_construct(prefix: str, fn: Callable[[], _T]) -> _T:
    """Run a construct parse/build; construct errors leave as FormatError with a field path."""
    try:
        return fn()
    except ConstructError as exc:
        message = str(exc).split("\n", 1)[-1]
        raise FormatError(message, path=_construct_path(exc, prefix)) from exc


def parse_descriptors(data: bytes, *, path: str = "descriptors") -> tuple[Descriptor, ...]:
    """Parse a whole descriptor loop (bytes exactly filled by descriptors)."""
    items = run_construct(path, lambda: DESCRIPTOR_LOOP.parse(data))
    return tuple(
        descriptor_from_raw(item.descriptor_tag, item.data, f"{path}[{i}]")
        for i, item in enumerate(items)
    )


def build_descriptors(descriptors: Iterable[Descriptor]) -> bytes:
    out = bytearray()
    for d in descriptors:
        tag, body = descriptor_to_raw(d)
        out += bytes((tag, len(body))) + body
    return bytes(out)


def raw_descriptor_list(descriptors: Iterable[Descriptor]) -> list[dict[str, Any]]:
    result = []
    for d in descriptors:
        tag, body = descriptor_to_raw(d)
        result.append({"descriptor_tag": tag, "data": body})
    return result


def descriptors_from_items(items: Sequence[Any], path: str) -> tuple[Descriptor, ...]:
    return tuple(
        descriptor_from_raw(item.descriptor_tag, item.data, f"{path}[{i}]")
        for i, item in enumerate(items)
    )


def check_descriptors(path: str, descriptors: tuple[Any, ...]) -> None:
    for i, d in enumerate(descriptors):
        if not isinstance(
            d, CaDescriptor | ScramblingDescriptor | ServiceDescriptor | RawDescriptor
        ):
            raise FormatError(f"not a descriptor: {type(d).__name__}", path=f"{path}[{i}]").with_id(
                "formats.not_descriptor", field=f"{path}[{i}]", name__=type(d).__name__)
