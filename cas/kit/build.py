"""``cas kit build``: a scenario made into a self-contained, reproducible kit directory.

The world is built with the head-end's own pipeline, in a store that lives in a temporary
directory and is thrown away (the kit holds only what a lab needs):

1. operator keys from the scenario's seed; the profile and lineup; one Chip ID record per
   subscriber (the ``cas box manufacture`` format) and one personalised card per card holder
   (``cas.card.personalise``), both registered with the head-end;
2. the accounts, their box and card links and pairings;
3. per step: the events on the simulation clock (``cas.billing``), then the EMMs of that
   moment (a full refresh, :mod:`cas.kit.emms`) and the clear test stream scrambled with ECMs stamped at
   that moment (``cas.headend.scrambler``) -> ``streams/NN-STEP.ts``.

Every random byte comes from the seed and every file name and JSON key is sorted, so the same
scenario and seed give byte-identical kits (``tests/unit/kit/test_build.py``).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing import accounts, service
from cas.billing.cards import block_card
from cas.billing.catalog import all_access_criteria
from cas.billing.clock import advance_clock, clock_now
from cas.billing.ppv import add_event, book_event, events_by_service, get_event, top_up
from cas.billing.setup import use_profile
from cas.billing.txn import current_profile
from cas.card.personalise import CardSlot, image_path, personalise_card, write_batch, write_images
from cas.crypto import Key, OperatorKeys, wrap_key
from cas.errors import UsageError
from cas.formats.chipid import ChipBatch, ChipIdRecord, build_chip_batch
from cas.formats.emm import (
    EmmCommand,
    Fingerprint,
    FingerprintKind,
    OsdMail,
    PpvEventRight,
    PurseCredit,
)
from cas.headend.ecmgen import EcmSettings, channel_ecms_for
from cas.headend.osd import OsdTarget
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.kit.emms import KitEmms, tamper
from cas.kit.matrix import write_matrix
from cas.kit.scenario import (
    STREAM_EVENTS,
    Event,
    EventKind,
    Scenario,
    ScenarioError,
    Step,
    sharing_event_commands,
)
from cas.store.engine import Store, open_store
from cas.store.models import Card, Channel
from cas.store.repo import register_card, to_s

KIT_FORMAT = 1
MARKER = ".cas-kit"
VENDOR_ID = 0x0001
FIRST_SERIAL = 2_256_884_700
FIRST_CHIP = 0x5A000001
CRYPTO_PERIOD_MS = 1000
STREAM_DURATION_S = 3.0
FIRST_ECM_PID = 0x0A00
TS_PACKET = 188


@dataclass(frozen=True, slots=True)
class BuildResult:
    out: Path
    steps: int
    boxes: int
    files: int


class _Rng:
    """The seed's deterministic bytes (keys, CWs, card secrets)."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._r.randbytes(n)


def prepare_out(out: Path) -> None:
    """An empty kit dir: refuse to wipe a directory that is not a kit."""
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{out} is not a directory").with_id("kit.not_directory", out=out)
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise UsageError(f"{out} is not empty and not a cas-sim kit; give another -o").with_id(
                "kit.not_empty_not_cas", out=out)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by `cas kit build`; rebuilt by every build\n")


def _source(scenario: Scenario, value: str, package: str) -> str | Path:
    """A shipped name, ``demo`` (the demo's files) or a path relative to the scenario."""
    if value == "demo":
        return Path(str(resources.files("cas.demo") / f"{package}.toml"))
    local = scenario.source.parent / value
    if "/" in value or value.endswith(".toml"):
        if not local.is_file():
            raise ScenarioError(f"{scenario.source}: kit.{package}: no file {local}").with_id(
                "kit.kit_no_file", source=scenario.source, package=package, local=local)
        return local
    return value


def _lineup(scenario: Scenario) -> str | Path | None:
    if scenario.lineup is None:
        return (Path(str(resources.files("cas.demo") / "lineup.toml"))
                if scenario.profile == "demo" else None)
    if scenario.lineup.endswith(".toml") and "/" not in scenario.lineup and not (
            scenario.source.parent / scenario.lineup).is_file():
        return Path(str(resources.files("cas.billing.lineups") / scenario.lineup))
    return _source(scenario, scenario.lineup, "lineup")


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


class _World:
    """The head-end side of a scenario while it is being built."""

    def __init__(self, scenario: Scenario, store: Store, keys: OperatorKeys, out: Path,
                 rng: Callable[[int], bytes]) -> None:
        self.scenario = scenario
        self.store = store
        self.keys = keys
        self.out = out
        self.rng = rng
        self.accounts: dict[str, str] = {}
        self.phones: dict[str, str] = {}
        self.serials: dict[str, int] = {}
        self.chips: dict[str, ChipIdRecord] = {}
        #: card holder -> the box key holding the card (None: out of any box)
        self.card_in: dict[str, str | None] = {}
        self.pins: dict[str, str] = {}
        self.emms = KitEmms(keys, rng)
        #: this step's stream: "" (fresh EMMs), "drop", "replay" or "tamper"
        self.emm_mode = ""
        #: the EMMs each step's stream carried (what a replay sends again)
        self.sent: dict[str, list[bytes]] = {}
        self.replay_of = ""
        self.lost_ecm: set[int] = set()
        self.send_keys: list[int] = []
        #: this step's stream carries an EMM for a card in no box (``other-card-emm``)
        self.other_card = False
        self.ecm_key_index = 0
        #: this step's command EMMs (PPV rights, purse top-ups, messages, fingerprints), aired
        #: before the rights refresh so that their sequence numbers come first
        self.card_emms: list[bytes] = []
        #: this step's messages, fingerprints and sharing policies as (target, commands):
        #: what live mode queues in the head-end's outbox (bookings and top-ups queue their
        #: own EMMs there)
        self.command_emms: list[tuple[OsdTarget, list[EmmCommand]]] = []
        #: this step's box actions, per box: a purchase, a report upload, a cloned card
        self.buys: dict[str, dict[str, Any]] = {}
        self.reports: dict[str, str] = {}
        self.clones: dict[str, str] = {}

    # --- setup --------------------------------------------------------------------------
    def setup(self) -> None:
        sc = self.scenario
        (self.out / "boxes").mkdir()
        (self.out / "keys").mkdir()
        vendor_key = self.keys.chipset_vendor_key(VENDOR_ID)
        for i, sub in enumerate(sc.subscribers):
            self.chips[sub.key] = ChipIdRecord(
                chip_id=FIRST_CHIP + i, vendor="cas-sim chips", model="STB-2026",
                wrapped_csk=wrap_key(vendor_key, Key(self.rng(16), label="csk")),
                firmware_version=0x02010000, manufactured_s=to_s(sc.start) - 120 * 86400)
        records = tuple(self.chips[s.key] for s in sc.subscribers)
        batch = build_chip_batch(ChipBatch(created_s=to_s(sc.start) - 86400,
                                           issuer="cas-sim chips", records=records))
        (self.out / "boxes" / "chip-ids.bin").write_bytes(batch)
        (self.out / "keys" / "vendor.key").write_text(vendor_key.raw().hex() + "\n")
        (self.out / "keys" / "card-rom.key").write_text(
            self.keys.transport_key().raw().hex() + "\n")
        cards = []
        with self.store.transaction() as session:
            use_profile(session, _source(sc, sc.profile, "profile"), lineup=_lineup(sc),
                        clock_start=sc.start)
            accounts.import_boxes(session, records, at=sc.start, batch="chip-ids.bin")
            home = current_profile(session).home_region
            for i, sub in enumerate(sc.subscribers):
                region = home if sub.region is None else sub.region
                self.phones[sub.key] = f"+7701555{i:04d}"
                number = accounts.create_account(
                    session, surname="Kit", name=sub.name.title(), at=sc.start,
                    phone=self.phones[sub.key], email=f"{sub.key}@kit.invalid",
                    region=region).account_number
                self.accounts[sub.key] = number
                accounts.link_box(session, chip_id=self.chips[sub.key].chip_id,
                                  account_number=number, at=sc.start)
                if not sub.card:
                    continue
                serial = FIRST_SERIAL + i
                slot = register_card(session, serial, at=sc.start, region=home)
                cards.append(personalise_card(
                    self.keys, CardSlot(serial=serial, shared_address=slot.shared_address,
                                        member_position=slot.member_position),
                    now_s=to_s(sc.start) - 86400, region=home))
                self.serials[sub.key] = serial
                accounts.link_card(session, serial=serial, account_number=number, at=sc.start)
                accounts.pair_card(session, serial=serial, chip_id=self.chips[sub.key].chip_id,
                                   at=sc.start)
                if region != home:
                    # personalised for the home region, then moved (the demo's "abroad")
                    accounts.set_card_region(session, serial=serial, region=region,
                                             at=sc.start)
                self.card_in[sub.key] = sub.box or sub.key
        write_images(cards, self.out / "cards")
        write_batch(cards, self.out / "cards" / "personalisation.batch",
                    now_s=to_s(sc.start) - 86400)

    # --- events -------------------------------------------------------------------------
    def apply(self, session: Session, event: Event, label: str) -> None:
        at = clock_now(session)
        who = event.who or ""
        number = self.accounts.get(who, "")
        kind = event.kind
        if kind is EventKind.ADVANCE:
            advance_clock(session, days=int(event.args["days"]))
        elif kind in STREAM_EVENTS:
            self.stream_event(event)
        elif kind is EventKind.PAY:
            minor = int(event.args["amount"]) * current_profile(session).minor_per_major
            service.pay(session, by="account", ref=number, amount_minor=minor,
                        payment_id=f"kit-{label}", at=at)
        elif kind is EventKind.SUBSCRIBE:
            service.subscribe(session, account_number=number, package=event.args["package"],
                              at=at, verification=self._verified(session, who, at))
        elif kind is EventKind.SWITCH:
            service.switch_package(session, account_number=number,
                                   package=event.args["package"], at=at)
        elif kind is EventKind.RENEWAL:
            service.set_renewal(session, account_number=number, on=event.args["on"], at=at)
        elif kind is EventKind.SUSPEND:
            service.suspend(session, account_number=number, at=at,
                            until=at + timedelta(days=int(event.args["days"])))
        elif kind is EventKind.RESUME:
            service.resume(session, account_number=number, at=at)
        elif kind is EventKind.PROMISE:
            service.promise(session, account_number=number, at=at)
        elif kind is EventKind.PIN:
            if event.args["pin"]:
                self.pins[who] = event.args["pin"]
            else:
                self.pins.pop(who, None)
        elif kind is EventKind.PPV_EVENT:
            start_s = to_s(at) + int(event.args["start_s"])
            add_event(session, event_id=int(event.args["event"]),
                      service_id=self._service_id(session, int(event.args["channel"])),
                      start_s=start_s, end_s=start_s + int(event.args["duration_s"]),
                      price_tokens=int(event.args["price"]), impulse=bool(event.args["impulse"]),
                      title=f"kit event {event.args['event']}", now_s=to_s(at))
        elif kind is EventKind.BUY:
            self.buys[self._box_of(who)] = {k: event.args[k] for k in ("channel", "event", "pin")}
        elif kind is EventKind.UPLOAD_REPORT:
            self.reports[self._box_of(who)] = str(event.args["mode"])
        elif kind is EventKind.SHARE_CARD:
            self._box_of(who)
            self.clones.update({box: who for box in event.args["boxes"]})
        elif kind in (EventKind.MESSAGE, EventKind.FINGERPRINT):
            self._osd_event(session, event, who, at)
        else:
            self._card_event(session, event, who, at)

    def _box_of(self, who: str) -> str:
        """The box holding ``who``'s card (a box action needs the card in a box)."""
        box = self.card_in.get(who)
        if box is None:
            raise ScenarioError(f"{self.scenario.source}: {who!r}'s card is in no box").with_id(
                "kit.card_in_no_box", source=self.scenario.source, who=f"{who!r}")
        return box

    @staticmethod
    def _service_id(session: Session, number: int) -> int:
        sid = session.execute(select(Channel.service_id)
                              .where(Channel.number == number)).scalar()
        if sid is None:
            raise ScenarioError(f"no channel {number} in the lineup").with_id(
                "kit.no_channel_in_lineup", number=number)
        return int(sid)

    def _osd_event(self, session: Session, event: Event, who: str, at: datetime) -> None:
        """An on-screen message or fingerprint order by EMM to the card, its group or all."""
        args = event.args
        address = str(args["address"])
        if address == "global":
            target = OsdTarget()
        else:
            serial = self.serials.get(who)
            if serial is None:
                raise ScenarioError(f"{self.scenario.source}: {event.kind.value}: "
                                    f"subscriber {who!r} has no card").with_id(
                    "kit.subscriber_no_card", source=self.scenario.source,
                    value=event.kind.value, who=f"{who!r}")
            card = session.get(Card, serial)
            assert card is not None
            target = (OsdTarget(serial=serial) if address == "unique" else
                      OsdTarget(shared_address=card.shared_address,
                                positions=(card.member_position,)))
        command: OsdMail | Fingerprint
        if event.kind is EventKind.MESSAGE:
            command = OsdMail(message_id=int(args["id"]), priority=int(args["priority"]),
                              start_s=0, duration_s=int(args["duration_s"]),
                              text=str(args["text"]))
        else:
            command = Fingerprint(kind=FingerprintKind[str(args["kind"]).upper()], start_s=0,
                                  duration_s=int(args["duration_s"]), x_pct=int(args["x"]),
                                  y_pct=int(args["y"]))
        self.card_emms.append(self.emms.commands(target, [command], at))
        self.command_emms.append((target, [command]))

    def _verified(self, session: Session, who: str, at: datetime) -> str | None:
        """The subscriber confirms the SMS code when the operator asks for it (Uzonline)."""
        if not current_profile(session).subscribe_requires_verification:
            return None
        challenge = accounts.start_verification(
            session, account_number=self.accounts[who], phone=self.phones[who], at=at,
            rng=self.rng)
        accounts.confirm_verification(session, token=challenge.token, code=challenge.code,
                                      at=at)
        return challenge.token

    def _card_event(self, session: Session, event: Event, who: str, at: datetime) -> None:
        serial = self.serials.get(who)
        if serial is None:
            raise ScenarioError(f"{self.scenario.source}: {event.kind.value}: "
                                f"subscriber {who!r} has no card").with_id(
                "kit.subscriber_no_card", source=self.scenario.source, value=event.kind.value,
                who=f"{who!r}")
        if event.kind is EventKind.REGION:
            accounts.set_card_region(session, serial=serial, region=event.args["region"], at=at)
        elif event.kind is EventKind.KIDS:
            accounts.set_kids_profile(session, serial=serial, on=event.args["on"], at=at)
        elif event.kind is EventKind.KILL:
            accounts.kill_card(session, serial=serial, at=at)
        elif event.kind is EventKind.UNLINK_CARD:
            accounts.unlink_card(session, serial=serial, at=at)
        elif event.kind is EventKind.MOVE_CARD:
            self.card_in[who] = event.args["to"] or None
        elif event.kind is EventKind.BLOCK:
            block_card(session, serial=serial, at=at)
        elif event.kind is EventKind.SHARING_POLICY:
            # the EMM `cas card sharing-policy … --card SERIAL` makes, numbered after the
            # kit's own EMMs to the card
            commands = sharing_event_commands(event.args)
            self.card_emms.append(self.emms.commands(OsdTarget(serial=serial), commands, at))
            self.command_emms.append((OsdTarget(serial=serial), commands))
        elif event.kind is EventKind.BOOK:
            # billed and queued as `cas ppv book` does (the live carousel airs that EMM);
            # the kit's stream carries the same right, numbered after the kit's own EMMs
            booking = book_event(session, self.keys, serial=serial,
                                 event_id=int(event.args["event"]), now_s=to_s(at))
            ev = get_event(session, booking.event_id)
            self.card_emms.append(self.emms.commands(OsdTarget(serial=serial), [PpvEventRight(
                event_id=ev.event_id, channel_id=ev.service_id, start_s=ev.start_s,
                end_s=ev.end_s)], at))
        elif event.kind is EventKind.TOP_UP:
            tokens, limit = int(event.args["tokens"]), int(event.args["credit_limit"])
            top_up(session, self.keys, serial=serial, tokens=tokens, credit_limit_tokens=limit,
                   now_s=to_s(at))
            self.card_emms.append(self.emms.commands(OsdTarget(serial=serial), [PurseCredit(
                tokens=tokens, credit_limit_tokens=limit)], at))

    # --- streams ------------------------------------------------------------------------
    def stream_event(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.DROP_EMM:
            self.emm_mode = "drop"
        elif kind is EventKind.REPLAY_EMM:
            self.emm_mode = "replay"
            self.replay_of = str(event.args["step"])
        elif kind is EventKind.TAMPER_EMM:
            self.emm_mode = "tamper"
        elif kind is EventKind.LOSE_ECM:
            self.lost_ecm.update(int(c) for c in event.args["channels"])
        elif kind is EventKind.ECM_KEY:
            self.ecm_key_index = int(event.args["index"])
        elif kind is EventKind.SEND_ECM_KEY:
            self.send_keys.append(int(event.args["index"]))
        elif kind is EventKind.OTHER_CARD_EMM:
            self.other_card = True

    def _emms(self, session: Session, at: datetime) -> list[bytes]:
        fresh = [*self.card_emms, *self.emms.full_refresh(session, at)]
        for index in self.send_keys:
            fresh.append(self.emms.ecm_key(index, at))
        if self.emm_mode == "drop":
            out: list[bytes] = []
        elif self.emm_mode == "replay":
            out = list(self.sent[self.replay_of])
        elif self.emm_mode == "tamper":
            # one byte inside the sealed body: the card's AEAD check must refuse it
            out = [tamper(e) for e in fresh]
        else:
            out = fresh
        if self.other_card:
            out.extend(self.emms.for_other_card(session, at))
        return out

    def stream(self, index: int, name: str, at: datetime, offset_s: int) -> str:
        streams = self.out / "streams"
        streams.mkdir(exist_ok=True)
        with self.store.reader() as session:
            emms = self._emms(session, at)
            self.sent[name] = emms
            channels = all_access_criteria(session)
            rows = [(ch.service_id, ch.name, crit) for ch, crit in channels]
            numbers = {ch.service_id: ch.number for ch, _crit in channels}
            ppv = events_by_service(session)
        clear = self.out / "streams" / ".clear.ts"
        if not clear.exists():
            make_test_stream([TestService(service_id=sid, name=nm) for sid, nm, _ in rows],
                             clear, TestStreamOptions(duration_s=STREAM_DURATION_S,
                                                      video_bitrate_kbps=150))
        settings = EcmSettings(crypto_period_ms=CRYPTO_PERIOD_MS, repetition_ms=100,
                               ecm_key_index=self.ecm_key_index)
        services = channel_ecms_for(self.keys, {sid: c for sid, _n, c in rows},
                                    settings=settings, start_s=to_s(at) + offset_s,
                                    rng=self.rng, ppv_events=ppv)
        ecm_pids = {sid: FIRST_ECM_PID + i for i, (sid, _n, _c) in enumerate(rows)}
        config = ScrambleConfig(algorithm=Algorithm.CSA2, crypto_period_ms=CRYPTO_PERIOD_MS,
                                ecm_repetition_ms=100, emm_bitrate_bps=400_000,
                                emm_repeat=True, channel_numbers=numbers, ecm_pids=ecm_pids)
        rel = f"streams/{index:02d}-{name}.ts"
        lost = {ecm_pids[sid] for sid, number in numbers.items() if number in self.lost_ecm}
        with clear.open("rb") as fin, (self.out / rel).open("wb") as fout:
            Scrambler(config, services, payload_cipher(Algorithm.CSA2),
                      emm_sections=emms).run(fin, fout)
        if lost:
            _drop_pids(self.out / rel, lost)
        self.emm_mode = ""
        self.lost_ecm = set()
        self.send_keys = []
        self.other_card = False
        self.card_emms = []
        self.command_emms = []
        return rel

    def box_actions(self, box: str) -> dict[str, Any]:
        """This step's box actions of ``box`` for the timeline (none: nothing added), then
        forgotten: they are the step's only."""
        out: dict[str, Any] = {}
        if box in self.buys:
            out["buy"] = self.buys.pop(box)
        if box in self.reports:
            out["report"] = self.reports.pop(box)
        if box in self.clones:
            out["card"] = self.clones.pop(box)
            out["clone"] = True
        return out

    def channels(self) -> list[dict[str, Any]]:
        with self.store.reader() as session:
            return [{"number": ch.number, "name": ch.name, "service_id": ch.service_id}
                    for ch, _crit in all_access_criteria(session)]


def build_kit(scenario: Scenario, out: Path,
              progress: Callable[[str], None] | None = None) -> BuildResult:
    """Build ``scenario`` into ``out`` (wiped first if it is a kit)."""
    say = progress or (lambda _msg: None)
    prepare_out(out)
    rng = _Rng(scenario.seed)
    keys = OperatorKeys.generate(rng, now_s=to_s(scenario.start))
    with tempfile.TemporaryDirectory(prefix="cas-kit-store-") as tmp:
        store = open_store(data_dir=Path(tmp))
        try:
            world = _World(scenario, store, keys, out, rng)
            say("head-end: profile, lineup, boxes, cards and subscribers")
            world.setup()
            steps: list[dict[str, Any]] = []
            for i, step in enumerate(scenario.steps, start=1):
                say(f"step {i}: {step.name}")
                with store.transaction() as session:
                    for j, event in enumerate(step.events):
                        world.apply(session, event, f"{step.name}-{j}")
                with store.reader() as session:
                    at = clock_now(session)
                rel = world.stream(i, step.name, at, step.stream_offset_s)
                holders = {box: card for card, box in world.card_in.items() if box}
                steps.append({
                    "index": i, "name": step.name, "title": step.title, "at": at.isoformat(),
                    "stream_offset_s": step.stream_offset_s,
                    "stream": rel,
                    "events": [{"do": e.kind.value, **({"who": e.who} if e.who else {}),
                                **dict(e.args)} for e in step.events],
                    "boxes": {s.key: {"card": holders.get(s.key),
                                      "pin": world.pins.get(s.key),
                                      **world.box_actions(s.key)}
                              for s in scenario.subscribers},
                })
                checks = _checks(step, steps[-1]["boxes"], world.serials)
                if checks:
                    steps[-1]["checks"] = checks
            channels = world.channels()
        finally:
            store.dispose()
    (out / "streams" / ".clear.ts").unlink(missing_ok=True)
    timeline = {
        "format": KIT_FORMAT, "kit": scenario.name, "title": scenario.title,
        "seed": scenario.seed, "covers": list(scenario.covers),
        "vendor_key": "keys/vendor.key", "rom_key": "keys/card-rom.key",
        "chip_batch": "boxes/chip-ids.bin",
        "boxes": {s.key: {"chip_id": f"{world.chips[s.key].chip_id:08X}"}
                  for s in scenario.subscribers},
        "cards": {k: {"serial": f"{v:010d}",
                      "image": str(image_path(Path("cards"), v))}
                  for k, v in world.serials.items()},
        "channels": channels,
        "steps": steps,
    }
    _json(out / "timeline.json", timeline)
    write_matrix(out, scenario, channels, steps)
    (out / "scenario.toml").write_text(scenario.text, encoding="utf-8")
    _copy_local_files(scenario, out)
    _write_readme(out, scenario, len(steps))
    files = sum(1 for p in out.rglob("*") if p.is_file())
    return BuildResult(out=out, steps=len(steps), boxes=len(scenario.subscribers), files=files)


def _checks(step: Step, boxes: Mapping[str, Any],
            serials: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Per box, each check of the step with what a correct box must show (``expected``)."""
    out: dict[str, dict[str, Any]] = {}
    for box, table in step.checks.items():
        checks: dict[str, Any] = {}
        if "messages" in table:
            ids = [int(m) for m in table["messages"]]
            checks["messages"] = {"expected": message_ids_text(ids)}
        if "fingerprint" in table:
            kind = str(table["fingerprint"])
            card = boxes[box].get("card")
            checks["fingerprint"] = {"expected": fingerprint_text(
                kind, serials[card] if card and kind != "none" else None)}
        if "report" in table:
            value = table["report"]
            checks["report"] = {"expected": value if isinstance(value, str)
                                else billed_text(int(value))}
        if "sharing" in table:
            checks["sharing"] = {"expected": sharing_text(bool(table["sharing"])),
                                 "tuners": int(table.get("tuners", 2))}
        out[box] = checks
    return out


def message_ids_text(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids) or "none"


def fingerprint_text(kind: str, serial: int | None) -> str:
    return "none" if kind == "none" or serial is None else f"{kind} {serial:010d}"


def billed_text(major: int) -> str:
    return f"billed {major}"


def sharing_text(flagged: bool) -> str:
    return "flagged" if flagged else "not flagged"


def _copy_local_files(scenario: Scenario, out: Path) -> None:
    """The profile and lineup files the scenario names by a relative path, at the same path
    in the kit, so that ``scenario.toml`` in the kit reads as it did (the live runner
    rebuilds the head-end's store from it)."""
    for value in (scenario.profile, scenario.lineup):
        if value is None or Path(value).is_absolute() or ".." in Path(value).parts:
            continue
        local = scenario.source.parent / value
        if local.is_file() and ("/" in value or value.endswith(".toml")):
            (out / value).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, out / value)


def _write_readme(out: Path, scenario: Scenario, steps: int) -> None:
    text = f"""# STB conformance kit: {scenario.name}

{scenario.title}

Built by `cas kit build` from `scenario.toml` (seed {scenario.seed}); rebuilding it with the
same scenario gives the same bytes.

| Path | What |
|---|---|
| `scenario.toml` | the scenario this kit was built from |
| `timeline.json` | the steps: events, the stream of each step, which card sits in which box |
| `expected.json`, `expected.txt` | what a correct box shows on every channel at every step |
| `streams/NN-STEP.ts` | the stream of each step (DVB-CSA2, ECMs and EMMs) — {steps} steps |
| `boxes/chip-ids.bin` | the Chip ID records of the boxes (one per subscriber) |
| `keys/vendor.key` | the chipset vendor key the boxes' chips are made with |
| `cards/*.img`, `cards/personalisation.batch` | the cards' EEPROM images and their batch |
| `keys/card-rom.key` | the in-process cards' ROM (transport) key |

Play every step's stream, in order, to every box, keeping each box's NVRAM and card state
from one step to the next; the box's verdict for every channel must equal `expected.json`.
`cas kit run DIR --box CMD` does that and writes JUnit XML and an HTML report; the report
protocol a box speaks is in the cas-sim docs (`docs/kit.md`).
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def _drop_pids(path: Path, pids: set[int]) -> None:
    """Take every packet of ``pids`` out of a stream (an ECM PID lost on the way)."""
    data = path.read_bytes()
    kept = bytearray()
    for pos in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        packet = data[pos : pos + TS_PACKET]
        if ((packet[1] & 0x1F) << 8 | packet[2]) not in pids:
            kept += packet
    path.write_bytes(bytes(kept))
