"""``cas account show``, ``cas card show`` and ``cas statement`` in Russian through click's
CliRunner on a real store (SQLite and PostgreSQL): labels, table headings, status words and
ledger descriptions from the catalogue, money and days in the Russian locale, and English
output as it always was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from tests.fixtures.lang import english_in

NBSP = ("\u00a0", "\u202f")


class Cas:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> str:
        r = self.runner.invoke(cli, ["--db-url", self.db_url, *args], catch_exceptions=False,
                               env={"COLUMNS": "250"})
        assert r.exit_code == code, (args, r.stdout, r.stderr)
        return r.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self("--json", *args))


def _plain(text: str) -> str:
    """Babel's no-break spaces as plain ones, for readable expectations."""
    for space in NBSP:
        text = text.replace(space, " ")
    return text


@pytest.fixture
def cas(db_url: str) -> Cas:
    """An NTV Plus account (prepaid, roubles) with a card, a payment and a package bought:
    the statement holds a payment and the package's first period."""
    c = Cas(db_url)
    c("operator", "use", "ntvplus", "--clock-start", "2026-03-01")
    number = c.json("account", "create", "--surname", "Petrov", "--name", "Ivan",
                    "--patronymic", "Petrovich")["account_number"]
    c("card", "add", "2256884759", "--account", number)
    c("pay", "--card", "2256884759", "2510", "--method", "online")
    c("package", "subscribe", "2256884759", "basic")
    return c


def _account(cas: Cas) -> str:
    number: str = cas.json("account", "show", "2256884759")["account"]["account_number"]
    return number


def test_account_show_in_russian(cas: Cas) -> None:
    ru = cas("--lang", "ru", "account", "show", "2256884759")
    assert english_in(ru, allow=["Petrov Ivan Petrovich"]) == []
    for label in ("лицевой счёт", "договор", "владелец", "баланс", "тип", "открыт"):
        assert label in ru
    assert "предоплата" in ru
    assert "1 911,00 ₽" in _plain(ru)
    assert "01.03.2026" in ru  # the day the account was opened, Russian style
    # The subscriptions table: heading, columns, status and renewal words, days.
    for word in ("Подписки", "состояние", "автопродление", "активна", "вкл.", "31.03.2026"):
        assert word in ru
    en = cas("account", "show", "2256884759")
    assert "balance" in en and "1911.00 RUB" in en and "2026-03-31" in en
    assert "Subscriptions" in en and "renewal" in en


def test_card_show_in_russian(cas: Cas) -> None:
    ru = cas("--lang", "ru", "card", "show", "2256884759")
    assert english_in(ru) == []
    for label in ("карта", "состояние карты", "состояние прав", "возрастное ограничение",
                  "на момент", "активна"):
        assert label in ru
    assert "Права карты" in ru and "действует сейчас" in ru and "да" in ru
    assert "31.03.2026, 00:00 UTC" in ru
    en = cas("card", "show", "2256884759")
    assert "card status" in en and "rights status" in en and "active" in en


def test_statement_in_russian(cas: Cas) -> None:
    number = _account(cas)
    ru = cas("--lang", "ru", "statement", number)
    assert english_in(ru) == []
    assert f"лицевой счёт {number}: на начало" in ru
    assert "на конец 1 911,00 ₽" in _plain(ru) and "-599,00 ₽" in _plain(ru)
    assert "платёж" in ru and "оплата по номеру (карта) 2256884759 (онлайн)" in ru
    assert "списание за пакет" in ru and "Bazovy: период 1" in ru
    assert "01.03.2026, 00:00 UTC" in ru
    en = cas("statement", number)
    assert "closing 1911.00 RUB" in en and "payment by card 2256884759 (online)" in en
    assert "Bazovy: period 1" in en
