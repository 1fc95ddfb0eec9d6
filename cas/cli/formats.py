"""Money and times in the command line's output for people, in the reader's language
through :mod:`cas.locale` (Babel).

The language is the application's (``--lang``, else ``CAS_LANG``, else the locale).  Russian
goes through Babel; English keeps the plain forms (``12.34 AZN``, ``2026-03-02 14:05``), so
scripts reading the text see no change.  ``--json`` output never changes: money there is
integer minor units and times are ISO 8601.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import click

from cas.billing.profile import OperatorProfile
from cas.i18n import DEFAULT_LANGUAGE, resolve_language
from cas.locale import check_lang, format_date, format_datetime


def reader_lang() -> str | None:
    """The language the reader asked for, or ``None`` for the plain forms: English keeps the
    head-end's plain ``2510.00 KZT`` and ISO days, which scripts read; Russian goes through
    Babel.  The language is the application's (``--lang``, ``CAS_LANG``, the locale)."""
    ctx = click.get_current_context(silent=True)
    lang = getattr(ctx.find_root().obj, "lang", None) if ctx is not None else None
    if not lang:
        lang = resolve_language()
    return None if lang == DEFAULT_LANGUAGE else check_lang(lang)


def money_formatter(profile: OperatorProfile) -> Callable[[int], str]:
    """``profile``'s money in the reader's language: ``2 510,00 ₸`` (ru) or ``12.34 AZN``."""
    lang = reader_lang()
    return profile.money_in(lang) if lang else profile.money


def when(value: datetime | None) -> str:
    """A time: ``01.11.2026, 14:05 UTC`` (ru), ``Nov 1, 2026, 2:05 PM UTC`` (en), or plain
    ``2026-11-01 14:05`` without a language."""
    if value is None:
        return "-"
    lang = reader_lang()
    if lang is None:
        return f"{value:%Y-%m-%d %H:%M}"
    return format_datetime(value if value.tzinfo is not None else value.replace(tzinfo=UTC),
                           lang)


def day(value: datetime | None) -> str:
    """A day: ``01.11.2026`` (ru), plain ``2026-11-01`` without a language, ``-`` for none."""
    if value is None:
        return "-"
    lang = reader_lang()
    if lang is None:
        return f"{value:%Y-%m-%d}"
    return format_date(value if value.tzinfo is not None else value.replace(tzinfo=UTC), lang)
