"""The PPV purchase report's authentication (docs/ppv.md "Return path").

The card and the head-end both derive the report key from the card's CUK (the head-end
derives the CUK from the OMK and the serial): ``kdf(CUK, PPV_REPORT)``.  The tag is an
AES-128-GCM tag over an empty plaintext with the report's clear bytes as AAD (GMAC, NIST
SP 800-38D §3), the nonce being the report counter, which a card never repeats.
"""

from __future__ import annotations

from cas.crypto.aead import aead_open, aead_seal
from cas.crypto.keys import Key, Purpose, kdf
from cas.errors import AuthenticationError


def report_key(cuk: Key) -> Key:
    """The card's purchase-report key."""
    return kdf(cuk, Purpose.PPV_REPORT, label="ppv report key")


def report_tag(key: Key, nonce: bytes, clear: bytes) -> bytes:
    """The 16-byte tag over ``clear``."""
    return aead_seal(key, nonce, b"", clear)


def verify_report_tag(key: Key, nonce: bytes, clear: bytes, tag: bytes) -> None:
    """:class:`AuthenticationError` unless ``tag`` authenticates ``clear`` (says nothing more)."""
    try:
        aead_open(key, nonce, bytes(tag), clear)
    except AuthenticationError:
        raise AuthenticationError("purchase report does not authenticate").with_id(
            "crypto.purchase_report_does_not") from None
