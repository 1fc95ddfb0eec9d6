"""cas.locale: money, numbers, dates and plural forms follow the language through Babel."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from cas.errors import UsageError
from cas.locale import (
    check_lang,
    format_date,
    format_datetime,
    format_money,
    format_number,
    plural,
    plural_category,
)

NBSP = "\u00a0"


def test_money_russian_tenge_has_grouping_comma_and_symbol() -> None:
    assert format_money(251000, "KZT", "ru") == f"2{NBSP}510,00{NBSP}₸"


def test_money_english_tenge_as_babel_gives() -> None:
    assert format_money(251000, "KZT", "en") == "KZT2,510.00"


def test_money_russian_roubles_and_manat() -> None:
    assert format_money(1234567, "RUB", "ru") == f"12{NBSP}345,67{NBSP}₽"
    assert format_money(1250, "AZN", "ru") == f"12,50{NBSP}AZN"


def test_money_follows_the_profiles_minor_units() -> None:
    # a currency kept in whole units shows no decimals
    assert format_money(2510, "UZS", "en", minor_per_major=1) == "UZS2,510"
    assert format_money(-150, "KZT", "en") == "-KZT1.50"


def test_money_refuses_floats_and_bad_minor_units() -> None:
    with pytest.raises(UsageError):
        format_money(12.5, "KZT", "en")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        format_money(1, "KZT", "en", minor_per_major=30)


def test_numbers_group_per_language() -> None:
    assert format_number(2510, "ru") == f"2{NBSP}510"
    assert format_number(2510, "en") == "2,510"
    assert format_number(Decimal("1.5"), "ru") == "1,5"
    with pytest.raises(UsageError):
        format_number(1.5, "ru")  # type: ignore[arg-type]


def test_dates_russian_and_english() -> None:
    assert format_date(date(2026, 11, 1), "ru") == "01.11.2026"
    assert format_date(date(2026, 11, 1), "en") == "Nov 1, 2026"
    # an aware datetime is shown as its UTC day
    assert format_date(datetime(2026, 11, 1, 23, 30, tzinfo=UTC), "ru") == "01.11.2026"
    with pytest.raises(UsageError):
        format_date(datetime(2026, 11, 1), "ru")


def test_datetime_is_utc_and_labelled() -> None:
    at = datetime(2026, 11, 1, 14, 5, tzinfo=UTC)
    assert format_datetime(at, "ru") == "01.11.2026, 14:05 UTC"
    assert format_datetime(at, "en").startswith("Nov 1, 2026, 2:05")
    assert format_datetime(at, "en").endswith("PM UTC")


@pytest.mark.parametrize(("n", "expected"), [
    (1, "1 день"), (2, "2 дня"), (4, "4 дня"), (5, "5 дней"), (11, "11 дней"),
    (21, "21 день"), (22, "22 дня"), (111, "111 дней"), (0, "0 дней"),
])
def test_plural_russian(n: int, expected: str) -> None:
    forms = {"one": "{n} день", "few": "{n} дня", "many": "{n} дней", "other": "{n} дня"}
    assert plural(n, forms, "ru") == expected


def test_plural_english() -> None:
    forms = {"one": "{n} day", "other": "{n} days"}
    assert plural(1, forms, "en") == "1 day"
    assert plural(0, forms, "en") == "0 days"
    assert plural(1500, forms, "en") == "1,500 days"
    assert plural_category(3, "ru") == "few"
    with pytest.raises(UsageError):
        plural(5, {"one": "x"}, "ru")


def test_language_check() -> None:
    assert check_lang(None) == "en"
    assert check_lang("ru-RU") == "ru"
    with pytest.raises(UsageError):
        check_lang("de")
