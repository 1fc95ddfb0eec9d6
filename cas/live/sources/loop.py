"""A clear TS file (one program) played in a seamless loop: :class:`FileLoop`.

Times come from the program's PCR (ISO/IEC 13818-1 §2.4.2.2): packets between two PCRs are
placed by linear interpolation, which is what a T-STD assumes.  Loop ``k`` is the file with
every PCR moved on by ``k·D`` (``D`` = the file's PCR span plus one mean packet interval per
packet outside it, rounded to a whole 90 kHz tick so that PTS/DTS move by exactly
``k·D/300``), every PTS/DTS likewise, and every PID's continuity_counter moved on so that
the first packet of loop ``k+1`` follows the last of loop ``k`` (§2.4.3.3).  A receiver sees
one continuous stream: no CC error, no time jump.  The file is prepared once; a loop costs
a copy, a translate of the CC bytes and one patch per PCR and PES header.
"""

from __future__ import annotations

import itertools
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from cas.errors import ConfigError, StreamError
from cas.live.sources.program import (
    PACKET_SIZE,
    PROBE_LIMIT_BYTES,
    SYNC_BYTE,
    Block,
    ProgramInfo,
    ProgramProbe,
)
from cas.live.sources.stamps import (
    PCR_HZ,
    PCR_MODULUS,
    pcr_of,
    pes_timestamp_offsets,
    read_timestamp,
    write_pcr,
    write_timestamp,
)

#: Longest gap between two PCRs of a looped file; PCR-only packets fill longer ones.
PCR_MAX_INTERVAL_S = 0.035


class _Stamp(IntEnum):
    PCR = 0
    PTS = 1


@dataclass(slots=True)
class _Prepared:
    data: bytearray  # kept packets, output PIDs
    ticks: list[int]  # per-packet time (27 MHz) from the loop's start
    duration_ticks: int  # D, a multiple of 300
    cc_step: dict[int, int]  # per output PID: how far its CC moves per loop
    pid_masks: dict[int, bytes]  # per output PID: 0xFF at its packets, 0x00 elsewhere
    stamps: list[tuple[int, _Stamp, int]]  # (byte offset, kind, original value)
    stamp_packets: list[int]  # packet index of each stamp (sorted, for bisect)


_CC_TABLES = [bytes((b & 0xF0) | ((b + d) & 0x0F) for b in range(256)) for d in range(16)]


def _probe_bytes(data: bytes, name: str, program_number: int | None) -> ProgramInfo:
    if not data or data[0] != SYNC_BYTE:
        raise StreamError(f"{name}: does not start with a TS sync byte (0x47)").with_id(
            "live.does_not_start_ts", name=name)
    probe = ProgramProbe(program_number)
    limit = min(len(data), PROBE_LIMIT_BYTES)
    for off in range(0, limit - PACKET_SIZE + 1, PACKET_SIZE):
        found = probe.feed(data[off : off + PACKET_SIZE])
        if found is not None:
            return found
    which = "the program" if program_number is None else f"program {program_number}"
    raise StreamError(f"{name}: no PAT and PMT of {which} in its first {limit // 1024} KiB").with_id(
        "live.no_pat_pmt_first", name=name, which=which, value=limit // 1024)


class FileLoop:
    """A clear TS file (one program) played in a seamless loop; see the module docstring."""

    def __init__(self, path: Path, *, start_s: float = 0.0,
                 program_number: int | None = None) -> None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}").with_id(
                "live.cannot_read", path=path, value=exc.strerror or exc) from None
        if len(raw) % PACKET_SIZE:
            raw = raw[: len(raw) - len(raw) % PACKET_SIZE]
        self._name = path.name
        self._raw = raw
        self._program = _probe_bytes(raw, path.name, program_number)
        self._start_s = start_s
        self._prep: _Prepared | None = None
        self._loop = 0
        self._pos = 0

    @property
    def program(self) -> ProgramInfo:
        return self._program

    @property
    def loop_duration_s(self) -> float:
        return self._prepared().duration_ticks / PCR_HZ

    @property
    def loops(self) -> int:
        """How many times the file has started over."""
        return self._loop

    def set_pid_map(self, pid_map: Mapping[int, int]) -> None:
        self._prep = _prepare(self._raw, self._program, dict(pid_map), self._name)
        self._raw = b""  # the prepared copy is all we need from now on

    def _prepared(self) -> _Prepared:
        if self._prep is None:
            self.set_pid_map({pid: pid for pid in self._program.pids})
        assert self._prep is not None
        return self._prep

    def read(self, until_s: float, now_s: float = 0.0) -> Block:
        prep = self._prepared()
        out = Block()
        n = len(prep.ticks)
        until_ticks = round((until_s - self._start_s) * PCR_HZ)
        while True:
            base = self._loop * prep.duration_ticks
            end = bisect_left(prep.ticks, until_ticks - base, self._pos)
            if end > self._pos:
                out.extend(self._slice(prep, self._pos, end, base))
                self._pos = end
            if end < n:
                return out
            self._loop += 1
            self._pos = 0

    def _slice(self, prep: _Prepared, a: int, b: int, base_ticks: int) -> Block:
        data = prep.data[a * PACKET_SIZE : b * PACKET_SIZE]
        k = self._loop
        if k:
            b3 = bytes(data[3::PACKET_SIZE])
            acc = int.from_bytes(b3, "little")
            for pid, step in prep.cc_step.items():
                d = (step * k) & 0x0F
                if not d:
                    continue
                mask = int.from_bytes(prep.pid_masks[pid][a:b], "little")
                moved = int.from_bytes(b3.translate(_CC_TABLES[d]), "little")
                acc = (acc & ~mask) | (moved & mask)
            data[3::PACKET_SIZE] = acc.to_bytes(b - a, "little")
            lo = bisect_left(prep.stamp_packets, a)
            hi = bisect_left(prep.stamp_packets, b)
            shift_pts = base_ticks // 300
            origin = a * PACKET_SIZE
            for off, kind, value in prep.stamps[lo:hi]:
                if kind is _Stamp.PCR:
                    write_pcr(data, off - origin, value + base_ticks)
                else:
                    write_timestamp(data, off - origin, value + shift_pts)
        start = self._start_s
        times = array("d", ((t + base_ticks) / PCR_HZ + start for t in prep.ticks[a:b]))
        return Block(data=data, times=times)

    def close(self) -> None:
        return None


def _pcr_only_packet(pid: int, ticks: int) -> bytearray:
    """An adaptation-field-only packet carrying a PCR (§2.4.3.4; no payload, so its
    continuity_counter does not count, §2.4.3.3)."""
    pkt = bytearray(b"\x47" + bytes(((pid >> 8) & 0x1F, pid & 0xFF, 0x20))
                    + bytes((183, 0x10)) + bytes(6) + b"\xff" * 176)
    write_pcr(pkt, 0, ticks)
    return pkt


def _media_duration(pkts: list[bytearray]) -> int | None:
    """The loop's media duration in 90 kHz ticks: per PES stream, DTS (else PTS) span plus
    one median frame interval; the longest stream wins.  ``None`` if a stream's timestamps
    are not increasing (then the PCR span decides)."""
    stamps: dict[int, list[int]] = {}
    for pkt in pkts:
        offsets = pes_timestamp_offsets(pkt, 0)
        if offsets:
            pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
            stamps.setdefault(pid, []).append(read_timestamp(pkt, offsets[-1]))
    best = None
    for values in stamps.values():
        if len(values) < 2:
            continue
        steps = sorted(b - a for a, b in itertools.pairwise(values))
        if steps[0] <= 0:
            return None
        span = values[-1] - values[0] + steps[len(steps) // 2]
        best = span if best is None else max(best, span)
    return best


def _prepare(raw: bytes, program: ProgramInfo, pid_map: dict[int, int], name: str) -> _Prepared:
    keep = set(program.pids)
    missing = keep - set(pid_map)
    if missing:
        raise StreamError(f"{name}: no output PID for PID(s) {sorted(missing)}").with_id(
            "live.no_output_pid_pid", name=name, missing=sorted(missing))
    pcr_pid_out = pid_map[program.pcr_pid]
    # 1. the program's packets, renumbered; where the PCRs are
    pkts: list[bytearray] = []
    pcr_at: list[tuple[int, int]] = []  # (packet index, unwrapped PCR)
    wraps = 0
    prev = -1
    for off in range(0, len(raw), PACKET_SIZE):
        if raw[off] != SYNC_BYTE:
            raise StreamError(f"{name}: lost TS sync at byte {off}").with_id(
                "live.lost_ts_sync_byte", name=name, off=off)
        pid = ((raw[off + 1] & 0x1F) << 8) | raw[off + 2]
        if pid not in keep:
            continue
        if raw[off + 3] & 0xC0:
            raise StreamError(f"{name}: PID {pid:#x} is already scrambled").with_id(
                "live.pid_already_scrambled", name=name, pid=f"{pid:#x}")
        out_pid = pid_map[pid]
        pkt = bytearray(raw[off : off + PACKET_SIZE])
        pkt[1] = (pkt[1] & 0xE0) | (out_pid >> 8)
        pkt[2] = out_pid & 0xFF
        if pid == program.pcr_pid:
            pcr = pcr_of(pkt)
            if pcr is not None:
                if prev >= 0 and pcr < prev - PCR_MODULUS // 2:
                    wraps += 1
                prev = pcr
                pcr_at.append((len(pkts), pcr + wraps * PCR_MODULUS))
        pkts.append(pkt)
    n = len(pkts)
    if len(pcr_at) < 2:
        raise StreamError(f"{name}: needs at least two PCRs on PID {program.pcr_pid:#x} "
                          "to be paced").with_id(
            "live.needs_least_two_pcrs", name=name, pcr_pid=f"{program.pcr_pid:#x}")
    # 2. the loop's duration D and every packet's time
    (i0, p0), (i1, p1) = pcr_at[0], pcr_at[-1]
    if p1 <= p0 or i1 <= i0:
        raise StreamError(f"{name}: its PCRs do not increase").with_id(
            "live.pcrs_do_not_increase", name=name)
    per_packet = (p1 - p0) / (i1 - i0)
    by_rate = (p1 - p0) + per_packet * (n - i1 + i0)
    media = _media_duration(pkts)
    # D covers the PCR span plus at least one packet, and the media (so that timestamps of
    # loop k+1 come after those of loop k); a multiple of 300 so PTS/DTS move by whole ticks.
    span = max(p1 - p0 + per_packet, media * 300 if media is not None else by_rate)
    duration = max(300, -(-round(span) // 300) * 300)
    start = p0 - per_packet * i0  # time of packet 0
    # packets after the last PCR share what is left of D before the next loop's packet 0
    tail_step = min(per_packet, (start + duration - p1) / max(1, n - i1))
    ticks: list[int] = []
    seg = 0
    for j in range(n):
        while seg + 1 < len(pcr_at) - 1 and pcr_at[seg + 1][0] <= j:
            seg += 1
        (ja, pa), (jb, pb) = pcr_at[seg], pcr_at[seg + 1]
        if j <= i0:
            t = p0 + (j - i0) * per_packet
        elif j >= i1:
            t = p1 + (j - i1) * tail_step
        else:
            t = pa + (j - ja) * (pb - pa) / (jb - ja)
        ticks.append(round(t - start))
    for j in range(1, n):  # non-decreasing even if the file's PCRs jitter
        if ticks[j] < ticks[j - 1]:
            ticks[j] = ticks[j - 1]
    # 3. PCR-only packets wherever two PCRs (the loop boundary included) are further apart
    # than PCR_MAX_INTERVAL_S (EN 300 468 / TR 101 290 §5.2.2: at most 40 ms).
    marks = [ticks[j] for j, _ in pcr_at] + [duration + ticks[i0]]
    max_gap = round(PCR_MAX_INTERVAL_S * PCR_HZ)
    extra: list[int] = []
    for a, b in itertools.pairwise(marks):
        k = -(-(b - a) // max_gap) - 1
        extra.extend(a + (b - a) * m // (k + 1) for m in range(1, k + 1))
    if extra:
        merged: list[bytearray] = []
        merged_ticks: list[int] = []
        e = 0
        for j in range(n):
            while e < len(extra) and extra[e] <= ticks[j] and extra[e] < duration:
                merged.append(_pcr_only_packet(pcr_pid_out, extra[e] + round(start)))
                merged_ticks.append(extra[e])
                e += 1
            merged.append(pkts[j])
            merged_ticks.append(ticks[j])
        for t in extra[e:]:
            if t < duration:
                merged.append(_pcr_only_packet(pcr_pid_out, t + round(start)))
                merged_ticks.append(t)
        pkts, ticks = merged, merged_ticks
        n = len(pkts)
    # 4. the prepared buffer, its timestamps, continuity counters and PID masks
    data = bytearray().join(pkts)
    stamps: list[tuple[int, _Stamp, int]] = []
    stamp_packets: list[int] = []
    first_cc: dict[int, int] = {}
    last_cc: dict[int, int] = {}
    for i, pkt in enumerate(pkts):
        base = i * PACKET_SIZE
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if pkt[3] & 0x10:
            cc = pkt[3] & 0x0F
            first_cc.setdefault(pid, cc)
            last_cc[pid] = cc
        elif pid in last_cc:
            # no payload: repeat the last counter (§2.4.3.3)
            data[base + 3] = (data[base + 3] & 0xF0) | last_cc[pid]
        if pid == pcr_pid_out and pcr_of(pkt) is not None:
            stamps.append((base, _Stamp.PCR, round(start) + ticks[i]))
            stamp_packets.append(i)
        for pos in pes_timestamp_offsets(pkt, 0):
            stamps.append((base + pos, _Stamp.PTS, read_timestamp(pkt, pos)))
            stamp_packets.append(i)
    cc_step = {pid: (last_cc[pid] + 1 - first_cc[pid]) & 0x0F for pid in first_cc}
    b1 = bytes(data[1::PACKET_SIZE])
    b2 = bytes(data[2::PACKET_SIZE])
    masks: dict[int, bytes] = {}
    for pid in cc_step:
        hi = bytes(0xFF if b & 0x1F == pid >> 8 else 0 for b in range(256))
        lo = bytes(0xFF if b == pid & 0xFF else 0 for b in range(256))
        m = (int.from_bytes(b1.translate(hi), "little")
             & int.from_bytes(b2.translate(lo), "little"))
        masks[pid] = m.to_bytes(n, "little")
    return _Prepared(data=data, ticks=ticks, duration_ticks=duration, cc_step=cc_step,
                     pid_masks=masks, stamps=stamps, stamp_packets=stamp_packets)
