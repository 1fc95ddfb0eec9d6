"""The set-top box: boot, scan a stream for its lock report, watch a channel (DESIGN §5).

``Box.boot`` wakes the chipset (CSK out of the Chip ID record with the vendor key), reads
the NVRAM, reads the card (GET DATA 02) and its pairing (GET DATA 05) and hands the chip
blob to the chipset.  Then a stream goes through one pass (:class:`firmware_stub.run.Run`):
the demux finds the lineup, the card dialog (:mod:`firmware_stub.dialog`) sends ECMs and
EMMs to the card and installs the control words, the packets are descrambled (watch:
written out clear by :mod:`firmware_stub.output`), and at the end every channel gets its
verdict (:func:`firmware_stub.verdict.verdict`, a pure function of what the pass saw,
:mod:`firmware_stub.observations`) and the NVRAM its new counters.  Nothing in the stream
makes the box raise: defects are counted and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from cas import DEFAULT_CA_SYSTEM_ID
from cas.crypto import Key
from cas.formats.chipid import ChipIdRecord
from cas.formats.emm import Fingerprint
from firmware_stub.cardslot import CardClientLike, CardSlot
from firmware_stub.chipset import Chipset
from firmware_stub.demux import Demux, ServiceInfo
from firmware_stub.descrambler import KeySlot
from firmware_stub.errors import PairingError, TuneError
from firmware_stub.faults import NO_FAULTS, Fault
from firmware_stub.nvram import Nvram, PairingState, load_nvram, save_nvram
from firmware_stub.output import PSI_REPEAT_PACKETS, WATCH_BATCH
from firmware_stub.report import CardSummary, ChannelStatus, LockReport
from firmware_stub.run import SCAN_CHECKS_PER_KEY, Run, Source

# The names this module had before the pass moved to firmware_stub.run stay importable here.
__all__ = [
    "PSI_REPEAT_PACKETS",
    "SCAN_CHECKS_PER_KEY",
    "WATCH_BATCH",
    "Box",
    "CardSummary",
    "ChannelStatus",
    "Demux",
    "KeySlot",
    "LockReport",
    "Run",
    "ServiceInfo",
    "Source",
    "WatchResult",
]


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
    #: the head-end's fingerprint order the card held at the end (firmware_stub.osd)
    fingerprint: Fingerprint | None = None
    #: card time (ECM time) of the clip's first ECM: where the clip starts in card time
    clip_start_s: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "status": self.status.to_json() if self.status else None,
            "packets_out": self.packets_out,
            "packets_dropped": self.packets_dropped,
            "first_ecm_to_clear_ms": (None if self.first_ecm_to_clear_s is None
                                      else round(self.first_ecm_to_clear_s * 1000, 3)),
            **({"osd": dict(self.report.osd)} if self.report.osd is not None else {}),
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
        #: injected faults (firmware_stub/faults.py); none in a correct box
        self.faults: frozenset[Fault] = NO_FAULTS

    def __repr__(self) -> str:
        return f"Box(chip={self.chip.chip_id:08X}, card={self.card_summary().serial})"

    # --- boot --------------------------------------------------------------------------------
    @classmethod
    def boot(cls, chip_record: ChipIdRecord, nvram_path: Path | None, *, vendor_key: Key,
             card: CardClientLike | None = None, reader: str | None = None,
             card_error: str | None = None, ca_system_id: int = DEFAULT_CA_SYSTEM_ID,
             clock: Callable[[], float] = time.time,
             faults: frozenset[Fault] = NO_FAULTS) -> Box:
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
        box.faults = faults
        box.pair_from_card()
        box.save()
        return box

    def pair_from_card(self) -> None:
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
        run = Run(self, tuned_channel=None, out=None, pin=pin, require_ts=require_ts)
        run.consume(source)
        return run.finish()

    def start(self, *, channel: int | None = None, out: BinaryIO | None = None,
              pin: str | None = None) -> Run:
        """A pass fed piece by piece (a live input, :mod:`firmware_stub.live`): scan every
        channel (``channel`` None) or watch one into ``out``; ``finish()`` at the end."""
        if (channel is None) != (out is None):
            raise TypeError("watch needs both a channel and an output")
        return Run(self, tuned_channel=channel, out=out, pin=pin)

    def watch(self, source: Source, channel: int, out: BinaryIO, *,
              pin: str | None = None, require_ts: bool = False) -> WatchResult:
        """Descramble ``channel`` and write it, clear, to ``out`` (an SPTS: PAT, PMT, ES).
        ``require_ts`` as in :meth:`scan`."""
        run = Run(self, tuned_channel=channel, out=out, pin=pin, require_ts=require_ts)
        run.consume(source)
        report = run.finish()
        try:
            status: ChannelStatus | None = report.channel(channel)
        except KeyError:
            status = None
        if status is None and not run.packets_out:
            raise TuneError(f"channel {channel} is not in this stream's lineup").with_id(
                "box.channel_not_stream_lineup", channel=channel)
        elapsed = (run.t_first_clear - run.t_first_ecm
                   if run.t_first_clear is not None and run.t_first_ecm is not None else None)
        return WatchResult(channel=channel, status=status, packets_out=run.packets_out,
                           packets_dropped=run.packets_dropped, first_ecm_to_clear_s=elapsed,
                           report=report, fingerprint=run.osd.fingerprint(),
                           clip_start_s=run.dialog.first_ecm_time_s)
