"""The portal's words in English and Russian: one flat TOML catalog per language
(``cas/web/locales/<lang>.toml``), ``str.format`` placeholders, English as the fallback.

The language is chosen by ``?lang=`` (remembered in a cookie), else the cookie, else the
browser's ``Accept-Language``, else English.  Lock reasons use the shared table in
:mod:`cas.reasons`, so the portal says what the box and ``cas why`` say.
"""

from __future__ import annotations

import functools
import tomllib
from datetime import UTC, date, datetime
from importlib import resources

from cas.locale import format_date, format_number, plural

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "cas_lang"


@functools.lru_cache(maxsize=4)
def catalog(lang: str) -> dict[str, str]:
    text = (resources.files("cas.web") / "locales" / f"{lang}.toml").read_text("utf-8")
    data = tomllib.loads(text)
    out: dict[str, str] = {}

    def walk(prefix: str, node: dict[str, object]) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(name + ".", value)
            else:
                out[name] = str(value)

    walk("", data)
    return out


class Translator:
    """``t("balance.title")`` or ``t("pay.done", amount="10 AZN")`` in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._own = catalog(self.lang)
        self._fallback = catalog(DEFAULT_LANGUAGE)

    def has(self, key: str) -> bool:
        return key in self._own or key in self._fallback

    def __call__(self, key: str, **params: object) -> str:
        text = self._own.get(key) or self._fallback.get(key) or key
        if params:
            try:
                return text.format(**params)
            except (KeyError, IndexError, ValueError):
                return text
        return text

    def date(self, value: date | datetime | None) -> str:
        """The day in this language through Babel: ``01.11.2026`` / ``Nov 1, 2026``."""
        if value is None:
            return "—"
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # the store's naive times are UTC
        return format_date(value, self.lang)

    def number(self, value: int) -> str:
        return format_number(value, self.lang)

    def plural(self, n: int, key: str) -> str:
        """``t.plural(3, "days")`` -> the catalog's ``plural.days.<category>`` form for 3."""
        forms = {cat: self._own.get(f"plural.{key}.{cat}") or self._fallback.get(
            f"plural.{key}.{cat}", "") for cat in ("zero", "one", "two", "few", "many", "other")}
        return plural(n, {k: v for k, v in forms.items() if v}, self.lang)


def pick_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return str(candidate)
    if accept:
        best: tuple[float, str] | None = None
        for part in accept.split(","):
            piece = part.strip().split(";")
            tag = piece[0].strip().lower()[:2]
            q = 1.0
            for param in piece[1:]:
                if param.strip().startswith("q="):
                    try:
                        q = float(param.strip()[2:])
                    except ValueError:
                        q = 0.0
            if tag in LANGUAGES and (best is None or q > best[0]):
                best = (q, tag)
        if best is not None and best[0] > 0:
            return best[1]
    return DEFAULT_LANGUAGE
