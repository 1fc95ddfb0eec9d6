"""The command lines' words in English and Russian (``cas``, ``stb``, the support ticket).

One flat TOML catalogue per language (``cas/i18n/locales/<lang>.toml``), ``str.format``
placeholders; a message with plural forms is a table of CLDR categories (English ``one`` /
``other``, Russian ``one`` / ``few`` / ``many``), chosen by the ``n`` parameter.  The portal
keeps its own catalogue (``cas/web/locales``); lock reasons stay in :mod:`cas.reasons`.

The language: ``--lang`` if given, else ``CAS_LANG``, else the locale (``LC_ALL``,
``LC_MESSAGES``, ``LANG``: ``ru_RU.UTF-8`` is Russian), else English.
:func:`cas.i18n.catalog.problems` is the completeness check the tests run.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from cas.errors import CasError
from cas.i18n.catalog import LANGUAGES, Entry, catalogue, plural_category

DEFAULT_LANGUAGE = "en"

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "Day",
    "Localised",
    "Money",
    "Msg",
    "Translator",
    "format_date",
    "format_money",
    "os_reason",
    "plural_category",
    "resolve_language",
    "translator",
]


def resolve_language(explicit: str | None = None,
                     environ: Mapping[str, str] | None = None) -> str:
    """``explicit`` (``--lang``), else ``CAS_LANG``, else the POSIX locale, else English.

    The locale variables are read in POSIX precedence (``LC_ALL`` over ``LC_MESSAGES`` over
    ``LANG``); ``C``/``POSIX`` and languages we have no catalogue for give English."""
    env = os.environ if environ is None else environ
    if explicit:
        return explicit if explicit in LANGUAGES else DEFAULT_LANGUAGE
    chosen = env.get("CAS_LANG", "").strip().lower()
    if chosen:
        return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name, "").strip()
        if value:
            lang = value.split(".")[0].split("_")[0].split("-")[0].lower()
            return lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True)
class Day:
    """A date parameter, printed per language (``2026-11-01`` / ``01.11.2026``); wire
    seconds, UTC."""

    at_s: int | None


@dataclass(frozen=True, slots=True)
class Money:
    """An amount parameter in the smallest unit (never a float), printed per language:
    ``2510.00 KZT`` in English, ``2 510,00 ₸`` in Russian (:func:`format_money`)."""

    minor: int
    minor_per_major: int
    currency: str


def format_money(amount: Money, lang: str) -> str:
    """English: ``-2510.00 KZT``, as the rest of the head-end prints amounts (scripts and
    operators read it); Russian: :func:`cas.locale.format_money` (Babel, CLDR):
    ``2 510,00 ₸`` — groups and the decimal comma of the locale, the currency's sign."""
    if lang != "ru":
        digits = len(str(amount.minor_per_major)) - 1 if amount.minor_per_major > 1 else 0
        sign = "-" if amount.minor < 0 else ""
        whole, frac = divmod(abs(amount.minor), max(amount.minor_per_major, 1))
        text = f"{sign}{whole}" + (f".{frac:0{digits}d}" if digits else "")
        return f"{text} {amount.currency}".rstrip()
    from cas import locale

    return locale.format_money(amount.minor, amount.currency, lang,
                               minor_per_major=amount.minor_per_major)


def format_date(at_s: int | None, lang: str) -> str:
    """A UTC day: ``2026-11-01`` in English (ISO, as the head-end prints days), Russian
    through :func:`cas.locale.format_date`: ``01.11.2026``; ``-`` for none."""
    if at_s is None:
        return "-"
    day = datetime.fromtimestamp(at_s, UTC)
    if lang != "ru":
        return f"{day:%Y-%m-%d}"
    from cas import locale

    return locale.format_date(day, lang)


@runtime_checkable
class Localised(Protocol):
    """A parameter that knows how to say itself (a box's technical detail, an alarm)."""

    def in_language(self, t: Translator) -> str: ...


@dataclass(frozen=True, slots=True)
class Msg:
    """A message not yet in a language: its catalogue key and parameters.  The domain
    returns these; the command line renders them in the reader's language."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "params": {k: _plain(v) for k, v in self.params.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, Day):
        return None if value.at_s is None else datetime.fromtimestamp(value.at_s, UTC).date(
        ).isoformat()
    if isinstance(value, Msg):
        return value.to_json()
    if isinstance(value, Money):
        return format_money(value, "en")
    if isinstance(value, Localised):
        return value.in_language(Translator("en"))
    return value


class Translator:
    """``t("why.row.card")``, ``t("visit.channels", n=3)`` or ``t(msg)`` in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._own = catalogue(self.lang)
        self._fallback = catalogue(DEFAULT_LANGUAGE)

    def __call__(self, key: str | Msg, /, **params: Any) -> str:
        if isinstance(key, Msg):
            params = {**key.params, **params}
            key = key.key
        entry: Entry | None = self._own.get(key) or self._fallback.get(key)
        if entry is None and key.startswith("reason."):
            entry = _reason_text(key, self.lang)
        if entry is None:
            return key
        if isinstance(entry, str):
            text = entry
        else:
            n = params.get("n", 0)
            text = entry.get(plural_category(self.lang, int(n))) or entry["other" if "other"
                                                                             in entry else "many"]
        if not params:
            return text
        values = {k: self.value(v) for k, v in params.items()}
        try:
            return text.format(**values)
        except (KeyError, IndexError, ValueError):
            return text

    def value(self, value: Any) -> Any:
        """A parameter as text in this language (dates, nested messages)."""
        if isinstance(value, Msg):
            return self(value)
        if isinstance(value, Day):
            return format_date(value.at_s, self.lang)
        if isinstance(value, Money):
            return format_money(value, self.lang)
        if isinstance(value, list | tuple):
            return ", ".join(str(self.value(v)) for v in value)
        if isinstance(value, Localised):
            return value.in_language(self)
        if isinstance(value, CasError):  # a wrapped error's own line (formats.within)
            named = (self.error(value.message_id, value.message_params)
                     if value.message_id is not None and self.lang != DEFAULT_LANGUAGE else None)
            return named if named is not None else str(value)
        return value

    def word(self, group: str, value: str) -> str:
        """A fixed vocabulary word (``group.value``, e.g. an EMM result) in this language;
        a value the catalogue does not list is shown as it came."""
        key = f"{group}.{value}"
        return self(key) if key in self._own or key in self._fallback else value

    def error(self, message_id: str, params: dict[str, Any]) -> str | None:
        """An error's line (``errors.<message_id>``, :meth:`cas.errors.CasError.with_id`) in
        this language, or ``None`` when the catalogue lacks it.  A parameter that is one of
        the fixed nouns the raisers pass as text ("surname", "card number": ``errors.what``)
        or the operating system's reason as it words it (``exc.strerror``, "Permission
        denied": ``errors.os_reason``) is put in the language too."""
        key = f"errors.{message_id}"
        if key not in self._own and key not in self._fallback:
            return None
        return self(key, **{k: self._word_param(v) for k, v in params.items()})

    def _word_param(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if f"errors.what.{value}" in self._own:
            return self(f"errors.what.{value}")
        reason = _strerror_names().get(value)
        return self(f"errors.os_reason.{reason}") if reason else value

    def number(self, value: int) -> str:
        """An integer with the language's grouping: ``2,659`` / ``2 659`` (CLDR)."""
        from cas import locale

        return locale.format_number(value, self.lang)

    def date(self, at_s: int | None) -> str:
        return format_date(at_s, self.lang)

    def money(self, amount: Money) -> str:
        return format_money(amount, self.lang)


def _reason_text(key: str, lang: str) -> str | None:
    """``reason.<REASON>.cause`` / ``.message`` / ``.fix``: the shared lock-reason table
    (:mod:`cas.reasons`, which the card, the box and the portal use too)."""
    from cas.reasons import REASONS, Reason

    parts = key.split(".")
    if len(parts) != 3 or parts[1] not in Reason.__members__:
        return None
    i = REASONS[Reason(parts[1])]
    if parts[2] in ("cause", "message"):
        return i.ru if lang == "ru" else i.en
    if parts[2] == "fix":
        return (i.fix_ru or i.fix_en) if lang == "ru" else i.fix_en
    return None


#: The operating system's reasons a command line meets, by errno name (``errors.os_reason``).
_OS_REASONS = ("ENOENT", "EACCES", "EISDIR", "ENOTDIR", "EEXIST", "ENOSPC", "EROFS")


@functools.cache
def _strerror_names() -> dict[str, str]:
    """The system's wording of the reasons in the catalogue -> their errno names."""
    import errno

    return {os.strerror(getattr(errno, name)): name for name in _OS_REASONS}


def os_reason(exc: OSError) -> Msg | str:
    """An OSError's reason as a message parameter: ``No such file or directory`` in the
    reader's language; a reason not in the catalogue as the system worded it."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    if name in _OS_REASONS:
        return Msg(f"errors.os_reason.{name}")
    return exc.strerror or str(exc)


def translator(lang: str | None = None) -> Translator:
    return Translator(resolve_language(lang))
