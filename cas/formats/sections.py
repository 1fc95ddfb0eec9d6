"""Generic MPEG-2 sections (ISO/IEC 13818-1 §2.4.4.10-11, "private_section" syntax).

Every PSI/SI table and every ECM/EMM travels as sections.  Header layout (big-endian)::

    byte 0      table_id                                   8
    byte 1..2   section_syntax_indicator (SSI)             1   1 = long section
                private_indicator                          1
                reserved                                   2   '11'
                section_length                            12   bytes after this field
    -- long sections only (SSI = 1) --
    byte 3..4   table_id_extension                        16
    byte 5      reserved 2 '11' | version_number 5 | current_next_indicator 1
    byte 6      section_number                             8
    byte 7      last_section_number                        8
    ...         payload
    last 4      CRC_32 (CRC-32/MPEG-2, see :mod:`cas.formats.crc`)

A short section (SSI = 0) is the 3-byte header followed by ``section_length`` payload bytes and
has no CRC (ECM/EMM, table_id 0x80-0x8F, use this form).

The header is eight bytes of bit fields, read with integer operations: this module sits on the
per-packet path of the demultiplexer, and the table bodies (:mod:`cas.formats.psi`) are the
part that benefits from declarative ``construct`` schemas.  Reserved bits are ignored on
parse and written as ones on build.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cas.errors import ChecksumError, FormatError
from cas.formats.crc import crc32_mpeg2

__all__ = [
    "LONG_HEADER_SIZE",
    "MAX_PRIVATE_SECTION_LENGTH",
    "MAX_PSI_SECTION_LENGTH",
    "SHORT_HEADER_SIZE",
    "LongSection",
    "Section",
    "SectionAssembler",
    "ShortSection",
    "build_section",
    "describe",
    "iter_sections",
    "parse_section",
    "section_total_length",
]

SHORT_HEADER_SIZE = 3
#: Short header + table_id_extension..last_section_number.
LONG_HEADER_SIZE = 8
CRC_SIZE = 4
#: section_length limit for PAT, CAT, PMT and DVB SI tables (total section <= 1024 bytes).
MAX_PSI_SECTION_LENGTH = 1021
#: section_length limit for private sections (total section <= 4096 bytes).
MAX_PRIVATE_SECTION_LENGTH = 4093


def _check_range(path: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise FormatError(f"{value} does not fit in {bits} bits", path=path).with_id(
            "formats.does_not_fit_bits", field=path, value=value, bits=bits)


@dataclass(frozen=True, kw_only=True)
class ShortSection:
    """A section with section_syntax_indicator = 0: header + payload, no CRC."""

    table_id: int
    #: DVB sets this bit to 1 in CA_message_sections (ECM/EMM).
    private_indicator: bool = True
    payload: bytes = b""

    def __post_init__(self) -> None:
        _check_range("section.table_id", self.table_id, 8)


@dataclass(frozen=True, kw_only=True)
class LongSection:
    """A section with section_syntax_indicator = 1: extended header, payload and CRC_32."""

    table_id: int
    table_id_extension: int
    #: '0' in PAT/CAT/PMT; DVB SI tables (SDT, ...) have '1' (reserved_future_use) here.
    private_indicator: bool = False
    version_number: int = 0
    current_next_indicator: bool = True
    section_number: int = 0
    last_section_number: int = 0
    payload: bytes = b""

    def __post_init__(self) -> None:
        _check_range("section.table_id", self.table_id, 8)
        _check_range("section.table_id_extension", self.table_id_extension, 16)
        _check_range("section.version_number", self.version_number, 5)
        _check_range("section.section_number", self.section_number, 8)
        _check_range("section.last_section_number", self.last_section_number, 8)
        if self.section_number > self.last_section_number:
            raise FormatError(
                f"section_number {self.section_number} > last_section_number "
                f"{self.last_section_number}",
                path="section.section_number",
            ).with_id(
                "formats.section_section_number_section", section_number=self.section_number,
                last_section_number=self.last_section_number)


Section = ShortSection | LongSection


def section_total_length(data: bytes | bytearray | memoryview) -> int:
    """Total byte size (header included) of the section starting at ``data[0]``."""
    if len(data) < SHORT_HEADER_SIZE:
        raise FormatError(
            f"need {SHORT_HEADER_SIZE} bytes for a section header, got {len(data)}",
            path="section.section_length",
        ).with_id(
            "formats.section_section_length_need", short_header_size=SHORT_HEADER_SIZE,
            n=len(data))
    return SHORT_HEADER_SIZE + (((data[1] & 0x0F) << 8) | data[2])


def parse_section(
    data: bytes | bytearray | memoryview,
    *,
    max_section_length: int = MAX_PRIVATE_SECTION_LENGTH,
    check_crc: bool = True,
) -> Section:
    """Parse exactly one complete section.

    Raises :class:`FormatError` when ``data`` is not exactly ``3 + section_length`` bytes or a
    length is out of range, :class:`ChecksumError` when a long section's CRC_32 is wrong.
    """
    data = bytes(data)
    total = section_total_length(data)
    section_length = total - SHORT_HEADER_SIZE
    if section_length > max_section_length:
        raise FormatError(
            f"section_length {section_length} exceeds the limit {max_section_length}",
            path="section.section_length",
        ).with_id(
            "formats.section_section_length_section_2", section_length=section_length,
            max_section_length=max_section_length)
    if len(data) != total:
        raise FormatError(
            f"section_length {section_length} implies {total} bytes, got {len(data)}",
            path="section.section_length",
        ).with_id(
            "formats.section_section_length_section_3", section_length=section_length, total=total,
            n=len(data))
    table_id = data[0]
    ssi = bool(data[1] & 0x80)
    private_indicator = bool(data[1] & 0x40)
    if not ssi:
        return ShortSection(
            table_id=table_id, private_indicator=private_indicator, payload=data[3:]
        )
    if section_length < LONG_HEADER_SIZE - SHORT_HEADER_SIZE + CRC_SIZE:
        raise FormatError(
            f"section_length {section_length} too short for a long section (min 9)",
            path="section.section_length",
        ).with_id("formats.section_section_length_section_4", section_length=section_length)
    if check_crc and crc32_mpeg2(data) != 0:
        stored = int.from_bytes(data[-4:], "big")
        raise ChecksumError(
            f"CRC_32 {stored:08X} does not match {crc32_mpeg2(data[:-4]):08X}",
            path="section.CRC_32",
        ).with_id(
            "formats.section_crc_crc_does", stored=f"{stored:08X}",
            data=f"{crc32_mpeg2(data[:-4]):08X}")
    section_number, last_section_number = data[6], data[7]
    if section_number > last_section_number:
        raise FormatError(
            f"section_number {section_number} > last_section_number {last_section_number}",
            path="section.section_number",
        ).with_id(
            "formats.section_section_number_section", section_number=section_number,
            last_section_number=last_section_number)
    return LongSection(
        table_id=table_id,
        private_indicator=private_indicator,
        table_id_extension=(data[3] << 8) | data[4],
        version_number=(data[5] >> 1) & 0x1F,
        current_next_indicator=bool(data[5] & 0x01),
        section_number=section_number,
        last_section_number=last_section_number,
        payload=data[LONG_HEADER_SIZE:-CRC_SIZE],
    )


def build_section(
    section: Section, *, max_section_length: int = MAX_PRIVATE_SECTION_LENGTH
) -> bytes:
    """Serialise a section; long sections get their CRC_32 computed here."""
    if isinstance(section, ShortSection):
        section_length = len(section.payload)
        if section_length > max_section_length:
            raise FormatError(
                f"payload of {section_length} bytes exceeds section_length limit "
                f"{max_section_length}",
                path="section.section_length",
            ).with_id(
                "formats.section_section_length_payload", section_length=section_length,
                max_section_length=max_section_length)
        b1 = 0x30 | (0x40 if section.private_indicator else 0) | (section_length >> 8)
        return bytes((section.table_id, b1, section_length & 0xFF)) + section.payload
    section_length = LONG_HEADER_SIZE - SHORT_HEADER_SIZE + len(section.payload) + CRC_SIZE
    if section_length > max_section_length:
        raise FormatError(
            f"payload of {len(section.payload)} bytes gives section_length {section_length}, "
            f"over the limit {max_section_length}",
            path="section.section_length",
        ).with_id(
            "formats.section_section_length_payload_2", n=len(section.payload),
            section_length=section_length, max_section_length=max_section_length)
    b1 = 0xB0 | (0x40 if section.private_indicator else 0) | (section_length >> 8)
    head = bytes(
        (
            section.table_id,
            b1,
            section_length & 0xFF,
            section.table_id_extension >> 8,
            section.table_id_extension & 0xFF,
            0xC0 | (section.version_number << 1) | int(section.current_next_indicator),
            section.section_number,
            section.last_section_number,
        )
    )
    body = head + section.payload
    return body + crc32_mpeg2(body).to_bytes(4, "big")


def iter_sections(data: bytes | bytearray | memoryview) -> Iterator[bytes]:
    """Split back-to-back sections (e.g. a file of sections); stops at 0xFF stuffing.

    Does not verify CRCs (``parse_section`` does); a truncated last section is a FormatError.
    """
    data = bytes(data)
    pos = 0
    while pos < len(data) and data[pos] != 0xFF:
        total = section_total_length(data[pos : pos + 3])
        if pos + total > len(data):
            raise FormatError(
                f"section at offset {pos} needs {total} bytes, {len(data) - pos} left",
                path="section.section_length",
            ).with_id(
                "formats.section_section_length_section_5", pos=pos, total=total,
                value=len(data) - pos)
        yield data[pos : pos + total]
        pos += total


class SectionAssembler:
    """Collects the sections of multi-section tables (section_number 0..last_section_number).

    Sections are keyed by ``(table_id, table_id_extension)``.  A new version_number discards
    the sections gathered for the old one.  :meth:`feed` returns the complete table, in section
    order, once per version; repetitions of an already-complete version return ``None``.
    Sections with current_next_indicator = 0 (a future version) are ignored.
    """

    def __init__(self) -> None:
        self._parts: dict[tuple[int, int], dict[int, LongSection]] = {}
        self._version: dict[tuple[int, int], int] = {}
        self._done: dict[tuple[int, int], int] = {}

    def feed(self, section: LongSection) -> tuple[LongSection, ...] | None:
        if not section.current_next_indicator:
            return None
        key = (section.table_id, section.table_id_extension)
        if self._version.get(key) != section.version_number:
            self._version[key] = section.version_number
            self._parts[key] = {}
            self._done.pop(key, None)
        if self._done.get(key) == section.version_number:
            return None
        parts = self._parts[key]
        if parts and next(iter(parts.values())).last_section_number != (
            section.last_section_number
        ):
            # last_section_number changed without a version bump: start over.
            parts.clear()
        parts[section.section_number] = section
        if len(parts) == section.last_section_number + 1:
            self._done[key] = section.version_number
            del self._parts[key]
            return tuple(parts[i] for i in range(section.last_section_number + 1))
        return None

    def reset(self) -> None:
        self._parts.clear()
        self._version.clear()
        self._done.clear()


def describe(section: Section) -> dict[str, Any]:
    """JSON-able view of a section (payload as hex), for ``cas decode``."""
    if isinstance(section, ShortSection):
        return {
            "kind": "short_section",
            "table_id": section.table_id,
            "section_syntax_indicator": 0,
            "private_indicator": int(section.private_indicator),
            "section_length": len(section.payload),
            "payload": section.payload.hex(),
        }
    return {
        "kind": "long_section",
        "table_id": section.table_id,
        "section_syntax_indicator": 1,
        "private_indicator": int(section.private_indicator),
        "section_length": len(section.payload) + 9,
        "table_id_extension": section.table_id_extension,
        "version_number": section.version_number,
        "current_next_indicator": int(section.current_next_indicator),
        "section_number": section.section_number,
        "last_section_number": section.last_section_number,
        "payload": section.payload.hex(),
    }
