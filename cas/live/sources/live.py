"""The shared part of the live sources (ffmpeg, UDP): input queue, probe, PCR timing.

Live sources are timed by their PCR (ISO/IEC 13818-1 §2.4.2.2): packets wait until the next
PCR has arrived (so their time can be interpolated), then play out ``latency_s`` after the
PCR's arrival anchor.  If the PCR jumps (source restart, > 1 s gap or backwards), the anchor
is taken again.
"""

from __future__ import annotations

import queue
import threading
from bisect import bisect_left
from collections.abc import Mapping

from cas.errors import StreamError
from cas.live.sources.program import (
    PACKET_SIZE,
    SYNC_BYTE,
    Block,
    ProgramInfo,
    ProgramProbe,
)
from cas.live.sources.stamps import (
    PCR_HZ,
    PCR_MODULUS,
    pcr_of,
)


class PcrTimer:
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


class LiveSource:
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
        self._timer: PcrTimer | None = None
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
                                  f"{self.probe_timeout_s:g} s").with_id(
                    "live.no_pat_pmt_within", name=self.name,
                    probe_timeout_s=f"{self.probe_timeout_s:g}")
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
        self._timer = PcrTimer(self._map.get(program.pcr_pid, program.pcr_pid), self.latency_s)

    def read(self, until_s: float, now_s: float) -> Block:
        timer = self._timer
        if timer is None:
            raise StreamError(f"{self.name}: read before set_pid_map").with_id(
                "live.read_before_set_pid", name=self.name)
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
