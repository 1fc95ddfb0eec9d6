"""``cas why`` through click's CliRunner on a real store (SQLite and PostgreSQL): the state
word, what the head-end cannot know, a package waiting for money."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from tests.fixtures.lang import english_in


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


@pytest.fixture
def cas(db_url: str) -> Cas:
    return Cas(db_url)


def _holder(cas: Cas, operator: str) -> str:
    cas("operator", "use", operator, "--clock-start", "2026-03-01")
    number: str = cas.json("account", "create", "--surname", "Aliyev",
                           "--name", "Rashad")["account_number"]
    cas("card", "add", "2256884759", "--account", number)
    return number


def test_why_pin_ok_on_a_rated_channel_is_open_if_pin(cas: Cas) -> None:
    number = _holder(cas, "tvplus")
    cas("pay", "--account", number, "4990")
    cas("package", "subscribe", number, "maximum")
    cas("card", "kids", "2256884759", "on")
    locked = cas.json("why", "--card", "2256884759", "--channel", "27")
    assert (locked["state"], locked["reason"]) == ("LOCKED", "MATURITY_LOCKED")
    data = cas.json("why", "--card", "2256884759", "--channel", "27", "--pin-ok")
    assert data["state"] == "OPEN_IF_PIN"
    assert any("PIN counter" in fact for fact in data["cannot_know"])
    text = cas("why", "--card", "2256884759", "--channel", "27", "--pin-ok")
    assert "OPEN_IF_PIN" in text and "cannot know" in text and "PIN_BLOCKED" in text
    assert cas.json("why", "--card", "2256884759", "--channel", "1",
                    "--pin-ok")["state"] == "OPEN"


def test_why_sees_a_package_waiting_for_money(cas: Cas) -> None:
    _holder(cas, "atvplus")
    cas("pay", "--card", "2256884759", "1", "--method", "terminal")
    cas("pay", "--card", "2256884759", "10", "--method", "payment_card", "--package", "sport")
    data = cas.json("why", "--card", "2256884759", "--channel", "121")
    assert data["reason"] == "NOT_SUBSCRIBED"
    assert "waits for payment" in data["cause"] and "1.00 AZN short" in data["cause"]
    assert data["fix"].startswith("pay 1.00 AZN more")
    text = " ".join(cas("why", "--card", "2256884759", "--channel", "121").split())
    assert "no package connected" not in text and "1.00 AZN short" in text


def _english_in(text: str) -> list[str]:
    return english_in(text)


def test_why_in_russian_holds_no_english_sentence_and_prints_local_money(cas: Cas) -> None:
    _holder(cas, "atvplus")
    cas("pay", "--card", "2256884759", "1", "--method", "terminal")
    cas("pay", "--card", "2256884759", "10", "--method", "payment_card", "--package", "sport")
    text = cas("why", "--card", "2256884759", "--channel", "121", "--lang", "ru")
    assert "ждёт оплаты" in text and "не хватает 1,00\u00a0AZN" in text
    assert "ЗАКРЫТ" in text and "Пакет не подключён" in text
    assert _english_in(text) == []
    english = cas("why", "--card", "2256884759", "--channel", "121")
    assert "1.00 AZN short" in english and _english_in(english)  # the check can fail
    data = cas.json("--lang", "ru", "why", "--card", "2256884759", "--channel", "121")
    assert data["lang"] == "ru" and data["reason"] == "NOT_SUBSCRIBED"
    assert data["message"] == "Пакет не подключён" and data["message_en"] == "No package connected"
    assert data["fix"].startswith("доплатите 1,00\u00a0AZN")


def test_why_without_a_channel_explains_every_channel(cas: Cas) -> None:
    _holder(cas, "atvplus")
    data = cas.json("why", "--card", "2256884759")
    channels = {c["channel"]: c for c in data["channels"]}
    assert len(channels) > 3 and data["locked"] == len(channels)  # nothing paid yet
    assert channels[121]["reason"] == "NOT_SUBSCRIBED"
    one = cas.json("why", "--card", "2256884759", "--channel", "121")
    assert channels[121]["cause"] == one["cause"]
    text = cas("why", "--card", "2256884759", "--lang", "ru")
    assert f"каналов, закрыто {len(channels)}" in text or f"канала, закрыто {len(channels)}" in \
        text or f"канал, закрыто {len(channels)}" in text
    assert "Головная станция не может знать" in text and _english_in(text) == []
    assert "на 01.03.2026, 00:00 UTC" in text  # the moment in the Russian form too
    one = cas("why", "--card", "2256884759", "--channel", "121", "--lang", "ru")
    assert "01.03.2026, 00:00 UTC" in one and "2026-03-01T" not in one


def test_cli_errors_in_russian_hold_no_english_sentence(cas: Cas) -> None:
    """The errors an operator meets at the counter: a card, an account or a package that is
    not there, a payment nobody can take; one Russian line each, the English one under
    ``--lang en``."""
    number = _holder(cas, "atvplus")
    cases = [
        (["why", "--card", "1111111111"], "карта 1111111111 не найдена",
         "unknown card 1111111111"),
        (["pay", "--account", "999", "10"], "лицевой счёт '999' не найден",
         "unknown account '999'"),
        (["package", "subscribe", number, "nosuch"], "пакет 'nosuch' не найден",
         "unknown package 'nosuch'"),
        (["pay", "--card", "7", "10"], "карта 0000000007 не найдена", "unknown card 0000000007"),
        (["card", "add", "2256884760", "--account", "nope"],
         "по номеру 'nope' ничего не найдено (искали: карта, договор, лицевой счёт)",
         "no card, contract or account 'nope'"),
    ]
    for args, russian, english in cases:
        ru = cas.runner.invoke(cli, ["--db-url", cas.db_url, "--lang", "ru", *args])
        assert ru.exit_code != 0 and ru.stdout == "", args
        assert ru.stderr.startswith("ошибка: ") and russian in ru.stderr, ru.stderr
        assert ru.stderr.count("\n") == 1 and english_in(ru.stderr) == [], ru.stderr
        en = cas.runner.invoke(cli, ["--db-url", cas.db_url, *args], env={"CAS_LANG": "en"})
        assert en.exit_code == ru.exit_code and english in en.stderr, en.stderr
        assert english_in(en.stderr.removeprefix("error: "))  # the check can fail
        data = json.loads(cas.runner.invoke(
            cli, ["--db-url", cas.db_url, "--lang", "ru", "--json", *args]).stderr)
        assert russian in data["error"]["message"] and english in data["error"]["message_en"]
