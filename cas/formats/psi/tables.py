"""PSI/SI tables: PAT, CAT, PMT (ISO/IEC 13818-1 §2.4.4) and SDT (ETSI EN 300 468 §5.2.3).

Each table is one long section (:mod:`cas.formats.sections`): ``parse_<table>`` checks the
table_id, the section lengths and the CRC_32, ``build_<table>`` computes them.  Table bodies
are declared with ``construct``; 12/13-bit length and PID fields share a 16-bit word with
reserved bits, which are ignored on parse and written as ones on build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from construct import (
    ExprAdapter,
    FixedSized,
    FocusedSeq,
    GreedyRange,
    Int8ub,
    Int16ub,
    Prefixed,
    Struct,
    Terminated,
    this,
)

from cas.errors import FormatError
from cas.formats._common import check_bits
from cas.formats.psi.descriptors import (
    DESCRIPTOR_LOOP,
    Descriptor,
    build_descriptors,
    check_descriptors,
    descriptors_from_items,
    raw_descriptor_list,
    run_construct,
)
from cas.formats.sections import (
    MAX_PSI_SECTION_LENGTH,
    LongSection,
    build_section,
    parse_section,
)

PAT_PID = 0x0000
CAT_PID = 0x0001
SDT_PID = 0x0011
TABLE_ID_PAT = 0x00
TABLE_ID_CAT = 0x01
TABLE_ID_PMT = 0x02
TABLE_ID_SDT_ACTUAL = 0x42
TABLE_ID_SDT_OTHER = 0x46


# --- construct schemas -------------------------------------------------------------------------


def low_bits(bits: int) -> Any:
    """A ``bits``-wide uimsbf in the low bits of a 16-bit word whose high bits are reserved."""
    mask = (1 << bits) - 1
    return ExprAdapter(
        Int16ub,
        lambda obj, ctx: obj & mask,
        lambda obj, ctx: obj | (0xFFFF & ~mask),
    )


PID_FIELD = low_bits(13)
LENGTH12_FIELD = low_bits(12)

#: descriptor(): descriptor_tag 8, descriptor_length 8, body.

#: PAT body after the long section header (§2.4.4.3).
PAT_BODY = FocusedSeq(
    "programs",
    "programs" / GreedyRange(Struct("program_number" / Int16ub, "pid" / PID_FIELD)),
    Terminated,
)
#: CAT body: a bare descriptor loop (§2.4.4.6).
CAT_BODY = DESCRIPTOR_LOOP
#: PMT body (§2.4.4.8).
PMT_BODY = Struct(
    "PCR_PID" / PID_FIELD,
    "program_info" / Prefixed(LENGTH12_FIELD, DESCRIPTOR_LOOP),
    "streams"
    / GreedyRange(
        Struct(
            "stream_type" / Int8ub,
            "elementary_PID" / PID_FIELD,
            "ES_info" / Prefixed(LENGTH12_FIELD, DESCRIPTOR_LOOP),
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


def _as_tuple(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, tuple):
        object.__setattr__(obj, name, tuple(value))


# --- tables ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _TableVersion:
    version_number: int = 0
    current_next_indicator: bool = True

    def _check_version(self, table: str) -> None:
        check_bits(f"{table}.version_number", self.version_number, 5)


@dataclass(frozen=True, kw_only=True)
class _MultiSection(_TableVersion):
    section_number: int = 0
    last_section_number: int = 0

    def _check_sections(self, table: str) -> None:
        self._check_version(table)
        check_bits(f"{table}.section_number", self.section_number, 8)
        check_bits(f"{table}.last_section_number", self.last_section_number, 8)
        if self.section_number > self.last_section_number:
            raise FormatError(
                "section_number > last_section_number", path=f"{table}.section_number"
            ).with_id("formats.section_number_last_section", field=f"{table}.section_number")

    def _section(
        self, *, table_id: int, table_id_extension: int, payload: bytes,
        private_indicator: bool = False,
    ) -> LongSection:  # fmt: skip
        """The long section carrying ``payload``, with this table's version and numbering."""
        return LongSection(
            table_id=table_id,
            private_indicator=private_indicator,
            table_id_extension=table_id_extension,
            version_number=self.version_number,
            current_next_indicator=self.current_next_indicator,
            section_number=self.section_number,
            last_section_number=self.last_section_number,
            payload=payload,
        )


@dataclass(frozen=True, kw_only=True)
class PatProgram:
    """One PAT entry; program_number 0 announces the network_PID (NIT)."""

    program_number: int
    pid: int

    def __post_init__(self) -> None:
        check_bits("pat.program_number", self.program_number, 16)
        check_bits("pat.program_map_PID", self.pid, 13)


@dataclass(frozen=True, kw_only=True)
class Pat(_MultiSection):
    """program_association_section (ISO/IEC 13818-1 §2.4.4.3), table_id 0x00 on PID 0."""

    transport_stream_id: int
    programs: tuple[PatProgram, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "programs")
        self._check_sections("pat")
        check_bits("pat.transport_stream_id", self.transport_stream_id, 16)
        for i, p in enumerate(self.programs):
            if not isinstance(p, PatProgram):
                raise FormatError("expected PatProgram", path=f"pat.programs[{i}]").with_id(
                    "formats.expected_patprogram", field=f"pat.programs[{i}]")


@dataclass(frozen=True, kw_only=True)
class Cat(_MultiSection):
    """CA_section (ISO/IEC 13818-1 §2.4.4.6), table_id 0x01 on PID 1; its CA_descriptors give
    the EMM PIDs.  table_id_extension is reserved (written 0xFFFF, ignored on parse)."""

    descriptors: tuple[Descriptor, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "descriptors")
        self._check_sections("cat")
        check_descriptors("cat.descriptors", self.descriptors)


@dataclass(frozen=True, kw_only=True)
class PmtStream:
    """One elementary stream of a PMT (stream_type, elementary_PID, ES_info descriptors)."""

    stream_type: int
    elementary_pid: int
    descriptors: tuple[Descriptor, ...] = ()

    def __post_init__(self) -> None:
        _as_tuple(self, "descriptors")
        check_bits("pmt.stream_type", self.stream_type, 8)
        check_bits("pmt.elementary_PID", self.elementary_pid, 13)
        check_descriptors("pmt.ES_info", self.descriptors)


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
        check_bits("pmt.program_number", self.program_number, 16)
        check_bits("pmt.PCR_PID", self.pcr_pid, 13)
        check_descriptors("pmt.program_info", self.descriptors)
        for i, s in enumerate(self.streams):
            if not isinstance(s, PmtStream):
                raise FormatError("expected PmtStream", path=f"pmt.streams[{i}]").with_id(
                    "formats.expected_pmtstream", field=f"pmt.streams[{i}]")


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
        check_bits("sdt.service_id", self.service_id, 16)
        check_bits("sdt.running_status", self.running_status, 3)
        check_descriptors("sdt.descriptors", self.descriptors)


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
        check_bits("sdt.transport_stream_id", self.transport_stream_id, 16)
        check_bits("sdt.original_network_id", self.original_network_id, 16)
        for i, s in enumerate(self.services):
            if not isinstance(s, SdtService):
                raise FormatError("expected SdtService", path=f"sdt.services[{i}]").with_id(
                    "formats.expected_sdtservice", field=f"sdt.services[{i}]")


def _parse_long(data: bytes, table: str, table_ids: tuple[int, ...]) -> LongSection:
    data = bytes(data)
    if not data:
        raise FormatError("empty section", path=f"{table}.table_id").with_id(
            "formats.empty_section", field=f"{table}.table_id")
    if data[0] not in table_ids:
        raise FormatError(
            f"table_id 0x{data[0]:02X} is not {'/'.join(f'0x{t:02X}' for t in table_ids)}",
            path=f"{table}.table_id",
        ).with_id(
            "formats.table_id_x_not", field=f"{table}.table_id", data=f"{data[0]:02X}",
            value='/'.join(f'0x{t:02X}' for t in table_ids))
    section = parse_section(data, max_section_length=MAX_PSI_SECTION_LENGTH)
    if not isinstance(section, LongSection):
        raise FormatError("section_syntax_indicator is 0", path=f"{table}.section_syntax_indicator").with_id(
            "formats.section_syntax_indicator", field=f"{table}.section_syntax_indicator")
    return section


def _build_long(section: LongSection, table: str) -> bytes:
    try:
        return build_section(section, max_section_length=MAX_PSI_SECTION_LENGTH)
    except FormatError as exc:
        raise FormatError(str(exc), path=f"{table}.section_length").with_id(
            "formats.within", field=f"{table}.section_length", inner=exc) from exc


def parse_pat(data: bytes) -> Pat:
    """Parse one PAT section (complete section bytes, CRC checked)."""
    s = _parse_long(data, "pat", (TABLE_ID_PAT,))
    programs = run_construct("pat", lambda: PAT_BODY.parse(s.payload))
    return Pat(
        transport_stream_id=s.table_id_extension,
        version_number=s.version_number,
        current_next_indicator=s.current_next_indicator,
        section_number=s.section_number,
        last_section_number=s.last_section_number,
        programs=tuple(PatProgram(program_number=p.program_number, pid=p.pid) for p in programs),
    )


def build_pat(pat: Pat) -> bytes:
    payload = run_construct(
        "pat",
        lambda: PAT_BODY.build(
            [{"program_number": p.program_number, "pid": p.pid} for p in pat.programs]
        ),
    )
    return _build_long(
        pat._section(
            table_id=TABLE_ID_PAT, table_id_extension=pat.transport_stream_id, payload=payload
        ),
        "pat",
    )


def parse_cat(data: bytes) -> Cat:
    """Parse one CAT section (complete section bytes, CRC checked)."""
    s = _parse_long(data, "cat", (TABLE_ID_CAT,))
    items = run_construct("cat.descriptors", lambda: CAT_BODY.parse(s.payload))
    return Cat(
        version_number=s.version_number,
        current_next_indicator=s.current_next_indicator,
        section_number=s.section_number,
        last_section_number=s.last_section_number,
        descriptors=descriptors_from_items(items, "cat.descriptors"),
    )


def build_cat(cat: Cat) -> bytes:
    payload = build_descriptors(cat.descriptors)
    return _build_long(
        cat._section(table_id=TABLE_ID_CAT, table_id_extension=0xFFFF, payload=payload),
        "cat",
    )


def parse_pmt(data: bytes) -> Pmt:
    """Parse one PMT section (complete section bytes, CRC checked)."""
    s = _parse_long(data, "pmt", (TABLE_ID_PMT,))
    if s.section_number != 0 or s.last_section_number != 0:
        raise FormatError(
            "a PMT is a single section (section_number = last_section_number = 0)",
            path="pmt.section_number",
        ).with_id("formats.pmt_section_number_pmt")
    body = run_construct("pmt", lambda: PMT_BODY.parse(s.payload))
    return Pmt(
        program_number=s.table_id_extension,
        version_number=s.version_number,
        current_next_indicator=s.current_next_indicator,
        pcr_pid=body.PCR_PID,
        descriptors=descriptors_from_items(body.program_info, "pmt.program_info"),
        streams=tuple(
            PmtStream(
                stream_type=st.stream_type,
                elementary_pid=st.elementary_PID,
                descriptors=descriptors_from_items(st.ES_info, f"pmt.streams[{i}].ES_info"),
            )
            for i, st in enumerate(body.streams)
        ),
    )


def build_pmt(pmt: Pmt) -> bytes:
    value = {
        "PCR_PID": pmt.pcr_pid,
        "program_info": raw_descriptor_list(pmt.descriptors),
        "streams": [
            {
                "stream_type": st.stream_type,
                "elementary_PID": st.elementary_pid,
                "ES_info": raw_descriptor_list(st.descriptors),
            }
            for st in pmt.streams
        ],
    }
    payload = run_construct("pmt", lambda: PMT_BODY.build(value))
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
    body = run_construct("sdt", lambda: SDT_BODY.parse(s.payload))
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
                descriptors=descriptors_from_items(sv.descriptors, f"sdt.services[{i}].descriptors"),
            )
            for i, sv in enumerate(body.services)
        ),
    )


def build_sdt(sdt: Sdt) -> bytes:
    services = []
    for i, sv in enumerate(sdt.services):
        loop = build_descriptors(sv.descriptors)
        if len(loop) > 0x0FFF:
            raise FormatError("descriptor loop too long", path=f"sdt.services[{i}].descriptors").with_id(
                "formats.descriptor_loop_too_long", field=f"sdt.services[{i}].descriptors")
        services.append(
            {
                "service_id": sv.service_id,
                "flags": 0xFC
                | (0x02 if sv.eit_schedule_flag else 0)
                | (0x01 if sv.eit_present_following_flag else 0),
                "status": (sv.running_status << 13)
                | (0x1000 if sv.free_ca_mode else 0)
                | len(loop),
                "descriptors": raw_descriptor_list(sv.descriptors),
            }
        )
    value = {
        "original_network_id": sdt.original_network_id,
        "reserved_future_use": 0xFF,
        "services": services,
    }
    payload = run_construct("sdt", lambda: SDT_BODY.build(value))
    return _build_long(
        sdt._section(
            table_id=TABLE_ID_SDT_ACTUAL if sdt.actual else TABLE_ID_SDT_OTHER,
            # EN 300 468 SI tables set the private_indicator position ("reserved_future_use").
            private_indicator=True,
            table_id_extension=sdt.transport_stream_id,
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
                              f"({size} bytes)", path=f"sdt.services[{i}]").with_id(
                "formats.service_does_not_fit", field=f"sdt.services[{i}]",
                service_id=sv.service_id, size=size)
        if used + size > room:
            groups.append([])
            used = 0
        groups[-1].append(sv)
        used += size
    if len(groups) > 256:
        raise FormatError("the SDT needs more than 256 sections", path="sdt.services").with_id(
            "formats.sdt_services_sdt_needs")
    last = len(groups) - 1
    return tuple(replace(sdt, services=tuple(g), section_number=n, last_section_number=last)
                 for n, g in enumerate(groups))


def parse_psi(data: bytes) -> Pat | Cat | Pmt | Sdt:
    """Parse a PAT, CAT, PMT or SDT section, chosen by its table_id."""
    data = bytes(data)
    if not data:
        raise FormatError("empty section", path="section.table_id").with_id(
            "formats.section_table_id_empty")
    parser = _PARSERS.get(data[0])
    if parser is None:
        raise FormatError(
            f"table_id 0x{data[0]:02X} is not a PSI table we parse", path="section.table_id"
        ).with_id("formats.section_table_id_table_2", data=f"{data[0]:02X}")
    return parser(data)


_PARSERS: dict[int, Callable[[bytes], Pat | Cat | Pmt | Sdt]] = {
    TABLE_ID_PAT: parse_pat,
    TABLE_ID_CAT: parse_cat,
    TABLE_ID_PMT: parse_pmt,
    TABLE_ID_SDT_ACTUAL: parse_sdt,
    TABLE_ID_SDT_OTHER: parse_sdt,
}
