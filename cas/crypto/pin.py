"""Parental PIN hashing for the card record and the RESET_PIN EMM command.

``pin_hash = HMAC-SHA256(K_pin, pin)[:16]`` (RFC 2104, truncation per NIST SP 800-107 §5.3.3)
with ``K_pin = KDF(CUK, Purpose.PIN)`` (SP 800-108, see :mod:`cas.crypto.keys`).  Keying the
hash with a per-card key means a 4-digit PIN cannot be recovered from a card image without
that card's key, and equal PINs on two cards hash differently.  The PIN is hashed as the bytes
the VERIFY PIN APDU carries (ASCII digits, e.g. ``b"1234"``).
"""

from __future__ import annotations

import hashlib
import hmac

from cas.crypto.keys import Key, Purpose, kdf
from cas.errors import CryptoError

PIN_HASH_LEN = 16


def _pin_bytes(pin: str | bytes) -> bytes:
    if isinstance(pin, str):
        try:
            return pin.encode("ascii")
        except UnicodeEncodeError:
            raise CryptoError("PIN must be ASCII digits").with_id(
                "crypto.pin_ascii_digits") from None
    return bytes(pin)


def pin_hash(cuk: Key, pin: str | bytes) -> bytes:
    """16-byte keyed hash of ``pin`` for the card whose key is ``cuk``."""
    pin_key = kdf(cuk, Purpose.PIN, 0, label="pin key")
    return hmac.new(pin_key.raw(), _pin_bytes(pin), hashlib.sha256).digest()[:PIN_HASH_LEN]


def verify_pin(cuk: Key, pin: str | bytes, stored_hash: bytes) -> bool:
    """Constant-time check of ``pin`` against a stored :func:`pin_hash`."""
    return hmac.compare_digest(pin_hash(cuk, pin), bytes(stored_hash))


def pin_hash_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two PIN hashes."""
    return hmac.compare_digest(bytes(a), bytes(b))
