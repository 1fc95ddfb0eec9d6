"""Money is integers of the minor unit; text in major units converts exactly or is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.billing.money import check_amount, config_amount, format_amount, parse_amount
from cas.errors import ConfigError, ValidationError


@pytest.mark.parametrize(("text", "minor"), [
    ("12", 1200), ("12.5", 1250), ("12,50", 1250), ("0.01", 1), (" 425 ", 42500),
    ("12.500", 1250), ("+3", 300),
])
def test_parse(text: str, minor: int) -> None:
    assert parse_amount(text, 100) == minor


@pytest.mark.parametrize(("text", "code"), [
    ("-1", "NEGATIVE_AMOUNT"), ("abc", "BAD_AMOUNT"), ("1.001", "BAD_AMOUNT"), ("", "BAD_AMOUNT"),
    ("1e3", "BAD_AMOUNT"), ("0", "ZERO_AMOUNT"), ("nan", "BAD_AMOUNT"), ("1 000", "BAD_AMOUNT"),
    ("99999999999999", "BAD_AMOUNT"),
])
def test_parse_refuses(text: str, code: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_amount(text, 100)
    assert exc.value.code == code


@given(st.integers(min_value=1, max_value=10**12))
def test_format_parse_round_trip(minor: int) -> None:
    text = format_amount(minor, 100)
    assert parse_amount(text, 100) == minor
    assert text.count(".") == 1 and len(text.split(".")[1]) == 2


def test_format() -> None:
    assert format_amount(-1234, 100, "AZN") == "-12.34 AZN"
    assert format_amount(5, 1, "XYZ") == "5 XYZ"


@pytest.mark.parametrize("bad", [1.5, True, "x", None, -1])
def test_config_amount_refuses_floats_and_junk(bad: object) -> None:
    with pytest.raises(ConfigError):
        config_amount(bad, 100, "here")
    assert config_amount("2990.50", 100, "here") == 299050
    assert config_amount(12, 100, "here") == 1200


@pytest.mark.parametrize("bad", [1.0, True, -5, "5"])
def test_check_amount_wants_positive_ints(bad: object) -> None:
    with pytest.raises(ValidationError):
        check_amount(bad)  # type: ignore[arg-type]
