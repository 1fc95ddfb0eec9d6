"""Subscriptions in the store → EMMs → in-process cards: the cards end up holding the store's
entitlement state; incremental runs send only what changed; sequence numbers live in the store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from cas.billing.accounts import kill_card, set_card_region
from cas.billing.state import card_state_at
from cas.formats.emm import SharedAddress, UniqueAddress, parse_emm
from cas.formats.sections import iter_sections
from cas.headend.emmgen import EmmSettings, osd_command
from cas.headend.emmrun import emm_run
from cas.store.models import EmmSequence
from tests.integration.headend.conftest import T0, Base, feed, make_card


def _check_cards_match_store(base: Base, sections: list[bytes], at_delta: timedelta) -> None:
    for serial in base.serials:
        card = make_card(base.keys, base.slots[serial])
        feed(card, sections)
        with base.store.reader() as s:
            want = card_state_at(s, serial, T0 + at_delta).rights
        status = card.status()
        assert card.entitlements() == want.entitlements, serial
        assert int(status.status) == int(want.status), serial
        assert status.region == want.region and status.maturity_limit == want.maturity_limit


def test_full_refresh_round_trip_through_the_cards(base_factory: Callable[..., Base],
                                                   tmp_path: Path) -> None:
    base = base_factory(cards=12)
    out = tmp_path / "full.sections"
    report = emm_run(base.store, base.keys, mode="full", at=T0 + timedelta(hours=1),
                     out=str(out), workers=1, chunk=5,
                     settings=EmmSettings(shared_min_members=0))
    assert report.cards == 12 and report.unique_emms == 12 and not report.resumed
    sections = list(iter_sections(out.read_bytes()))
    assert len(sections) == 12
    assert not Path(str(out) + ".emm-partial").exists()
    _check_cards_match_store(base, sections, timedelta(hours=1))
    # Sequence numbers are kept in the store: a second refresh uses the next ones.
    emm_run(base.store, base.keys, mode="full", at=T0 + timedelta(hours=2), out=str(out),
            workers=1, settings=EmmSettings(shared_min_members=0))
    seqs = {parse_emm(sec).header.seq for sec in iter_sections(out.read_bytes())}
    assert seqs == {2}
    with base.store.reader() as s:
        rows = s.execute(select(EmmSequence.next_seq).where(
            EmmSequence.address_kind == "unique")).scalars().all()
    assert sorted(set(rows)) == [3] and len(rows) == 12


def test_shared_emms_replace_identical_unique_ones(base_factory: Callable[..., Base],
                                                   tmp_path: Path) -> None:
    base = base_factory(cards=12)
    with base.store.transaction() as s:
        for serial in base.serials[:3]:
            kill_card(s, serial=serial, at=T0)
    out = tmp_path / "shared.sections"
    report = emm_run(base.store, base.keys, mode="full", at=T0 + timedelta(hours=1),
                     out=str(out), workers=1, settings=EmmSettings(shared_min_members=2))
    sections = list(iter_sections(out.read_bytes()))
    shared = [parse_emm(s) for s in sections if s[0] == 0x83]
    assert report.shared_emms == len(shared) >= 1
    # Cards whose commands are byte-identical (same status, region, windows) share one EMM;
    # every card is served exactly once, by a unique or by a shared EMM.
    by_position = {base.slots[s].member_position: s for s in base.serials}
    served: list[int] = []
    for e in shared:
        assert isinstance(e.header.address, SharedAddress)
        members = e.header.address.positions()
        assert len(members) >= 2
        served += [by_position[p] for p in members]
    for sec in sections:
        address = parse_emm(sec).header.address
        if isinstance(address, UniqueAddress):
            served.append(address.serial)
    assert sorted(served) == base.serials
    with base.store.reader() as s:
        rights = {serial: card_state_at(s, serial, T0 + timedelta(hours=1)).rights
                  for serial in base.serials}
    for e in shared:
        assert isinstance(e.header.address, SharedAddress)
        group = {rights[by_position[p]] for p in e.header.address.positions()}
        assert len(group) == 1
    _check_cards_match_store(base, sections, timedelta(hours=1))


def test_incremental_sends_only_changed_cards(base_factory: Callable[..., Base],
                                              tmp_path: Path) -> None:
    base = base_factory(cards=8)
    first = tmp_path / "a.sections"
    emm_run(base.store, base.keys, mode="full", at=T0, out=str(first), workers=1,
            settings=EmmSettings(shared_min_members=0))
    nothing = tmp_path / "b.sections"
    rep = emm_run(base.store, base.keys, mode="incremental", at=T0 + timedelta(minutes=5),
                  out=str(nothing), workers=1)
    assert rep.cards == 0 and nothing.read_bytes() == b""
    changed = base.serials[0]
    with base.store.transaction() as s:
        set_card_region(s, serial=changed, region=77, at=T0 + timedelta(minutes=10))
    inc = tmp_path / "c.sections"
    rep = emm_run(base.store, base.keys, mode="incremental", at=T0 + timedelta(minutes=20),
                  out=str(inc), workers=1)
    sections = list(iter_sections(inc.read_bytes()))
    assert rep.cards == 1
    addrs = {parse_emm(s).header.address for s in sections}
    assert addrs == {UniqueAddress(serial=changed)}
    card = make_card(base.keys, base.slots[changed])
    feed(card, list(iter_sections(first.read_bytes())))
    feed(card, sections)
    with base.store.reader() as s:
        want = card_state_at(s, changed, T0 + timedelta(minutes=20)).rights
    assert card.status().region == want.region == 77
    assert card.entitlements() == want.entitlements


def test_global_osd_and_ts_output(base_factory: Callable[..., Base], tmp_path: Path) -> None:
    from cas.formats import psi
    from tests.unit.headend.helpers import sections_on

    base = base_factory(cards=3)
    out = tmp_path / "emm.ts"
    rep = emm_run(base.store, base.keys, mode="full", at=T0, out=str(out), out_format="ts",
                  workers=1, global_commands=[osd_command("Привет")], emm_pid=0x0C10)
    assert rep.global_emms == 1
    data = out.read_bytes()
    cat = next(s for _, s in sections_on(data, 1))
    assert [r.ca_pid for r in psi.find_ca_descriptors(cat, 0xDEAD)] == [0x0C10]
    sections = [s for _, s in sections_on(data, 0x0C10)]
    assert sections[0][0] == 0x84 and len(sections) == 4
    card = make_card(base.keys, base.slots[base.serials[0]])
    feed(card, sections)
    assert card.osd_message() == "Привет"


def test_epoch_refresh_then_incremental_then_refresh_all_reach_the_cards(
        base_factory: Callable[..., Base], tmp_path: Path) -> None:
    """The work-item refresh numbers every card from its epoch and writes no number per
    card; an incremental EMM after it is numbered above the epoch's floor, and the next
    refresh above that: the card takes all three, in that order."""
    from cas.headend.emmfast import UNIQUE_STRIDE
    from cas.headend.emmrefresh import emm_refresh

    base = base_factory(cards=6)
    one = EmmSettings(shared_min_members=0)
    first = tmp_path / "r1.sections"
    emm_refresh(base.store, base.keys, run="e1", at=T0, out=str(first), settings=one)
    assert {parse_emm(s).header.seq for s in iter_sections(first.read_bytes())} == {1}
    # Every card's rights version is booked as sent: nothing is pending for the feed.
    nothing = tmp_path / "none.sections"
    rep = emm_run(base.store, base.keys, mode="incremental", at=T0 + timedelta(minutes=5),
                  out=str(nothing), workers=1)
    assert rep.cards == 0
    changed = base.serials[0]
    with base.store.transaction() as s:
        set_card_region(s, serial=changed, region=55, at=T0 + timedelta(minutes=10))
    inc = tmp_path / "inc.sections"
    emm_run(base.store, base.keys, mode="incremental", at=T0 + timedelta(minutes=20),
            out=str(inc), workers=1)
    inc_seqs = [parse_emm(s).header.seq for s in iter_sections(inc.read_bytes())]
    assert inc_seqs == [1 + UNIQUE_STRIDE]  # above the epoch's floor
    second = tmp_path / "r2.sections"
    emm_refresh(base.store, base.keys, run="e2", at=T0 + timedelta(minutes=30),
                out=str(second), settings=one)
    assert {parse_emm(s).header.seq for s in iter_sections(second.read_bytes())} == {
        2 + UNIQUE_STRIDE}  # above the incremental EMM
    card = make_card(base.keys, base.slots[changed])
    r1 = list(iter_sections(first.read_bytes()))
    assert feed(card, r1) == 1
    assert feed(card, list(iter_sections(inc.read_bytes()))) == 1
    assert card.status().region == 55
    assert feed(card, list(iter_sections(second.read_bytes()))) == 1
    assert feed(card, r1) == 0  # an old refresh replayed is refused
    with base.store.reader() as s:
        want = card_state_at(s, changed, T0 + timedelta(minutes=30)).rights
    assert card.entitlements() == want.entitlements and card.status().region == 55


def test_the_live_carousel_numbers_above_a_refresh_epoch(base_factory: Callable[..., Base],
                                                         tmp_path: Path) -> None:
    """The live head-end's outbox (cas.live.outbox) reads the card's next number above the
    epoch's floor: the card takes the refresh's EMM, then the carousel's."""
    from cas.headend.emmfast import UNIQUE_STRIDE
    from cas.headend.emmrefresh import emm_refresh
    from cas.live.outbox import generate_for_cards
    from cas.store.models import EmmOutbox

    base = base_factory(cards=4)
    out = tmp_path / "r.sections"
    emm_refresh(base.store, base.keys, run="live", at=T0, out=str(out),
                settings=EmmSettings(shared_min_members=0))
    serial = base.serials[1]
    with base.store.transaction() as s:
        set_card_region(s, serial=serial, region=9, at=T0 + timedelta(minutes=1))
    gen = generate_for_cards(base.store, base.keys, [serial], at=T0 + timedelta(minutes=2))
    assert len(gen.ids) == 1
    with base.store.reader() as s:
        payload = s.get(EmmOutbox, gen.ids[0]).payload  # type: ignore[union-attr]
    live = list(iter_sections(payload))
    assert [parse_emm(sec).header.seq for sec in live] == [1 + UNIQUE_STRIDE]
    card = make_card(base.keys, base.slots[serial])
    assert feed(card, list(iter_sections(out.read_bytes()))) == 1
    assert feed(card, live) == 1 and card.status().region == 9
