"""One pass of a stream through the box: the demux's listener, wiring the parts together.

* the demux (:mod:`firmware_stub.demux`) finds the lineup, the EMM PID and the ECM PIDs;
* ECMs and EMMs go to the card dialog (:mod:`firmware_stub.dialog`; scan: every channel's
  ECMs, watch: the tuned channel's);
* scrambled packets are counted per elementary stream and descrambled with the CW of their
  parity (watch: all packets of the tuned service, written out clear by
  :mod:`firmware_stub.output`; scan: a few PES starts per CW change, to check them);
* each channel's verdict is the pure :func:`firmware_stub.verdict.verdict` over what the pass
  has seen (:meth:`Run.observe`), at any time (live mode) and at the end, when
  :meth:`Run.finish` also writes the NVRAM's new counters and assembles the lock report.

Nothing in the stream makes the pass raise: defects are counted and reported.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cas.errors import StreamError
from firmware_stub.demux import Demux, ServiceInfo, pid_tables
from firmware_stub.descrambler import KeySlot, pes_start_ok
from firmware_stub.dialog import CardDialog, EcmState
from firmware_stub.errors import NotTransportStreamError
from firmware_stub.faults import Fault
from firmware_stub.observations import ChannelFacts, EsFacts
from firmware_stub.osd import OsdCard, OsdScreen
from firmware_stub.output import WatchOutput
from firmware_stub.report import ChannelStatus, LockReport
from firmware_stub.tsreader import READ_SIZE
from firmware_stub.verdict import verdict

if TYPE_CHECKING:
    from firmware_stub.boxview import BoxView

#: PES starts checked per ES stream and CW change in a scan (enough to tell, cheap to do).
SCAN_CHECKS_PER_KEY = 2
# byte 3 -> 0 clear, 1 reserved (01), 2 scrambled (10/11); byte 1 -> PUSI
_TSC_CLASS = bytes((0, 1, 2, 2)[b >> 6] for b in range(256))
_PUSI = bytes(1 if b & 0x40 else 0 for b in range(256))

Source = BinaryIO | bytes | bytearray | Path


@dataclass(slots=True)
class EsState:
    """One elementary stream during a pass."""

    pid: int
    service_id: int
    ecm_pid: int | None
    tuned: bool = False
    clear: int = 0
    scrambled: int = 0
    undecodable: int = 0
    reserved: int = 0
    checks_ok: int = 0
    checks_bad: int = 0
    last_check: bool | None = None
    checked_generation: int = -1
    checks_this_key: int = 0

    def facts(self) -> EsFacts:
        return EsFacts(pid=self.pid, ecm_pid=self.ecm_pid, clear=self.clear,
                       scrambled=self.scrambled, checks_ok=self.checks_ok,
                       last_check=self.last_check)


class Run:
    """One pass of a stream through the box (the demux listener)."""

    def __init__(self, box: BoxView, *, tuned_channel: int | None, out: BinaryIO | None,
                 pin: str | None, require_ts: bool = False) -> None:
        self.box = box
        self.require_ts = require_ts
        self.slot = box.slot
        self.tuned_channel = tuned_channel
        self.out = out
        self.demux = Demux(self, ca_system_id=box.ca_system_id)
        self.dialog = CardDialog(box, self.demux, pin=pin, before_key_change=self._flush)
        client = self.slot.client
        #: the on-screen display (firmware_stub.osd): the card's messages, in priority order
        self.osd = OsdScreen(client if isinstance(client, OsdCard)
                             and Fault.IGNORE_OSD not in box.faults else None)
        self.dialog.on_emm_applied = self.osd.poll
        self.output: WatchOutput[EsState] | None = (
            WatchOutput(out, self.demux) if out is not None else None)
        self.es: dict[int, EsState] = {}
        self.tuned_sid: int | None = None
        self.tuned_ecm_pids: frozenset[int] = frozenset()
        self.packets_dropped = 0
        self.t_first_ecm: float | None = None
        self._tables: dict[int, tuple[bytes, bytes]] = {}
        self._tables_for: frozenset[int] = frozenset()

    # --- what live mode and ``Box.watch`` read ----------------------------------------------------
    @property
    def ecm(self) -> dict[int, EcmState]:
        """Per ECM PID, what the card dialog made of it."""
        return self.dialog.ecm

    @property
    def packets_out(self) -> int:
        return self.output.packets_out if self.output is not None else 0

    @property
    def t_first_clear(self) -> float | None:
        return self.output.t_first_clear if self.output is not None else None

    @property
    def on_ecm_answer(self) -> Callable[[], None] | None:
        """Live mode: called after every card answer to an ECM (a verdict may have changed)."""
        return self.dialog.on_ecm_answer

    @on_ecm_answer.setter
    def on_ecm_answer(self, callback: Callable[[], None] | None) -> None:
        self.dialog.on_ecm_answer = callback

    @property
    def on_emm_answer(self) -> Callable[[str, bytes, int, str], None] | None:
        """Live mode: called after the card answered an EMM (address type, section, SW,
        result)."""
        return self.dialog.on_emm_answer

    @on_emm_answer.setter
    def on_emm_answer(self, callback: Callable[[str, bytes, int, str], None] | None) -> None:
        self.dialog.on_emm_answer = callback

    # --- input ---------------------------------------------------------------------------------
    def consume(self, source: Source) -> None:
        if isinstance(source, bytes | bytearray):
            self._consume_stream(io.BytesIO(bytes(source)))
        elif isinstance(source, Path):
            try:
                with source.open("rb") as handle:
                    self._consume_stream(handle)
            except OSError as exc:
                raise StreamError(f"cannot read {source}: {exc.strerror}").with_id(
                    "box.cannot_read", source=source, strerror=exc.strerror) from exc
        else:
            self._consume_stream(source)

    def _consume_stream(self, stream: BinaryIO) -> None:
        demux = self.demux
        while True:
            chunk = stream.read(READ_SIZE)
            if not chunk:
                break
            demux.feed(bytes(chunk))
        demux.finish()
        stats = demux.stats
        # No packet, or only one "packet" behind skipped bytes: a lone 0x47 near the end of a
        # sections file or a card image is taken for a last packet nothing confirms.
        if self.require_ts and (stats.packets == 0
                                or (stats.packets == 1 and stats.skipped_bytes > 0)):
            # the same two refusals as `cas diag stream` (cas.diag.probe)
            raise NotTransportStreamError(
                "empty stream" if stats.bytes_read == 0
                else "not an MPEG transport stream (no 188-byte packet sync found)").with_id(
                    "empty_stream_anon" if stats.bytes_read == 0 else "not_ts_anon")

    def feed(self, data: bytes) -> None:
        """The next bytes of a live stream (any size; see :meth:`Demux.feed`)."""
        self.demux.feed(data)

    def flush_output(self) -> None:
        """Watch: write what is gathered now, not a whole batch later (a live viewer)."""
        self._flush()
        if self.out is not None:
            self.out.flush()

    # --- demux listener ------------------------------------------------------------------------
    def on_lineup(self) -> None:
        demux = self.demux
        tuned_sid = None
        if self.tuned_channel is not None:
            for svc in demux.services():
                if svc.channel == self.tuned_channel and svc.has_pmt:
                    tuned_sid = svc.service_id
                    break
        self.tuned_sid = tuned_sid
        es: dict[int, EsState] = {}
        ecm_pids: set[int] = set()
        for pid, sid in demux.es_pids.items():
            svc = demux.service(sid)
            ecm_pid = next((s.ecm_pid for s in svc.streams if s.pid == pid), None)
            old = self.es.get(pid)
            if old is not None and old.service_id == sid:
                old.ecm_pid = ecm_pid
                old.tuned = sid == tuned_sid
                es[pid] = old
            else:
                es[pid] = EsState(pid=pid, service_id=sid, ecm_pid=ecm_pid,
                                  tuned=sid == tuned_sid)
            if sid == tuned_sid and ecm_pid is not None:
                ecm_pids.add(ecm_pid)
        self.es = es
        self.tuned_ecm_pids = frozenset(ecm_pids)
        if self.output is not None and tuned_sid is not None:
            self.output.make_psi(demux.service(tuned_sid))
        # the fast path: the tuned service's streams (watch) or every service's (scan)
        demux.bulk_pids = frozenset(pid for pid, e in es.items()
                                    if e.tuned or self.out is None)

    def on_ecm(self, pid: int, section: bytes, packet_index: int) -> None:
        st = self.dialog.receive_ecm(pid, section)
        if st is None:
            return  # the usual repetition of the current ECM
        if self.out is not None and pid not in self.tuned_ecm_pids:
            return  # a box only asks the card for the channel it shows
        if self.out is not None and self.t_first_ecm is None:
            self.t_first_ecm = time.perf_counter()
        self.dialog.process_ecm(st, section, packet_index)

    def on_emm(self, pid: int, section: bytes, packet_index: int) -> None:
        self.dialog.process_emm(section)

    def on_es(self, pid: int, packet: bytes, packet_index: int) -> None:
        es = self.es.get(pid)
        if es is None:
            return
        tsc = packet[3] >> 6
        if tsc == 0:
            es.clear += 1
            if es.tuned and self.out is not None:
                self._emit(packet)
            return
        if tsc == 1:  # reserved value (DVB): nothing a box can do with it
            es.reserved += 1
            return
        es.scrambled += 1
        keys = self.dialog.keys_for(es.ecm_pid)
        if keys is None:
            es.undecodable += 1
            if es.tuned:
                self.packets_dropped += 1
            return
        if self.out is not None:
            if es.tuned:
                self._emit(packet, check=es if packet[1] & 0x40 else None)
            return
        if packet[1] & 0x40:
            self._scan_check(es, keys, packet)

    def _scan_check(self, es: EsState, keys: KeySlot, packet: bytes) -> None:
        """Scan: descramble a few PES starts per key change and look for 00 00 01."""
        if es.checked_generation != keys.generation:
            es.checked_generation = keys.generation
            es.checks_this_key = 0
        if es.checks_this_key >= SCAN_CHECKS_PER_KEY:
            return
        buf = bytearray(packet)
        keys.descramble(buf)
        es.checks_this_key += 1
        self._record_check(es, pes_start_ok(buf))

    def on_es_block(self, block: bytes, packet_index: int) -> None:
        """A run of packets on the bulk PIDs (see :meth:`Demux._block`), handled at once:
        per-PID counts and the PES starts to check come from strided slices; the packets
        go to the output in one piece.  Anything the run cannot be handled as a whole for
        (reserved scrambling bits, keys not there yet) goes packet by packet."""
        n = len(block) // 188
        b1 = block[1::188]
        b3 = block[3::188]
        tsc = b3.translate(_TSC_CLASS)
        if b"\x01" in tsc:
            self._per_packet(block, packet_index)
            return
        scr = int.from_bytes(tsc, "little")  # 2 per scrambled packet, 0 per clear one
        b2 = block[2::188]
        keys_for = self.dialog.keys_for
        per_pid: list[tuple[EsState, int]] = []
        for pid, (hi, lo) in self._bulk_tables().items():
            mask = int.from_bytes(b1.translate(hi), "little") & int.from_bytes(
                b2.translate(lo), "little")
            if not mask:
                continue
            es = self.es[pid]
            scrambled = (scr & (mask << 1)).bit_count()
            if scrambled and keys_for(es.ecm_pid) is None:
                self._per_packet(block, packet_index)
                return
            per_pid.append((es, mask))
            es.scrambled += scrambled
            es.clear += mask.bit_count() - scrambled
        starts = int.from_bytes(b1.translate(_PUSI), "little") & (scr >> 1)
        if not starts:
            checks: list[int] = []
        else:
            checks = list(compress(range(n), starts.to_bytes(n, "little")))
        output = self.output
        if output is not None:
            check_es = [(i, next(es for es, m in per_pid if (m >> (8 * i)) & 1)) for i in checks]
            if output.emit_block(block, check_es):
                self._flush()
            return
        for i in checks:
            es = next(es for es, m in per_pid if (m >> (8 * i)) & 1)
            keys = keys_for(es.ecm_pid)
            if keys is not None:
                self._scan_check(es, keys, block[i * 188:(i + 1) * 188])

    def _per_packet(self, block: bytes, packet_index: int) -> None:
        for i in range(0, len(block), 188):
            packet = block[i:i + 188]
            self.on_es(((packet[1] & 0x1F) << 8) | packet[2], packet, packet_index + i // 188)

    def _bulk_tables(self) -> dict[int, tuple[bytes, bytes]]:
        pids = self.demux.bulk_pids
        if self._tables_for != pids:
            self._tables = {pid: pid_tables(pid) for pid in pids}
            self._tables_for = pids
        return self._tables

    @staticmethod
    def _record_check(es: EsState, ok: bool | None) -> None:
        if ok is None:
            return
        es.last_check = ok
        if ok:
            es.checks_ok += 1
        else:
            es.checks_bad += 1

    # --- watch output --------------------------------------------------------------------------
    def _emit(self, packet: bytes, check: EsState | None = None) -> None:
        if self.output is not None and self.output.emit(packet, check):
            self._flush()

    def _flush(self) -> None:
        if self.output is not None:
            self.output.flush(self._descramble_tuned, self._record_check)

    def _descramble_tuned(self, buf: bytearray) -> None:
        """Descramble the tuned service's packets in ``buf``, each ECM stream's with its keys."""
        for st in self.dialog.ecm.values():
            if st.keys is not None and st.keys.cws_installed:
                pids = [e.pid for e in self.es.values() if e.tuned and e.ecm_pid == st.pid]
                if pids:
                    st.keys.descramble(buf, pids if len(self.tuned_ecm_pids) > 1 else None)

    # --- verdicts --------------------------------------------------------------------------------
    def observe(self, svc: ServiceInfo) -> ChannelFacts:
        """What the pass has seen of ``svc`` by now (the verdict's whole input)."""
        streams = tuple(self.es[s.pid].facts() for s in svc.streams if s.pid in self.es)
        ecm = self.dialog.ecm
        wanted = set(svc.ecm_pids).union(e.ecm_pid for e in streams if e.ecm_pid is not None)
        return ChannelFacts(
            service=svc, streams=streams,
            ecm={pid: ecm[pid].facts() for pid in sorted(wanted) if pid in ecm},
            ca_system_id=self.box.ca_system_id, card_present=self.slot.present,
            card_error=self.slot.error)

    def verdict(self, svc: ServiceInfo) -> ChannelStatus:
        """The channel's state now (:func:`firmware_stub.verdict.verdict`)."""
        return verdict(self.observe(svc))

    def statuses(self) -> list[ChannelStatus]:
        """Every channel's verdict now (the same rule as at the end of a file)."""
        return [self.verdict(svc) for svc in self.demux.services()]

    # --- the end ---------------------------------------------------------------------------------
    def finish(self) -> LockReport:
        """Write out the rest, add this pass's counters to the NVRAM, report every channel."""
        self._flush()
        self.osd.finish()
        box = self.box
        dialog = self.dialog
        channels = tuple(self.statuses())
        counts = dialog.filter.counts.to_json() if dialog.filter is not None else {}
        emm = {**counts, **{f"card_{k}": v for k, v in dialog.counters.emm_results.items()}}
        c = dialog.counters
        delta = {**self.demux.stats.counters(), **{f"emm_{k}": v for k, v in counts.items()},
                 "ecm_sent": c.ecm_sent, "ecm_cws": c.ecm_cws, "ecm_denied": c.ecm_denied,
                 "ecm_rejected": c.ecm_rejected, "ecm_garbage": c.ecm_garbage,
                 "cw_unwrap_failed": c.cw_unwrap_failed, "card_errors": c.card_errors,
                 "watch_packets_out": self.packets_out}
        nvram = box.nvram.with_counters(delta)
        nvram = replace(
            nvram,
            last_emm=dialog.last_emm or nvram.last_emm,
            last_ecm=dialog.last_ecm or nvram.last_ecm,
            last_channel=(self.tuned_channel if self.tuned_channel is not None
                          else nvram.last_channel))
        box.nvram = nvram
        box.save()
        stream = self.demux.stats.to_json()
        stream["ecm"] = {f"{pid}": {"sections": st.sections, "sent": st.sent,
                                    "garbage": st.garbage, "rejected": st.rejected}
                         for pid, st in sorted(dialog.ecm.items())}
        return LockReport(chip_id=box.chip.chip_id, card=box.card_summary(), channels=channels,
                          emm=emm, stream=stream, pin=dialog.pin_text(),
                          osd=self.osd.to_json() if self.osd.events or self.osd.error else None)
