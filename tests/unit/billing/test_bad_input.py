"""Bad input gets our typed error with a stable code, a one-line message and a non-zero exit
code from the CLI, and writes nothing (the whole database is compared before and after)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from cas.billing import service
from cas.cli.main import cli
from cas.errors import CasError, ValidationError
from cas.store.errors import RecordConflict, RecordNotFound
from tests.unit.billing.helpers import Bench, run_cas, with_ntv_holder


@pytest.fixture
def ntv(bench: Callable[[str], Bench]) -> Bench:
    return with_ntv_holder(bench("ntvplus"))


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
    # A single-value option given twice is refused, never last-wins (issue 12, item 24).
    (["pay", "--card", "4000000001", "--card", "2256884759", "100"], 2,
     "option --card given more than once"),
    (["pay", "--contract", "7701234", "100", "--payment-id", "a", "--payment-id", "b"], 2,
     "option --payment-id given more than once"),
    (["package", "subscribe", "7701234", "basic", "--verification", "a", "--verification", "b"],
     2, "option --verification given more than once"),
    # The card-number limit is the real one.
    (["pay", "--card", "9999999999", "100"], 2, "card number '9999999999': 1 to 4294967295"),
    (["why", "--card", "9999999999", "--channel", "1"], 2,
     "card number '9999999999': 1 to 4294967295"),
])
def test_cli_bad_input_one_line_nonzero_nothing_written(ntv: Bench, args: list[str],
                                                        exit_code: int, needle: str) -> None:
    before = ntv.snapshot()
    code, out, err = run_cas(ntv.store, *args)
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
    code, out, err = run_cas(atv.store, "package", "switch", acc, "standard")
    assert code == 7 and out == ""
    assert err.count("\n") == 1 and "next switch is possible from 2026-03-31" in err
    assert atv.snapshot() == before
    # With a payment, the switch is refused the same way but the money is booked.
    bal = atv.balance(acc)
    code, out, err = run_cas(atv.store, "pay", "--card", str(card), "10", "--method",
                          "payment_card", "--package", "standard")
    assert code == 0 and err == ""
    text = " ".join(out.split())
    assert "switch to standard not done" in text and "30-day rule" in text
    assert atv.balance(acc) == bal + 10_00
    assert set(atv.subs(acc)) == {"sport"}


def test_a_refused_package_choice_still_books_the_payment(ntv: Bench) -> None:
    """NTV Plus 'sport' is an add-on: without a base it cannot be chosen; the money is
    booked all the same and the answer says why the choice was not."""
    with ntv.tx() as s:
        r = service.pay(s, by="contract", ref="7701234", amount_minor=100_00,
                        payment_id="second", at=ntv.now(), package="sport")
    assert r.choice_refused == "ADDON_NEEDS_BASE" and r.balance_minor == 699_00
    assert "choice of sport not done" in r.note


def test_cli_no_switch_date_when_the_operator_has_no_switch_lock(ntv: Bench) -> None:
    """NTV Plus has no switch lock: the switch output says nothing of a next switch (it
    used to print "next switch from -")."""
    with ntv.store.reader() as s:
        number = service.find_account(s, by="contract", ref="7701234").account_number
    ntv.pay(number, 2000_00)
    with ntv.tx() as s:
        service.subscribe(s, account_number=number, package="basic", at=ntv.now())
    code, out, err = run_cas(ntv.store, "package", "switch", number, "optimum")
    assert code == 0, err
    text = " ".join(out.split())
    assert text.startswith("switched basic -> optimum: 30 unused days credited")
    assert "next switch" not in text


def test_cli_the_same_holder_twice_needs_again(ntv: Bench) -> None:
    args = ["account", "create", "--surname", "Petrov", "--name", "Pyotr", "--phone",
            "+79161234567"]
    code, _out, err = run_cas(ntv.store, *args)
    assert code == 0, err
    before = ntv.snapshot()
    code, out, err = run_cas(ntv.store, *args)
    assert code == 7 and out == ""
    assert "Petrov Pyotr already holds account" in err and "--again" in err
    assert err.count("\n") == 1
    assert ntv.snapshot() == before
    # Another holder of the same name with another phone is another person: no question.
    assert run_cas(ntv.store, "account", "create", "--surname", "Petrov", "--name", "Pyotr",
                "--phone", "+79160000000")[0] == 0
    code, _out, err = run_cas(ntv.store, *args, "--again")
    assert code == 0, err


def test_cli_promo_reuse_is_a_rule_refusal_exit_7(bench: Callable[[str], Bench]) -> None:
    from cas.billing import accounts

    tv = bench("tvplus")
    acc = tv.account()
    tv.card(acc)
    code, out, err = run_cas(tv.store, "promo", "redeem", acc, "TVPLUS30")
    assert code == 7 and "no such verification session" not in err
    assert "confirmed by SMS code" in err and err.count("\n") == 1
    codes = iter([bytes(range(16)), (123456).to_bytes(8, "big")])
    with tv.tx() as s:
        ch = accounts.start_verification(s, account_number=acc, phone="+77015550101",
                                         at=tv.now(), rng=lambda n: next(codes)[:n])
    with tv.tx() as s:
        assert accounts.confirm_verification(s, token=ch.token, code="123456",
                                             at=tv.now()).verified
    args = ("promo", "redeem", acc, "TVPLUS30", "--verification", ch.token)
    assert run_cas(tv.store, *args)[0] == 0
    before = tv.snapshot()
    code, out, err = run_cas(tv.store, *args)
    assert code == 7 and out == "" and "already used this promo code" in err
    assert tv.snapshot() == before


def test_a_root_option_twice_is_refused_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Options of `cas` itself are parsed before any command: the entry point's one line,
    and no store is opened (neither of the two)."""
    from cas.cli.app import run_cli

    first, second = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    monkeypatch.setattr(sys, "argv", ["cas", "--db-url", f"sqlite:///{first}", "--db-url",
                                      f"sqlite:///{second}", "clock", "show"])
    with pytest.raises(SystemExit) as exc:
        run_cli(cli, "cas")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "option --db-url given more than once" in err
    assert not first.exists() and not second.exists()


def test_errors_carry_stable_codes() -> None:
    assert ValidationError("x").code == "INVALID_INPUT"
    assert RecordNotFound("x", code="UNKNOWN_CARD").code == "UNKNOWN_CARD"
    assert isinstance(RecordConflict("x"), CasError)
