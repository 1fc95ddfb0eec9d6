"""The end-to-end demo: a head-end, its subscribers, their cards and boxes, one stream.

On the embedded defaults (a SQLite file in the data dir, in-process cards whose EEPROM
images live in the data dir) it:

1. writes an operator key file and opens the store with the demo operator profile (TV+ rules
   plus NTV Plus's holiday suspension and promised payment) and the demo lineup;
2. imports a chipset vendor's Chip ID batch (the boxes) and personalises one card per
   subscriber (the card factory), registering both with the head-end;
3. creates a subscriber for every situation the seeds describe (paid base only, paid add-on,
   unpaid → financial block, holiday suspension, expired, outside the country, kids profile
   with and without the PIN, a card moved to another box, no card, nothing subscribed),
   then runs the simulation clock 35 days so that renewals, expiries and blocks happen;
4. generates the EMMs (full refresh), makes a clear test stream with ffmpeg, and scrambles it
   (DVB-CSA2, ECMs per crypto-period, the EMMs on the EMM PID);
5. boots one box per subscriber on that stream and compares each channel's verdict with the
   head-end's own explanation (``cas why``) and with what the situation should give.

The demo passes only if, for every box and channel, the box's reason equals the head-end's
and both equal the expected one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from cas.billing import accounts, service
from cas.billing.catalog import all_access_criteria
from cas.billing.clock import advance_clock, clock_now
from cas.billing.setup import use_profile
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom
from cas.card.personalise import (
    DEFAULT_PIN,
    CardSlot,
    image_path,
    personalise_card,
    write_images,
)
from cas.card.transport import InProcessTransport
from cas.crypto import Key, OperatorKeys, wrap_key
from cas.errors import UsageError
from cas.formats.chipid import ChipBatch, ChipIdRecord, build_chip_batch, parse_chip_batch
from cas.formats.sections import iter_sections
from cas.headend.ecmgen import EcmSettings, channel_ecms_for
from cas.headend.emmrun import emm_run
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.headend.why import explain
from cas.reasons import Reason
from cas.store.engine import Store, open_store
from cas.store.repo import register_card, to_s
from firmware_stub.box import Box
from firmware_stub.report import LockReport

#: The simulation starts here (UTC) and the clock then runs ADVANCE_DAYS forward.
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ADVANCE_DAYS = 35
VENDOR_ID = 0x0001
FIRST_SERIAL = 2_256_884_700
FIRST_CHIP = 0x5A000001
HOME_REGION = 398
ABROAD_REGION = 860
MARKER = ".cas-sim-demo"

R = Reason
OPEN = R.OPEN


@dataclass(frozen=True, slots=True, kw_only=True)
class Situation:
    """One subscriber's situation and what every channel should show in their box."""

    key: str
    title: str
    seed: str
    expected: Mapping[int, Reason]  # channel number -> reason
    card: bool = True
    pin: str | None = None
    #: Put this subscriber's card in another subscriber's box (the "moved card").
    card_in_box_of: str | None = None


def _all(reason: Reason) -> dict[int, Reason]:
    return dict.fromkeys((1, 2, 21, 24, 27), reason)


NIP = R.CHANNEL_NOT_IN_PACKAGE
SITUATIONS: tuple[Situation, ...] = (
    Situation(key="base", title="paid base package only", seed="000 TV+",
              expected={1: OPEN, 2: OPEN, 21: NIP, 24: NIP, 27: NIP}),
    Situation(key="addon", title="base + paid add-on 'Viasat Sport HD'", seed="000 TV+",
              expected={1: OPEN, 2: OPEN, 21: NIP, 24: OPEN, 27: OPEN}),
    Situation(key="unpaid", title="renewal unpaid -> financial block", seed="000 TV+ / 002 ATV+",
              expected=_all(R.FINANCIAL_BLOCK)),
    Situation(key="holiday", title="suspended for a holiday", seed="001 NTV Plus",
              expected=_all(R.CARD_SUSPENDED)),
    Situation(key="expired", title="renewal turned off, period over", seed="000 TV+",
              expected={1: R.ENTITLEMENT_EXPIRED, 2: R.ENTITLEMENT_EXPIRED,
                        21: R.NOT_SUBSCRIBED, 24: R.NOT_SUBSCRIBED, 27: R.NOT_SUBSCRIBED}),
    Situation(key="abroad", title="card outside the country", seed="000 TV+",
              expected=_all(R.REGION_BLACKOUT)),
    Situation(key="kids", title="kids profile, adult channel", seed="000 TV+",
              expected={1: OPEN, 2: OPEN, 21: NIP, 24: NIP, 27: R.MATURITY_LOCKED}),
    Situation(key="kids-pin", title="kids profile, parent enters the PIN", seed="000 TV+",
              expected={1: OPEN, 2: OPEN, 21: NIP, 24: NIP, 27: OPEN}, pin=DEFAULT_PIN),
    Situation(key="moved", title="card moved to another box", seed="003 MTS",
              expected={1: R.PAIRING_MISMATCH, 2: R.PAIRING_MISMATCH, 21: NIP, 24: NIP,
                        27: NIP}, card_in_box_of="spare"),
    Situation(key="new", title="registered, no package connected", seed="000 TV+",
              expected=_all(R.NOT_SUBSCRIBED)),
    Situation(key="nocard", title="no card in the box", seed="000 TV+",
              expected=_all(R.NO_CARD), card=False),
)


@dataclass(slots=True)
class Subscriber:
    situation: Situation
    account_number: str
    serial: int | None
    chip: ChipIdRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCheck:
    number: int
    name: str
    box: Reason
    box_detail: str
    #: None when there is no card to ask the head-end about (the "no card" box).
    headend: Reason | None
    expected: Reason
    headend_cause: str

    @property
    def ok(self) -> bool:
        return self.box is self.expected and self.headend in (None, self.expected)


@dataclass(slots=True)
class BoxResult:
    situation: Situation
    account_number: str
    serial: int | None
    chip_id: int
    channels: list[ChannelCheck] = field(default_factory=list)
    report: LockReport | None = None

    @property
    def ok(self) -> bool:
        return bool(self.channels) and all(c.ok for c in self.channels)


@dataclass(slots=True)
class DemoResult:
    data_dir: Path
    at: datetime
    boxes: list[BoxResult]
    stream: Path
    emm_count: int
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.boxes) and all(b.ok for b in self.boxes)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": self.at.isoformat(),
            "data_dir": str(self.data_dir),
            "stream": str(self.stream),
            "emms": self.emm_count,
            "facts": self.facts,
            "boxes": [
                {
                    "situation": b.situation.key,
                    "title": b.situation.title,
                    "seed": b.situation.seed,
                    "account": b.account_number,
                    "card": None if b.serial is None else f"{b.serial:010d}",
                    "box": f"{b.chip_id:08X}",
                    "ok": b.ok,
                    "channels": [
                        {"channel": c.number, "name": c.name, "box": c.box.value,
                         "headend": c.headend.value if c.headend else None,
                         "expected": c.expected.value,
                         "ok": c.ok, "cause": c.headend_cause}
                        for c in b.channels
                    ],
                }
                for b in self.boxes
            ],
        }


# --- the data dir ---------------------------------------------------------------------------
def prepare_dir(data_dir: Path) -> None:
    """An empty demo dir: refuse to wipe a directory the demo did not make."""
    if data_dir.exists():
        if not data_dir.is_dir():
            raise UsageError(f"{data_dir} is not a directory").with_id(
                "demo.not_directory", data_dir=data_dir)
        if any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
            raise UsageError(f"{data_dir} is not empty and not a cas-sim demo directory; "
                             "give another --data-dir").with_id(
                "demo.not_empty_not_cas", data_dir=data_dir)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / MARKER).write_text("made by `cas demo`; deleted and rebuilt by every run\n")


def _resource(name: str) -> Path:
    return Path(str(resources.files("cas.demo") / name))


class _Rng:
    """Deterministic randomness for the demo's keys and CWs (reproducible runs)."""

    def __init__(self, seed: int) -> None:
        import random

        self._r = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._r.randbytes(n)


# --- building the world ---------------------------------------------------------------------
def _chips(keys: OperatorKeys, rng: Callable[[int], bytes], count: int) -> list[ChipIdRecord]:
    vendor_key = keys.chipset_vendor_key(VENDOR_ID)
    return [
        ChipIdRecord(chip_id=FIRST_CHIP + i, vendor="cas-sim chips", model="STB-2026",
                     wrapped_csk=wrap_key(vendor_key, Key(rng(16), label="csk")),
                     firmware_version=0x02010000, manufactured_s=to_s(T0) - 120 * 86400)
        for i in range(count)
    ]


def _money(session: Session, major: int) -> int:
    from cas.billing.txn import current_profile

    return major * current_profile(session).minor_per_major


def _setup_subscriber(session: Session, sit: Situation, serial: int | None,
                      chip: ChipIdRecord, index: int) -> str:
    acc = accounts.create_account(
        session, surname="Demo", name=sit.key.replace("-", " ").title(), at=T0,
        phone=f"+7701555{index:04d}", email=f"{sit.key}@demo.invalid",
        region=ABROAD_REGION if sit.key == "abroad" else HOME_REGION)
    number = acc.account_number
    accounts.link_box(session, chip_id=chip.chip_id, account_number=number, at=T0)
    if serial is not None:
        accounts.link_card(session, serial=serial, account_number=number, at=T0)
        accounts.pair_card(session, serial=serial, chip_id=chip.chip_id, at=T0)
        if sit.key == "abroad":
            accounts.set_card_region(session, serial=serial, region=ABROAD_REGION, at=T0)
        if sit.key in ("kids", "kids-pin"):
            accounts.set_kids_profile(session, serial=serial, on=True, at=T0)

    def pay(major: int, tag: str) -> None:
        service.pay(session, by="account", ref=number, amount_minor=_money(session, major),
                    payment_id=f"demo-{sit.key}-{tag}", at=T0)

    if sit.key in ("base", "holiday", "expired", "abroad", "moved"):
        pay(2 * 2490, "1")
        service.subscribe(session, account_number=number, package="start", at=T0)
    elif sit.key == "addon":
        pay(2 * (4990 + 1990), "1")
        service.subscribe(session, account_number=number, package="maximum", at=T0)
        service.subscribe(session, account_number=number, package="viasat-sport", at=T0)
    elif sit.key in ("kids", "kids-pin"):
        pay(2 * 4990, "1")
        service.subscribe(session, account_number=number, package="maximum", at=T0)
    elif sit.key == "unpaid":
        pay(2490, "1")  # one period; the renewal 30 days on finds no money
        service.subscribe(session, account_number=number, package="start", at=T0)
    if sit.key == "expired":
        service.set_renewal(session, account_number=number, on=False, at=T0 + timedelta(days=1))
    return number


def build_world(store: Store, keys: OperatorKeys, data_dir: Path,
                rng: Callable[[int], bytes]) -> tuple[list[Subscriber], ChipIdRecord, datetime]:
    """Profile, lineup, boxes, cards and subscribers; then the clock runs forward."""
    cards_dir = data_dir / "cards"
    boxes_dir = data_dir / "boxes"
    boxes_dir.mkdir(parents=True, exist_ok=True)
    chips = _chips(keys, rng, len(SITUATIONS) + 1)
    batch_path = boxes_dir / "vendor-chip-ids.bin"
    batch_path.write_bytes(build_chip_batch(ChipBatch(created_s=to_s(T0) - 86400,
                                                      issuer="cas-sim chips",
                                                      records=tuple(chips))))
    spare = chips[-1]
    subscribers: list[Subscriber] = []
    with store.transaction() as session:
        use_profile(session, _resource("profile.toml"), lineup=_resource("lineup.toml"),
                    clock_start=T0)
        imported = parse_chip_batch(batch_path.read_bytes()).records
        accounts.import_boxes(session, imported, at=T0, batch=batch_path.name)
        records = []
        for i, sit in enumerate(SITUATIONS):
            serial = FIRST_SERIAL + i if sit.card else None
            if serial is not None:
                slot = register_card(session, serial, at=T0, region=HOME_REGION)
                factory_slot = CardSlot(serial=serial, shared_address=slot.shared_address,
                                        member_position=slot.member_position)
                records.append(personalise_card(keys, factory_slot, now_s=to_s(T0) - 86400,
                                                region=HOME_REGION))
            number = _setup_subscriber(session, sit, serial, chips[i], i)
            subscribers.append(Subscriber(situation=sit, account_number=number, serial=serial,
                                          chip=chips[i]))
        write_images(records, cards_dir)
    with store.transaction() as session:
        advance_clock(session, days=ADVANCE_DAYS)
        now = clock_now(session)
        for sub in subscribers:
            if sub.situation.key == "holiday":
                service.suspend(session, account_number=sub.account_number, at=now,
                                until=now + timedelta(days=14))
    return subscribers, spare, now


def make_stream(store: Store, keys: OperatorKeys, data_dir: Path, at: datetime,
                rng: Callable[[int], bytes], *, mode: str = "full",
                name: str = "scrambled.ts") -> tuple[Path, int]:
    """EMMs (``mode``: full refresh or incremental), a clear ffmpeg stream of the lineup (made
    once), scrambled with both and ECMs stamped ``at``, the catalog's channel numbers carried as
    LCNs in the SDT.  Returns the stream and EMM count."""
    streams = data_dir / "streams"
    streams.mkdir(parents=True, exist_ok=True)
    emm_path = streams / f"{Path(name).stem}.emm.sections"
    emm_run(store, keys, mode=mode, at=at, out=str(emm_path), workers=1)
    emms = list(iter_sections(emm_path.read_bytes()))
    with store.reader() as session:
        channels = all_access_criteria(session)
        rows = [(ch.service_id, ch.name, crit) for ch, crit in channels]
        numbers = {ch.service_id: ch.number for ch, _crit in channels}
    criteria = {sid: crit for sid, _name, crit in rows}
    clear = streams / "clear.ts"
    if not clear.exists():
        make_test_stream([TestService(service_id=sid, name=name) for sid, name, _ in rows],
                         clear, TestStreamOptions(duration_s=4.0, video_bitrate_kbps=150))
    settings = EcmSettings(crypto_period_ms=1000, repetition_ms=100)
    services = channel_ecms_for(keys, criteria, settings=settings, start_s=to_s(at), rng=rng)
    config = ScrambleConfig(algorithm=Algorithm.CSA2, crypto_period_ms=1000,
                            ecm_repetition_ms=100, emm_bitrate_bps=400_000, emm_repeat=True,
                            channel_numbers=numbers)
    scrambled = streams / name
    with clear.open("rb") as fin, scrambled.open("wb") as fout:
        Scrambler(config, services, payload_cipher(Algorithm.CSA2),
                  emm_sections=emms).run(fin, fout)
    return scrambled, len(emms)


def card_client(keys: OperatorKeys, image: Path) -> CardClient:
    """An in-process card running the applet on its EEPROM image."""
    applet = Applet(Eeprom.open(image), rom_key=keys.transport_key())
    return CardClient(InProcessTransport(applet))


def run_boxes(store: Store, keys: OperatorKeys, data_dir: Path, subscribers: list[Subscriber],
              spare: ChipIdRecord, stream: Path, at: datetime,
              client_for: Callable[[int], CardClient | None] | None = None,
              only: set[str] | None = None) -> list[BoxResult]:
    """Boot a box per subscriber on ``stream`` and compare each verdict with ``cas why``.

    ``client_for(serial)`` gives the card (default: in-process on its EEPROM image; tests
    pass PC/SC clients); ``only`` limits the run to some situations."""
    by_key = {s.situation.key: s for s in subscribers}
    nvram_dir = data_dir / "boxes"
    vendor_key = keys.chipset_vendor_key(VENDOR_ID)
    data = stream.read_bytes()
    results: list[BoxResult] = []
    for sub in subscribers:
        sit = sub.situation
        if only is not None and sit.key not in only:
            continue
        chip = spare if sit.card_in_box_of == "spare" else (
            by_key[sit.card_in_box_of].chip if sit.card_in_box_of else sub.chip)
        client: CardClient | None = None
        if sub.serial is not None:
            client = client_for(sub.serial) if client_for else card_client(
                keys, image_path(data_dir / "cards", sub.serial))
        box = Box.boot(chip, nvram_dir / f"{chip.chip_id:08X}-{sit.key}.nvram",
                       vendor_key=vendor_key, card=client, clock=lambda: float(to_s(at)))
        report = box.scan(data, pin=sit.pin)
        result = BoxResult(situation=sit, account_number=sub.account_number, serial=sub.serial,
                           chip_id=chip.chip_id, report=report)
        box_reasons = report.reasons()
        with store.reader() as session:
            for ch, _crit in all_access_criteria(session):
                # The stream carries the catalog's numbers as LCNs, so the box's report is
                # keyed by channel number, as cas why and the subscriber are.
                status = report.channel(ch.number) if ch.number in box_reasons else None
                box_reason = status.reason if status is not None else Reason.UNKNOWN_CHANNEL
                headend: Reason | None
                if sub.serial is None:
                    headend, cause = None, "no card in the box: nothing for cas why to explain"
                else:
                    why = explain(session, sub.serial, f"sid:{ch.service_id}", at,
                                  chip_id=chip.chip_id, pin_ok=sit.pin is not None)
                    headend, cause = why.reason, why.cause
                result.channels.append(ChannelCheck(
                    number=ch.number, name=ch.name, box=box_reason,
                    box_detail=status.detail if status is not None else "",
                    headend=headend, expected=sit.expected.get(ch.number, Reason.OPEN),
                    headend_cause=cause))
        results.append(result)
    return results


def run_demo(data_dir: Path, *, seed: int = 2026,
             progress: Callable[[str], None] | None = None) -> DemoResult:
    """Build everything in ``data_dir`` (wiped first if it is a demo dir) and run the boxes."""
    say = progress or (lambda _msg: None)
    prepare_dir(data_dir)
    rng = _Rng(seed)
    keys = OperatorKeys.generate(rng, now_s=to_s(T0))
    keys.save(data_dir / "operator-keys.toml")
    store = open_store(data_dir=data_dir)
    try:
        say("head-end: profile, lineup, boxes, cards and subscribers; clock +35 days")
        subscribers, spare, now = build_world(store, keys, data_dir, rng)
        say("head-end: EMM full refresh, ffmpeg test stream, CSA2 scrambling with ECMs")
        stream, emm_count = make_stream(store, keys, data_dir, now, rng)
        say("boxes: one per subscriber, scanning the stream")
        boxes = run_boxes(store, keys, data_dir, subscribers, spare, stream, now)
    finally:
        store.dispose()
    return DemoResult(data_dir=data_dir, at=now, boxes=boxes, stream=stream,
                      emm_count=emm_count,
                      facts={"subscribers": len(subscribers), "boxes": len(boxes),
                             "stream_bytes": stream.stat().st_size})
