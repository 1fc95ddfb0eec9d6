"""The two catalogs are complete and every word the pages ask for exists."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cas.reasons import Reason
from cas.web.i18n import Translator, catalog, pick_language

WEB = Path(__file__).resolve().parents[3] / "cas" / "web"


def test_english_and_russian_have_the_same_keys_and_placeholders() -> None:
    en, ru = catalog("en"), catalog("ru")
    assert set(en) == set(ru)
    for key in en:
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", ru[key])), key
        assert en[key] != "" and ru[key] != ""


def test_every_key_used_by_pages_and_handlers_exists() -> None:
    en = catalog("en")
    sources = [p.read_text("utf-8") for p in (WEB / "templates").glob("*.html")]
    sources.extend(p.read_text("utf-8") for p in (WEB / "portal").glob("*.py"))
    used = set()
    for text in sources:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[A-Za-z_.]+)["']""", text))
    assert len(used) > 100
    missing = sorted(k for k in used if k not in en and not k.endswith("_"))
    assert not missing, missing
    # Keys built at run time: statuses, kinds, ledger rows, reasons' fixes.
    for status in ("pending", "active", "blocked", "expired", "closed"):
        assert f"status.{status}" in en
    for card_status in ("active", "killed"):
        assert f"card.status_{card_status}" in en
    for kind in ("payment", "charge", "unused_credit", "promised_credit", "promised_repayment",
                 "promised_writeoff", "adjustment"):
        assert f"ledger.{kind}" in en
    for reason in Reason:
        assert f"fix.{reason.value}" in en


@pytest.mark.parametrize(("query", "cookie", "accept", "lang"), [
    ("ru", None, None, "ru"),
    ("xx", "ru", None, "ru"),
    (None, None, "ru-RU,ru;q=0.9,en;q=0.8", "ru"),
    (None, None, "en-GB,en;q=0.9,ru;q=0.1", "en"),
    (None, None, "de-DE,ru;q=0.5", "ru"),
    (None, None, "de-DE", "en"),
    (None, None, "ru;q=abc", "en"),
    (None, None, None, "en"),
])
def test_pick_language(query: str | None, cookie: str | None, accept: str | None,
                       lang: str) -> None:
    assert pick_language(query, cookie, accept) == lang


def test_translator_formats_and_falls_back() -> None:
    ru = Translator("ru")
    assert ru("pay.done", amount="10.00 AZN", balance="11.00 AZN") == \
        "Оплачено 10.00 AZN. Баланс: 11.00 AZN."
    assert ru("no.such.key") == "no.such.key"
    assert ru("pay.done") .startswith("Оплачено {amount}")
    assert Translator("de").lang == "en"
    day = datetime(2026, 4, 1, tzinfo=UTC)
    assert ru.date(day) == "01.04.2026" and Translator("en").date(day) == "2026-04-01"
    assert ru.date(None) == "—"
