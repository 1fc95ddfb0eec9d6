"""Clear TS sources of the live head-end: one program each, timed on the multiplex clock.

A source hands the playout :class:`Block` s: whole TS packets of its program's elementary
streams (its own PSI, SDT, null packets and anything else dropped; PIDs already renumbered to
the service's output PIDs) and, per packet, the time in seconds on the multiplex clock at
which it is due on the wire.  Times come from the program's PCR (ISO/IEC 13818-1 §2.4.2.2):
packets between two PCRs are placed by linear interpolation, which is what a T-STD assumes.

* :class:`FileLoop` — a clear TS file played in a seamless loop.  Loop ``k`` is the file with
  every PCR moved on by ``k·D`` (``D`` = the file's PCR span plus one mean packet interval per
  packet outside it, rounded to a whole 90 kHz tick so that PTS/DTS move by exactly
  ``k·D/300``), every PTS/DTS likewise, and every PID's continuity_counter moved on so that
  the first packet of loop ``k+1`` follows the last of loop ``k`` (§2.4.3.3).  A receiver sees
  one continuous stream: no CC error, no time jump.  The file is prepared once; a loop costs
  a copy, a translate of the CC bytes and one patch per PCR and PES header.
* :class:`FfmpegSource` — ffmpeg's lavfi test pattern with a clock overlay and a tone,
  encoded in real time (``-re``) and read from its stdout pipe.
* :class:`UdpSource` — a TS arriving on UDP (unicast or multicast; an RTP header is
  stripped).

Live sources are timed by their PCR too: packets wait until the next PCR has arrived (so their
time can be interpolated), then play out ``latency_s`` after the PCR's arrival anchor.  If the
PCR jumps (source restart, > 1 s gap or backwards), the anchor is taken again.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import shutil
import socket
import struct
import subprocess
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Protocol

from cas.errors import ConfigError, FormatError, StreamError
from cas.formats import psi, ts

PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF
PCR_HZ = 27_000_000
#: PCR wraps at 2^33 × 300 ticks (§2.4.2.2), PTS/DTS at 2^33.
PCR_MODULUS = (1 << 33) * 300
PTS_MODULUS = 1 << 33
#: Longest gap between two PCRs of a looped file; PCR-only packets fill longer ones.
PCR_MAX_INTERVAL_S = 0.035
#: How much of a file or live source is read to find its PAT and PMT.
PROBE_LIMIT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramInfo:
    """The one program a source carries (from its PAT and PMT), in the source's PIDs."""

    program_number: int
    pcr_pid: int
    streams: tuple[psi.PmtStream, ...]
    descriptors: tuple[psi.Descriptor, ...] = ()

    @property
    def pids(self) -> tuple[int, ...]:
        """Every PID played out: the elementary streams, and the PCR PID when it is apart."""
        es = tuple(s.elementary_pid for s in self.streams)
        return es if self.pcr_pid in es or self.pcr_pid == NULL_PID else (*es, self.pcr_pid)


@dataclass(slots=True)
class Block:
    """Packets of one source due in a time window, with each packet's time (seconds)."""

    data: bytearray = field(default_factory=bytearray)
    times: array[float] = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.times)

    def extend(self, other: Block) -> None:
        self.data += other.data
        self.times.extend(other.times)


class Source(Protocol):
    """What the playout needs from a source."""

    @property
    def program(self) -> ProgramInfo: ...

    def set_pid_map(self, pid_map: Mapping[int, int]) -> None:
        """Output PID for every PID of :attr:`program` (called once, before :meth:`read`)."""

    def read(self, until_s: float, now_s: float) -> Block:
        """The packets due before ``until_s`` (multiplex clock) not handed out yet."""

    def close(self) -> None: ...


# --- PSI probe ---------------------------------------------------------------------------------

class ProgramProbe:
    """Finds a program of a TS (``program_number``, else the first in the PAT) from its PAT
    and that program's PMT."""

    def __init__(self, program_number: int | None = None) -> None:
        self._wanted = program_number
        self._pat = ts.SectionReassembler(PAT_PID)
        self._pmt: ts.SectionReassembler | None = None
        self._number = -1
        self.program: ProgramInfo | None = None

    def feed(self, pkt: bytes | bytearray | memoryview) -> ProgramInfo | None:
        if self.program is not None:
            return self.program
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if pid == PAT_PID and self._pmt is None:
            for sec in self._pat.feed(pkt):
                with contextlib.suppress(FormatError):
                    pat = psi.parse_pat(sec)
                    programs = [p for p in pat.programs if p.program_number != 0
                                and self._wanted in (None, p.program_number)]
                    if programs:
                        self._number = programs[0].program_number
                        self._pmt = ts.SectionReassembler(programs[0].pid)
        elif self._pmt is not None and pid == self._pmt.pid:
            for sec in self._pmt.feed(pkt):
                try:
                    pmt = psi.parse_pmt(sec)
                except FormatError:  # a damaged PMT is skipped; the next one counts
                    continue
                if pmt.program_number == self._number:
                    self.program = ProgramInfo(program_number=pmt.program_number,
                                               pcr_pid=pmt.pcr_pid, streams=pmt.streams,
                                               descriptors=pmt.descriptors)
        return self.program


def pcr_of(pkt: bytes | bytearray | memoryview, off: int = 0) -> int | None:
    """The PCR (27 MHz ticks) of the packet at ``off``, if it carries one."""
    if not pkt[off + 3] & 0x20 or pkt[off + 4] < 7 or not pkt[off + 5] & 0x10:
        return None
    base = (pkt[off + 6] << 25 | pkt[off + 7] << 17 | pkt[off + 8] << 9 | pkt[off + 9] << 1
            | pkt[off + 10] >> 7)
    return base * 300 + ((pkt[off + 10] & 1) << 8 | pkt[off + 11])


def write_pcr(buf: bytearray, off: int, ticks: int) -> None:
    """Write ``ticks`` as the PCR of the packet at ``off`` (it must carry one)."""
    base, ext = divmod(ticks % PCR_MODULUS, 300)
    buf[off + 6] = (base >> 25) & 0xFF
    buf[off + 7] = (base >> 17) & 0xFF
    buf[off + 8] = (base >> 9) & 0xFF
    buf[off + 9] = (base >> 1) & 0xFF
    buf[off + 10] = ((base & 1) << 7) | 0x7E | (ext >> 8)
    buf[off + 11] = ext & 0xFF


def read_timestamp(buf: bytes | bytearray, pos: int) -> int:
    """A 33-bit PTS/DTS from its 5-byte field (§2.4.3.7)."""
    return (((buf[pos] >> 1) & 7) << 30 | buf[pos + 1] << 22 | (buf[pos + 2] >> 1) << 15
            | buf[pos + 3] << 7 | buf[pos + 4] >> 1)


def write_timestamp(buf: bytearray, pos: int, value: int) -> None:
    """Rewrite the 33 bits of a PTS/DTS field, keeping its 4-bit prefix and marker bits."""
    v = value % PTS_MODULUS
    buf[pos] = (buf[pos] & 0xF0) | ((v >> 29) & 0x0E) | 1
    buf[pos + 1] = (v >> 22) & 0xFF
    buf[pos + 2] = ((v >> 14) & 0xFE) | 1
    buf[pos + 3] = (v >> 7) & 0xFF
    buf[pos + 4] = ((v << 1) & 0xFE) | 1


def pes_timestamp_offsets(pkt: bytes | bytearray, off: int) -> tuple[int, ...]:
    """Byte offsets (in ``pkt``) of the PTS and DTS fields of a PES header starting in the
    packet at ``off`` (PUSI set), per ISO/IEC 13818-1 §2.4.3.6-7; empty when there is none."""
    if not pkt[off + 1] & 0x40 or not pkt[off + 3] & 0x10:
        return ()
    start = off + 4 + (1 + pkt[off + 4] if pkt[off + 3] & 0x20 else 0)
    if start + 14 > off + PACKET_SIZE or pkt[start : start + 3] != b"\x00\x00\x01":
        return ()
    stream_id = pkt[start + 3]
    # Streams without the optional PES header (§2.4.3.6 table 2-21's exceptions).
    if stream_id in (0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xFF, 0xF2, 0xF8):
        return ()
    if pkt[start + 6] >> 6 != 0b10:
        return ()
    flags = pkt[start + 7] >> 6
    pts = start + 9
    if flags == 0b10:
        return (pts,)
    if flags == 0b11:
        return (pts, pts + 5)
    return ()


# --- a file in a seamless loop -------------------------------------------------------------------

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
        raise StreamError(f"{name}: does not start with a TS sync byte (0x47)")
    probe = ProgramProbe(program_number)
    limit = min(len(data), PROBE_LIMIT_BYTES)
    for off in range(0, limit - PACKET_SIZE + 1, PACKET_SIZE):
        found = probe.feed(data[off : off + PACKET_SIZE])
        if found is not None:
            return found
    which = "the program" if program_number is None else f"program {program_number}"
    raise StreamError(f"{name}: no PAT and PMT of {which} in its first {limit // 1024} KiB")


class FileLoop:
    """A clear TS file (one program) played in a seamless loop; see the module docstring."""

    def __init__(self, path: Path, *, start_s: float = 0.0,
                 program_number: int | None = None) -> None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
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
        raise StreamError(f"{name}: no output PID for PID(s) {sorted(missing)}")
    pcr_pid_out = pid_map[program.pcr_pid]
    # 1. the program's packets, renumbered; where the PCRs are
    pkts: list[bytearray] = []
    pcr_at: list[tuple[int, int]] = []  # (packet index, unwrapped PCR)
    wraps = 0
    prev = -1
    for off in range(0, len(raw), PACKET_SIZE):
        if raw[off] != SYNC_BYTE:
            raise StreamError(f"{name}: lost TS sync at byte {off}")
        pid = ((raw[off + 1] & 0x1F) << 8) | raw[off + 2]
        if pid not in keep:
            continue
        if raw[off + 3] & 0xC0:
            raise StreamError(f"{name}: PID {pid:#x} is already scrambled")
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
                          "to be paced")
    # 2. the loop's duration D and every packet's time
    (i0, p0), (i1, p1) = pcr_at[0], pcr_at[-1]
    if p1 <= p0 or i1 <= i0:
        raise StreamError(f"{name}: its PCRs do not increase")
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


# --- live sources ------------------------------------------------------------------------------

class _LiveTimer:
    """Times live packets by their PCR: a packet waits for the next PCR, then is interpolated
    between the two; PCR time maps to the multiplex clock through an anchor taken at the
    first PCR (and again after a jump)."""

    def __init__(self, pcr_pid: int, latency_s: float) -> None:
        self.pcr_pid = pcr_pid
        self.latency_s = latency_s
        self._pending = bytearray()
        self._anchor_s = 0.0
        self._anchor_pcr = -1
        self._last_pcr = -1
        self._last_t = 0.0
        self.ready = Block()
        self.reanchors = 0

    def feed(self, pkt: bytes | bytearray, now_s: float) -> None:
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        pcr = pcr_of(pkt) if pid == self.pcr_pid else None
        self._pending += pkt
        if pcr is None:
            return
        if self._anchor_pcr < 0 or not 0 <= (pcr - self._last_pcr) % PCR_MODULUS < PCR_HZ:
            if self._anchor_pcr >= 0:
                self.reanchors += 1
            self._anchor_pcr = pcr
            self._anchor_s = max(now_s + self.latency_s, self._last_t)
            t_new = self._anchor_s
            t_old = t_new if self._last_pcr < 0 else self._last_t
        else:
            t_new = self._anchor_s + ((pcr - self._anchor_pcr) % PCR_MODULUS) / PCR_HZ
            t_old = self._last_t
        k = len(self._pending) // PACKET_SIZE
        step = (t_new - t_old) / k
        self.ready.data += self._pending
        self.ready.times.extend(t_old + step * (j + 1) for j in range(k))
        self._pending = bytearray()
        self._last_pcr = pcr
        self._last_t = t_new

    def take(self, until_s: float) -> Block:
        end = bisect_left(self.ready.times, until_s)
        if end == 0:
            return Block()
        out = Block(data=self.ready.data[: end * PACKET_SIZE], times=self.ready.times[:end])
        del self.ready.data[: end * PACKET_SIZE]
        del self.ready.times[:end]
        return out


class _LiveSource:
    """Shared part of the live sources: a reader thread puts raw bytes in a queue; the playout
    thread probes, filters, renumbers and times them."""

    #: How long :meth:`wait_program` waits for the PAT and PMT.
    probe_timeout_s = 15.0

    def __init__(self, name: str, *, latency_s: float,
                 program_number: int | None = None) -> None:
        self.name = name
        self.latency_s = latency_s
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=4096)
        self._carry = b""
        self._held: list[bytes] = []  # packets read while probing
        self._probe = ProgramProbe(program_number)
        self._program: ProgramInfo | None = None
        self._map: dict[int, int] = {}
        self._timer: _LiveTimer | None = None
        self._stop = threading.Event()
        self.ended = False
        #: Continuity errors seen in the input (a live source's own losses).
        self.cc_errors = 0
        self._last_cc: dict[int, int] = {}

    # the reader thread calls this
    def _put(self, data: bytes) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(data, timeout=0.2)
                return
            except queue.Full:
                continue

    def _packets(self, block: bool, timeout: float = 0.0) -> list[bytes]:
        chunks: list[bytes] = []
        try:
            chunk = self._q.get(timeout=timeout) if block else self._q.get_nowait()
            while True:
                if chunk is None:
                    self.ended = True
                    break
                chunks.append(chunk)
                chunk = self._q.get_nowait()
        except queue.Empty:
            pass
        data = self._carry + b"".join(chunks)
        out: list[bytes] = []
        pos = 0
        while pos + PACKET_SIZE <= len(data):
            if data[pos] != SYNC_BYTE:  # resynchronise on the next sync byte
                nxt = data.find(b"\x47", pos + 1)
                if nxt < 0:
                    pos = len(data)
                    break
                pos = nxt
                continue
            out.append(data[pos : pos + PACKET_SIZE])
            pos += PACKET_SIZE
        self._carry = data[pos:]
        return out

    def wait_program(self) -> ProgramInfo:
        import time

        deadline = time.monotonic() + self.probe_timeout_s
        while self._program is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.ended:
                raise StreamError(f"{self.name}: no PAT and PMT within "
                                  f"{self.probe_timeout_s:g} s")
            for pkt in self._packets(True, min(left, 0.5)):
                self._held.append(pkt)
                if self._probe.feed(pkt) is not None:
                    self._program = self._probe.program
        return self._program

    @property
    def program(self) -> ProgramInfo:
        return self.wait_program()

    def set_pid_map(self, pid_map: Mapping[int, int]) -> None:
        program = self.wait_program()
        self._map = dict(pid_map)
        # The timer sees packets after renumbering: it watches the output PCR PID.
        self._timer = _LiveTimer(self._map.get(program.pcr_pid, program.pcr_pid), self.latency_s)

    def read(self, until_s: float, now_s: float) -> Block:
        timer = self._timer
        if timer is None:
            raise StreamError(f"{self.name}: read before set_pid_map")
        packets = self._held + self._packets(False)
        self._held = []
        mapping = self._map
        for pkt in packets:
            pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
            out_pid = mapping.get(pid)
            if out_pid is None or pkt[3] & 0xC0:
                continue
            if pkt[3] & 0x10:  # continuity of the input (§2.4.3.3): lost datagrams show here
                cc = pkt[3] & 0x0F
                last = self._last_cc.get(pid)
                if last is not None and cc != (last + 1) & 0x0F and cc != last:
                    self.cc_errors += 1
                self._last_cc[pid] = cc
            if out_pid != pid:
                pkt = (pkt[:1] + bytes(((pkt[1] & 0xE0) | (out_pid >> 8), out_pid & 0xFF))
                       + pkt[3:])
            timer.feed(pkt, now_s)
        return timer.take(until_s)

    def close(self) -> None:
        self._stop.set()


class FfmpegSource(_LiveSource):
    """ffmpeg's lavfi test pattern (``lavfi:testsrc``) with a wall-clock overlay and a tone,
    encoded in real time and read from its stdout.  If ffmpeg exits, it is started again
    after ``restart_delay_s`` (the new PCR re-anchors the timing; the receiver sees one CC
    discontinuity, as with any restarted encoder)."""

    restart_delay_s = 1.0

    def __init__(self, graph: str, *, service_id: int, name: str = "live",
                 latency_s: float = 0.5, video_bitrate_kbps: int = 1000,
                 ffmpeg: str = "ffmpeg") -> None:
        super().__init__(f"lavfi:{graph}", latency_s=latency_s)
        exe = shutil.which(ffmpeg)
        if exe is None:
            raise ConfigError("lavfi sources need ffmpeg (Debian package ffmpeg)")
        self.argv = ffmpeg_argv(exe, graph, service_id=service_id, name=name,
                                video_bitrate_kbps=video_bitrate_kbps)
        self.restarts = 0
        self._proc_lock = threading.Lock()
        self._proc = self._spawn()
        self._thread = threading.Thread(target=self._pump, name=f"ffmpeg-{service_id}",
                                        daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)

    def _pump(self) -> None:
        while True:
            out = self._proc.stdout
            assert out is not None
            while not self._stop.is_set():
                try:
                    data = os.read(out.fileno(), 65536)
                except (OSError, ValueError):  # closed under us by close()
                    data = b""
                if not data:
                    break
                self._put(data)
            if self._stop.wait(self.restart_delay_s):
                return
            with self._proc_lock:
                if self._stop.is_set():
                    return
                self._reap(self._proc)
                self._proc = self._spawn()
                self.restarts += 1

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def close(self) -> None:
        super().close()
        with self._proc_lock:
            self._reap(self._proc)
        self._thread.join(timeout=5)


def ffmpeg_argv(exe: str, graph: str, *, service_id: int, name: str,
                video_bitrate_kbps: int = 1000) -> list[str]:
    """The ffmpeg command line of a lavfi source: ``graph`` (e.g. ``testsrc``, or a full
    ``testsrc=size=640x360:rate=25``) with the wall clock drawn on it, a 1 kHz tone, MPEG-2
    video + MP2 audio in an SPTS on stdout, in real time."""
    video = graph if "=" in graph else f"{graph}=size=320x180:rate=25"
    clock = ("drawtext=text='%{localtime\\:%H\\\\\\:%M\\\\\\:%S}':fontsize=28:fontcolor=white:"
             "box=1:boxcolor=black@0.6:x=8:y=8")
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
            "-vf", clock, "-c:v", "mpeg2video", "-b:v", f"{video_bitrate_kbps}k", "-g", "12",
            "-c:a", "mp2", "-b:a", "128k",
            "-f", "mpegts", "-mpegts_service_id", str(service_id),
            "-metadata", f"service_name={name}", "-pcr_period", "20", "pipe:1"]


class UdpSource(_LiveSource):
    """A TS on UDP (``udp://HOST:PORT``; a multicast group is joined); an RTP header
    (RFC 3550, 12 bytes, version 2) in front of the packets is stripped."""

    def __init__(self, host: str, port: int, *, latency_s: float = 0.5,
                 program_number: int | None = None) -> None:
        super().__init__(f"udp://{host}:{port}", latency_s=latency_s,
                         program_number=program_number)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        first = host.split(".", 1)[0]
        multicast = first.isdigit() and 224 <= int(first) <= 239
        try:
            self._sock.bind(("0.0.0.0" if multicast else host, port))
            if multicast:
                mreq = struct.pack("4s4s", socket.inet_aton(host), socket.inet_aton("0.0.0.0"))
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"udp://{host}:{port}: {exc.strerror or exc}") from None
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._pump, name=f"udp-in-{port}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            self._put(strip_rtp(data))

    def close(self) -> None:
        super().close()
        self._thread.join(timeout=1)
        self._sock.close()


def strip_rtp(datagram: bytes) -> bytes:
    """The TS packets of a datagram, without an RTP header (RFC 3550 §5.1) if it has one."""
    if datagram[:1] == b"\x47" and len(datagram) % PACKET_SIZE == 0:
        return datagram
    if len(datagram) >= 12 and datagram[0] >> 6 == 2:
        cc = datagram[0] & 0x0F
        start = 12 + 4 * cc
        if datagram[0] & 0x10 and len(datagram) >= start + 4:  # header extension
            start += 4 + 4 * int.from_bytes(datagram[start + 2 : start + 4], "big")
        return datagram[start:]
    return datagram


SourceFactory = Callable[[], Source]
