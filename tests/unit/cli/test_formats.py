"""The CLI's money and times for people follow the reader's language (``CAS_LANG``) through
cas.locale; without one they stay plain, and ``--json`` never changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.cli.main import cli

NBSP = "\u00a0"


def _cas(db_url: str, *args: str, lang: str | None = None, code: int = 0) -> str:
    env = {"CAS_LANG": lang} if lang is not None else {"CAS_LANG": ""}
    r = CliRunner().invoke(cli, ["--db-url", db_url, *args], env=env, catch_exceptions=False)
    assert r.exit_code == code, (args, r.stdout, r.stderr)
    return r.stdout + r.stderr


@pytest.fixture
def account(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'cas.sqlite'}"
    _cas(url, "operator", "use", "tvplus", "--clock-start", "2026-11-01")
    out = json.loads(_cas(url, "--json", "account", "create", "--surname", "Seitkali",
                          "--name", "Aigerim", "--phone", "+77012223344"))
    number = str(out["account_number"])
    _cas(url, "account", "adjust", number, "2510", "--reason", "opening")
    return url, number


def test_money_and_dates_in_russian(account: tuple[str, str]) -> None:
    url, number = account
    out = _cas(url, "statement", number, lang="ru")
    assert f"2{NBSP}510,00{NBSP}₸" in out
    assert "01.11.2026" in out
    assert "2510.00 KZT" not in out


def test_money_in_english_and_plain_without_a_language(account: tuple[str, str]) -> None:
    url, number = account
    for lang in ("en", None):  # English keeps the plain forms scripts read
        out = _cas(url, "statement", number, lang=lang)
        assert "2510.00 KZT" in out and "2026-11-01" in out


def test_json_does_not_follow_the_language(account: tuple[str, str]) -> None:
    url, number = account
    st = json.loads(_cas(url, "--json", "statement", number, lang="ru"))
    assert st["closing_balance_minor"] == 251_000


def test_unknown_language_is_a_one_line_usage_error(account: tuple[str, str]) -> None:
    url, number = account
    r = CliRunner().invoke(cli, ["--db-url", url, "--lang", "de", "statement", number])
    assert r.exit_code == 2
    assert "de" in r.output and "Traceback" not in r.output
