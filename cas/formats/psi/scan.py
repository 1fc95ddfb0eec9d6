"""Fast CA_descriptor lookup: the hand-written scanner the STB demux and the stream probe use
to pull ECM/EMM PIDs out of a PMT or CAT section without building any objects.

It reads the same layout as :mod:`cas.formats.psi.tables` declares (PMT/CAT) byte by byte;
``tests/unit/formats/test_psi_fuzz.py`` checks it against the declarative parsers.
"""

from __future__ import annotations

from dataclasses import dataclass

from cas.errors import ChecksumError, FormatError
from cas.formats.crc import crc32_mpeg2
from cas.formats.psi.tables import TABLE_ID_CAT, TABLE_ID_PMT

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
            raise FormatError("truncated descriptor header", path="descriptors").with_id(
                "formats.descriptors_truncated_descriptor_header")
        tag = data[pos]
        length = data[pos + 1]
        body = pos + 2
        pos = body + length
        if pos > end:
            raise FormatError("descriptor_length runs past its loop", path="descriptors").with_id(
                "formats.descriptors_descriptor_length_runs")
        if tag == 0x09:
            if length < 4:
                raise FormatError(f"descriptor_length {length} < 4", path="CA_descriptor").with_id(
                    "formats.ca_descriptor_descriptor_length", length=length)
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
        raise FormatError(f"{n} bytes is too short for a PMT/CAT section", path="section").with_id(
            "formats.section_bytes_too_short", n=n)
    table_id = data[0]
    if table_id not in (TABLE_ID_CAT, TABLE_ID_PMT):
        raise FormatError(
            f"table_id 0x{table_id:02X} is neither CAT nor PMT", path="section.table_id"
        ).with_id("formats.section_table_id_table", table_id=f"{table_id:02X}")
    total = 3 + (((data[1] & 0x0F) << 8) | data[2])
    if total != n or not data[1] & 0x80:
        raise FormatError(
            f"section_length implies {total} bytes, got {n}", path="section.section_length"
        ).with_id("formats.section_section_length_section", total=total, n=n)
    if check_crc and crc32_mpeg2(data) != 0:
        raise ChecksumError("CRC_32 mismatch", path="section.CRC_32").with_id(
            "formats.section_crc_crc_mismatch")
    end = n - 4
    out: list[CaRef] = []
    if table_id == TABLE_ID_CAT:
        _scan_loop(data, 8, end, ca_system_id, None, out)
        return out
    if end < 12:
        raise FormatError("PMT too short for PCR_PID and program_info_length", path="pmt").with_id(
            "formats.pmt_pmt_too_short")
    info_end = 12 + (((data[10] & 0x0F) << 8) | data[11])
    if info_end > end:
        raise FormatError(
            "program_info_length runs past the section", path="pmt.program_info_length"
        ).with_id("formats.pmt_program_info_length")
    _scan_loop(data, 12, info_end, ca_system_id, None, out)
    pos = info_end
    while pos < end:
        if pos + 5 > end:
            raise FormatError("truncated ES loop entry", path="pmt.streams").with_id(
                "formats.pmt_streams_truncated_es")
        es_pid = ((data[pos + 1] & 0x1F) << 8) | data[pos + 2]
        es_end = pos + 5 + (((data[pos + 3] & 0x0F) << 8) | data[pos + 4])
        if es_end > end:
            raise FormatError("ES_info_length runs past the section", path="pmt.ES_info_length").with_id(
                "formats.pmt_es_info_length")
        _scan_loop(data, pos + 5, es_end, ca_system_id, es_pid, out)
        pos = es_end
    return out


def has_ca_system(section: bytes, ca_system_id: int) -> bool:
    """True if a PMT or CAT section carries a CA_descriptor for ``ca_system_id``."""
    return bool(find_ca_descriptors(section, ca_system_id))
