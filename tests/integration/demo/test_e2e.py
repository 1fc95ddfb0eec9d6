"""End to end on the demo's world: store → EMMs/ECMs → scrambled stream → boxes → reasons.

The head-end (store, billing rules, EMM generator, scrambler), the cards (the real applet on
EEPROM images) and the boxes (firmware_stub) are the real layers; nothing is mocked.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.billing import service
from cas.billing.clock import advance_clock, clock_now
from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.demo import scenario
from cas.demo.scenario import SITUATIONS, Subscriber, run_boxes
from cas.formats import psi, ts
from cas.headend.why import explain
from cas.reasons import Reason
from cas.store.engine import Store, open_store
from firmware_stub.box import Box


@dataclass
class World:
    data_dir: Path
    keys: OperatorKeys
    store: Store
    subscribers: list[Subscriber]
    spare: object
    now: datetime
    stream: Path

    def sub(self, key: str) -> Subscriber:
        return next(s for s in self.subscribers if s.situation.key == key)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    scenario.prepare_dir(data_dir)
    rng = scenario._Rng(7)
    keys = OperatorKeys.generate(rng)
    keys.save(data_dir / "operator-keys.toml")
    store = open_store(data_dir=data_dir)
    subscribers, spare, now = scenario.build_world(store, keys, data_dir, rng)
    stream, _ = scenario.make_stream(store, keys, data_dir, now, rng)
    return World(data_dir, keys, store, subscribers, spare, now, stream)


def test_every_situation_gives_its_reason_in_the_box_and_in_cas_why(world: World) -> None:
    results = run_boxes(world.store, world.keys, world.data_dir, world.subscribers,
                        world.spare, world.stream, world.now)  # type: ignore[arg-type]
    assert [r.situation.key for r in results] == [s.key for s in SITUATIONS]
    for r in results:
        for c in r.channels:
            if r.serial is None:  # the no-card box: nothing to ask the head-end about
                assert (c.box, c.headend) == (Reason.NO_CARD, None)
                continue
            assert (c.box, c.headend) == (c.expected, c.expected), (r.situation.key, c)
    # every reason the seeds' situations produce shows up somewhere
    seen = {c.box for r in results for c in r.channels}
    assert {Reason.OPEN, Reason.FINANCIAL_BLOCK, Reason.CARD_SUSPENDED,
            Reason.ENTITLEMENT_EXPIRED, Reason.REGION_BLACKOUT, Reason.MATURITY_LOCKED,
            Reason.PAIRING_MISMATCH, Reason.NO_CARD, Reason.NOT_SUBSCRIBED,
            Reason.CHANNEL_NOT_IN_PACKAGE} <= seen


def test_open_channel_descrambles_to_the_clear_payloads(world: World) -> None:
    sub = world.sub("addon")
    assert sub.serial is not None
    client = scenario.card_client(world.keys, world.data_dir / "cards" / f"{sub.serial:010d}.img")
    box = Box.boot(sub.chip, None, vendor_key=world.keys.chipset_vendor_key(scenario.VENDOR_ID),
                   card=client)
    out = io.BytesIO()
    result = box.watch(world.stream.read_bytes(), 24, out)  # LCN 24 = service 1024
    assert result.status is not None and result.status.open
    clear = (world.data_dir / "streams" / "clear.ts").read_bytes()
    got_all = out.getvalue()
    es_pids = _es_pids(got_all)
    assert len(es_pids) == 2, "the watched SPTS carries the service's video and audio"
    for pid in es_pids:
        got, want = _payloads(got_all, pid), _payloads(clear, pid)
        assert len(got) > 0.8 * len(want)
        assert got == want[len(want) - len(got):]


def _es_pids(stream: bytes) -> list[int]:
    pat = psi.parse_pat(ts.SectionReassembler(0).feed_many(ts.iter_packets(stream))[0])
    pmt_pid = next(p.pid for p in pat.programs if p.program_number != 0)
    pmt = psi.parse_pmt(ts.SectionReassembler(pmt_pid).feed_many(ts.iter_packets(stream))[0])
    return [es.elementary_pid for es in pmt.streams]


def _payloads(stream: bytes, pid: int) -> list[bytes]:
    out = []
    for i in range(0, len(stream) - 187, 188):
        p = stream[i:i + 188]
        if ((p[1] & 0x1F) << 8) | p[2] != pid or not p[3] & 0x10:
            continue
        out.append(p[(5 + p[4]) if p[3] & 0x20 else 4:])
    return out


def test_payment_and_emm_run_open_the_channel_and_expiry_closes_it(world: World) -> None:
    sub = world.sub("new")
    assert sub.serial is not None
    rng = scenario._Rng(11)

    def box_reason(stream: Path, at: datetime) -> tuple[Reason, Reason]:
        results = run_boxes(world.store, world.keys, world.data_dir, world.subscribers,
                            world.spare, stream, at, only={"new"})  # type: ignore[arg-type]
        ch1 = next(c for c in results[0].channels if c.number == 1)
        return ch1.box, ch1.headend

    assert box_reason(world.stream, world.now) == (Reason.NOT_SUBSCRIBED,) * 2
    with world.store.transaction() as s:
        service.pay(s, by="account", ref=sub.account_number, amount_minor=249_000,
                    payment_id="e2e-new-1", at=world.now)
        service.subscribe(s, account_number=sub.account_number, package="start", at=world.now)
        service.set_renewal(s, account_number=sub.account_number, on=False, at=world.now)
    paid, emms = scenario.make_stream(world.store, world.keys, world.data_dir, world.now, rng,
                                      mode="incremental", name="after-payment.ts")
    assert emms >= 1  # only what changed: this card's rights
    assert box_reason(paid, world.now) == (Reason.OPEN, Reason.OPEN)
    with world.store.transaction() as s:
        advance_clock(s, days=31)
        later = clock_now(s)
    expired, _ = scenario.make_stream(world.store, world.keys, world.data_dir, later, rng,
                                      mode="incremental", name="after-expiry.ts")
    assert box_reason(expired, later) == (Reason.ENTITLEMENT_EXPIRED,) * 2
    with world.store.reader() as s:
        why = explain(s, sub.serial, 1, later)
    assert why.reason is Reason.ENTITLEMENT_EXPIRED
    assert "TV+ Start" in why.cause and (later - timedelta(days=2)).strftime("%Y") in why.cause


def test_cas_why_cli_agrees(world: World) -> None:
    sub = world.sub("unpaid")
    env = {"CAS_DATA_DIR": str(world.data_dir)}
    res = CliRunner(env=env).invoke(cli, ["--json", "why", "--card", str(sub.serial),
                                          "--channel", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["reason"] == "FINANCIAL_BLOCK" and doc["state"] == "LOCKED"
    assert "financial block since" in doc["cause"] and doc["fix"].startswith("pay ")
    res = CliRunner(env=env).invoke(cli, ["why", "--card", "123", "--channel", "1"])
    assert res.exit_code != 0 and res.stderr.startswith("error:")


def test_cas_demo_command(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["--json", "demo", "--data-dir", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and len(doc["boxes"]) == len(SITUATIONS)
    # a directory the demo did not make is never wiped
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    res = CliRunner().invoke(cli, ["demo", "--data-dir", str(foreign)])
    assert res.exit_code == 2 and (foreign / "precious.txt").exists()
