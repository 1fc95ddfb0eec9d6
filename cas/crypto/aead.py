"""Message protection: AES-128-GCM (NIST SP 800-38D) with a 12-byte nonce and a 16-byte tag.

``sealed = ciphertext || tag``.  The caller (``cas/messages.py``) passes the clear section
header as AAD, so the header is authenticated too.  Nonce rules are in ``docs/keys.md``:
a nonce is never reused under one key.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cas.crypto.keys import KEY_LEN, Key, Rng
from cas.errors import AuthenticationError, CryptoError

NONCE_LEN = 12
TAG_LEN = 16

_AUTH_FAILED = "message authentication failed"


def _cipher(key: Key | bytes) -> AESGCM:
    if isinstance(key, Key):
        return key._aesgcm()  # cached per Key object
    # Raw bytes: the bulk EMM path, keys from derive_cuks().
    if len(key) != KEY_LEN:
        raise CryptoError(f"AES-128-GCM key must be {KEY_LEN} bytes, got {len(key)}").with_id(
            "crypto.aes_gcm_key_bytes", key_len=KEY_LEN, n=len(key))
    return AESGCM(key)


def new_nonce(rng: Rng = os.urandom) -> bytes:
    """A fresh random 96-bit nonce."""
    nonce = rng(NONCE_LEN)
    if len(nonce) != NONCE_LEN:
        raise CryptoError("rng returned the wrong number of bytes").with_id(
            "crypto.rng_returned_wrong_number")
    return nonce


def aead_seal(key: Key | bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-128-GCM encrypt ``plaintext`` and authenticate it with ``aad``: ``ct || tag16``.

    ``key`` is a :class:`Key`, or raw 16 bytes on the bulk EMM path.
    """
    if len(nonce) != NONCE_LEN:
        raise CryptoError(f"AES-GCM nonce must be {NONCE_LEN} bytes, got {len(nonce)}").with_id(
            "crypto.aes_gcm_nonce_bytes", nonce_len=NONCE_LEN, n=len(nonce))
    return _cipher(key).encrypt(nonce, plaintext, aad)


def aead_open(key: Key | bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Verify and decrypt ``sealed``; :class:`AuthenticationError` on any failure.

    The error says nothing about what failed (wrong key, tag, AAD, nonce or truncation).
    """
    if len(nonce) != NONCE_LEN or len(sealed) < TAG_LEN:
        raise AuthenticationError(_AUTH_FAILED).with_id("crypto.authentication_failed")
    try:
        return _cipher(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise AuthenticationError(_AUTH_FAILED).with_id("crypto.authentication_failed") from None
