"""The command-line catalogues (:mod:`cas.i18n`): complete in both languages, plural forms
right, the language chosen as documented, money and dates per locale."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.i18n import Day, Money, Msg, Translator, format_date, format_money, resolve_language
from cas.i18n.catalog import (
    LANGUAGES,
    PLURAL_FORMS,
    catalogue,
    check,
    english_sentences,
    parse,
    plural_category,
    problems,
)


def test_every_message_has_both_languages() -> None:
    assert check() == []
    assert set(catalogue("en")) == set(catalogue("ru"))
    assert len(catalogue("en")) > 150


def test_the_check_fails_on_a_message_without_a_translation() -> None:
    en = dict(catalogue("en"))
    ru = dict(catalogue("ru"))
    del ru["why.cause.expired"]
    assert problems({"en": en, "ru": ru}) == ["ru: why.cause.expired has no translation"]
    ru = dict(catalogue("ru"))
    ru["ticket.city"] = ""
    assert problems({"en": en, "ru": ru}) == ["ru: ticket.city has no translation"]
    # A key only Russian has is missing in English.
    ru = {**catalogue("ru"), "extra": "лишнее"}
    assert problems({"en": en, "ru": ru}) == ["en: extra has no translation"]


def test_the_check_fails_on_a_doctored_catalogue_file() -> None:
    ru_text = """
[why.cause]
expired = "подписка на {names} закончилась"
[visit]
stream = { one = "{n} сервис", many = "{n} сервисов" }
"""
    en_text = """
[why.cause]
expired = "subscription to {names} ended on {day}"
[visit]
stream = { one = "{n} service", other = "{n} services" }
"""
    found = problems({"en": parse(en_text), "ru": parse(ru_text)})
    assert "ru: visit.stream lacks the plural form(s) few" in found
    assert any(p.startswith("ru: why.cause.expired has placeholders") for p in found)
    assert len(found) == 2


@pytest.mark.parametrize(("n", "en", "ru"), [
    (0, "other", "many"), (1, "one", "one"), (2, "other", "few"), (4, "other", "few"),
    (5, "other", "many"), (11, "other", "many"), (12, "other", "many"), (14, "other", "many"),
    (21, "other", "one"), (22, "other", "few"), (25, "other", "many"), (101, "other", "one"),
    (111, "other", "many"), (1004, "other", "few"),
])
def test_plural_categories(n: int, en: str, ru: str) -> None:
    assert plural_category("en", n) == en
    assert plural_category("ru", n) == ru
    assert set(PLURAL_FORMS) == set(LANGUAGES)


def test_plural_messages_pick_the_form() -> None:
    ru = Translator("ru")
    assert ru("visit.stream", source="a.ts", n=1, duration="1.0") == "поток a.ts (1 сервис, 1.0 с)"
    assert ru("visit.stream", source="a.ts", n=3, duration="1.0") == "поток a.ts (3 сервиса, 1.0 с)"
    assert ru("visit.stream", source="a.ts", n=11, duration="1.0") == \
        "поток a.ts (11 сервисов, 1.0 с)"
    en = Translator("en")
    assert en("visit.stream", source="a.ts", n=1, duration="1.0") == "stream a.ts (1 service, 1.0 s)"
    assert en("visit.stream", source="a.ts", n=0, duration="1.0") == \
        "stream a.ts (0 services, 1.0 s)"


def test_money_and_dates_follow_the_locale() -> None:
    amount = Money(251000, 100, "KZT")
    assert format_money(amount, "ru") == "2\u00a0510,00\u00a0₸"
    assert format_money(amount, "en") == "2510.00 KZT"
    assert format_money(Money(-1234567, 100, "RUB"), "ru") == "-12\u00a0345,67\u00a0₽"
    # The shared formatter (Babel) decides the sign: CLDR has no ru_AZ, so the code stays.
    from cas import locale

    for other in (Money(-1234567, 100, "AZN"), Money(5000, 1, "UZS"), Money(0, 100, "KZT")):
        assert format_money(other, "ru") == locale.format_money(
            other.minor, other.currency, "ru", minor_per_major=other.minor_per_major)
    assert format_money(Money(5000, 1, "UZS"), "ru").startswith("5\u00a0000")
    nov_1 = 1793491200  # 2026-11-01 00:00 UTC
    assert format_date(nov_1, "ru") == "01.11.2026"
    assert format_date(nov_1, "en") == "2026-11-01"
    msg = Msg("why.cause.financial_block", {"day": Day(nov_1), "balance": amount})
    assert Translator("ru")(msg) == "финансовая блокировка с 01.11.2026: баланс 2\u00a0510,00\u00a0₸"
    assert Translator("en")(msg) == "financial block since 2026-11-01: balance 2510.00 KZT"


def test_lock_reasons_come_from_the_shared_table() -> None:
    assert Translator("ru")("reason.FINANCIAL_BLOCK.fix") == \
        "пополните баланс или возьмите обещанный платёж"
    assert Translator("en")("reason.NO_CARD.message") == "Insert your smart card"


@pytest.mark.parametrize(("explicit", "env", "lang"), [
    ("ru", {"CAS_LANG": "en", "LANG": "en_US.UTF-8"}, "ru"),
    (None, {"CAS_LANG": "ru", "LANG": "en_US.UTF-8"}, "ru"),
    (None, {"LANG": "ru_RU.UTF-8"}, "ru"),
    (None, {"LC_ALL": "en_GB.UTF-8", "LANG": "ru_RU.UTF-8"}, "en"),
    (None, {"LC_ALL": "ru_KZ.UTF-8", "LANG": "en_US.UTF-8"}, "ru"),
    (None, {"LC_MESSAGES": "ru_RU", "LANG": "C.UTF-8"}, "ru"),
    (None, {"LANG": "C.UTF-8"}, "en"),
    (None, {"LANG": "kk_KZ.UTF-8"}, "en"),
    (None, {}, "en"),
])
def test_the_language_is_chosen_in_order(explicit: str | None, env: dict[str, str],
                                         lang: str) -> None:
    assert resolve_language(explicit, env) == lang


def test_english_sentences_are_what_russian_output_must_not_hold() -> None:
    found = english_sentences()
    assert "ended on" in found
    assert "Insert your smart card" in found
    assert "Causes, most likely first" in found
    # Words both languages write the same (codes, PID, Chip ID) are not sentences.
    assert "Chip ID" not in found and "PID" not in found


def _with_ids() -> set[str]:
    """Every message id the source hands to ``CasError.with_id`` (string literals only)."""
    import re
    from pathlib import Path

    import cas
    import firmware_stub

    ids: set[str] = set()
    for root in (Path(cas.__file__).parent, Path(firmware_stub.__file__).parent):
        for path in root.rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for m in re.finditer(r"\.with_id\(\s*((?:[^()]|\([^()]*\))*)\)", text):
                first = m.group(1).split(", ")[0] if "if" not in m.group(1).split(",")[0] \
                    else m.group(1).split(",")[0]
                ids.update(re.findall(r'"([a-z_.]+)"', first))
    ids.discard("_anon")
    return ids


def test_every_error_id_in_the_source_is_in_the_catalogue() -> None:
    ids = _with_ids()
    assert {"unknown_card", "not_ts", "no_card_in_reader", "no_card_any_reader",
            "option_twice"} <= ids
    missing = sorted(i for i in ids if f"errors.{i}" not in catalogue("en"))
    assert missing == []


def test_an_error_with_an_id_says_in_english_what_it_was_raised_with(tmp_path: Path) -> None:
    """The English catalogue text is the raised line itself, so the two cannot drift."""
    from cas.console import error_text
    from cas.diag.probe import probe_file
    from cas.errors import CasError
    from cas.locale import check_lang
    from firmware_stub.chipset import load_vendor_key

    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"not a stream" * 40)
    raisers = [lambda: check_lang("kk"), lambda: probe_file(empty), lambda: probe_file(junk),
               lambda: probe_file(tmp_path / "none.ts"),
               lambda: load_vendor_key(tmp_path / "none.key")]
    for raiser in raisers:
        with pytest.raises(CasError) as info:
            raiser()
        exc = info.value
        assert exc.message_id is not None, exc
        assert Translator("en")(f"errors.{exc.message_id}", **exc.message_params) == str(exc)
        russian = error_text(exc, Translator("ru"))
        assert russian != str(exc) and "без перевода" not in russian
    # Without an id a Russian reader is told the line is untranslated.
    assert error_text(CasError("boom"), Translator("ru")) == "boom (сообщение пока без перевода)"
    assert error_text(CasError("boom"), Translator("en")) == "boom"


def test_the_latin_run_heuristic_finds_english_the_catalogue_does_not_know() -> None:
    from tests.fixtures.lang import english_in, latin_runs

    assert latin_runs("баланс: payment by card 2256884759 (terminal)") == ["payment by card"]
    assert latin_runs("ECM stopped at the end") == ["stopped at the end"]
    # Codes, units, identifiers and quoted names are not sentences.
    assert latin_runs("PID ECM 3074 (0x0C02): 15.0 kbit/s, CA_descriptor, EMM PID") == []
    assert latin_runs("пакет 'Viasat Sport HD Plus' не подключён; table_id 0x80") == []
    assert latin_runs("Sport Plus Extra", allow=["Sport Plus"]) == []
    assert english_in("ошибка: карта не найдена") == []
    assert english_in("Causes, most likely first") == ["Causes, most likely first",
                                                       "Causes most likely first"]


def test_an_error_line_puts_the_nouns_it_was_given_in_the_language() -> None:
    """``Translator.error``: the line of an error's message id, its ``{what}`` noun from
    ``errors.what`` when the raiser passed one of those, anything else as given."""
    ru, en = Translator("ru"), Translator("en")
    assert ru.error("billing.required", {"what": "surname"}) == "фамилия: обязательное значение"
    assert en.error("billing.required", {"what": "surname"}) == "surname is required"
    assert ru.error("text.foreign_number", {"what": "card number", "text": "'１０'"}) == (
        "номер карты '１０': пишите числа цифрами ASCII 0-9")
    assert ru.error("billing.required", {"what": "Viasat"}) == "Viasat: обязательное значение"
    assert ru.error("billing.no_such_message", {}) is None


def test_an_error_line_puts_the_systems_reason_in_the_language() -> None:
    """A raiser that passes ``exc.strerror`` (the system's English) gets it in Russian."""
    import errno
    import os

    ru = Translator("ru")
    line = ru.error("diag.cannot_write", {"path": "/x/ticket.html",
                                          "strerror": os.strerror(errno.EACCES)})
    assert line == "не удаётся записать /x/ticket.html: нет доступа"
    assert ru.error("diag.cannot_write", {"path": "/x", "strerror": "Exotic failure"}) == (
        "не удаётся записать /x: Exotic failure")
