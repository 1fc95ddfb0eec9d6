"""The scrambler's input side: TS packet constants, the prescan of PAT/PMT/CAT at the start
of the input (ISO/IEC 13818-1 §2.4.4), section reassembly and reading the input in chunks of
whole packets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from cas.errors import FormatError, StreamError
from cas.formats import psi, ts
from cas.formats.sections import section_total_length

# Declared once in cas.formats (ISO/IEC 13818-1 §2.4.3.2, §2.4.4); short names for the hot loops.
PACKET_SIZE = ts.PACKET_SIZE
SYNC_BYTE = ts.SYNC_BYTE
NULL_PID = ts.NULL_PID
PAT_PID = psi.PAT_PID
CAT_PID = psi.CAT_PID
SDT_PID = psi.SDT_PID
TID_PAT = psi.TABLE_ID_PAT
TID_CAT = psi.TABLE_ID_CAT
TID_PMT = psi.TABLE_ID_PMT

#: How far into the input the prescan looks for PAT and PMTs.
PRESCAN_LIMIT_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class Prescan:
    """What the prescan found at the start of the input."""

    pat: dict[int, int] = field(default_factory=dict)
    pmts: dict[int, bytes] = field(default_factory=dict)  # program_number -> section bytes
    cat_descriptors: tuple[psi.Descriptor, ...] = ()
    cat_seen: bool = False
    pids: set[int] = field(default_factory=set)
    has_pcr: bool = False


class SectionCollector:
    """Minimal section reassembly for the prescan (PAT/PMT/CAT PIDs only)."""

    def __init__(self) -> None:
        self._buf: dict[int, bytearray] = {}

    def feed(self, pid: int, pkt: bytes | memoryview) -> list[bytes]:
        afc = (pkt[3] >> 4) & 3
        if not afc & 1:
            return []
        start = 4 + (1 + pkt[4] if afc == 3 else 0)
        if start >= PACKET_SIZE:
            return []
        payload = bytes(pkt[start:PACKET_SIZE])
        out: list[bytes] = []
        if pkt[1] & 0x40:
            ptr = payload[0]
            tail, payload = payload[1 : 1 + ptr], payload[1 + ptr :]
            if pid in self._buf:
                self._buf[pid] += tail
                out += self._drain(pid)
            self._buf[pid] = bytearray(payload)
        elif pid in self._buf:
            self._buf[pid] += payload
        else:
            return out
        out += self._drain(pid)
        return out

    def _drain(self, pid: int) -> list[bytes]:
        buf = self._buf[pid]
        out = []
        while len(buf) >= 3 and buf[0] != 0xFF:
            total = section_total_length(buf)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        if buf[:1] == b"\xff":
            del self._buf[pid]
        return out


def prescan(data: bytes) -> Prescan:
    """Find PAT, every PMT and any CAT in the first packets of ``data``."""
    info = Prescan()
    col = SectionCollector()
    pmt_pids: set[int] = set()
    pcr_pids: set[int] = set()
    for off in range(0, len(data) - PACKET_SIZE + 1, PACKET_SIZE):
        pkt = data[off : off + PACKET_SIZE]
        if pkt[0] != SYNC_BYTE:
            raise StreamError(f"lost TS sync at byte {off} (expected 0x47)").with_id(
                "headend.lost_ts_sync_byte", off=off)
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        info.pids.add(pid)
        if pid in pcr_pids and pkt[3] & 0x20 and pkt[4] >= 7 and pkt[5] & 0x10:
            info.has_pcr = True
        if pid != PAT_PID and pid != CAT_PID and pid not in pmt_pids:
            continue
        for sec in col.feed(pid, pkt):
            try:
                if pid == PAT_PID and sec[0] == TID_PAT and not info.pat:
                    pat = psi.parse_pat(sec)
                    info.pat = {p.program_number: p.pid for p in pat.programs
                                if p.program_number != 0}
                    pmt_pids = set(info.pat.values())
                elif pid == CAT_PID and sec[0] == TID_CAT and not info.cat_seen:
                    info.cat_descriptors = psi.parse_cat(sec).descriptors
                    info.cat_seen = True
                elif pid in pmt_pids and sec[0] == TID_PMT:
                    pmt = psi.parse_pmt(sec)
                    if pmt.program_number in info.pat and pmt.program_number not in info.pmts:
                        info.pmts[pmt.program_number] = sec
                        pcr_pids.add(pmt.pcr_pid)
            except FormatError as exc:
                raise StreamError(f"bad PSI section on PID {pid:#06x}: {exc}").with_id(
                    "headend.bad_psi_section_pid", pid=f"{pid:#06x}", exc=exc) from exc
        if info.pat and len(info.pmts) == len(info.pat) and (info.has_pcr or off > 4_000_000):
            break
    if not info.pat:
        raise StreamError("no PAT found at the start of the stream").with_id(
            "headend.no_pat_found_start")
    missing = sorted(set(info.pat) - set(info.pmts))
    if missing:
        raise StreamError(f"no PMT found for program(s) {missing}").with_id(
            "headend.no_pmt_found_program", missing=missing)
    return info


def read_packets(src: IO[bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes (a whole number of packets) from the start of ``src``."""
    data = src.read(limit - limit % PACKET_SIZE)
    if not data:
        raise StreamError("empty input stream").with_id("headend.empty_input_stream")
    if data[0] != SYNC_BYTE:
        raise StreamError("input does not start with a TS sync byte (0x47)").with_id(
            "headend.input_does_not_start")
    return data


def read_chunks(head: bytes, src: IO[bytes], chunk_packets: int) -> Iterable[bytes]:
    size = chunk_packets * PACKET_SIZE
    carry = b""
    data = head
    while True:
        data = carry + data
        whole = len(data) - len(data) % PACKET_SIZE
        for pos in range(0, whole, size):
            yield data[pos : min(pos + size, whole)]
        carry = data[whole:]
        data = src.read(size)
        if not data:
            break
    if carry:
        raise StreamError(f"input ends with a partial packet of {len(carry)} bytes").with_id(
            "headend.input_ends_partial_packet", n=len(carry))
