"""The set-top box: boot, scan a stream for its lock report, watch a channel (DESIGN §5).

``Box.boot`` wakes the chipset (CSK out of the Chip ID record with the vendor key), reads
the NVRAM, reads the card (GET DATA 02) and its pairing (GET DATA 05) and hands the chip
blob to the chipset.  Then a stream goes through :class:`_Run`:

* the demux (:mod:`firmware_stub.demux`) finds the lineup, the EMM PID and the ECM PIDs;
* EMMs addressed to the card (:mod:`firmware_stub.emmfilter`) go to the card; after one was
  applied the box re-reads the pairing (a PAIR EMM gives a new chip blob) and re-sends the
  current ECMs, because the card's rights may have changed;
* each new ECM goes to the card (scan: every channel's; watch: the tuned channel's); wrapped
  CWs are opened by the chipset and installed in the ECM stream's key slot, refusals are
  recorded with their reason;
* scrambled packets are descrambled with the CW of their parity (watch: all packets of the
  tuned service, written out clear; scan: a few PES starts per CW change, to check them).

At the end every channel gets its verdict (:meth:`_Run.verdict`), and the NVRAM its new
counters.  Nothing in the stream makes the box raise: defects are counted and reported.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import compress
from pathlib import Path
from typing import BinaryIO

from cas import DEFAULT_CA_SYSTEM_ID
from cas.crypto import Key
from cas.errors import CasError, FormatError, StreamError
from cas.formats.chipid import ChipIdRecord
from cas.formats.ecm import parse_ecm
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
from cas.reasons import Reason
from firmware_stub.cardslot import (
    CardClientLike,
    CardSlot,
    EcmKind,
    PinAnswer,
    PinKind,
)
from firmware_stub.chipset import Chipset
from firmware_stub.demux import Demux, ServiceInfo, pid_tables
from firmware_stub.descrambler import KeySlot, pes_start_ok, scrambling_name, supported
from firmware_stub.emmfilter import EmmFilter
from firmware_stub.errors import NotTransportStreamError, PairingError, TuneError
from firmware_stub.nvram import LastEcm, LastEmm, Nvram, PairingState, load_nvram, save_nvram
from firmware_stub.report import CardSummary, ChannelStatus, LockReport
from firmware_stub.tsreader import READ_SIZE

#: PES starts checked per ES stream and CW change in a scan (enough to tell, cheap to do).
SCAN_CHECKS_PER_KEY = 2
#: Packets gathered before a batch is descrambled and written (watch).
WATCH_BATCH = 512
#: PAT/PMT are repeated in the watch output every this many packets.
PSI_REPEAT_PACKETS = 2000
# byte 3 -> 0 clear, 1 reserved (01), 2 scrambled (10/11); byte 1 -> PUSI
_TSC_CLASS = bytes((0, 1, 2, 2)[b >> 6] for b in range(256))
_PUSI = bytes(1 if b & 0x40 else 0 for b in range(256))

Source = BinaryIO | bytes | bytearray | Path


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchResult:
    """What ``stb watch`` did."""

    channel: int
    status: ChannelStatus | None
    packets_out: int
    packets_dropped: int
    #: first ECM of the channel seen -> first clear packet written (perf counter seconds)
    first_ecm_to_clear_s: float | None
    report: LockReport

    def to_json(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "status": self.status.to_json() if self.status else None,
            "packets_out": self.packets_out,
            "packets_dropped": self.packets_dropped,
            "first_ecm_to_clear_ms": (None if self.first_ecm_to_clear_s is None
                                      else round(self.first_ecm_to_clear_s * 1000, 3)),
        }


class Box:
    """One booted set-top box.  Build it with :meth:`boot`."""

    def __init__(self, *, chip: ChipIdRecord, chipset: Chipset, slot: CardSlot, nvram: Nvram,
                 nvram_path: Path | None, ca_system_id: int,
                 clock: Callable[[], float]) -> None:
        self.chip = chip
        self.chipset = chipset
        self.slot = slot
        self.nvram = nvram
        self.nvram_path = nvram_path
        self.ca_system_id = ca_system_id
        self.clock = clock
        #: why the chipset holds no (usable) pairing key, for the report's detail
        self.pairing_note: str | None = None

    def __repr__(self) -> str:
        return f"Box(chip={self.chip.chip_id:08X}, card={self.card_summary().serial})"

    # --- boot --------------------------------------------------------------------------------
    @classmethod
    def boot(cls, chip_record: ChipIdRecord, nvram_path: Path | None, *, vendor_key: Key,
             card: CardClientLike | None = None, reader: str | None = None,
             card_error: str | None = None, ca_system_id: int = DEFAULT_CA_SYSTEM_ID,
             clock: Callable[[], float] = time.time) -> Box:
        """Power on: chipset, NVRAM, card.  Raises only for the box's own parts (a Chip ID
        record that does not open, an NVRAM file of another chip); card trouble is a state.

        ``card``: a :class:`cas.card.client.CardClient` (PC/SC or in-process), or ``None``
        for an empty slot; ``card_error``: the card was there but could not be reached.
        """
        chipset = Chipset.from_record(chip_record, vendor_key)
        nvram = (load_nvram(nvram_path, chip_id=chip_record.chip_id) if nvram_path is not None
                 else Nvram(chip_id=chip_record.chip_id))
        slot = CardSlot(card, reader=reader, error=card_error)
        slot.read_info()
        box = cls(chip=chip_record, chipset=chipset, slot=slot,
                  nvram=replace(nvram, boot_count=nvram.boot_count + 1),
                  nvram_path=nvram_path, ca_system_id=ca_system_id, clock=clock)
        box._pair_from_card()
        box.save()
        return box

    def _pair_from_card(self) -> None:
        """Load the CWPK: from the card's pairing data, else from NVRAM for the same card."""
        info = self.slot.info
        if info is None:
            self.pairing_note = None
            return
        pairing = self.slot.read_pairing() if info.paired else None
        chip_id = self.chip.chip_id
        if pairing is not None and pairing.chip_id == chip_id:
            try:
                self.chipset.load_pairing(pairing.chip_blob)
            except PairingError:
                self.chipset.clear_pairing()
                self.pairing_note = "the card's chip blob does not open on this chip"
                return
            self.pairing_note = None
            self.nvram = replace(self.nvram, pairing=PairingState(
                card_serial=info.serial, chip_id=chip_id, chip_blob=pairing.chip_blob))
            return
        self.chipset.clear_pairing()
        if pairing is not None:
            self.pairing_note = (f"card {info.serial:010d} is paired with chip "
                                 f"{pairing.chip_id:08X}, this box is chip {chip_id:08X}")
            return
        if not info.paired:
            self.pairing_note = f"card {info.serial:010d} is not paired with any box"
            return
        kept = self.nvram.pairing
        if kept is not None and kept.card_serial == info.serial and kept.chip_id == chip_id:
            # The card says it is paired but its pairing data could not be read: use the
            # blob this box stored when it last learnt it.
            try:
                self.chipset.load_pairing(kept.chip_blob)
                self.pairing_note = None
                return
            except PairingError:
                pass
        self.pairing_note = "the card's pairing data could not be read"

    def save(self) -> None:
        if self.nvram_path is not None:
            save_nvram(self.nvram_path, self.nvram)

    # --- what the box knows ------------------------------------------------------------------
    def card_summary(self) -> CardSummary:
        slot = self.slot
        info = slot.info
        if slot.client is None:
            return CardSummary(present=False, reader=slot.reader)
        if info is None or slot.error is not None:
            return CardSummary(present=True, reader=slot.reader, error=slot.error)
        paired = self.nvram.pairing.chip_id if (
            self.nvram.pairing and self.nvram.pairing.card_serial == info.serial) else None
        return CardSummary(present=True, reader=slot.reader, serial=info.serial,
                           shared_address=info.shared_address, status=info.status.name,
                           paired_chip_id=info.chip_id if info.paired else paired)

    def info(self) -> dict[str, object]:
        """``stb boot`` / ``stb info``: the chip, the card, the NVRAM."""
        chip = self.chip
        return {
            "chip": {"chip_id": f"{chip.chip_id:08X}", "vendor": chip.vendor,
                     "model": chip.model, "firmware_version": f"{chip.firmware_version:08X}",
                     "paired": self.chipset.paired,
                     "cwpk_fingerprint": self.chipset.cwpk_fingerprint()},
            "card": self.card_summary().to_json(),
            "pairing_note": self.pairing_note,
            "nvram": self.nvram.to_json(),
        }

    # --- streams -----------------------------------------------------------------------------
    def scan(self, source: Source, *, pin: str | None = None,
             require_ts: bool = False) -> LockReport:
        """Read the whole stream; report every channel of its lineup.

        ``require_ts``: raise :class:`NotTransportStreamError` (before the NVRAM is touched)
        when the source holds no TS packet at all, instead of an empty report."""
        run = _Run(self, tuned_channel=None, out=None, pin=pin, require_ts=require_ts)
        run.consume(source)
        return run.finish()

    def start(self, *, channel: int | None = None, out: BinaryIO | None = None,
              pin: str | None = None) -> _Run:
        """A pass fed piece by piece (a live input, :mod:`firmware_stub.live`): scan every
        channel (``channel`` None) or watch one into ``out``; ``finish()`` at the end."""
        if (channel is None) != (out is None):
            raise TypeError("watch needs both a channel and an output")
        return _Run(self, tuned_channel=channel, out=out, pin=pin)

    def watch(self, source: Source, channel: int, out: BinaryIO, *,
              pin: str | None = None, require_ts: bool = False) -> WatchResult:
        """Descramble ``channel`` and write it, clear, to ``out`` (an SPTS: PAT, PMT, ES).
        ``require_ts`` as in :meth:`scan`."""
        run = _Run(self, tuned_channel=channel, out=out, pin=pin, require_ts=require_ts)
        run.consume(source)
        report = run.finish()
        try:
            status: ChannelStatus | None = report.channel(channel)
        except KeyError:
            status = None
        if status is None and not run.packets_out:
            raise TuneError(f"channel {channel} is not in this stream's lineup")
        elapsed = (run.t_first_clear - run.t_first_ecm
                   if run.t_first_clear is not None and run.t_first_ecm is not None else None)
        return WatchResult(channel=channel, status=status, packets_out=run.packets_out,
                           packets_dropped=run.packets_dropped, first_ecm_to_clear_s=elapsed,
                           report=report)


@dataclass(slots=True)
class _EcmState:
    """One ECM PID during a run."""

    pid: int
    last_section: bytes = b""
    sections: int = 0
    sent: int = 0
    garbage: int = 0
    rejected: int = 0
    problem: str = ""  # the last garbage / rejection, for NO_ECM details
    reason: Reason | None = None  # None: no usable answer yet
    detail: str = ""
    keys: KeySlot | None = None
    refused_sw: int | None = None


@dataclass(slots=True)
class _EsState:
    """One elementary stream during a run."""

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


@dataclass(slots=True)
class _Counters:
    ecm_sent: int = 0
    ecm_cws: int = 0
    ecm_denied: int = 0
    ecm_rejected: int = 0
    ecm_garbage: int = 0
    cw_unwrap_failed: int = 0
    card_errors: int = 0
    emm_results: dict[str, int] = field(default_factory=dict)


class _Run:
    """One pass of a stream through the box (the demux listener)."""

    def __init__(self, box: Box, *, tuned_channel: int | None, out: BinaryIO | None,
                 pin: str | None, require_ts: bool = False) -> None:
        self.box = box
        self.require_ts = require_ts
        self.slot = box.slot
        self.tuned_channel = tuned_channel
        self.out = out
        self.pin = pin
        self.pin_answer: PinAnswer | None = None
        self.demux = Demux(self, ca_system_id=box.ca_system_id)
        info = box.slot.info
        self.filter = (EmmFilter(serial=info.serial, shared_address=info.shared_address,
                                 member_position=info.member_position)
                       if info is not None and box.slot.usable else None)
        self.ecm: dict[int, _EcmState] = {}
        self.es: dict[int, _EsState] = {}
        self.counters = _Counters()
        self.tuned_sid: int | None = None
        self.tuned_ecm_pids: frozenset[int] = frozenset()
        # watch output
        self.pending = bytearray()
        self.pending_checks: list[tuple[int, _EsState]] = []
        self.batch = 1  # small until the first clear packet is out (channel-change time)
        self.packets_out = 0
        self.packets_dropped = 0
        self.since_psi = PSI_REPEAT_PACKETS
        self.psi_sections: tuple[bytes, bytes] = (b"", b"")
        self._pat_packetizer = Packetizer(PAT_PID)
        self._pmt_packetizer: Packetizer | None = None
        self.t_first_ecm: float | None = None
        self._tables: dict[int, tuple[bytes, bytes]] = {}
        self._tables_for: frozenset[int] = frozenset()
        self.t_first_clear: float | None = None
        self.last_emm: LastEmm | None = None
        self.last_ecm: LastEcm | None = None
        #: live mode: called after every card answer to an ECM (a verdict may have changed)
        self.on_ecm_answer: Callable[[], None] | None = None
        #: live mode: called after the card answered an EMM (address type, section, SW, result)
        self.on_emm_answer: Callable[[str, bytes, int, str], None] | None = None

    # --- input ---------------------------------------------------------------------------------
    def consume(self, source: Source) -> None:
        if isinstance(source, bytes | bytearray):
            self._consume_stream(io.BytesIO(bytes(source)))
        elif isinstance(source, Path):
            try:
                with source.open("rb") as handle:
                    self._consume_stream(handle)
            except OSError as exc:
                raise StreamError(f"cannot read {source}: {exc.strerror}") from exc
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
                else "not an MPEG transport stream (no 188-byte packet sync found)")

    def feed(self, data: bytes) -> None:
        """The next bytes of a live stream (any size; see :meth:`Demux.feed`)."""
        self.demux.feed(data)

    def statuses(self) -> list[ChannelStatus]:
        """Every channel's verdict now (the same rule as at the end of a file)."""
        return [self.verdict(svc) for svc in self.demux.services()]

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
        es: dict[int, _EsState] = {}
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
                es[pid] = _EsState(pid=pid, service_id=sid, ecm_pid=ecm_pid,
                                   tuned=sid == tuned_sid)
            if sid == tuned_sid and ecm_pid is not None:
                ecm_pids.add(ecm_pid)
        self.es = es
        self.tuned_ecm_pids = frozenset(ecm_pids)
        if self.out is not None and tuned_sid is not None:
            self._make_psi(demux.service(tuned_sid))
        # the fast path: the tuned service's streams (watch) or every service's (scan)
        demux.bulk_pids = frozenset(pid for pid, e in es.items()
                                    if e.tuned or self.out is None)

    def on_ecm(self, pid: int, section: bytes, packet_index: int) -> None:
        st = self.ecm.get(pid)
        if st is None:
            st = self.ecm[pid] = _EcmState(pid=pid)
        st.sections += 1
        if section == st.last_section:
            return  # the usual repetition of the current ECM
        st.last_section = section
        if self.out is not None and pid not in self.tuned_ecm_pids:
            return  # a box only asks the card for the channel it shows
        if self.out is not None and self.t_first_ecm is None:
            self.t_first_ecm = time.perf_counter()
        try:
            parse_ecm(section)
        except FormatError as exc:
            st.garbage += 1
            self.counters.ecm_garbage += 1
            st.problem = f"unreadable ECM: {exc}"
            self.demux.stats.note(packet_index, pid, "bad_ecm", str(exc))
            return
        self._ask_card(st, section)

    def _ask_card(self, st: _EcmState, section: bytes) -> None:
        self._ask_card_once(st, section)
        if self.on_ecm_answer is not None:
            self.on_ecm_answer()

    def _ask_card_once(self, st: _EcmState, section: bytes) -> None:
        self.counters.ecm_sent += 1
        st.sent += 1
        answer = self.slot.ecm(section)
        # VERIFY PIN: a wrong PIN is tried once per run (it costs the card a try); a right
        # one again whenever the card asks (e.g. it was reset in between).
        if (answer.kind is EcmKind.DENIED and answer.reason is Reason.MATURITY_LOCKED
                and self.pin is not None
                and (self.pin_answer is None or self.pin_answer.kind is PinKind.OK)):
            self.pin_answer = self.slot.verify_pin(self.pin)
            if self.pin_answer.kind is PinKind.OK:
                answer = self.slot.ecm(section)
        if answer.kind is EcmKind.REJECTED:
            st.rejected += 1
            self.counters.ecm_rejected += 1
            st.problem = answer.detail
            return
        if answer.kind is EcmKind.CWS:
            self.counters.ecm_cws += 1
            try:
                even, odd = self.box.chipset.unwrap_cws(answer.wrapped)
            except PairingError as exc:
                self.counters.cw_unwrap_failed += 1
                self._lock(st, Reason.PAIRING_MISMATCH, self.box.pairing_note or str(exc))
                return
            mode = self._mode_of(st.pid)
            if not supported(mode):
                self._lock(st, Reason.NO_ECM,
                           f"{scrambling_name(mode)} scrambling: not supported by this box")
                return
            self._flush()  # packets gathered so far belong to the old keys
            keys = st.keys
            if keys is None or keys.mode != mode:
                keys = st.keys = KeySlot(mode)
            try:
                keys.install(even, odd)
            except CasError as exc:
                self._lock(st, Reason.CARD_ERROR, str(exc))
                return
            st.reason, st.detail, st.refused_sw = Reason.OPEN, "", None
            self._note_ecm(st, Reason.OPEN)
            return
        if answer.kind is EcmKind.DENIED:
            self.counters.ecm_denied += 1
        else:
            self.counters.card_errors += 1
        reason = answer.reason or Reason.CARD_ERROR
        detail = answer.detail
        if reason is Reason.MATURITY_LOCKED and self.pin_answer is not None:
            if self.pin_answer.kind is PinKind.BLOCKED:
                reason = Reason.PIN_BLOCKED
            detail = self.pin_answer.text()
        elif reason is Reason.PAIRING_MISMATCH and self.box.pairing_note:
            detail = self.box.pairing_note
        st.refused_sw = answer.sw
        self._lock(st, reason, detail)

    def _lock(self, st: _EcmState, reason: Reason, detail: str) -> None:
        if st.keys is not None and st.keys.cws_installed:
            self._flush()
            st.keys.forget()
        st.reason, st.detail = reason, detail
        self._note_ecm(st, reason)

    def _note_ecm(self, st: _EcmState, reason: Reason) -> None:
        sids = self.demux.services_for_ecm_pid(st.pid)
        channel = self.demux.service(sids[0]).channel if sids else st.pid
        self.last_ecm = LastEcm(at_s=int(self.box.clock()), channel=channel,
                                reason=reason.value)

    def _mode_of(self, ecm_pid: int) -> int:
        sids = self.demux.services_for_ecm_pid(ecm_pid)
        return self.demux.service(sids[0]).scrambling_mode if sids else 0x02

    def on_emm(self, pid: int, section: bytes, packet_index: int) -> None:
        flt = self.filter
        if flt is None or not flt.accept(section):
            return
        kind = flt.address_type(section) or "?"
        answer = self.slot.emm(section)
        results = self.counters.emm_results
        results[answer.result] = results.get(answer.result, 0) + 1
        self.last_emm = LastEmm(at_s=int(self.box.clock()), address_type=kind, sw=answer.sw,
                                result=answer.result)
        if self.on_emm_answer is not None:
            self.on_emm_answer(kind, section, answer.sw, answer.result)
        if answer.result != "applied":
            return
        # The card's rights may have changed: ask again for every channel's current ECM,
        # and pick up a new pairing if this was a PAIR.
        if kind == "unique" or answer.pairing_changed:
            self._refresh_pairing()
        for st in self.ecm.values():
            st.last_section = b""

    def _refresh_pairing(self) -> None:
        box = self.box
        before = box.chipset.chip_blob
        box.slot.read_info()
        box._pair_from_card()
        if box.chipset.chip_blob != before:
            for st in self.ecm.values():
                if st.reason is Reason.PAIRING_MISMATCH:
                    st.reason = None

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
        keys = self._keys_for(es)
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

    def _keys_for(self, es: _EsState) -> KeySlot | None:
        st = self.ecm.get(es.ecm_pid) if es.ecm_pid is not None else None
        keys = st.keys if st is not None else None
        return keys if keys is not None and keys.cws_installed else None

    def _scan_check(self, es: _EsState, keys: KeySlot, packet: bytes) -> None:
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
        per_pid: list[tuple[_EsState, int]] = []
        for pid, (hi, lo) in self._bulk_tables().items():
            mask = int.from_bytes(b1.translate(hi), "little") & int.from_bytes(
                b2.translate(lo), "little")
            if not mask:
                continue
            es = self.es[pid]
            scrambled = (scr & (mask << 1)).bit_count()
            if scrambled and self._keys_for(es) is None:
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
        if self.out is not None:
            check_es = [(i, next(es for es, m in per_pid if (m >> (8 * i)) & 1)) for i in checks]
            self._emit_block(block, check_es)
            return
        for i in checks:
            es = next(es for es, m in per_pid if (m >> (8 * i)) & 1)
            keys = self._keys_for(es)
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
    def _record_check(es: _EsState, ok: bool | None) -> None:
        if ok is None:
            return
        es.last_check = ok
        if ok:
            es.checks_ok += 1
        else:
            es.checks_bad += 1

    # --- watch output --------------------------------------------------------------------------
    def _make_psi(self, svc: ServiceInfo) -> None:
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

    def _emit(self, packet: bytes, check: _EsState | None = None) -> None:
        self._psi_due()
        if check is not None:
            self.pending_checks.append((len(self.pending), check))
        self.pending += packet
        self.since_psi += 1
        if len(self.pending) >= self.batch * 188:
            self._flush()

    def _emit_block(self, block: bytes, checks: list[tuple[int, _EsState]]) -> None:
        self._psi_due()
        base = len(self.pending)
        self.pending_checks.extend((base + i * 188, es) for i, es in checks)
        self.pending += block
        self.since_psi += len(block) // 188
        if len(self.pending) >= self.batch * 188:
            self._flush()

    def _flush(self) -> None:
        if not self.pending or self.out is None:
            return
        buf = self.pending
        self.pending = bytearray()
        checks, self.pending_checks = self.pending_checks, []
        for st in self.ecm.values():
            if st.keys is not None and st.keys.cws_installed:
                pids = [e.pid for e in self.es.values() if e.tuned and e.ecm_pid == st.pid]
                if pids:
                    st.keys.descramble(buf, pids if len(self.tuned_ecm_pids) > 1 else None)
        for offset, es in checks:
            self._record_check(es, pes_start_ok(memoryview(buf)[offset:offset + 188]))
        self.out.write(bytes(buf))
        self.packets_out += len(buf) // 188
        if self.t_first_clear is None:
            self.t_first_clear = time.perf_counter()
            self.batch = WATCH_BATCH

    # --- verdicts --------------------------------------------------------------------------------
    def verdict(self, svc: ServiceInfo) -> ChannelStatus:
        """The channel's state at the end of the stream (first failing check wins)."""
        name = svc.name or f"service {svc.service_id}"
        mode_name = scrambling_name(svc.scrambling_mode)

        def status(reason: Reason, detail: str, *, scrambled: bool = True,
                   ecm_pid: int | None = None) -> ChannelStatus:
            if ecm_pid is None and scrambled and svc.ecm_pids:
                ecm_pid = svc.ecm_pids[0]
            return ChannelStatus(channel=svc.channel, service_id=svc.service_id, name=name,
                                 reason=reason, scrambled=scrambled,
                                 scrambling=mode_name if scrambled else None,
                                 ecm_pid=ecm_pid if scrambled else None, detail=detail)

        if not svc.in_pat:
            return status(Reason.UNKNOWN_CHANNEL, "listed in the SDT but not in the PAT",
                          scrambled=False)
        if not svc.has_pmt:
            return status(Reason.UNKNOWN_CHANNEL, "no valid PMT received", scrambled=False)
        states = [self.es[s.pid] for s in svc.streams if s.pid in self.es]
        seen = any(e.clear or e.scrambled for e in states)
        scrambled_es = [e for e in states if e.scrambled]
        if not scrambled_es and (seen or not svc.ca_signalled):
            return status(Reason.OPEN, "clear (free to air)" if seen else "clear; no packets seen",
                          scrambled=False)
        if not svc.ecm_pids:
            others = ", ".join(f"0x{s:04X}" for s in svc.other_ca_systems)
            return status(Reason.NO_ECM,
                          f"no CA_descriptor for CA system 0x{self.box.ca_system_id:04X}"
                          + (f" (only for {others})" if others else ""))
        if not self.slot.present:
            return status(Reason.NO_CARD, "no card in the slot")
        if self.slot.error is not None:
            return status(Reason.CARD_ERROR, self.slot.error)
        pids = sorted({e.ecm_pid for e in scrambled_es if e.ecm_pid is not None}
                      or set(svc.ecm_pids))
        for pid in pids:
            st = self.ecm.get(pid)
            if st is None or st.reason is None:
                if st is None or not st.sections:
                    detail = f"no ECM received on PID {pid}"
                else:
                    detail = st.problem or f"no usable ECM on PID {pid}"
                return status(Reason.NO_ECM, detail, ecm_pid=pid)
            if st.reason is not Reason.OPEN:
                return status(st.reason, st.detail, ecm_pid=pid)
        bad = [e for e in scrambled_es if e.last_check is False]
        if bad:
            return status(Reason.NO_ECM, f"control words do not descramble PID {bad[0].pid} "
                          "(no PES start code after descrambling)")
        checked = sum(e.checks_ok for e in scrambled_es)
        return status(Reason.OPEN, f"descrambled ({mode_name}), {checked} PES starts checked"
                      if checked else f"control words received ({mode_name}); "
                      "no PES start to check")

    def finish(self) -> LockReport:
        self._flush()
        box = self.box
        channels = tuple(self.verdict(svc) for svc in self.demux.services())
        counts = self.filter.counts.to_json() if self.filter is not None else {}
        emm = {**counts, **{f"card_{k}": v for k, v in self.counters.emm_results.items()}}
        c = self.counters
        delta = {**self.demux.stats.counters(), **{f"emm_{k}": v for k, v in counts.items()},
                 "ecm_sent": c.ecm_sent, "ecm_cws": c.ecm_cws, "ecm_denied": c.ecm_denied,
                 "ecm_rejected": c.ecm_rejected, "ecm_garbage": c.ecm_garbage,
                 "cw_unwrap_failed": c.cw_unwrap_failed, "card_errors": c.card_errors,
                 "watch_packets_out": self.packets_out}
        nvram = box.nvram.with_counters(delta)
        nvram = replace(
            nvram,
            last_emm=self.last_emm or nvram.last_emm,
            last_ecm=self.last_ecm or nvram.last_ecm,
            last_channel=(self.tuned_channel if self.tuned_channel is not None
                          else nvram.last_channel))
        box.nvram = nvram
        box.save()
        if self.pin_answer is not None:
            pin_text: str | None = self.pin_answer.text()
        elif self.pin is not None:
            pin_text = "not needed"
        else:
            pin_text = None
        stream = self.demux.stats.to_json()
        stream["ecm"] = {f"{pid}": {"sections": st.sections, "sent": st.sent,
                                    "garbage": st.garbage, "rejected": st.rejected}
                         for pid, st in sorted(self.ecm.items())}
        return LockReport(chip_id=box.chip.chip_id, card=box.card_summary(), channels=channels,
                          emm=emm, stream=stream, pin=pin_text)
