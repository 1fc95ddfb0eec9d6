"""Numbers a person types: the account number's Luhn check digit (so a mistyped account
number is caught) and phone numbers."""

from __future__ import annotations

import re

from cas.errors import ValidationError
from cas.text import control_character, is_ascii_digits

_PHONE = re.compile(r"^\+?[0-9]{7,15}$")


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for ``digits`` (so a mistyped account number is caught)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return is_ascii_digits(number) and len(number) > 1 and luhn_digit(number[:-1]) == number[-1]


def normalise_phone(phone: str) -> str:
    if control_character(str(phone)) is not None:
        raise ValidationError("a phone number must not contain control characters",
                              code="BAD_PHONE").with_id("billing.phone_number_not_contain")
    text = re.sub(r"[\s()\-]", "", str(phone))
    if not _PHONE.match(text):
        raise ValidationError(f"phone {phone!r} is not a phone number", code="BAD_PHONE").with_id(
            "billing.phone_not_phone_number", phone=f"{phone!r}")
    return text


__all__ = ["luhn_digit", "luhn_valid", "normalise_phone"]
