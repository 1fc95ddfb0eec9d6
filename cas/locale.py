"""Numbers, money, dates and plural forms in the reader's language, through Babel (CLDR).

The one place that formats for people: the portal and both command lines call it, so
"2 510,00 ₸" and "01.11.2026" look the same everywhere.  Babel's output is used as it
comes (its spaces are no-break spaces, U+00A0, or narrow no-break spaces, U+202F).

``lang`` is a language (``"en"``, ``"ru"``); the region of the Babel locale comes from
``country`` (the operator profile's ``country``) or, for money, from the currency's
ISO 4217 code, whose first two letters are the issuing country (KZT -> KZ).  A locale
that CLDR does not have for that pair (``en_KZ``) falls back to the language alone, so
Russian shows "₸" (``ru_KZ``) and English shows the code ("KZT2,510.00").

Money comes in as ``int`` minor units and is turned into a :class:`~decimal.Decimal`
exactly; never a float.  Times must be timezone-aware; they are shown in UTC.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal

from babel import Locale, localedata
from babel import dates as babel_dates
from babel import numbers as babel_numbers

from cas.errors import UsageError

#: Languages the project speaks; the first is the default.
LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"

#: CLDR date length per language: Russian "01.11.2026" (short), English "Nov 1, 2026"
#: (medium: the short "11/1/26" is ambiguous abroad).
_DATE_LENGTH = {"ru": "short", "en": "medium"}


class UnknownLanguage(UsageError):
    """A language outside :data:`LANGUAGES`."""


def check_lang(lang: str | None) -> str:
    """``None`` -> the default; a known language as is; anything else a :class:`UsageError`."""
    if lang is None or lang == "":
        return DEFAULT_LANGUAGE
    code = lang.strip().lower().replace("-", "_").split("_")[0]
    if code not in LANGUAGES:
        raise UnknownLanguage(f"unknown language {lang!r} (known: {', '.join(LANGUAGES)})").with_id(
            "unknown_language", lang=lang, known=', '.join(LANGUAGES))
    return code


@functools.lru_cache(maxsize=64)
def babel_locale(lang: str, country: str | None = None) -> Locale:
    """The Babel locale for a language and (optionally) a country: ``ru`` + ``KZ`` -> ``ru_KZ``."""
    code = check_lang(lang)
    if country:
        name = f"{code}_{country.strip().upper()}"
        if localedata.exists(name):
            return Locale.parse(name)
    return Locale.parse(code)


def _currency_country(currency: str) -> str:
    return currency[:2] if len(currency) == 3 and currency.isalpha() else ""


def minor_to_decimal(minor: int, minor_per_major: int) -> Decimal:
    """``251000, 100`` -> ``Decimal("2510.00")``: exact, with as many places as minor units."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise UsageError(f"money must be an integer of minor units, got {minor!r}").with_id(
            "locale.money_integer_minor_units", minor=f"{minor!r}")
    digits = len(str(minor_per_major)) - 1
    if minor_per_major <= 0 or minor_per_major != 10**digits:
        raise UsageError(f"minor_per_major must be a power of ten, got {minor_per_major}").with_id(
            "locale.minor_per_major_power", minor_per_major=minor_per_major)
    return Decimal(minor).scaleb(-digits)


def format_money(minor: int, currency: str, lang: str, *, minor_per_major: int | None = None,
                 country: str | None = None) -> str:
    """``251000, "KZT", "ru"`` -> ``"2 510,00 ₸"``; ``"en"`` -> ``"KZT2,510.00"`` (as Babel gives).

    ``minor_per_major`` is the profile's (default: the currency's CLDR precision); the
    number of decimals shown follows it, so a currency kept in whole units shows none.
    """
    code = currency.strip().upper()
    if minor_per_major is None:
        minor_per_major = 10 ** babel_numbers.get_currency_precision(code)
    value = minor_to_decimal(minor, minor_per_major)
    digits = len(str(minor_per_major)) - 1
    loc = babel_locale(lang, country or _currency_country(code))
    pattern = loc.currency_formats["standard"].pattern.split(";")[0]
    frac = "." + "0" * digits if digits else ""
    head, _, tail = pattern.partition("0.00")
    if _:
        pattern = f"{head}0{frac}{tail}"
    return babel_numbers.format_currency(value, code, format=pattern, locale=loc,
                                         currency_digits=False)


def format_number(value: int | Decimal, lang: str, *, country: str | None = None) -> str:
    """``2510`` -> ``"2 510"`` (ru) / ``"2,510"`` (en).  Floats are refused: use Decimal."""
    if isinstance(value, float):
        raise UsageError("numbers are formatted from int or Decimal, never float").with_id(
            "locale.numbers_formatted_int_decimal")
    return babel_numbers.format_decimal(value, locale=babel_locale(lang, country))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise UsageError("times must be timezone-aware (UTC)").with_id(
            "locale.times_timezone_aware_utc")
    return value.astimezone(UTC)


def format_date(value: date | datetime, lang: str, *, country: str | None = None) -> str:
    """``date(2026, 11, 1)`` -> ``"01.11.2026"`` (ru) / ``"Nov 1, 2026"`` (en).

    A ``datetime`` must be timezone-aware and is shown as its UTC day.
    """
    code = check_lang(lang)
    day = _utc(value).date() if isinstance(value, datetime) else value
    return babel_dates.format_date(day, _DATE_LENGTH.get(code, "medium"),
                                   locale=babel_locale(code, country))


def format_time(value: datetime, lang: str, *, country: str | None = None) -> str:
    """The UTC time of day: ``"14:05"`` (ru) / ``"2:05 PM"`` (en)."""
    return babel_dates.format_time(_utc(value).time(), "short",
                                   locale=babel_locale(lang, country))


def format_datetime(value: datetime, lang: str, *, country: str | None = None) -> str:
    """``"01.11.2026, 14:05 UTC"`` (ru) / ``"Nov 1, 2026, 2:05 PM UTC"`` (en)."""
    return (f"{format_date(value, lang, country=country)}, "
            f"{format_time(value, lang, country=country)} UTC")


def plural_category(n: int, lang: str) -> str:
    """The CLDR plural category of ``n``: ``"one"``, ``"few"``, ``"many"`` or ``"other"``."""
    return str(babel_locale(lang).plural_form(abs(n)))


def plural(n: int, forms: Mapping[str, str], lang: str) -> str:
    """Pick the form for ``n`` by the language's plural rule; ``{n}`` in it becomes the number.

    ``plural(3, {"one": "{n} день", "few": "{n} дня", "many": "{n} дней"}, "ru")`` ->
    ``"3 дня"``.  A category missing from ``forms`` falls back to ``"other"``, then to
    ``"many"``; ``forms`` without either is a :class:`UsageError`.
    """
    category = plural_category(n, lang)
    text = forms.get(category) or forms.get("other") or forms.get("many")
    if text is None:
        raise UsageError(f"plural forms {sorted(forms)} lack {category!r} and 'other'").with_id(
            "locale.plural_forms_lack_other", forms=sorted(forms), category=f"{category!r}")
    return text.replace("{n}", format_number(n, lang))
