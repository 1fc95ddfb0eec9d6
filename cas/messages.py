"""Seal and open EMMs and ECMs: ``cas.formats`` (layout) + ``cas.crypto`` (AES-128-GCM).

An EMM/ECM section is its clear header followed by ``AES-GCM(key, nonce, plaintext, aad)``
(ciphertext || 16-byte tag, NIST SP 800-38D).  The AAD is every section byte before the sealed
body — table_id, flags and section_length included — exactly as on the wire, so a changed
table id, address, sequence number, expiry, key index or timestamp fails authentication.  The
12-byte nonce travels in the header (docs/formats.md §5–§6, docs/keys.md for nonce rules).

Keys: unique EMM = the card's CUK, shared EMM = the group key of its shared address, global
EMM = the global key, ECM = the ECM key of ``ecm_key_index``; choosing the key is the caller's
job (the header says which).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cas.crypto import Key, aead_open, aead_seal
from cas.errors import FormatError
from cas.formats.ecm import (
    TAG_SIZE,
    Ecm,
    EcmBody,
    EcmHeader,
    build_ecm_body,
    ecm_aad,
    ecm_clear_bytes,
    parse_ecm,
    parse_ecm_body,
)
from cas.formats.emm import (
    Emm,
    EmmCommand,
    EmmHeader,
    build_emm_commands,
    emm_aad,
    emm_clear_bytes,
    parse_emm,
    parse_emm_commands,
)

__all__ = [
    "open_ecm",
    "open_ecm_section",
    "open_emm",
    "open_emm_section",
    "seal_ecm",
    "seal_emm",
]


def _with_nonce(header: EmmHeader | EcmHeader, nonce: bytes) -> EmmHeader | EcmHeader:
    if not isinstance(nonce, bytes) or len(nonce) != 12:
        raise FormatError("nonce must be 12 bytes", path="nonce").with_id(
            "messages.nonce_nonce_bytes")
    return dataclasses.replace(header, nonce=nonce)


def seal_emm(
    key: Key | bytes, header: EmmHeader, commands: Sequence[EmmCommand], nonce: bytes
) -> bytes:
    """Encrypt and authenticate ``commands`` for the address in ``header``.

    ``nonce`` replaces ``header.nonce``.  Returns the section bytes.  FormatError if the
    section would not fit 256 bytes.  ``key`` may be raw 16 bytes (bulk path, ``derive_cuks``).
    """
    head = _with_nonce(header, nonce)
    assert isinstance(head, EmmHeader)
    plaintext = build_emm_commands(commands)
    aad = emm_clear_bytes(head, len(plaintext) + TAG_SIZE)
    return aad + aead_seal(key, nonce, plaintext, aad)


def open_emm_section(key: Key | bytes, emm: Emm, section: bytes) -> list[EmmCommand]:
    """Authenticate and decrypt an already parsed EMM (``section`` = its bytes)."""
    plaintext = aead_open(key, emm.header.nonce, emm.body, emm_aad(section, emm))
    return parse_emm_commands(plaintext)


def open_emm(key: Key | bytes, section: bytes) -> tuple[EmmHeader, list[EmmCommand]]:
    """Parse, authenticate and decrypt an EMM section.

    FormatError for bytes that are not an EMM of this CAS; AuthenticationError (saying nothing
    more) for a wrong key or any modified byte.
    """
    section = bytes(section)
    emm = parse_emm(section)
    return emm.header, open_emm_section(key, emm, section)


def seal_ecm(key: Key | bytes, header: EcmHeader, body: EcmBody, nonce: bytes) -> bytes:
    """Encrypt and authenticate an ECM body; ``nonce`` replaces ``header.nonce``.
    Returns the section bytes."""
    head = _with_nonce(header, nonce)
    assert isinstance(head, EcmHeader)
    plaintext = build_ecm_body(body)
    aad = ecm_clear_bytes(head, len(plaintext) + TAG_SIZE)
    return aad + aead_seal(key, nonce, plaintext, aad)


def open_ecm_section(key: Key | bytes, ecm: Ecm, section: bytes) -> EcmBody:
    """Authenticate and decrypt an already parsed ECM (``section`` = its bytes)."""
    plaintext = aead_open(key, ecm.header.nonce, ecm.body, ecm_aad(section, ecm))
    return parse_ecm_body(plaintext)


def open_ecm(key: Key | bytes, section: bytes) -> tuple[EcmHeader, EcmBody]:
    """Parse, authenticate and decrypt an ECM section (FormatError / AuthenticationError)."""
    section = bytes(section)
    ecm = parse_ecm(section)
    return ecm.header, open_ecm_section(key, ecm, section)
