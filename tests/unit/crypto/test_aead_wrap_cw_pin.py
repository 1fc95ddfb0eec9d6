"""AES-GCM sealing, RFC 3394 key wrap, CW wrapping for the pairing, CWs, PIN hashing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.crypto import (
    Key,
    OperatorKeys,
    aead_open,
    aead_seal,
    chip_blob,
    generate_cw,
    is_reduced_cw,
    new_nonce,
    open_chip_blob,
    pin_hash,
    reduce_cw,
    unwrap_cws,
    unwrap_key,
    verify_pin,
    wrap_cws,
    wrap_key,
)
from cas.crypto.pin import pin_hash_equal
from cas.errors import AuthenticationError, CryptoError
from tests.unit.crypto.vectors import h, load

KEY = Key(bytes(range(16)), label="test")
OTHER = Key(bytes(range(1, 17)), label="other")
NONCE = bytes(range(12))


# --- AES-128-GCM ---------------------------------------------------------------------------------
@pytest.mark.parametrize("v", load("aes_gcm.json")["vectors"])
def test_gcm_vectors(v: dict[str, str]) -> None:
    key = Key(h(v["key"]))
    sealed = aead_seal(key, h(v["nonce"]), h(v["plaintext"]), h(v["aad"]))
    assert sealed == h(v["ciphertext"]) + h(v["tag"])
    assert aead_open(key, h(v["nonce"]), sealed, h(v["aad"])) == h(v["plaintext"])
    assert aead_seal(h(v["key"]), h(v["nonce"]), h(v["plaintext"]), h(v["aad"])) == sealed


@given(st.binary(max_size=300), st.binary(max_size=40))
def test_gcm_roundtrip(plaintext: bytes, aad: bytes) -> None:
    sealed = aead_seal(KEY, NONCE, plaintext, aad)
    assert len(sealed) == len(plaintext) + 16
    assert aead_open(KEY, NONCE, sealed, aad) == plaintext
    assert aead_open(KEY.raw(), NONCE, sealed, aad) == plaintext


def _tampered(sealed: bytes, aad: bytes) -> list[tuple[Key, bytes, bytes, bytes]]:
    flip = bytes([sealed[0] ^ 1]) + sealed[1:]
    return [
        (OTHER, NONCE, sealed, aad),
        (KEY, NONCE[::-1], sealed, aad),
        (KEY, NONCE, flip, aad),
        (KEY, NONCE, sealed[:-1] + bytes([sealed[-1] ^ 0x80]), aad),
        (KEY, NONCE, sealed, aad + b"x"),
        (KEY, NONCE, sealed[:-1], aad),
        (KEY, NONCE, sealed[:5], aad),
        (KEY, NONCE[:11], sealed, aad),
    ]


def test_gcm_every_failure_is_the_same_error() -> None:
    aad = b"header"
    sealed = aead_seal(KEY, NONCE, b"entitlements", aad)
    messages = set()
    for key, nonce, data, a in _tampered(sealed, aad):
        with pytest.raises(AuthenticationError) as err:
            aead_open(key, nonce, data, a)
        messages.add(str(err.value))
        assert KEY.raw().hex() not in str(err.value)
    assert messages == {"message authentication failed"}


def test_gcm_bad_inputs() -> None:
    with pytest.raises(CryptoError, match="nonce"):
        aead_seal(KEY, bytes(8), b"", b"")
    with pytest.raises(CryptoError, match="16 bytes"):
        aead_seal(bytes(10), NONCE, b"", b"")
    assert len(new_nonce(lambda n: bytes(n))) == 12
    with pytest.raises(CryptoError):
        new_nonce(lambda n: bytes(n - 1))


# --- RFC 3394 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("v", load("keywrap.json")["vectors"])
def test_keywrap_rfc3394_vector(v: dict[str, str]) -> None:
    kek, key = Key(h(v["kek"])), Key(h(v["key"]))
    assert wrap_key(kek, key) == h(v["wrapped"])
    out = unwrap_key(kek, h(v["wrapped"]), label="cuk")
    assert out == key and out.label == "cuk"


def test_unwrap_failures() -> None:
    wrapped = wrap_key(KEY, OTHER)
    for kek, blob in [(OTHER, wrapped), (KEY, wrapped[:-1]), (KEY, bytes(24)),
                      (KEY, bytes([wrapped[0] ^ 1]) + wrapped[1:])]:
        with pytest.raises(AuthenticationError) as err:
            unwrap_key(kek, blob, label="x")
        assert str(err.value) == "key unwrap failed"


def test_transport_key_wraps_cuk() -> None:
    keys = OperatorKeys(KEY)
    record_field = wrap_key(keys.transport_key(), keys.cuk(2256884759))
    assert len(record_field) == 24
    assert unwrap_key(keys.transport_key(), record_field, label="cuk") == keys.cuk(2256884759)


# --- CWs to the STB ---------------------------------------------------------------------------------
@given(st.sampled_from([8, 16]), st.integers(0, 2**32))
def test_wrap_cws_roundtrip(length: int, seed: int) -> None:
    import random

    r = random.Random(seed)
    even = generate_cw(r.randbytes, length)
    odd = generate_cw(r.randbytes, length)
    blob = wrap_cws(KEY, even, odd)
    assert len(blob) == 40
    assert unwrap_cws(KEY, blob) == (even, odd)


def test_wrap_cws_wrong_pairing_key_fails() -> None:
    blob = wrap_cws(KEY, generate_cw(), generate_cw())
    with pytest.raises(AuthenticationError):
        unwrap_cws(OTHER, blob)
    with pytest.raises(AuthenticationError):
        unwrap_cws(KEY, blob[:24])


def test_wrap_cws_bad_lengths() -> None:
    with pytest.raises(CryptoError):
        wrap_cws(KEY, bytes(8), bytes(16))
    with pytest.raises(CryptoError):
        wrap_cws(KEY, bytes(7), bytes(7))
    with pytest.raises(CryptoError, match="zero"):
        wrap_cws(KEY, b"\x01" * 8 + bytes(8), b"\x01" * 16)


def test_chip_blob_pairing() -> None:
    csk, cwpk = KEY, OTHER
    blob = chip_blob(csk, cwpk)
    assert blob == wrap_key(csk, cwpk) and len(blob) == 24
    assert open_chip_blob(csk, blob) == cwpk
    with pytest.raises(AuthenticationError):
        open_chip_blob(Key(bytes(16)), blob)


# --- CW generation ----------------------------------------------------------------------------------
def test_generate_cw_csa2_checksum() -> None:
    cw = generate_cw(lambda n: bytes([0x10, 0x20, 0xF0, 0x01, 0x02, 0x03][:n]))
    assert cw == bytes([0x10, 0x20, 0xF0, 0x20, 0x01, 0x02, 0x03, 0x06])
    assert is_reduced_cw(cw)
    assert not is_reduced_cw(bytes([1, 2, 3, 7, 0, 0, 0, 0]))
    assert not is_reduced_cw(cw + cw)
    assert is_reduced_cw(h("07e01b02c9e045ee"))  # libdvbcsa test vector 1


@given(st.binary(min_size=8, max_size=8))
def test_reduce_cw(raw: bytes) -> None:
    cw = reduce_cw(raw)
    assert is_reduced_cw(cw)
    assert cw[:3] == raw[:3] and cw[4:7] == raw[4:7]


def test_generate_cw_cissa_never_zero_tail() -> None:
    draws = iter([bytes(16), b"\xaa" * 8 + bytes(8), b"\x55" * 16])
    assert generate_cw(lambda n: next(draws), 16) == b"\x55" * 16
    with pytest.raises(CryptoError):
        generate_cw(lambda n: bytes(n), 16)
    with pytest.raises(CryptoError, match=r"8 .* or 16"):
        generate_cw(length=12)


# --- PIN hash -----------------------------------------------------------------------------------------
def test_pin_hash_pinned_vectors() -> None:
    kdf = load("kdf.json")
    keys = OperatorKeys(Key(h(kdf["omk"])))
    for v in kdf["pin_hash"]:
        cuk = keys.cuk(v["serial"])
        assert pin_hash(cuk, v["pin"]) == h(v["hash"])
        assert pin_hash(cuk, v["pin"].encode()) == h(v["hash"])
        assert verify_pin(cuk, v["pin"], h(v["hash"]))
        assert not verify_pin(cuk, "9999", h(v["hash"]))


def test_pin_hash_is_per_card() -> None:
    keys = OperatorKeys(KEY)
    assert pin_hash(keys.cuk(1), "1234") != pin_hash(keys.cuk(2), "1234")
    assert len(pin_hash(keys.cuk(1), "1234")) == 16
    assert pin_hash_equal(pin_hash(keys.cuk(1), "1"), pin_hash(keys.cuk(1), "1"))
    with pytest.raises(CryptoError):
        pin_hash(keys.cuk(1), "12३4")
