"""MTS Satellite TV (seed 003): an account number assigned once and never changed; lookup from
the box's Chip ID plus the card number; tariff switching and add-on options; balance and
payment history; notifications to e-mail and phone."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cas.billing import accounts, service
from cas.billing.accounts import luhn_valid
from cas.errors import ConflictError
from cas.formats.chipid import ChipIdRecord
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Account, Box, Notification
from tests.unit.billing.helpers import Bench

RUB = 100


def _chip(chip_id: int, csk: bytes = b"\x11" * 24) -> ChipIdRecord:
    return ChipIdRecord(chip_id=chip_id, vendor="AcmeChips", model="AC-7", wrapped_csk=csk,
                        firmware_version=0x01020304, manufactured_s=1_700_000_000)


def test_account_number_assigned_once_and_never_changed(mts: Bench) -> None:
    first, second = mts.account(), mts.account()
    assert first != second
    assert len(first) == 12 and luhn_valid(first) and luhn_valid(second)
    with pytest.raises(ConflictError), mts.tx() as s:
        acc = s.execute(select(Account).where(Account.account_number == first)).scalar_one()
        acc.account_number = "000000000026"
    with mts.tx() as s:
        accounts.update_account(s, account_number=first, at=mts.now(), phone="+79990001122",
                                email="new@example.ru")
        view = accounts.get_account(s, first)
    assert view.account_number == first and view.phone == "+79990001122"


def test_lookup_by_chip_id_and_card_number(mts: Bench) -> None:
    mine, other = mts.account(), mts.account()
    my_card, other_card = mts.card(mine), mts.card(other)
    with mts.tx() as s:
        rep = accounts.import_boxes(s, [_chip(0x0A0B0C0D), _chip(0x01020304)], at=mts.now())
        assert rep.added == 2
        accounts.pair_card(s, serial=my_card, chip_id=0x0A0B0C0D, at=mts.now())
        accounts.link_box(s, chip_id=0x01020304, account_number=other, at=mts.now())
    with mts.store.reader() as s:
        assert service.lookup_by_chip_and_card(s, chip_id=0x0A0B0C0D, card_serial=my_card) == mine
        assert service.lookup_by_chip_and_card(s, chip_id=0x01020304,
                                               card_serial=other_card) == other
        messages = set()
        for chip, card in [(0x0A0B0C0D, other_card), (0x01020304, my_card),
                           (0xDEADBEEF, my_card), (0x0A0B0C0D, 4_000_000_000)]:
            with pytest.raises(RecordNotFound) as exc:
                service.lookup_by_chip_and_card(s, chip_id=chip, card_serial=card)
            assert exc.value.code == "NO_MATCH"
            messages.add(str(exc.value))
    assert len(messages) == 1  # the answer never tells which half was wrong


def test_box_import_is_idempotent_and_refuses_conflicts(mts: Bench) -> None:
    with mts.tx() as s:
        accounts.import_boxes(s, [_chip(1), _chip(2)], at=mts.now())
    with mts.tx() as s:
        rep = accounts.import_boxes(s, [_chip(1), _chip(3)], at=mts.now())
    assert (rep.added, rep.unchanged) == (1, 1)
    before = mts.snapshot()
    with pytest.raises(RecordConflict) as exc, mts.tx() as s:
        accounts.import_boxes(s, [_chip(4), _chip(2, csk=b"\x22" * 24)], at=mts.now())
    assert exc.value.code == "CHIP_ID_CONFLICT"
    assert mts.snapshot() == before
    with mts.store.reader() as s:
        box = s.get(Box, 1)
        assert box is not None and box.firmware_version == "1.2.3.4"
        assert box.wrapped_csk == b"\x11" * 24  # as delivered (wrapped), never unwrapped


def test_pairing_moves_the_box_to_the_new_card(mts: Bench) -> None:
    acc = mts.account()
    c1, c2 = mts.card(acc), mts.card(acc)
    with mts.tx() as s:
        accounts.import_boxes(s, [_chip(7)], at=mts.now())
        accounts.pair_card(s, serial=c1, chip_id=7, at=mts.now())
        accounts.pair_card(s, serial=c2, chip_id=7, at=mts.now())
        views = {v.serial: v for v in accounts.list_cards(s, account_number=acc)}
    assert views[c1].paired_chip_id is None and views[c2].paired_chip_id == 7
    other = mts.account()
    c3 = mts.card(other)
    with pytest.raises(RecordConflict) as exc, mts.tx() as s:
        accounts.pair_card(s, serial=c3, chip_id=7, at=mts.now())
    assert exc.value.code == "BOX_LINKED_ELSEWHERE"


def test_tariff_switching_and_options(mts: Bench) -> None:
    acc = mts.account()
    card = mts.card(acc)
    mts.pay(acc, 2000 * RUB)
    with mts.tx() as s:
        service.subscribe(s, account_number=acc, package="basic", at=mts.now())
        service.subscribe(s, account_number=acc, package="kids", at=mts.now())
    mts.advance(days=3)
    with mts.tx() as s:  # MTS has no switch lock: two switches in a row are fine
        service.switch_package(s, account_number=acc, package="extended", at=mts.now())
        r = service.switch_package(s, account_number=acc, package="basic", at=mts.now())
    assert r.unused_days == 30
    subs = mts.subs(acc)
    assert set(subs) == {"basic", "kids"} and subs["kids"].status == "active"
    assert {e.package_id for e in mts.rights(card).entitlements} == {1, 13}


def test_notifications_by_email_and_phone(mts: Bench) -> None:
    acc = mts.account(phone="+79160000001", email="subscriber@example.ru")
    mts.pay(acc, 190 * RUB)
    with mts.tx() as s:
        service.subscribe(s, account_number=acc, package="basic", at=mts.now())
    mts.advance(days=26)  # the profile reminds 5 days ahead
    with mts.store.reader() as s:
        rows = s.execute(select(Notification.channel, Notification.kind)
                         .order_by(Notification.id)).all()
    assert [tuple(r) for r in rows if r[1] == "reminder"] == [("sms", "reminder"),
                                                              ("email", "reminder")]
    with mts.tx() as s:
        accounts.update_account(s, account_number=acc, at=mts.now(), notify_sms=False)
    mts.advance(days=5)
    with mts.store.reader() as s:
        blocks = s.execute(select(Notification.channel).where(
            Notification.kind == "financial_block")).scalars().all()
    assert blocks == ["email"]
