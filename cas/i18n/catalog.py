"""Loading the command-line catalogues and checking them (every key in every language, the
same placeholders, every plural form the language needs)."""

from __future__ import annotations

import functools
import string
import tomllib
from collections.abc import Mapping
from importlib import resources

LANGUAGES = ("en", "ru")

#: A catalogue entry: a text, or a text per CLDR plural category.
Entry = str | dict[str, str]

#: The plural categories each language's integers use (CLDR).
PLURAL_FORMS: dict[str, tuple[str, ...]] = {"en": ("one", "other"),
                                            "ru": ("one", "few", "many")}


def plural_category(lang: str, n: int) -> str:
    """CLDR cardinal category of the integer ``n``: English one/other; Russian
    one (1, 21, 101 ...), few (2-4, 22-24 ...), many (0, 5-20, 25-30 ...)."""
    n = abs(n)
    if lang == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return "one"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "few"
        return "many"
    return "one" if n == 1 else "other"


def _flatten(node: Mapping[str, object], prefix: str = "") -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if value and set(value) <= {"one", "few", "many", "other"}:
                out[name] = {str(k): str(v) for k, v in value.items()}
            else:
                out.update(_flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out


def parse(text: str) -> dict[str, Entry]:
    return _flatten(tomllib.loads(text))


@functools.lru_cache(maxsize=4)
def catalogue(lang: str) -> dict[str, Entry]:
    return parse((resources.files("cas.i18n") / "locales" / f"{lang}.toml").read_text("utf-8"))


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def problems(catalogues: Mapping[str, Mapping[str, Entry]]) -> list[str]:
    """Everything wrong with a set of catalogues, one line each; empty when complete:
    a key missing or empty in a language, placeholders that differ from English, a plural
    message lacking one of the language's forms or lacking ``n``."""
    out: list[str] = []
    keys = set().union(*(set(c) for c in catalogues.values()))
    base = catalogues.get("en", {})
    for key in sorted(keys):
        for lang, cat in catalogues.items():
            entry = cat.get(key)
            if entry is None or entry == "" or entry == {}:
                out.append(f"{lang}: {key} has no translation")
                continue
            texts = [entry] if isinstance(entry, str) else list(entry.values())
            if any(not t.strip() for t in texts):
                out.append(f"{lang}: {key} has an empty text")
            if isinstance(entry, dict):
                need = PLURAL_FORMS.get(lang, ("other",))
                lacking = [f for f in need if f not in entry]
                if lacking:
                    out.append(f"{lang}: {key} lacks the plural form(s) {', '.join(lacking)}")
            ref = base.get(key)
            if ref is None or lang == "en":
                continue
            ref_fields = set().union(*(_fields(t) for t in
                                       ([ref] if isinstance(ref, str) else ref.values())))
            own = set().union(*(_fields(t) for t in texts))
            if own != ref_fields:
                out.append(f"{lang}: {key} has placeholders {sorted(own)}, English "
                           f"{sorted(ref_fields)}")
    return out


def check() -> list[str]:
    """The installed catalogues' problems (``cas diag codes``' sibling for words)."""
    return problems({lang: catalogue(lang) for lang in LANGUAGES})


def english_sentences(min_words: int = 2) -> set[str]:
    """The fixed parts of every English message whose Russian text differs — the catalogue's
    and the lock reasons' (:mod:`cas.reasons`) — with at least ``min_words`` words: what a
    Russian output must not contain.  A message is cut at its placeholders, so "subscription
    to {names} ended on {day}" gives "ended on"."""
    from cas.reasons import REASONS

    en, ru = catalogue("en"), catalogue("ru")
    texts: list[str] = []
    for key, entry in en.items():
        if ru.get(key) == entry:
            continue
        texts.extend([entry] if isinstance(entry, str) else entry.values())
    for i in REASONS.values():
        texts += [i.en, i.fix_en]
    out: set[str] = set()
    for text in texts:
        for literal, _field, _spec, _conv in string.Formatter().parse(text):
            piece = literal.strip(" ,.;:()'—-")
            # Codes both languages write alike (EMM PID, CA, PMT) are not words here.
            if sum(1 for w in piece.split() if any(c.islower() for c in w)) >= min_words:
                out.add(piece)
    return out
