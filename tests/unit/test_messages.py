"""Sealing and opening EMMs and ECMs (cas.messages) with the real AES-GCM of cas.crypto."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.crypto import Key
from cas.errors import AuthenticationError, FormatError
from cas.formats.ecm import EcmBody, EcmHeader, parse_ecm
from cas.formats.emm import (
    AddEntitlement,
    EmmCommand,
    EmmHeader,
    GlobalAddress,
    OsdMessage,
    UniqueAddress,
    max_emm_plaintext,
    parse_emm,
)
from cas.messages import open_ecm, open_emm, seal_ecm, seal_emm
from tests.unit.formats.record_strategies import ecm_bodies, ecm_headers, emm_commands, emm_headers

KEY = Key(bytes(range(16)), label="test")
OTHER = Key(bytes(range(1, 17)), label="other")
NONCE = bytes(range(12))
nonces = st.binary(min_size=12, max_size=12)


@given(emm_headers, st.lists(emm_commands, max_size=3), nonces)
def test_emm_round_trip(header: EmmHeader, commands: list[EmmCommand], nonce: bytes) -> None:
    section = seal_emm(KEY, header, commands, nonce)
    assert len(section) <= 256
    opened_header, opened = open_emm(KEY, section)
    assert opened_header.nonce == nonce  # the argument, not header.nonce, is used
    assert opened_header.address == header.address and opened_header.seq == header.seq
    assert opened == commands
    # raw 16-byte keys (the bulk path) give the same section
    assert seal_emm(KEY.raw(), header, commands, nonce) == section


@given(ecm_headers, ecm_bodies(), nonces)
def test_ecm_round_trip(header: EcmHeader, body: EcmBody, nonce: bytes) -> None:
    section = seal_ecm(KEY, header, body, nonce)
    opened_header, opened_body = open_ecm(KEY, section)
    assert opened_body == body
    assert opened_header.channel_id == header.channel_id
    assert opened_header.table_id == header.table_id


def _emm() -> bytes:
    header = EmmHeader(address=UniqueAddress(serial=2256884759), seq=9, not_after_s=2_000_000_000)
    commands: list[EmmCommand] = [
        AddEntitlement(package_id=3, start_s=1, end_s=2),
        OsdMessage(text="hello"),
    ]
    return seal_emm(KEY, header, commands, NONCE)


def _ecm() -> bytes:
    header = EcmHeader(channel_id=101, ecm_key_index=1, timestamp_s=1_700_000_000)
    body = EcmBody(crypto_period=42, cw_even=b"\x01" * 8, cw_odd=b"\x02" * 8, package_ids=(3,))
    return seal_ecm(KEY, header, body, NONCE)


@given(st.data())
def test_any_modified_byte_is_rejected(data: st.DataObject) -> None:
    for section, opener in ((_emm(), open_emm), (_ecm(), open_ecm)):
        pos = data.draw(st.integers(0, len(section) - 1))
        xor = data.draw(st.integers(1, 255))
        bad = bytearray(section)
        bad[pos] ^= xor
        # header bytes (incl. table id, length, address, seq) are AAD: either the section no
        # longer parses (FormatError) or authentication fails; nothing else
        with pytest.raises((AuthenticationError, FormatError)):
            opener(KEY, bytes(bad))


@given(st.integers(1, 40))
def test_truncated_sections_are_rejected(cut: int) -> None:
    for section, opener in ((_emm(), open_emm), (_ecm(), open_ecm)):
        with pytest.raises((AuthenticationError, FormatError)):
            opener(KEY, section[:-cut])


def test_wrong_key_is_authentication_error_without_details() -> None:
    with pytest.raises(AuthenticationError) as err:
        open_emm(OTHER, _emm())
    assert KEY.raw().hex() not in str(err.value) and "\\x00\\x01" not in str(err.value)
    with pytest.raises(AuthenticationError):
        open_ecm(OTHER, _ecm())


def test_header_is_authenticated() -> None:
    # same ciphertext, header claiming another seq: authentication must fail
    section = bytearray(_emm())
    section[10] ^= 0x01  # low byte of seq (table 1 + flags/len 2 + serial 4 + seq 4)
    assert parse_emm(bytes(section)).header.seq == 8
    with pytest.raises(AuthenticationError):
        open_emm(KEY, bytes(section))
    ecm = bytearray(_ecm())
    ecm[0] = 0x81  # claim the other parity
    assert parse_ecm(bytes(ecm)).header.odd
    with pytest.raises(AuthenticationError):
        open_ecm(KEY, bytes(ecm))


def test_cross_type_and_foreign_sections() -> None:
    with pytest.raises(FormatError):
        open_ecm(KEY, _emm())
    with pytest.raises(FormatError):
        open_emm(KEY, _ecm())
    with pytest.raises(FormatError):
        open_emm(KEY, bytes([0x85, 0x70, 20]) + bytes(20))


def test_size_limit_and_nonce_checks() -> None:
    header = EmmHeader(address=GlobalAddress(), seq=1, not_after_s=2)
    limit = max_emm_plaintext(header.address.address_type)
    fits = [OsdMessage(text="x" * (limit - 2))]
    assert len(seal_emm(KEY, header, fits, NONCE)) == 256
    with pytest.raises(FormatError):
        seal_emm(KEY, header, [OsdMessage(text="x" * (limit - 1))], NONCE)
    with pytest.raises(FormatError):
        seal_emm(KEY, header, [], b"short")
