"""``stb watch``'s output: the tuned service, clear, as a single-program transport stream.

Packets of the tuned service are gathered in a batch; before the batch is written it is
descrambled in place with the control words of its parity (the pass supplies the key slots,
:meth:`WatchOutput.flush`) and the PES starts marked for checking are checked there.  The
first batch is one packet, so the channel-change time is one card answer, not a whole batch.
A PAT naming only that program and its PMT without CA signalling are repeated in the output
every :data:`PSI_REPEAT_PACKETS` packets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import BinaryIO, Generic, TypeVar

from cas.formats.psi import (
    PAT_PID,
    CaDescriptor,
    Pat,
    PatProgram,
    PmtStream,
    ScramblingDescriptor,
    build_pat,
    build_pmt,
)
from cas.formats.ts import Packetizer
from firmware_stub.demux import Demux, ServiceInfo
from firmware_stub.descrambler import pes_start_ok

#: Packets gathered before a batch is descrambled and written (watch).
WATCH_BATCH = 512
#: PAT/PMT are repeated in the watch output every this many packets.
PSI_REPEAT_PACKETS = 2000

#: What a PES start to check is tied to (the pass's per-stream state).
C = TypeVar("C")


class WatchOutput(Generic[C]):
    """The clear SPTS written to ``out`` in batches."""

    def __init__(self, out: BinaryIO, demux: Demux) -> None:
        self.out = out
        self.demux = demux
        self.pending = bytearray()
        self.pending_checks: list[tuple[int, C]] = []
        self.batch = 1  # small until the first clear packet is out (channel-change time)
        self.packets_out = 0
        self.since_psi = PSI_REPEAT_PACKETS
        self.psi_sections: tuple[bytes, bytes] = (b"", b"")
        self._pat_packetizer = Packetizer(PAT_PID)
        self._pmt_packetizer: Packetizer | None = None
        #: perf counter seconds when the first clear packet went out
        self.t_first_clear: float | None = None

    def make_psi(self, svc: ServiceInfo) -> None:
        """PAT with the one program and its PMT without CA signalling: a clear SPTS."""
        pmt = self.demux.pmts.get(svc.service_id)
        if pmt is None or svc.pmt_pid is None:
            return
        clear_pmt = replace(
            pmt,
            descriptors=tuple(d for d in pmt.descriptors
                              if not isinstance(d, CaDescriptor | ScramblingDescriptor)),
            streams=tuple(PmtStream(stream_type=s.stream_type, elementary_pid=s.elementary_pid,
                                    descriptors=tuple(
                                        d for d in s.descriptors
                                        if not isinstance(d, CaDescriptor | ScramblingDescriptor)))
                          for s in pmt.streams))
        pat = Pat(transport_stream_id=self.demux.transport_stream_id or 1,
                  programs=(PatProgram(program_number=svc.service_id, pid=svc.pmt_pid),))
        if self._pmt_packetizer is None or self._pmt_packetizer.pid != svc.pmt_pid:
            self._pmt_packetizer = Packetizer(svc.pmt_pid)
        self.psi_sections = (build_pat(pat), build_pmt(clear_pmt))
        self.since_psi = PSI_REPEAT_PACKETS  # send the new tables with the next packet

    def _psi_due(self) -> None:
        if self.since_psi >= PSI_REPEAT_PACKETS and self._pmt_packetizer is not None:
            pat_section, pmt_section = self.psi_sections
            for pkt in (self._pat_packetizer.packetize(pat_section)
                        + self._pmt_packetizer.packetize(pmt_section)):
                self.pending += pkt
            self.since_psi = 0

    def emit(self, packet: bytes, check: C | None = None) -> bool:
        """Add one packet (``check``: a PES start to check once descrambled); True when the
        batch is full and must be flushed."""
        self._psi_due()
        if check is not None:
            self.pending_checks.append((len(self.pending), check))
        self.pending += packet
        self.since_psi += 1
        return len(self.pending) >= self.batch * 188

    def emit_block(self, block: bytes, checks: list[tuple[int, C]]) -> bool:
        """Add a run of packets (``checks``: packet index in ``block``, what it is for);
        True when the batch is full and must be flushed."""
        self._psi_due()
        base = len(self.pending)
        self.pending_checks.extend((base + i * 188, es) for i, es in checks)
        self.pending += block
        self.since_psi += len(block) // 188
        return len(self.pending) >= self.batch * 188

    def flush(self, descramble: Callable[[bytearray], None],
              record_check: Callable[[C, bool | None], None]) -> None:
        """Descramble the batch in place, check its marked PES starts, write it."""
        if not self.pending:
            return
        buf = self.pending
        self.pending = bytearray()
        checks, self.pending_checks = self.pending_checks, []
        descramble(buf)
        for offset, es in checks:
            record_check(es, pes_start_ok(memoryview(buf)[offset:offset + 188]))
        self.out.write(bytes(buf))
        self.packets_out += len(buf) // 188
        if self.t_first_clear is None:
            self.t_first_clear = time.perf_counter()
            self.batch = WATCH_BATCH
