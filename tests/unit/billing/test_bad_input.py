"""Bad input gets our typed error with a stable code, a one-line message and a non-zero exit
code from the CLI, and writes nothing (the whole database is compared before and after)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from click.testing import CliRunner

from cas.billing import service
from cas.cli.main import cli
from cas.errors import BillingError, CasError, ValidationError
from cas.store.engine import Store
from cas.store.errors import RecordConflict, RecordNotFound
from tests.unit.billing.helpers import Bench


@pytest.fixture
def ntv(bench: Callable[[str], Bench]) -> Bench:
    b = bench("ntvplus")
    acc = b.account(contract_number="7701234")
    b.card(acc)  # 2256884759
    b.pay(acc, 599_00, payment_id="first")
    return b


def _run(store: Store, *args: str) -> tuple[int, str, str]:
    url = store.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["--db-url", url, *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(("kw", "error", "code"), [
    ({"by": "card", "ref": "4000000001"}, RecordNotFound, "UNKNOWN_CARD"),
    ({"by": "contract", "ref": "9999999"}, RecordNotFound, "UNKNOWN_CONTRACT"),
    ({"by": "account", "ref": "000000000000"}, RecordNotFound, "UNKNOWN_ACCOUNT"),
    ({"amount_minor": -100}, ValidationError, "NEGATIVE_AMOUNT"),
    ({"amount_minor": 0}, ValidationError, "ZERO_AMOUNT"),
    ({"amount_minor": 10.5}, ValidationError, "BAD_AMOUNT"),
    ({"amount_minor": "100"}, ValidationError, "BAD_AMOUNT"),
    ({"amount_minor": True}, ValidationError, "BAD_AMOUNT"),
    ({"payment_id": "first"}, RecordConflict, "DUPLICATE_PAYMENT"),
    ({"payment_id": ""}, ValidationError, "BAD_PAYMENT_ID"),
    ({"method": "barter"}, ValidationError, "BAD_METHOD"),
    ({"method": "payment_card"}, ValidationError, "PAYMENT_CARDS_UNSUPPORTED"),
    ({"package": "sport"}, BillingError, "ADDON_NEEDS_BASE"),
    ({"package": "platinum"}, RecordNotFound, "UNKNOWN_PACKAGE"),
    ({"at": datetime(2026, 3, 1)}, ValidationError, "NAIVE_TIME"),
])
def test_bad_payments_write_nothing(ntv: Bench, kw: dict[str, object], error: type[CasError],
                                    code: str) -> None:
    args: dict[str, object] = {"by": "contract", "ref": "7701234", "amount_minor": 100_00,
                               "payment_id": "second", "at": ntv.now()}
    args.update(kw)
    before = ntv.snapshot()
    with pytest.raises(error) as exc, ntv.tx() as s:
        service.pay(s, **args)  # type: ignore[arg-type]
    assert getattr(exc.value, "code", None) == code
    assert "\n" not in str(exc.value)
    assert ntv.snapshot() == before


@pytest.mark.parametrize(("args", "exit_code", "needle"), [
    (["pay", "--card", "4000000001", "100"], 6, "unknown card 4000000001"),
    (["pay", "--contract", "9999999", "100"], 6, "unknown contract"),
    (["pay", "--contract", "7701234", "-100"], 7, "negative"),
    (["pay", "--contract", "7701234", "abc"], 7, "not a number"),
    (["pay", "--contract", "7701234", "1.234"], 7, "more decimals"),
    (["pay", "--contract", "7701234", "100", "--payment-id", "first"], 6, "already booked"),
    (["sms", "ntvplus 2256884759"], 7, "ntvplus <card-or-contract-number> <amount>"),
    (["sms", "ntvplus 2256884759 -5"], 7, "ntvplus <card-or-contract-number> <amount>"),
    (["sms", "ntvplus 1111111111 5"], 6, "no card, contract or account"),
    (["package", "subscribe", "7701234", "sport"], 7, "needs a base package"),
    (["resume", "7701234"], 6, "not suspended"),
    (["pay", "--card", "1", "--contract", "7701234", "100"], 2, "exactly one of"),
])
def test_cli_bad_input_one_line_nonzero_nothing_written(ntv: Bench, args: list[str],
                                                        exit_code: int, needle: str) -> None:
    before = ntv.snapshot()
    code, out, err = _run(ntv.store, *args)
    assert code == exit_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert out == ""
    assert ntv.snapshot() == before


def test_cli_switch_inside_the_lock_window(bench: Callable[[str], Bench]) -> None:
    atv = bench("atvplus")
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(card, 21_00, by="card", package="standard")
    with atv.tx() as s:
        service.switch_package(s, account_number=acc, package="sport", at=atv.now())
    atv.advance(days=10)
    before = atv.snapshot()
    code, out, err = _run(atv.store, "package", "switch", acc, "standard")
    assert code == 7 and out == ""
    assert err.count("\n") == 1 and "next switch is possible from 2026-03-31" in err
    code, _out, err = _run(atv.store, "pay", "--card", str(card), "10", "--method",
                           "payment_card", "--package", "standard")
    assert code == 7 and "30-day rule" in err
    assert atv.snapshot() == before


def test_errors_carry_stable_codes() -> None:
    assert ValidationError("x").code == "INVALID_INPUT"
    assert RecordNotFound("x", code="UNKNOWN_CARD").code == "UNKNOWN_CARD"
    assert isinstance(RecordConflict("x"), CasError)
