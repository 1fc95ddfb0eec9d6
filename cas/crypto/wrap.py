"""Key wrapping (RFC 3394 AES Key Wrap) for keys in records and for CWs card → STB.

* ``wrap_key``: a 16-byte key under a KEK → 24 bytes (CUK under the transport key in
  personalisation records, CSK under the chipset vendor key in Chip ID records, the chip blob).
* ``wrap_cws``: the card's PROCESS ECM answer.  Plaintext = two 16-byte slots (even, odd);
  an 8-byte CSA2 CW is followed by 8 zero bytes in its slot, a 16-byte CISSA CW fills it.
  AES-KW of 32 bytes → 40 bytes.  Unwrapping with the wrong CWPK (card in another box) fails
  the RFC 3394 integrity check, which the STB reports as ``PAIRING_MISMATCH``.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from cas.crypto.cw import CISSA_CW_LEN, CSA2_CW_LEN
from cas.crypto.keys import KEY_LEN, Key
from cas.errors import AuthenticationError, CryptoError

WRAPPED_KEY_LEN = KEY_LEN + 8
WRAPPED_CWS_LEN = 2 * CISSA_CW_LEN + 8
CHIP_BLOB_LEN = WRAPPED_KEY_LEN

_UNWRAP_FAILED = "key unwrap failed"


def wrap_key(kek: Key, key: Key) -> bytes:
    """RFC 3394 §2.2.1: wrap a 16-byte key under ``kek`` → 24 bytes."""
    return aes_key_wrap(kek.raw(), key.raw())


def unwrap_key(kek: Key, wrapped: bytes, *, label: str) -> Key:
    """RFC 3394 §2.2.2 unwrap; :class:`AuthenticationError` if the integrity check fails."""
    if len(wrapped) != WRAPPED_KEY_LEN:
        raise AuthenticationError(_UNWRAP_FAILED).with_id("crypto.unwrap_failed")
    try:
        return Key(aes_key_unwrap(kek.raw(), bytes(wrapped)), label=label)
    except InvalidUnwrap:
        raise AuthenticationError(_UNWRAP_FAILED).with_id("crypto.unwrap_failed") from None


def _slot(cw: bytes) -> bytes:
    if len(cw) == CSA2_CW_LEN:
        return bytes(cw) + bytes(8)
    if len(cw) == CISSA_CW_LEN:
        if not any(cw[8:]):
            # Would unwrap as an 8-byte CW; generate_cw never produces such a CW.
            raise CryptoError("a 16-byte control word must not end in 8 zero bytes").with_id(
                "crypto.byte_control_word_not")
        return bytes(cw)
    raise CryptoError(f"control word length must be 8 or 16, not {len(cw)}").with_id(
        "crypto.control_word_length_not", n=len(cw))


def wrap_cws(cwpk: Key, cw_even: bytes, cw_odd: bytes) -> bytes:
    """The card's answer to an ECM: both CWs wrapped under the CW pairing key (40 bytes)."""
    if len(cw_even) != len(cw_odd):
        raise CryptoError("even and odd control words must have the same length").with_id(
            "crypto.even_odd_control_words")
    return aes_key_wrap(cwpk.raw(), _slot(cw_even) + _slot(cw_odd))


def unwrap_cws(cwpk: Key, blob: bytes) -> tuple[bytes, bytes]:
    """Inverse of :func:`wrap_cws`; :class:`AuthenticationError` on the wrong pairing key."""
    if len(blob) != WRAPPED_CWS_LEN:
        raise AuthenticationError(_UNWRAP_FAILED).with_id("crypto.unwrap_failed")
    try:
        plain = aes_key_unwrap(cwpk.raw(), bytes(blob))
    except InvalidUnwrap:
        raise AuthenticationError(_UNWRAP_FAILED).with_id("crypto.unwrap_failed") from None
    even, odd = plain[:16], plain[16:]
    if not any(even[8:]) and not any(odd[8:]):
        return even[:8], odd[:8]
    return even, odd


def chip_blob(csk: Key, cwpk: Key) -> bytes:
    """Enc(CSK, CWPK): what the STB hands its chipset so the chip learns the CWPK (24 bytes)."""
    return wrap_key(csk, cwpk)


def open_chip_blob(csk: Key, blob: bytes) -> Key:
    """The chipset's side of :func:`chip_blob`: recover the CWPK."""
    return unwrap_key(csk, blob, label="cwpk")
