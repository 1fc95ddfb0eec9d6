"""A full EMM refresh over several processes on a real PostgreSQL: every card's EMM exactly
once, a SIGKILLed worker's item finished by the other, re-running changes nothing; SQLite
refuses the multi-process mode in one line and runs the single-process one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cas.billing.setup import use_profile
from cas.billing.synthetic import populate
from cas.crypto import OperatorKeys
from cas.formats.emm import SharedAddress, UniqueAddress, parse_emm
from cas.formats.sections import iter_sections
from cas.headend.emmfast import UNIQUE_STRIDE
from cas.headend.emmgen import EmmSettings
from cas.headend.emmrefresh import (
    RefreshRefused,
    emm_refresh,
    finish_refresh,
    refresh_worker,
    start_refresh,
)
from cas.store.emmseq import next_seqs, take_seq
from cas.store.engine import Store, open_store
from cas.store.models import Card, EmmSequence, Setting

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NO_SHARED = EmmSettings(shared_min_members=0)


def _base(url: str, cards: int) -> Store:
    store = open_store(db_url=url)
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=T0)
        populate(s, cards=cards, at=T0)
    return store


def _serials(store: Store) -> list[int]:
    with store.reader() as s:
        return sorted(int(x) for x in s.execute(select(Card.serial)).scalars())


def _unique(path: Path) -> list[tuple[int, int]]:
    """(serial, seq) of every unique EMM in a sections file."""
    out = []
    for sec in iter_sections(path.read_bytes()):
        h = parse_emm(sec).header
        assert isinstance(h.address, UniqueAddress)
        out.append((h.address.serial, h.seq))
    return out


def _next_seqs(store: Store) -> Counter[int]:
    """How many cards have each next unique number (their row or the epoch's floor)."""
    with store.reader() as s:
        serials = [int(x) for x in s.execute(select(Card.serial)).scalars()]
        return Counter(next_seqs(s, "unique", serials).values())


def _sent(store: Store) -> dict[int, int]:
    """serial -> the rights version booked as sent; the refresh writes no number per card."""
    with store.reader() as s:
        rows = list(s.execute(select(EmmSequence.address, EmmSequence.next_seq,
                                     EmmSequence.sent_rights_version)
                              .where(EmmSequence.address_kind == "unique")))
    assert {int(n) for _, n, _ in rows} <= {1}
    return {int(a): int(v) for a, _, v in rows}


def _keys(tmp_path: Path) -> tuple[OperatorKeys, Path]:
    import random

    r = random.Random(11)
    keys = OperatorKeys.generate(lambda n: r.randbytes(n))
    path = tmp_path / "operator.key"
    keys.save(path)
    return keys, path


@pytest.mark.postgres
def test_two_processes_produce_every_card_exactly_once(postgres_url: str,
                                                      tmp_path: Path) -> None:
    store = _base(postgres_url, 3000)
    keys, _ = _keys(tmp_path)
    out = tmp_path / "full.sections"
    rep = emm_refresh(store, keys, run="r1", at=T0, out=str(out), workers=2, chunk=300,
                      settings=NO_SHARED)
    serials = _serials(store)
    emms = _unique(out)
    assert sorted(s for s, _ in emms) == serials  # every card, exactly once
    assert {q for _, q in emms} == {1}  # the first epoch
    assert rep.cards == rep.unique_emms == 3000 and rep.items == 6
    # No number booked per card: the floor is above the epoch's stride.
    assert _next_seqs(store) == Counter({1 + UNIQUE_STRIDE: 3000})
    assert _sent(store) == {s: 1 for s in serials}  # every card got its rights version
    # Re-running the finished refresh changes nothing: same file, same sequence numbers.
    before = out.read_bytes()
    again = emm_refresh(store, keys, run="r1", at=T0, out=str(out), workers=2, chunk=300,
                        settings=NO_SHARED)
    assert again.already_finished and again.cards == 3000
    assert out.read_bytes() == before and _next_seqs(store) == Counter({17: 3000})
    assert refresh_worker(store, keys, "r1").items == 0
    # A new refresh takes the next epoch, above every number handed out, once per card.
    with store.transaction() as s:
        taken = take_seq(s, "unique", serials[7])  # e.g. an OSD sent in between
    assert taken == 1 + UNIQUE_STRIDE
    emm_refresh(store, keys, run="r2", at=T0, out=str(tmp_path / "b.sections"), workers=2,
                chunk=700, settings=NO_SHARED)
    emms2 = _unique(tmp_path / "b.sections")
    assert sorted(s for s, _ in emms2) == serials
    assert {q for _, q in emms2} == {taken + 1}
    assert _next_seqs(store) == Counter({taken + 1 + UNIQUE_STRIDE: 3000})
    with store.reader() as s:
        left = s.execute(select(Setting.key).where(Setting.key.like("emm.refresh.%"))).all()
    assert sorted(k for (k,) in left) == ["emm.refresh.r1", "emm.refresh.r1.totals",
                                          "emm.refresh.r2", "emm.refresh.r2.totals"]
    store.dispose()


@pytest.mark.postgres
def test_shared_emms_serve_every_member_once_across_items(postgres_url: str,
                                                         tmp_path: Path) -> None:
    store = _base(postgres_url, 1500)
    keys, _ = _keys(tmp_path)
    out = tmp_path / "s.sections"
    rep = emm_refresh(store, keys, run="s", at=T0, out=str(out), workers=2, chunk=256)
    served: list[int] = []
    with store.reader() as s:
        by_pos = {(int(a), int(p)): int(x) for x, a, p in s.execute(
            select(Card.serial, Card.shared_address, Card.member_position))}
    for sec in iter_sections(out.read_bytes()):
        h = parse_emm(sec).header
        if isinstance(h.address, SharedAddress):
            served += [by_pos[(h.address.shared_address, p)] for p in h.address.positions()]
        else:
            assert isinstance(h.address, UniqueAddress)
            served.append(h.address.serial)
    assert rep.shared_emms > 0
    assert sorted(served) == _serials(store)
    store.dispose()


def _cas(url: str, key: Path, *args: str, env: dict[str, str] | None = None,
         ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "cas"), "--db-url", url, *args, "--keys", str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})


@pytest.mark.postgres
def test_a_killed_workers_item_is_finished_by_the_other(postgres_url: str,
                                                        tmp_path: Path) -> None:
    store = _base(postgres_url, 2000)
    _, key_path = _keys(tmp_path)
    items_dir = tmp_path / "items"
    plan = start_refresh(store, run="k", at=T0, out_dir=str(items_dir), settings=NO_SHARED,
                         chunk=256)
    assert plan.items == 8  # 2000 cards in groups of 256
    # Worker A pauses after writing each item's file, before committing it: killed there,
    # its file exists but its sequence numbers were never booked.
    slow = _cas(postgres_url, key_path, "emm", "worker", "--run", "k",
                env={"CAS_EMM_REFRESH_PAUSE_S": "30"})
    try:
        deadline = time.monotonic() + 60
        while not list(items_dir.glob("item-*.sections")):
            assert slow.poll() is None, slow.communicate()
            if time.monotonic() > deadline:  # a liveness bound, not a speed goal
                pytest.fail("worker A never wrote an item")
            time.sleep(0.05)
        written = sorted(items_dir.glob("item-*.sections"))
        assert len(written) == 1
        held = written[0].read_bytes()
        os.kill(slow.pid, signal.SIGKILL)
        slow.wait(10)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait(10)
    assert _sent(store) == {}  # nothing of A's item was booked
    other = _cas(postgres_url, key_path, "--json", "emm", "worker", "--run", "k")
    stdout, stderr = other.communicate(timeout=120)
    assert other.returncode == 0, stderr
    assert '"items": 8' in stdout  # B did all eight, A's included
    assert written[0].read_bytes() != held  # A's file was replaced, not kept beside B's
    out = tmp_path / "k.sections"
    rep = finish_refresh(store, "k", str(out))
    emms = _unique(out)
    assert sorted(s for s, _ in emms) == _serials(store)
    assert {q for _, q in emms} == {1} and rep.cards == 2000
    assert _sent(store) == dict.fromkeys(_serials(store), 1)
    assert _next_seqs(store) == Counter({17: 2000})
    assert not list(items_dir.glob("item-*"))
    store.dispose()


@pytest.mark.postgres
def test_a_worker_joins_a_refresh_through_the_cli(postgres_url: str, tmp_path: Path) -> None:
    store = _base(postgres_url, 1200)
    _, key_path = _keys(tmp_path)
    out = tmp_path / "c.sections"
    procs = [_cas(postgres_url, key_path, "--json", "emm", "refresh", "--run", "c", "--out",
                  str(out), "--workers", "2", "--chunk", "100", "--shared-min", "0",
                  "--at", "2026-03-01T12:00:00Z")]
    # A worker joins a run that exists: wait for the coordinator's plan (a worker started
    # before it is refused: "no EMM refresh run").
    deadline = time.monotonic() + 60
    while True:
        with store.reader() as s:
            if s.get(Setting, "emm.refresh.c") is not None:
                break
        assert procs[0].poll() is None, procs[0].communicate()
        if time.monotonic() > deadline:  # a liveness bound, not a speed goal
            pytest.fail("the coordinator never made its plan")
        time.sleep(0.05)
    procs.append(_cas(postgres_url, key_path, "--json", "emm", "worker", "--run", "c"))
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(s for s, _ in _unique(out)) == _serials(store)
    assert _next_seqs(store) == Counter({17: 1200})
    store.dispose()


def test_sqlite_refuses_several_processes_and_runs_one(tmp_path: Path) -> None:
    store = _base(f"sqlite:///{tmp_path / 'cas.sqlite'}", 600)
    keys, key_path = _keys(tmp_path)
    out = tmp_path / "one.sections"
    with pytest.raises(RefreshRefused, match="needs PostgreSQL"):
        emm_refresh(store, keys, run="x", at=T0, out=str(out), workers=2)
    assert not out.exists()
    rep = emm_refresh(store, keys, run="x", at=T0, out=str(out), workers=1, chunk=256,
                      settings=NO_SHARED)
    assert rep.cards == 600
    assert sorted(s for s, _ in _unique(out)) == _serials(store)
    url = f"sqlite:///{tmp_path / 'cas.sqlite'}"
    store.dispose()
    proc = _cas(url, key_path, "emm", "worker", "--run", "x")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert err.strip().count("\n") == 0 and "needs PostgreSQL" in err


def test_a_plan_without_an_epoch_is_not_resumed(tmp_path: Path) -> None:
    """A run planned before sequence epochs existed would number from 1 again: refused in
    one line, nothing written."""
    import json

    from cas.errors import UsageError
    from cas.store.repo import set_setting

    store = _base(f"sqlite:///{tmp_path / 'cas.sqlite'}", 300)
    keys, _ = _keys(tmp_path)
    plan = start_refresh(store, run="old", at=T0, out_dir=str(tmp_path / "items"),
                         settings=NO_SHARED)
    assert plan.unique_base == 1 and plan.shared_base == 1
    old = {k: v for k, v in json.loads(plan.to_json()).items()
           if k not in ("unique_base", "shared_base")}
    with store.transaction() as s:
        set_setting(s, "emm.refresh.old", json.dumps(old))
    with pytest.raises(UsageError, match="without a sequence epoch"):
        refresh_worker(store, keys, "old")
    assert not list((tmp_path / "items").glob("item-*"))
    store.dispose()


def test_sqlite_cuts_a_card_to_the_stride_and_leaves_it_pending(tmp_path: Path) -> None:
    """The reference path (SQLite) cuts a card needing more EMMs than the epoch's stride
    like the PostgreSQL path: the first UNIQUE_STRIDE, its sent version not booked."""
    from cas.store.models import Package, Subscription

    store = _base(f"sqlite:///{tmp_path / 'cas.sqlite'}", 300)
    keys, _ = _keys(tmp_path)
    at_s = int(T0.timestamp())
    with store.transaction() as s:
        serial, acc = next(iter(s.execute(select(Card.serial, Card.account_id).where(
            Card.account_id.is_not(None), Card.status == "active",
            Card.paired_chip_id.is_(None)).order_by(Card.serial))))
        packages = [int(p) for p in s.execute(select(Package.id)).scalars()]
        s.add_all(Subscription(account_id=acc, package_id=packages[i % len(packages)],
                               status="active", start_s=at_s - i, paid_until_s=at_s + 9 + i,
                               created_at_s=at_s)
                  for i in range(12 + (UNIQUE_STRIDE - 1) * 17 + 5))
        on_acc = {int(x) for x in s.execute(select(Card.serial).where(
            Card.account_id == acc)).scalars()}
    assert serial in on_acc
    out = tmp_path / "cut.sections"
    rep = emm_refresh(store, keys, run="cut", at=T0, out=str(out), settings=NO_SHARED)
    per_card: dict[int, list[int]] = {}
    for s_, q in _unique(out):
        per_card.setdefault(s_, []).append(q)
    assert all(per_card[c] == list(range(1, 1 + UNIQUE_STRIDE)) for c in on_acc)
    assert all(qs == [1] for c, qs in per_card.items() if c not in on_acc)
    assert rep.cards == len(per_card) == 300
    sent = _sent(store)
    assert not on_acc & sent.keys() and len(sent) == 300 - len(on_acc)
    store.dispose()
