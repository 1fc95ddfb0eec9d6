"""The refresh's PostgreSQL fast path (cas.headend.emmfast) gives the same bytes as the
reference generator (card states -> card_targets -> build_batch) for the same inputs, epoch
and random numbers: every card status (a card blocked for sharing is killed), paired cards
(with a key that opens and one that does not), more windows than one EMM carries, windows
paid beyond 2106, empty and excluded windows, two windows of one package, an epoch beyond
2^32; shared EMMs on and off.  Only the cards whose rights changed since their last EMM are
booked, and a card needing more EMMs than the epoch's stride is cut to it and left pending."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from cas.access import CardStatus
from cas.billing.setup import use_profile
from cas.billing.state import iter_card_states
from cas.billing.synthetic import populate
from cas.crypto import Key, OperatorKeys, wrap_key
from cas.formats.emm import UniqueAddress, parse_emm
from cas.formats.sections import iter_sections
from cas.headend.emmfast import UNIQUE_STRIDE, build_item
from cas.headend.emmgen import EmmSettings, build_batch
from cas.headend.emmrun import card_targets
from cas.store.engine import Store, open_store
from cas.store.models import Account, Box, Card, EmmSequence, Package, Subscription

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AT_S = int(T0.timestamp())
DAY = 86_400
ALL = (0, 0xFF_FFFF)


def _keys() -> OperatorKeys:
    r = random.Random(3)
    return OperatorKeys.generate(lambda n: r.randbytes(n))


def _sub(account_id: int, package_id: int, status: str, start: int | None,
         until: int | None) -> Subscription:
    return Subscription(account_id=account_id, package_id=package_id, status=status,
                        start_s=start, paid_until_s=until, created_at_s=AT_S - DAY)


def _base(url: str, keys: OperatorKeys) -> Store:
    store = open_store(db_url=url)
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=T0)
        populate(s, cards=700, at=T0)
        cards = list(s.execute(select(Card.serial, Card.account_id).where(
            Card.account_id.is_not(None), Card.status == "active").order_by(Card.serial)))
        packages = [int(p) for p in s.execute(select(Package.id).order_by(Package.id))
                    .scalars()]
        (_, acc_many), (paired, _), (stranger, _), (_, acc_odd) = cards[5:9]
        # 30 windows on one account: more than one EMM carries (plus PAIR on one card).
        s.add_all(_sub(acc_many, packages[i % len(packages)], "active",
                       AT_S - i * DAY, AT_S + (40 + i) * DAY) for i in range(30))
        # Odd windows: paid beyond 2106, empty, no start, pending and closed (no rights),
        # expired (kept), and two windows of one package.
        p0 = packages[0]
        s.add_all([_sub(acc_odd, p0, "active", AT_S - DAY, 5_000_000_000),
                   _sub(acc_odd, p0, "active", AT_S - 9 * DAY, AT_S - 2 * DAY),
                   _sub(acc_odd, p0, "active", AT_S, AT_S),
                   _sub(acc_odd, p0, "active", None, AT_S + DAY),
                   _sub(acc_odd, packages[-1], "pending", AT_S, AT_S + DAY),
                   _sub(acc_odd, packages[-1], "closed", AT_S, AT_S + DAY),
                   _sub(acc_odd, packages[1], "expired", AT_S - 40 * DAY, AT_S - 10 * DAY)])
        # Paired cards: one box whose key opens, one whose key does not (no PAIR command).
        csk = Key(random.Random(4).randbytes(16), label="csk")
        s.add_all([Box(chip_id=0x1234_5678, wrapped_csk=wrap_key(keys.transport_key(), csk),
                       imported_at_s=AT_S),
                   Box(chip_id=0x0BAD_0BAD, wrapped_csk=bytes(24), imported_at_s=AT_S)])
        s.flush()
        s.execute(update(Card).where(Card.serial == paired).values(paired_chip_id=0x1234_5678))
        s.execute(update(Card).where(Card.serial == stranger).values(
            paired_chip_id=0x0BAD_0BAD))
        # Region and maturity at their edges; a suspension without an end.
        s.execute(update(Card).where(Card.serial == cards[11][0]).values(
            region=0xFFFF, maturity_limit=0))
        s.execute(update(Account).where(Account.id == cards[12][1]).values(
            suspended_from_s=AT_S - DAY, suspended_until_s=None))
        # Some cards already got their current rights (version 1): not booked again.
        s.add_all(EmmSequence(address_kind="unique", address=int(serial), next_seq=7 + i,
                              sent_rights_version=1) for i, (serial, _) in
                  enumerate(cards[::37]))
        # A card blocked for sharing (docs/sharing.md) is sent KILLED.
        s.execute(update(Card).where(Card.serial == cards[13][0]).values(status="blocked"))
        # The paired card moves to the account with 30 windows: PAIR and several EMMs.
        s.execute(update(Card).where(Card.serial == paired).values(account_id=acc_many))
    return store


U_BASE = 2**32 + 5  # the wire carries it modulo 2^32
S_BASE = 41


@pytest.mark.postgres
@pytest.mark.parametrize("shared_min", [0, 2])
def test_fast_item_is_byte_identical_to_the_reference(postgres_url: str,
                                                      shared_min: int) -> None:
    keys = _keys()
    store = _base(postgres_url, keys)
    settings = EmmSettings(shared_min_members=shared_min)
    with store.reader() as s:
        states = list(iter_card_states(s, T0, shared_range=ALL))
        sent = {int(a): int(v) for a, v in s.execute(
            select(EmmSequence.address, EmmSequence.sent_rights_version).where(
                EmmSequence.address_kind == "unique"))}
        targets = card_targets(s, keys, states)
        ref = build_batch(keys, targets, at_s=AT_S, unique_seq=lambda _a: U_BASE,
                          shared_seq=lambda _g: S_BASE, settings=settings,
                          rng=random.Random(9).randbytes)
        fast = build_item(s, keys, lo=ALL[0], hi=ALL[1], at_s=AT_S, settings=settings,
                          unique_base=U_BASE, shared_base=S_BASE,
                          rng=random.Random(9).randbytes)
    # The sample covers what it claims to.
    assert {st.rights.status for st in states} == set(CardStatus)
    assert any(st.rights.status is CardStatus.KILLED and st.serial in blocked_serials(store)
               for st in states)
    assert sum(t.pairing is not None for t in targets) == 1
    assert any(st.paired_chip_id is not None and t.pairing is None
               for st, t in zip(states, targets, strict=True))
    assert any(len(st.rights.entitlements) > 17 for st in states)
    assert any(e.end_s == 0xFFFF_FFFF for st in states for e in st.rights.entitlements)
    assert any(n - U_BASE > 1 for n in ref.unique_next.values())  # several EMMs
    assert (ref.shared_count > 0) == bool(shared_min)
    # Byte for byte, and the same bookings: only the cards not yet sent their version.
    assert fast.data == b"".join(ref.sections)
    assert (fast.cards, fast.unique_emms, fast.shared_emms) == (
        len(states), ref.unique_count, ref.shared_count)
    pending = [st for st in states if st.rights_version > sent.get(st.serial, 0)]
    assert 0 < len(pending) < len(states)
    assert fast.sent_serials == [st.serial for st in pending]
    assert fast.sent_versions == [st.rights_version for st in pending]
    assert fast.unique_span == max(ref.unique_next.values()) - U_BASE
    store.dispose()


def blocked_serials(store: Store) -> set[int]:
    with store.reader() as s:
        return {int(x) for x in s.execute(select(Card.serial).where(Card.status == "blocked"))
                .scalars()}


@pytest.mark.postgres
def test_a_card_needing_more_emms_than_the_stride_is_cut_and_left_pending(
        postgres_url: str) -> None:
    keys = _keys()
    store = _base(postgres_url, keys)
    with store.transaction() as s:
        serial, acc = next(iter(s.execute(select(Card.serial, Card.account_id).where(
            Card.account_id.is_not(None), Card.status == "active",
            Card.paired_chip_id.is_(None)).order_by(Card.serial.desc()))))
        packages = [int(p) for p in s.execute(select(Package.id)).scalars()]
        # 12 + 15 x 17 windows fill UNIQUE_STRIDE EMMs exactly; these need more.
        s.add_all(_sub(acc, packages[i % len(packages)], "active", AT_S - i, AT_S + DAY + i)
                  for i in range(12 + (UNIQUE_STRIDE - 1) * 17 + 5))
    with store.reader() as s:
        fast = build_item(s, keys, lo=ALL[0], hi=ALL[1], at_s=AT_S,
                          settings=EmmSettings(shared_min_members=0), unique_base=U_BASE,
                          shared_base=S_BASE)
    seqs = [parse_emm(sec).header.seq for sec in iter_sections(fast.data)
            if parse_emm(sec).header.address == UniqueAddress(serial=serial)]
    assert seqs == [(U_BASE + k) % 2**32 for k in range(UNIQUE_STRIDE)]
    assert fast.unique_span == UNIQUE_STRIDE
    assert serial not in fast.sent_serials  # the incremental feed sends it whole
    store.dispose()


@pytest.mark.postgres
def test_an_empty_range_gives_nothing(postgres_url: str) -> None:
    keys = _keys()
    store = _base(postgres_url, keys)
    with store.reader() as s:
        empty = build_item(s, keys, lo=0xFF_FF00, hi=0xFF_FFFF, at_s=AT_S,
                           settings=EmmSettings(), unique_base=1, shared_base=1)
    assert empty.data == b"" and empty.cards == 0 and empty.sent_serials == []
    store.dispose()


@pytest.mark.postgres
def test_the_one_loop_item_is_byte_identical_to_the_reference(postgres_url: str) -> None:
    """The common item (no paired card, every card's rights in one EMM, shared EMMs off) is
    sealed in build_item's own loop: the same bytes as build_batch."""
    keys = _keys()
    store = open_store(db_url=postgres_url)
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=T0)
        populate(s, cards=2000, at=T0)
        serial = s.execute(select(Card.serial).where(Card.account_id.is_not(None))
                           .order_by(Card.serial)).scalars().first()
        s.execute(update(Card).where(Card.serial == serial).values(status="blocked"))
    with store.reader() as s:
        states = list(iter_card_states(s, T0, shared_range=ALL))
        targets = card_targets(s, keys, states)
        ref = build_batch(keys, targets, at_s=AT_S, unique_seq=lambda _a: 77,
                          shared_seq=lambda _g: 1, settings=EmmSettings(shared_min_members=0),
                          rng=random.Random(5).randbytes)
        fast = build_item(s, keys, lo=ALL[0], hi=ALL[1], at_s=AT_S,
                          settings=EmmSettings(shared_min_members=0), unique_base=77,
                          shared_base=1, rng=random.Random(5).randbytes)
    # The one-loop path's conditions hold, and the sample has every card status.
    assert all(t.pairing is None for t in targets)
    assert max(len(st.rights.entitlements) for st in states) <= 16
    assert {st.rights.status for st in states} == set(CardStatus)
    assert fast.data == b"".join(ref.sections) and fast.unique_emms == len(states) == 2000
    assert fast.sent_serials == [st.serial for st in states]  # nothing sent before
    store.dispose()
