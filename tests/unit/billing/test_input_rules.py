"""Numbers are ASCII digits only and text fields refuse control characters — in the billing
layer (so the API, the portal and the CLI all refuse), on SQLite and on PostgreSQL.  Each
refusal is our typed error with a stable code and one line, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cas.billing import accounts, service
from cas.billing.catalog import get_channel, get_package
from cas.billing.money import parse_amount
from cas.errors import ValidationError
from tests.unit.billing.helpers import Bench, run_cas, with_ntv_holder

FOREIGN = ["²", "１０", "٣", "sid:²"]
CONTROL = ["x\x00y", "x\x1by", "x\x7fy", "x\x85y", "\x00"]


@pytest.fixture
def ntv(bench: Callable[[str], Bench]) -> Bench:
    return with_ntv_holder(bench("ntvplus"))


def _refused(b: Bench, code: str, fn: Callable[..., Any], **kw: Any) -> str:
    before = b.snapshot()
    with pytest.raises(ValidationError) as exc, b.tx() as s:
        fn(s, **kw)
    assert exc.value.code == code, exc.value
    message = str(exc.value)
    assert "\n" not in message and "invalid literal" not in message
    assert b.snapshot() == before
    return message


@pytest.mark.parametrize("ref", ["²", "１０", "٣", "²²５"])
def test_pay_by_card_with_other_digits(ntv: Bench, ref: str) -> None:
    # Was: "invalid literal for int() with base 10: '²'" (a ValueError: HTTP 500).
    message = _refused(ntv, "BAD_SERIAL", service.pay, by="card", ref=ref, amount_minor=100,
                       payment_id="p-digits", at=ntv.now())
    assert "ASCII digits 0-9" in message


@pytest.mark.parametrize("by", ["contract", "account"])
def test_pay_by_contract_or_account_with_other_digits(ntv: Bench, by: str) -> None:
    _refused(ntv, "BAD_NUMBER", service.pay, by=by, ref="７７０１２３４", amount_minor=100,
             payment_id="p-digits", at=ntv.now())


@pytest.mark.parametrize("ref", FOREIGN)
def test_channel_with_other_digits(ntv: Bench, ref: str) -> None:
    message = _refused(ntv, "BAD_NUMBER", lambda s: get_channel(s, ref))
    assert "ASCII digits" in message


def test_channel_and_package_numbers_out_of_range_are_unknown(ntv: Bench) -> None:
    from cas.store.errors import RecordNotFound

    with ntv.store.reader() as s:
        for ref in ("99999999999999999999999", "sid:99999999999999999999"):
            with pytest.raises(RecordNotFound):
                get_channel(s, ref)
        with pytest.raises(RecordNotFound):
            get_package(s, "99999999999999999999999")
        assert get_channel(s, "1").number == 1  # ASCII still works
        assert get_channel(s, f"sid:{get_channel(s, '1').service_id}").number == 1


@pytest.mark.parametrize("text", ["１０", "１０.５０", "٣", "1²"])
def test_amounts_in_other_digits(text: str) -> None:
    # Was: "１０" accepted as 10.
    with pytest.raises(ValidationError) as exc:
        parse_amount(text, 100)
    assert exc.value.code == "BAD_AMOUNT"


def test_sms_reference_and_amount_in_other_digits(ntv: Bench) -> None:
    for text in ("ntvplus ２２５６８８４７５９ 425", "ntvplus 2256884759 ４２５"):
        _refused(ntv, "BAD_SMS", service.pay_by_sms, text=text, payment_id="sms-x",
                 at=ntv.now())


@pytest.mark.parametrize("field", ["surname", "name", "patronymic"])
@pytest.mark.parametrize("value", CONTROL)
def test_names_with_control_characters(ntv: Bench, field: str, value: str) -> None:
    kw: dict[str, Any] = {"surname": "Ivanov", "name": "Ivan", field: value}
    message = _refused(ntv, "BAD_NAME", accounts.create_account, at=ntv.now(), **kw)
    assert "control characters" in message


def test_contact_data_with_control_characters(ntv: Bench) -> None:
    acc = ntv.account()
    _refused(ntv, "BAD_NAME", accounts.update_account, account_number=acc, at=ntv.now(),
             surname="A\x00B")
    _refused(ntv, "BAD_EMAIL", accounts.update_account, account_number=acc, at=ntv.now(),
             email="a\x00@b.ru")
    _refused(ntv, "BAD_PHONE", accounts.update_account, account_number=acc, at=ntv.now(),
             phone="+7900\x001234567")
    _refused(ntv, "BAD_CONTRACT", accounts.create_account, surname="A", name="B",
             at=ntv.now(), contract_number="77\x0012")


def test_references_with_control_characters(ntv: Bench) -> None:
    for by in ("card", "contract", "account"):
        _refused(ntv, "BAD_TEXT", service.pay, by=by, ref="7701\x00234", amount_minor=100,
                 payment_id="p-nul", at=ntv.now())
    _refused(ntv, "BAD_TEXT", lambda s: get_channel(s, "Sport\x00"))
    _refused(ntv, "BAD_TEXT", lambda s: get_package(s, "base\x00"))
    acc = ntv.account()
    _refused(ntv, "BAD_TEXT", service.adjust_balance, account_number=acc, amount_minor=100,
             reason="goodwill\x00", at=ntv.now())
    # A multi-line reason is fine.
    with ntv.tx() as s:
        service.adjust_balance(s, account_number=acc, amount_minor=100,
                               reason="goodwill\nticket 42", at=ntv.now())


def test_lookups_with_nul_answer_unknown_not_a_database_error(ntv: Bench) -> None:
    # PostgreSQL cannot even take U+0000 in a query parameter.
    from cas.store.errors import RecordNotFound

    with ntv.store.reader() as s, pytest.raises(RecordNotFound):
        service.balance(s, account_number="0000\x00")


# --- the CLI: one line, exit 2 ------------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["pay", "5000", "--card", "²"], "card number '²'"),
    (["pay", "5000", "--card", "１０"], "ASCII digits 0-9"),
    (["pay", "１０", "--contract", "7701234"], "amount '１０'"),
    (["pay", "10", "--contract", "７７０１２３４"], "ASCII digits 0-9"),
    (["why", "--card", "2256884759", "--channel", "²"], "channel '²'"),
    (["why", "--card", "2256884759", "--channel", "sid:²"], "channel '²'"),
    (["why", "--card", "2256884759", "--channel", "SID:１２"], "channel '１２'"),
    (["why", "--card", "²", "--channel", "1"], "card number '²'"),
    (["card", "link", "²", "7701234"], "card number '²'"),
    (["card", "link", "2256884760", "٣"], "ASCII digits 0-9"),
])
def test_cli_numbers_in_other_digits(ntv: Bench, args: list[str], needle: str) -> None:
    before = ntv.snapshot()
    code, out, err = run_cas(ntv.store, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "invalid literal" not in err and out == ""
    assert ntv.snapshot() == before


def test_cli_refuses_a_nul_in_a_name(ntv: Bench) -> None:
    before = ntv.snapshot()
    code, out, err = run_cas(ntv.store, "account", "create", "--surname", "x\x1by",
                          "--name", "Ivan")
    assert code == 7 and out == ""
    assert err.count("\n") == 1 and "control characters" in err
    assert ntv.snapshot() == before
