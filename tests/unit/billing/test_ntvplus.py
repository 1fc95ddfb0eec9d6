"""NTV Plus (seed 001): contract + holder + card; top-up by contract or card number; SMS
payment "ntvplus <card-or-contract-number> <amount>"; temporary suspension and resumption;
Promised Payment; the payment statement."""

from __future__ import annotations

import pytest

from cas.access import CardStatus
from cas.billing import accounts, service
from cas.errors import BillingError, ValidationError
from cas.i18n import Translator
from cas.reasons import Reason
from cas.store.errors import RecordConflict, RecordNotFound
from tests.fixtures.lang import english_in
from tests.unit.billing.helpers import DAY, Bench

RUB = 100
BASIC = 599 * RUB


def _holder(ntv: Bench) -> tuple[str, int]:
    acc = ntv.account(surname="Petrov", name="Pyotr", patronymic="Petrovich",
                      contract_number="7701234", phone="+79161234567")
    return acc, ntv.card(acc)


def _subscribe(ntv: Bench, acc: str, package: str = "basic") -> None:
    with ntv.tx() as s:
        service.subscribe(s, account_number=acc, package=package, at=ntv.now())


def test_top_up_by_contract_or_card_number(ntv: Bench) -> None:
    acc, card = _holder(ntv)
    ntv.pay("7701234", 300 * RUB, by="contract")
    ntv.pay(f"{card:010d}", 200 * RUB, by="card")
    assert ntv.balance(acc) == 500 * RUB
    assert [x.description for x in ntv.statement(acc).lines] == [
        "payment by contract 7701234 (online)", f"payment by card {card:010d} (online)"]


def test_sms_payment_by_card_and_by_contract(ntv: Bench) -> None:
    acc, card = _holder(ntv)
    assert card == 2256884759
    with ntv.tx() as s:
        r = service.pay_by_sms(s, text="ntvplus 2256884759 425", payment_id="sms-1", at=ntv.now())
    assert (r.account_number, r.amount_minor) == (acc, 42500)
    with ntv.tx() as s:
        service.pay_by_sms(s, text="  NTVPLUS 7701234 100.50 ", payment_id="sms-2", at=ntv.now())
    assert ntv.balance(acc) == 42500 + 10050
    # The statement says how each SMS paid: by the card number, by the contract number.
    assert [x.description for x in ntv.statement(acc).lines] == [
        "payment by card 2256884759 (sms)", "payment by contract 7701234 (sms)"]
    assert [x.ref for x in ntv.statement(acc).lines] == ["sms-1", "sms-2"]


def test_sms_by_account_number_says_by_account(ntv: Bench) -> None:
    acc, _card = _holder(ntv)
    with ntv.tx() as s:
        service.pay_by_sms(s, text=f"ntvplus {acc} 10", payment_id="sms-a", at=ntv.now())
    assert [x.description for x in ntv.statement(acc).lines] == [f"payment by account {acc} (sms)"]


def test_the_seed_contract_number_2256884759(ntv: Bench) -> None:
    """Seed 001: "ntvplus 2256884759 425 — in the middle the contract number".  NTV Plus
    contracts have 10 digits, like card numbers; such a contract is accepted, generated
    contracts have 10 digits too, and the SMS pays it by contract."""
    acc = ntv.account(surname="Petrov", name="Pyotr", contract_number="2256884759")
    other = ntv.account()
    with ntv.store.reader() as s:
        assert len(accounts.get_account(s, other).contract_number) == 10
    with ntv.tx() as s:
        r = service.pay_by_sms(s, text="ntvplus 2256884759 425", payment_id="sms-1", at=ntv.now())
    assert (r.account_number, r.amount_minor) == (acc, 42500)
    assert [x.description for x in ntv.statement(acc).lines] == [
        "payment by contract 2256884759 (sms)"]


def test_a_number_that_is_a_contract_and_a_card_of_another_account_is_refused(ntv: Bench) -> None:
    """The rule: a reference naming two accounts (a contract of one, a card of another) is
    refused, naming both; nothing is booked.  Paying by card or by contract explicitly works."""
    holder = ntv.account(surname="Petrov", name="Pyotr", contract_number="2256884759")
    card_owner = ntv.account(surname="Sidorov", name="Sidor")
    card = ntv.card(card_owner)
    assert card == 2256884759
    before = ntv.snapshot()
    with pytest.raises(ValidationError) as exc, ntv.tx() as s:
        service.pay_by_sms(s, text="ntvplus 2256884759 425", payment_id="sms-1", at=ntv.now())
    assert exc.value.code == "AMBIGUOUS_REFERENCE"
    msg = str(exc.value)
    assert f"contract 2256884759 of account {holder}" in msg
    assert f"card 2256884759 of account {card_owner}" in msg
    # The same refusal in Russian names both, in Russian (README, "Errors").
    assert exc.value.message_id is not None
    ru = Translator("ru").error(exc.value.message_id, exc.value.message_params)
    assert ru is not None and english_in(ru) == [], ru
    assert f"договор 2256884759 (лицевой счёт {holder})" in ru
    assert f"карта 2256884759 (лицевой счёт {card_owner})" in ru
    assert ntv.snapshot() == before
    ntv.pay("2256884759", 100 * RUB, by="contract")
    ntv.pay("2256884759", 200 * RUB, by="card")
    assert (ntv.balance(holder), ntv.balance(card_owner)) == (100 * RUB, 200 * RUB)


def test_a_contract_and_a_card_of_the_same_account_is_booked_by_contract(ntv: Bench) -> None:
    acc = ntv.account(surname="Petrov", name="Pyotr", contract_number="2256884759")
    assert ntv.card(acc) == 2256884759
    with ntv.tx() as s:
        r = service.pay_by_sms(s, text="ntvplus 2256884759 425", payment_id="sms-1", at=ntv.now())
    assert r.account_number == acc
    assert [x.description for x in ntv.statement(acc).lines] == [
        "payment by contract 2256884759 (sms)"]


@pytest.mark.parametrize("text", [
    "ntvplus 2256884759", "ntvplus2256884759 425", "ntvplus 2256884759 -425",
    "ntvplus 2256884759 4x5", "tricolor 2256884759 425", "ntvplus abc 425", "",
    "ntvplus 2256884759 425 extra", "ntvplus 2256884759 425.123",
])
def test_malformed_sms_refused_and_nothing_written(ntv: Bench, text: str) -> None:
    _holder(ntv)
    before = ntv.snapshot()
    with pytest.raises(ValidationError) as exc, ntv.tx() as s:
        service.pay_by_sms(s, text=text, payment_id="sms-x", at=ntv.now())
    assert exc.value.code in {"BAD_SMS", "BAD_AMOUNT"}
    assert ntv.snapshot() == before


def test_sms_to_unknown_number_refused(ntv: Bench) -> None:
    _holder(ntv)
    before = ntv.snapshot()
    with pytest.raises(RecordNotFound) as exc, ntv.tx() as s:
        service.pay_by_sms(s, text="ntvplus 1234567890 425", payment_id="sms-y", at=ntv.now())
    assert exc.value.code == "UNKNOWN_CARD_OR_CONTRACT"
    assert ntv.snapshot() == before


def test_suspension_keeps_the_paid_days(ntv: Bench) -> None:
    acc, card = _holder(ntv)
    ntv.pay(acc, BASIC)
    _subscribe(ntv, acc)
    end = ntv.subs(acc)["basic"].end
    assert end is not None
    ntv.advance(days=10)
    with ntv.tx() as s:
        b = service.suspend(s, account_number=acc, at=ntv.now(), until=ntv.now() + 20 * DAY)
    assert b.suspended_until == ntv.now() + 20 * DAY
    assert ntv.rights(card).status == CardStatus.SUSPENDED
    assert ntv.why(card, 1) == Reason.CARD_SUSPENDED
    rep = ntv.advance(days=25)  # passes the old end date: no renewal while suspended
    assert [e.kind for e in rep.events] == ["resumed"]
    assert ntv.rights(card).status == CardStatus.ACTIVE
    v = ntv.subs(acc)["basic"]
    assert v.end == end + 20 * DAY
    assert v.days_left == 15  # 20 days were left at suspension, 5 days since resumption
    assert ntv.balance(acc) == 0


def test_early_resumption(ntv: Bench) -> None:
    acc, card = _holder(ntv)
    ntv.pay(acc, BASIC)
    _subscribe(ntv, acc)
    end = ntv.subs(acc)["basic"].end
    assert end is not None
    with ntv.tx() as s:
        service.suspend(s, account_number=acc, at=ntv.now())  # open-ended: up to 90 days
    ntv.advance(days=8)
    with ntv.tx() as s:
        service.resume(s, account_number=acc, at=ntv.now())
    assert ntv.subs(acc)["basic"].end == end + 8 * DAY
    assert ntv.why(card, 1) == Reason.OPEN


def test_suspension_rules(ntv: Bench) -> None:
    acc, _card = _holder(ntv)
    with pytest.raises(ValidationError) as exc, ntv.tx() as s:
        service.suspend(s, account_number=acc, at=ntv.now(), until=ntv.now() + 3 * DAY)
    assert exc.value.code == "BAD_SUSPENSION"  # NTV Plus profile: 7 to 90 days
    with pytest.raises(RecordConflict) as exc2, ntv.tx() as s:
        service.resume(s, account_number=acc, at=ntv.now())
    assert exc2.value.code == "NOT_SUSPENDED"
    with ntv.tx() as s:
        service.suspend(s, account_number=acc, at=ntv.now(), until=ntv.now() + 7 * DAY)
    with pytest.raises(RecordConflict) as exc3, ntv.tx() as s:
        service.suspend(s, account_number=acc, at=ntv.now())
    assert exc3.value.code == "ALREADY_SUSPENDED"


def test_promised_payment_expiring_into_a_financial_block(ntv: Bench) -> None:
    acc, card = _holder(ntv)
    ntv.pay(acc, BASIC)
    _subscribe(ntv, acc)
    ntv.advance(days=30)
    assert ntv.rights(card).status == CardStatus.FINANCIAL_BLOCK
    with ntv.tx() as s:
        b = service.promise(s, account_number=acc, at=ntv.now())
    assert b.promised_minor == BASIC  # what the renewal needs
    assert ntv.balance(acc) == 0  # lent and spent on the renewal
    assert ntv.rights(card).status == CardStatus.ACTIVE
    assert ntv.why(card, 1) == Reason.OPEN
    rep = ntv.advance(days=5)  # not repaid in time
    assert [e.kind for e in rep.events] == ["promise_expired"]
    assert ntv.balance(acc) == -BASIC
    assert ntv.rights(card).status == CardStatus.FINANCIAL_BLOCK
    assert ntv.why(card, 1) == Reason.FINANCIAL_BLOCK
    assert ntv.balance_view(acc).block_cause == "debt"
    ntv.pay(acc, 500 * RUB)  # not enough to clear the debt
    assert ntv.rights(card).status == CardStatus.FINANCIAL_BLOCK
    ntv.pay(acc, 99 * RUB)
    assert ntv.balance(acc) == 0
    assert ntv.rights(card).status == CardStatus.ACTIVE
    assert ntv.subs(acc)["basic"].days_left == 25  # the period bought with the promise


def test_promised_payment_repaid_in_time(ntv: Bench) -> None:
    acc, _card = _holder(ntv)
    ntv.pay(acc, 199 * RUB)
    _subscribe(ntv, acc)  # pending: 400 short
    with ntv.tx() as s:
        b = service.promise(s, account_number=acc, at=ntv.now())
    assert b.promised_minor == 400 * RUB
    assert ntv.subs(acc)["basic"].status == "active"
    assert ntv.balance(acc) == 0
    with pytest.raises(RecordConflict) as exc, ntv.tx() as s:
        service.promise(s, account_number=acc, at=ntv.now())
    assert exc.value.code == "PROMISE_OPEN"
    ntv.advance(days=2)
    ntv.pay(acc, 1000 * RUB)
    assert ntv.balance(acc) == 600 * RUB
    assert ntv.balance_view(acc).promised_minor == 0
    rep = ntv.advance(days=10)
    assert rep.events == ()
    kinds = [x.kind for x in ntv.statement(acc).lines]
    assert kinds == ["payment", "promised_credit", "charge", "payment", "promised_repayment"]


def test_promise_refused_when_not_needed_or_too_large(ntv: Bench) -> None:
    acc, _card = _holder(ntv)
    ntv.pay(acc, 2 * BASIC)
    _subscribe(ntv, acc)
    with pytest.raises(BillingError) as exc, ntv.tx() as s:
        service.promise(s, account_number=acc, at=ntv.now())
    assert exc.value.code == "PROMISE_NOT_NEEDED"
    with pytest.raises(ValidationError) as exc2, ntv.tx() as s:
        service.promise(s, account_number=acc, at=ntv.now(), amount_minor=1001 * RUB)
    assert exc2.value.code == "PROMISE_TOO_LARGE"


def test_statement_reproduces_the_balance(ntv: Bench) -> None:
    acc, _card = _holder(ntv)
    ntv.pay(acc, 1000 * RUB)
    _subscribe(ntv, acc)
    with ntv.tx() as s:
        service.subscribe(s, account_number=acc, package="sport", at=ntv.now())
    ntv.advance(days=30)
    ntv.pay(acc, 123 * RUB + 45)
    ntv.advance(days=30)
    st = ntv.statement(acc)
    assert st.opening_balance_minor == 0
    assert st.closing_balance_minor == ntv.balance(acc)
    assert sum(x.amount_minor for x in st.lines) == ntv.balance(acc)
    running = 0
    for line in st.lines:
        running += line.amount_minor
        assert line.balance_after_minor == running
    cut = ntv.now() - 30 * DAY
    with ntv.store.reader() as s:
        first = service.statement(s, account_number=acc, until=cut)
        second = service.statement(s, account_number=acc, since=cut)
    assert first.closing_balance_minor == second.opening_balance_minor
    assert second.closing_balance_minor == ntv.balance(acc)
    assert len(first.lines) + len(second.lines) == len(st.lines)
