"""``cas.text``: numbers are ASCII digits only, text has no control characters."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.text import (
    SINGLE_LINE_PATTERN,
    control_character,
    control_refusal,
    foreign_number_refusal,
    is_ascii_digits,
    is_foreign_number,
    parse_digits,
)

#: Digits ``str.isdigit()`` accepts and ``int()`` reads (or chokes on) that are not ASCII.
FOREIGN = ["²", "１０", "١٢", "٣", "۴", "५", "๙", "𝟗", "²³", "1²", "１"]


@pytest.mark.parametrize("text", FOREIGN)
def test_other_digits_are_not_numbers(text: str) -> None:
    assert text.isdigit()  # the trap: isdigit() says yes
    assert not is_ascii_digits(text)
    assert parse_digits(text) is None
    assert is_foreign_number(text)
    message = foreign_number_refusal(text, "channel")
    assert message is not None and "ASCII digits 0-9" in message and "\n" not in message


@pytest.mark.parametrize("text", [" 10", "10 ", "1_0", "+10", "-1", "", "0x10", "1e3", "10.0"])
def test_int_quirks_are_not_numbers(text: str) -> None:
    assert parse_digits(text) is None


def test_ascii_digits_and_the_bound() -> None:
    assert parse_digits("0042") == 42
    assert parse_digits("4294967295", max_value=0xFFFF_FFFF) == 0xFFFF_FFFF
    assert parse_digits("4294967296", max_value=0xFFFF_FFFF) is None
    assert parse_digits("9" * 5000, max_value=0xFFFF_FFFF) is None  # no huge int built
    assert parse_digits("0" * 30 + "7", max_value=9) == 7
    assert not is_foreign_number("12") and not is_foreign_number("Sport 1")
    assert not is_foreign_number("Канал²")  # a name with a superscript is still a name


@given(st.text(max_size=12))
def test_parse_digits_reads_exactly_ascii_digit_strings(text: str) -> None:
    expected = int(text) if re.fullmatch(r"[0-9]+", text, re.ASCII) else None
    assert parse_digits(text) == expected


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f",
                                  "\x85", "\x9f", "\ud800"])
def test_control_characters_are_refused(char: str) -> None:
    text = f"Ivan{char}ov"
    assert control_character(text) == f"U+{ord(char):04X}"
    message = control_refusal(text, "surname")
    assert message is not None and message.startswith("surname must not contain")
    assert char not in message  # never echoes what it refuses


def test_multiline_keeps_tab_and_line_ends_only() -> None:
    assert control_character("a\tb\r\nc", multiline=True) is None
    assert control_character("a\nb\x00", multiline=True) == "U+0000"
    assert control_character("Ivanov Ivan", multiline=False) is None
    assert control_character("Иванов ЁЖ №5 ½", multiline=False) is None


@given(st.text(max_size=20))
def test_schema_pattern_says_what_the_check_does(text: str) -> None:
    # The OpenAPI pattern and the Python check agree (surrogates aside: not JSON-encodable).
    if any("\ud800" <= c <= "\udfff" for c in text):
        return
    matches = re.fullmatch(SINGLE_LINE_PATTERN, text) is not None
    assert matches == (control_character(text) is None)
