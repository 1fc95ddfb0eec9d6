"""The visit's edge: every fact read from the card, the box's files, the stream and the
head-end's store, without changing anything the subscriber owns; then :func:`run_visit` hands
them to the pure rules (:mod:`.rules`).

1. **stream** — :mod:`cas.diag.probe` (services, ECM/EMM timing, CW changes, alarms);
2. **card** — ``cas diag card``'s report (:mod:`cas.card.diag`), read before the scan;
3. **box** — :mod:`cas.diag.boxinfo` (Chip ID record, NVRAM);
4. **the box's own verdict** — the STB stub (:class:`firmware_stub.box.Box`) booted with that
   card on a *copy* of its NVRAM, scanning the stream: OPEN/LOCKED + reason per channel.
   Without a Chip ID record and vendor key, the card alone answers each channel's last ECM
   ("card-only": pairing cannot be checked).  A card image is loaded without write-back;
   a card in a PC/SC reader does take the stream's EMMs, as it would in the box;
5. **head-end** (``--db``) — :mod:`cas.diag.headend`: ``cas why`` per channel, account,
   balance, subscriptions, pairing, EMM sequence numbers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cas import DEFAULT_CA_SYSTEM_ID
from cas.card.diag import CardReport, read_report
from cas.card.sw import SW_REASON
from cas.crypto import Key
from cas.diag.alarms import Thresholds
from cas.diag.boxinfo import read_box
from cas.diag.headend import HeadendFacts
from cas.diag.probe import ProbeReport, probe_file
from cas.diag.visit.facts import VisitFacts
from cas.diag.visit.rules import diagnose
from cas.diag.visit.verdict import VisitMode, VisitReport
from cas.errors import CardError, CasError, NoCardError, StatusWordError, UsageError
from cas.i18n import Msg
from cas.reasons import Reason
from firmware_stub.report import ChannelStatus, LockReport


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitInput:
    """What the engineer brings to the visit (``cas diag visit``'s options)."""

    stream: Path
    reader: str | None = None
    card_image: Path | None = None
    rom_key: Key | None = None
    chip_record: Path | None = None
    chip_id: int | None = None
    nvram: Path | None = None
    vendor_key: Key | None = None
    at: datetime | None = None
    pin: str | None = None
    ca_system_id: int = DEFAULT_CA_SYSTEM_ID
    thresholds: Thresholds | None = None
    nominal_bitrate_bps: int | None = None
    notes: tuple[str, ...] = field(default=())


def _card_only(probe: ProbeReport, client: Any) -> list[ChannelStatus]:
    """Without a box: each scrambled service's last ECM straight to the card."""
    out = []
    by_pid = {e.pid: e for e in probe.ecms}
    for svc in probe.services:
        if not svc.in_pat or not svc.has_pmt:
            continue
        name = svc.name or f"service {svc.service_id}"
        if not svc.scrambled_packets:
            out.append(ChannelStatus(channel=svc.service_id, service_id=svc.service_id,
                                     name=name, reason=Reason.OPEN, scrambled=False,
                                     detail="clear (free to air)"))
            continue
        ecms = [by_pid[p] for p in svc.ecm_pids if p in by_pid and by_pid[p].last_section]
        ours = [e for e in ecms if e.ca_system_id == probe.ca_system_id]
        if not ours:
            out.append(ChannelStatus(channel=svc.service_id, service_id=svc.service_id,
                                     name=name, reason=Reason.NO_ECM, scrambled=True,
                                     detail="no ECM of our CA system in the stream"))
            continue
        ecm = ours[0]
        reason, detail = Reason.OPEN, "the card returned control words (pairing not checked)"
        try:
            client.process_ecm(ecm.last_section)
        except StatusWordError as exc:
            reason = SW_REASON.get(exc.sw, Reason.NO_ECM)
            detail = f"card answered {exc.sw:04X}"
        except CardError as exc:
            reason, detail = Reason.CARD_ERROR, str(exc)
        out.append(ChannelStatus(channel=svc.service_id, service_id=svc.service_id, name=name,
                                 reason=reason, scrambled=True, ecm_pid=ecm.pid, detail=detail))
    return out


def _open_card(inp: VisitInput, stack: ExitStack) -> tuple[Any, str | None, str | None]:
    """(client or None, reader name, error text)."""
    from cas.card.applet import Applet
    from cas.card.client import CardClient
    from cas.card.eeprom import Eeprom, load_image
    from cas.card.transport import InProcessTransport
    from firmware_stub.cardslot import insert_card

    if inp.reader is not None and inp.card_image is not None:
        raise UsageError("use --reader or --card-image, not both").with_id("reader_or_image")
    if inp.card_image is not None:
        if inp.rom_key is None:
            raise UsageError("--card-image needs --rom-key-file").with_id("image_needs_rom_key")
        # No path: the image on disk is not changed by what the diagnosis sends the card.
        applet = Applet(Eeprom(load_image(inp.card_image)), rom_key=inp.rom_key)
        return CardClient(InProcessTransport(applet)), f"image:{inp.card_image.name}", None
    if inp.reader is not None:
        inserted = insert_card(reader=inp.reader, stack=stack)
        return inserted.client, inserted.reader, inserted.error or inserted.note
    return None, None, None


@dataclass(frozen=True, slots=True, kw_only=True)
class Gathered:
    """The facts, and how they were read (what the report says besides the verdicts)."""

    facts: VisitFacts
    at: datetime
    mode: VisitMode
    card_error: str | None
    card_at_arrival: CardReport | None  # as found, before the scan
    notes: tuple[str | Msg, ...]


def gather(inp: VisitInput, *, store: Any = None, card: Any = None,
           card_name: str | None = None,
           progress: Callable[[int], None] | None = None) -> Gathered:
    """Read every fact, in this order: the stream, the card, the visit's time, the box's files,
    the box's own scan (or the card alone), the card again, the head-end's records."""
    notes: list[str | Msg] = list(inp.notes)
    probe = probe_file(inp.stream, ca_system_id=inp.ca_system_id,
                       nominal_bitrate_bps=inp.nominal_bitrate_bps, thresholds=inp.thresholds,
                       progress=progress)
    with ExitStack() as stack:
        client, reader, card_error = (card, card_name, None) if card is not None else \
            _open_card(inp, stack)
        client, card_report, card_error = _read_card(client, reader, card_error)
        at = _visit_time(inp, store)
        at_s = int(at.timestamp())
        if card_report is not None:
            card_report = _with_now(card_report, at_s)
        box_report = None
        chip_id = inp.chip_id
        if inp.chip_record is not None:
            box_report = read_box(inp.chip_record, chip_id=inp.chip_id, nvram=inp.nvram,
                                  vendor_key=inp.vendor_key)
            chip_id = box_report.chip_id
        lock: LockReport | None = None
        if inp.chip_record is not None and inp.vendor_key is not None:
            mode = VisitMode.BOX
            lock = _box_scan(inp, stack, client=client, reader=reader, card_error=card_error,
                             at_s=at_s)
            statuses: list[ChannelStatus] = list(lock.channels)
        elif client is not None and card_error is None:
            mode = VisitMode.CARD_ONLY
            notes.append(Msg("visit.notes.card_only"))
            statuses = _card_only(probe, client)
        else:
            mode = VisitMode.STREAM_ONLY
            statuses = _no_card(probe, client, card_error)
        card_at_arrival = card_report
        if client is not None and card_report is not None and mode is VisitMode.BOX:
            # Diagnose on what the card holds after the stream's EMMs: that is what answered
            # the ECMs.  (A card that spent the day in the box had them already.)
            try:
                card_report = _with_now(read_report(client, reader=reader, now_s=0), at_s)
            except CasError as exc:
                notes.append(Msg("visit.notes.card_reread", {"error": str(exc)}))
        card_seq_after = card_report.info.emm_seq_unique if card_report is not None else None
        headend: HeadendFacts | None = None
        numbers: dict[int, int] = {}
        if store is not None:
            headend, numbers = _store_facts(store, statuses, card_report, at, chip_id)
            if card_report is None:
                notes.append(Msg("visit.notes.lineup_only"))
    facts = VisitFacts(at_s=at_s, probe=probe, statuses=tuple(statuses), card=card_report,
                       card_seq=card_seq_after, box=box_report, lock=lock, headend=headend,
                       chip_id=chip_id, numbers=numbers)
    return Gathered(facts=facts, at=at, mode=mode, card_error=card_error,
                    card_at_arrival=card_at_arrival, notes=tuple(notes))


def run_visit(inp: VisitInput, *, store: Any = None, card: Any = None,
              card_name: str | None = None,
              progress: Callable[[int], None] | None = None) -> VisitReport:
    """Gather every fact (:func:`gather`), then decide (:func:`.rules.diagnose`).
    ``store``: a :class:`cas.store.engine.Store` (the head-end's records); ``card``: a ready
    :class:`cas.card.client.CardClient` (tests)."""
    g = gather(inp, store=store, card=card, card_name=card_name, progress=progress)
    f = g.facts
    verdicts, roots = diagnose(f)
    return VisitReport(at=g.at, mode=g.mode, probe=f.probe, card=f.card,
                       card_error=g.card_error, card_at_arrival=g.card_at_arrival,
                       card_seq_after=f.card_seq, box=f.box, lock=f.lock, headend=f.headend,
                       channels=verdicts, roots=roots, notes=g.notes)


def _read_card(client: Any, reader: str | None, card_error: str | None,
               ) -> tuple[Any, CardReport | None, str | None]:
    """(client, its report, error text): a card that turns out absent is dropped."""
    card_report: CardReport | None = None
    if client is not None and card_error is None:
        try:
            card_report = read_report(client, reader=reader, now_s=0)
        except NoCardError as exc:
            client, card_error = None, str(exc)
        except CasError as exc:
            card_error = f"card unreadable: {exc}"
    return client, card_report, card_error


def _visit_time(inp: VisitInput, store: Any) -> datetime:
    """``--at``, else the head-end's clock, else now."""
    at = inp.at
    if at is None and store is not None:
        from cas.billing.clock import clock_now

        with store.reader() as s:
            at = clock_now(s)
    if at is None:
        at = datetime.now(UTC).replace(microsecond=0)
    return at


def _box_scan(inp: VisitInput, stack: ExitStack, *, client: Any, reader: str | None,
              card_error: str | None, at_s: int) -> LockReport:
    """The STB stub booted on a copy of the box's NVRAM, scanning the stream."""
    from firmware_stub.box import Box
    from firmware_stub.chipset import load_chip_record

    assert inp.chip_record is not None and inp.vendor_key is not None
    record = load_chip_record(inp.chip_record, inp.chip_id)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cas-visit-")))
    nv_copy = tmp / "nvram.json"
    if inp.nvram is not None and inp.nvram.is_file():
        shutil.copyfile(inp.nvram, nv_copy)  # the box's own NVRAM stays untouched
    box = Box.boot(record, nv_copy, vendor_key=inp.vendor_key,
                   card=client if card_error is None else None, reader=reader,
                   card_error=card_error if client is not None else None,
                   ca_system_id=inp.ca_system_id, clock=lambda: float(at_s))
    return box.scan(inp.stream, pin=inp.pin)


def _no_card(probe: ProbeReport, client: Any, card_error: str | None) -> list[ChannelStatus]:
    """Without a card that answers: every scrambled service locked for the card's fault."""
    reason = Reason.CARD_ERROR if card_error and client is not None else Reason.NO_CARD
    return [ChannelStatus(channel=s.service_id, service_id=s.service_id,
                          name=s.name or f"service {s.service_id}",
                          reason=reason if s.scrambled_packets else Reason.OPEN,
                          scrambled=bool(s.scrambled_packets),
                          detail=card_error or "no card given")
            for s in probe.services if s.in_pat and s.has_pmt]


def _store_facts(store: Any, statuses: Sequence[ChannelStatus], card: CardReport | None,
                 at: datetime, chip_id: int | None) -> tuple[HeadendFacts | None, dict[int, int]]:
    """The head-end's records for this card, and its channel numbers for the services."""
    from cas.diag.headend import channel_numbers, collect

    sids = [st.service_id for st in statuses]
    headend: HeadendFacts | None = None
    with store.reader() as s:
        numbers = channel_numbers(s, sids)
        if card is not None:
            headend = collect(s, card.info.serial, at, chip_id=chip_id, service_ids=sids,
                              pin_ok=False)
    return headend, numbers


def _with_now(report: CardReport, now_s: int) -> CardReport:
    """The card report with the visit's time (expired / valid flags)."""
    return replace(report, now_s=now_s)
