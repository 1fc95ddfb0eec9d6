"""Money: integers of the smallest unit (tiyn, kopeck, qəpik, tiyin), never float.

Text in major units (``"12"``, ``"12.50"``, ``"12,5"``) is parsed with :class:`~decimal.Decimal`
and must land exactly on a minor unit.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from cas.errors import ConfigError, ValidationError
from cas.text import is_foreign_number

#: Digits are ASCII only (``\\d`` would take "１０" and "٣"): :mod:`cas.text`.
_AMOUNT = re.compile(r"^[ \t]*([+-]?)([0-9]{1,15})(?:[.,]([0-9]{1,6}))?[ \t]*$")
#: Upper bound of a single amount (10^13 minor units) — far above any real payment, and
#: well inside a signed 64-bit column.
MAX_AMOUNT_MINOR = 10**13


def minor_digits(minor_per_major: int) -> int:
    digits = len(str(minor_per_major)) - 1
    if minor_per_major != 10**digits:
        raise ConfigError(f"minor_per_major must be a power of ten, got {minor_per_major}").with_id(
            "billing.minor_per_major_power", minor_per_major=minor_per_major)
    return digits


def parse_amount(text: str, minor_per_major: int, *, allow_zero: bool = False) -> int:
    """Major-unit text to minor units.  Refuses negatives, non-numbers and sub-minor digits."""
    m = _AMOUNT.match(text) if isinstance(text, str) else None
    if m is None and isinstance(text, str) and is_foreign_number(text):
        raise ValidationError(f"amount {text.strip()!r}: write numbers with the ASCII digits "
                              "0-9", code="BAD_AMOUNT").with_id(
            "billing.amount_write_numbers_ascii", strip=f"{text.strip()!r}")
    if m is None:
        raise ValidationError(f"amount {text!r} is not a number", code="BAD_AMOUNT").with_id(
            "billing.amount_not_number", text=f"{text!r}")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if sign == "-":
        raise ValidationError(f"amount {text.strip()} is negative", code="NEGATIVE_AMOUNT").with_id(
            "billing.amount_negative", strip=text.strip())
    digits = minor_digits(minor_per_major)
    frac = frac.rstrip("0")
    if len(frac) > digits:
        raise ValidationError(f"amount {text.strip()} has more decimals than the currency",
                              code="BAD_AMOUNT").with_id(
            "billing.amount_more_decimals_currency", strip=text.strip())
    minor = int(whole) * minor_per_major + (int(frac.ljust(digits, "0")) if frac else 0)
    check_amount(minor, allow_zero=allow_zero)
    return minor


def check_amount(amount_minor: int, *, allow_zero: bool = False) -> int:
    """An amount handed to the domain: an ``int`` (not bool, not float), positive, bounded."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ValidationError(f"amount must be an integer of minor units, got {amount_minor!r}",
                              code="BAD_AMOUNT").with_id(
            "billing.amount_integer_minor_units", amount_minor=f"{amount_minor!r}")
    if amount_minor < 0:
        raise ValidationError("amount is negative", code="NEGATIVE_AMOUNT").with_id(
            "billing.amount_negative_2")
    if amount_minor == 0 and not allow_zero:
        raise ValidationError("amount is zero", code="ZERO_AMOUNT").with_id("billing.amount_zero")
    if amount_minor > MAX_AMOUNT_MINOR:
        raise ValidationError("amount is too large", code="BAD_AMOUNT").with_id(
            "billing.amount_too_large")
    return amount_minor


def config_amount(value: object, minor_per_major: int, where: str) -> int:
    """A money value from a TOML file: an integer or a quoted decimal (a TOML float is refused)."""
    if isinstance(value, float):
        raise ConfigError(f"{where}: money must be an integer or a quoted decimal, never a float "
                          f"({value!r})").with_id(
            "billing.money_integer_quoted_decimal", where=where, value=f"{value!r}")
    if isinstance(value, bool):
        raise ConfigError(f"{where}: money must be an integer or a quoted decimal, not {value!r}").with_id(
            "billing.money_integer_quoted_decimal_2", where=where, value=f"{value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{where}: money must not be negative").with_id(
                "billing.money_not_negative", where=where)
        return value * minor_per_major
    if isinstance(value, str):
        try:
            return parse_amount(value, minor_per_major, allow_zero=True)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {exc}").with_id(
                "billing.error", where=where, exc=exc) from exc
    raise ConfigError(f"{where}: money must be an integer or a quoted decimal, not {value!r}").with_id(
        "billing.money_integer_quoted_decimal_2", where=where, value=f"{value!r}")


def format_amount(amount_minor: int, minor_per_major: int, currency: str = "") -> str:
    """``1234, 100, "AZN"`` -> ``"12.34 AZN"``; negatives keep their sign."""
    digits = minor_digits(minor_per_major)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), minor_per_major)
    text = f"{sign}{whole}" + (f".{frac:0{digits}d}" if digits else "")
    return f"{text} {currency}".rstrip()


def to_decimal(amount_minor: int, minor_per_major: int) -> Decimal:
    try:
        return Decimal(amount_minor) / Decimal(minor_per_major)
    except InvalidOperation as exc:  # pragma: no cover - ints always convert
        raise ValidationError("bad amount", code="BAD_AMOUNT").with_id(
            "billing.bad_amount") from exc
