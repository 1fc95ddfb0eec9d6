"""``cas account password``: set from standard input, reset to a one-time password, refuse
bad input with one line; the stored hash verifies and the audit row holds no password."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cas.cli.account_password import one_time_password
from cas.cli.main import cli
from cas.store.engine import open_store
from cas.web.audit import entries
from cas.web.credentials import password_hash_of
from cas.web.security import verify_password


def _run(db_url: str, *args: str, input: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["--db-url", db_url, *args], input=input,
                           env={"COLUMNS": "250", "CAS_LANG": "en"})
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def account(db_url: str) -> str:
    assert _run(db_url, "operator", "use", "tvplus", "--clock-start", "2026-03-01")[0] == 0
    code, out, err = _run(db_url, "--json", "account", "create", "--surname", "Aliyev",
                          "--name", "Rashad")
    assert code == 0, err
    number: str = json.loads(out)["account_number"]
    assert _run(db_url, "card", "add", "2256884759", "--account", number)[0] == 0
    return number


def _stored_hash(db_url: str, number: str) -> str | None:
    from cas.billing.records import account_by_number

    store = open_store(db_url=db_url, migrate=False, create=False)
    try:
        with store.reader() as s:
            return password_hash_of(s, account_by_number(s, number).id)
    finally:
        store.dispose()


def _audit(db_url: str, number: str) -> list[tuple[str, str, str]]:
    store = open_store(db_url=db_url, migrate=False, create=False)
    try:
        with store.reader() as s:
            return [(e.actor_kind, e.action, json.dumps(e.detail)) for e in
                    entries(s, target=number)]
    finally:
        store.dispose()


def test_set_from_stdin_and_reset(db_url: str, account: str) -> None:
    assert _stored_hash(db_url, account) is None
    code, out, err = _run(db_url, "account", "password", account, "--password-stdin",
                          input="correct horse 9\n")
    assert code == 0, err
    assert f"portal password set for account {account}" in out
    assert "correct horse 9" not in out + err
    stored = _stored_hash(db_url, account)
    assert stored is not None and verify_password(stored, "correct horse 9")

    # By card number, a one-time password printed once (JSON for scripts).
    code, out, err = _run(db_url, "--json", "account", "password", "2256884759", "--reset")
    assert code == 0, err
    data = json.loads(out)
    otp = data["one_time_password"]
    assert data["account"] == account and data["reset"] is True
    stored = _stored_hash(db_url, account)
    assert stored is not None and verify_password(stored, otp)
    assert not verify_password(stored, "correct horse 9")
    rows = _audit(db_url, account)
    assert [(k, a) for k, a, _ in rows] == [("cli", "password_set"), ("cli", "password_reset")]
    assert all("correct horse" not in d and otp not in d for _, _, d in rows)


def test_reset_in_russian(db_url: str, account: str) -> None:
    code, out, err = _run(db_url, "account", "password", account, "--reset", "--lang", "ru")
    assert code == 0, err
    assert "одноразовый пароль личного кабинета" in out
    otp = out.strip().splitlines()[-1].strip()
    stored = _stored_hash(db_url, account)
    assert stored is not None and verify_password(stored, otp)


def test_bad_input_is_one_line(db_url: str, account: str) -> None:
    code, _, err = _run(db_url, "account", "password", account, "--password-stdin",
                          input="short\n")
    assert code == 7 and err.startswith("error: a password has 8 to 128 characters")
    assert err.count("\n") == 1 and _stored_hash(db_url, account) is None
    code, _, err = _run(db_url, "account", "password", account, "--reset", "--password-stdin")
    assert code == 2 and "exclude each other" in err
    code, _, err = _run(db_url, "account", "password", account)  # no terminal to prompt on
    assert code == 2 and "--password-stdin or --reset" in err
    code, _, err = _run(db_url, "--json", "account", "password", "9999999999", "--reset")
    error = json.loads(err)["error"]
    assert code == error["exit_code"] != 0 and error["code"] and "9999999999" in error["message"]


def test_one_time_passwords_are_readable_and_differ() -> None:
    seen = {one_time_password() for _ in range(50)}
    assert len(seen) == 50
    for p in seen:
        assert len(p) == 14 and p.count("-") == 2
        assert not set(p.replace("-", "")) & set("01ilo")
