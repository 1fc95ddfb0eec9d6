"""Rules for text that people and peers type: numbers and free text.

Shared by the billing layer, the web API and portal, and the CLI, so that they refuse the
same input with the same words.

* **Numbers are ASCII digits only.**  ``str.isdigit()`` is true for ``"²"`` and ``"١"``, and
  ``int()`` reads ``"１０"`` (full width), ``" 10 "`` and ``"1_0"``; none of that is a card,
  channel or account number.  :func:`parse_digits` reads ``[0-9]+`` and nothing else.
* **Text has no control characters.**  C0 (``U+0000``–``U+001F``), DEL and C1
  (``U+007F``–``U+009F``) are refused in names, labels and references (PostgreSQL cannot
  even store ``U+0000``); a field that is legitimately multi-line keeps tab, line feed and
  carriage return.  Lone surrogates (``"\\ud800"`` from JSON) are not text either.
"""

from __future__ import annotations

import re

#: ``[0-9]+`` — written out, because ``\\d`` in a ``str`` pattern matches every Unicode digit.
_ASCII_DIGITS = re.compile(r"[0-9]+")
#: C0, DEL, C1 and lone surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: The same, minus tab, line feed and carriage return (multi-line fields).
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: The JSON-schema pattern of a single-line text field (the OpenAPI document shows it).
SINGLE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def is_ascii_digits(text: object) -> bool:
    """``True`` for a non-empty ``str`` of ASCII digits ``0``–``9`` and nothing else."""
    return isinstance(text, str) and _ASCII_DIGITS.fullmatch(text) is not None


def parse_digits(text: object, *, max_value: int | None = None) -> int | None:
    """The number written in ASCII digits, or ``None`` when ``text`` is anything else (sign,
    space, underscore, another script's digits, empty) or above ``max_value``.  Callers strip
    surrounding spaces first if they accept them, and raise their own typed error."""
    if not is_ascii_digits(text):
        return None
    assert isinstance(text, str)
    if max_value is not None and len(text.lstrip("0")) > len(str(max_value)):
        return None  # never build a huge int from a hostile string
    value = int(text)
    if max_value is not None and value > max_value:
        return None
    return value


class Refusal(str):
    """A refusal's one English line that also names its message in the command lines'
    catalogue (``errors.<message_id>``), so a raiser can pass both on:
    ``raise UsageError(r).with_id(r.message_id, **r.params)``."""

    message_id: str
    params: dict[str, object]

    def __new__(cls, line: str, message_id: str, /, **params: object) -> Refusal:
        self = super().__new__(cls, line)
        self.message_id = message_id
        self.params = params
        return self


def control_character(text: str, *, multiline: bool = False) -> str | None:
    """The first control character in ``text`` as ``U+XXXX``, or ``None`` when it has none."""
    m = (_CONTROL_MULTILINE if multiline else _CONTROL).search(text)
    return f"U+{ord(m.group()):04X}" if m else None


def control_refusal(text: str, what: str, *, multiline: bool = False) -> Refusal | None:
    """A one-line message saying why ``text`` is refused as ``what``, or ``None`` if it is
    acceptable (the message never echoes the text: it may hold anything)."""
    found = control_character(text, multiline=multiline)
    if found is None:
        return None
    return Refusal(f"{what} must not contain control characters (found {found})",
                   "text.control_characters", what=what, found=found)


def is_foreign_number(text: str) -> bool:
    """``True`` for a number written with digits other than ASCII ``0``–``9`` — ``"²"``,
    ``"１０"``, ``"١٢.٥"`` — i.e. text of digits (and ``+ - . ,``) with at least one digit
    that ``str.isdigit()`` accepts and ASCII does not."""
    t = text.strip()
    return (any(c.isdigit() and not "0" <= c <= "9" for c in t)
            and all(c.isdigit() or c in "+-.," for c in t))


def foreign_number_refusal(text: str, what: str) -> Refusal | None:
    """A one-line message refusing ``text`` as ``what`` when it is a number in other digits
    (:func:`is_foreign_number`), else ``None``."""
    if not is_foreign_number(text):
        return None
    return Refusal(f"{what} {text.strip()!r}: write numbers with the ASCII digits 0-9",
                   "text.foreign_number", what=what, text=repr(text.strip()))


def parse_int_auto(text: str) -> int | None:
    """Decimal, or hex with ``0x`` (as ``int(text, 0)`` reads them), in ASCII only — else
    ``None``.  (``int("１０", 0)`` is 10: full-width digits are not a number here.)"""
    t = text.strip()
    if not t.isascii():
        return None
    try:
        return int(t, 0)
    except ValueError:
        return None
