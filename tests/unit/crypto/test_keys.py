"""Key objects, the SP 800-108 key ladder, bulk CUK derivation, the operator key file."""

from __future__ import annotations

import copy
import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode
from hypothesis import given
from hypothesis import strategies as st

from cas.crypto import (
    ENV_OPERATOR_KEY,
    Key,
    OperatorKeys,
    Purpose,
    derive_cuks,
    derive_cuks_concat,
    kdf,
    load_operator_keys,
)
from cas.crypto.keys import _cmac_subkey1
from cas.errors import CasError, CryptoError
from tests.unit.crypto.vectors import h, load

KDF = load("kdf.json")
OMK = Key(h(KDF["omk"]), label="omk")
SECRET = bytes(range(0xA0, 0xB0))


def counter_rng(start: int = 0) -> object:
    state = {"n": start}

    def rng(n: int) -> bytes:
        out = bytes((state["n"] + i) & 0xFF for i in range(n))
        state["n"] += n
        return out

    return rng


# --- Key never shows its bytes -----------------------------------------------------------------
def test_key_repr_str_format_hide_bytes() -> None:
    key = Key(SECRET, label="cuk")
    for text in (repr(key), str(key), f"{key}", f"{key!r:>60}", repr([key]), repr({"k": key})):
        assert SECRET.hex() not in text.lower()
        assert SECRET.hex().upper() not in text
        assert "cuk" in text
    assert key.fingerprint() in repr(key)


def test_fingerprint_is_sha256_prefix_of_label_and_key() -> None:
    import hashlib

    key = Key(SECRET, label="omk")
    assert key.fingerprint() == hashlib.sha256(b"omk" + SECRET).hexdigest()[:8]
    assert Key(SECRET, label="other").fingerprint() != key.fingerprint()


def test_key_refuses_pickle_and_copy_returns_same_object() -> None:
    key = Key(SECRET, label="cuk")
    with pytest.raises(CryptoError) as err:
        pickle.dumps(key)
    assert SECRET.hex() not in str(err.value)
    assert copy.copy(key) is key
    assert copy.deepcopy({"k": key})["k"] is key
    with pytest.raises(CryptoError):
        pickle.dumps(OperatorKeys(Key(SECRET)))


def test_key_equality_and_hash() -> None:
    assert Key(SECRET, label="a") == Key(SECRET, label="b")
    assert Key(SECRET) != Key(bytes(16))
    assert hash(Key(SECRET)) == hash(Key(SECRET, label="x"))
    assert Key(SECRET) != SECRET


@pytest.mark.parametrize("raw", [b"", bytes(15), bytes(17), bytes(32)])
def test_key_wrong_length(raw: bytes) -> None:
    with pytest.raises(CryptoError, match="16 bytes"):
        Key(raw)


def test_key_rejects_non_bytes() -> None:
    with pytest.raises(CryptoError):
        Key("00" * 16)  # type: ignore[arg-type]


# --- the KDF ------------------------------------------------------------------------------------
def test_cmac_subkey_rfc4493() -> None:
    v = KDF["aes_cmac_rfc4493"]
    assert _cmac_subkey1(h(v["key"])).to_bytes(16, "big") == h(v["k1"])


def _cmac_reference(key: bytes, purpose: int, context: int) -> bytes:
    """The documented PRF input, fed to a plain AES-CMAC (independent of cas.crypto.kdf)."""
    msg = b"\x01" + b"cas-sim" + bytes([purpose]) + b"\x00" + context.to_bytes(4, "big") + b"\x00\x80"
    assert len(msg) == 16
    mac = CMAC(algorithms.AES(key))
    mac.update(msg)
    return mac.finalize()


def test_ladder_pinned_vectors() -> None:
    keys = OperatorKeys(OMK)
    for v in KDF["cuk"]:
        assert keys.cuk(v["serial"]).raw() == h(v["key"])
        assert _cmac_reference(OMK.raw(), Purpose.CUK, v["serial"]) == h(v["key"])
    for v in KDF["group_key"]:
        assert keys.group_key(v["shared_address"]).raw() == h(v["key"])
        assert _cmac_reference(OMK.raw(), Purpose.GROUP, v["shared_address"]) == h(v["key"])
    for v in KDF["ecm_key"]:
        assert keys.ecm_key(v["index"]).raw() == h(v["key"])
    assert keys.global_key().raw() == h(KDF["global_key"])
    assert keys.transport_key().raw() == h(KDF["transport_key"])
    assert _cmac_reference(OMK.raw(), Purpose.TRANSPORT, 0) == h(KDF["transport_key"])


def test_kdf_equals_sp800_108_kbkdf_cmac() -> None:
    for purpose in Purpose:
        for context in (0, 7, 0xFFFFFFFF):
            expected = KBKDFCMAC(
                algorithm=algorithms.AES, mode=Mode.CounterMode, length=16, rlen=1, llen=2,
                location=CounterLocation.BeforeFixed, label=b"cas-sim" + bytes([purpose]),
                context=context.to_bytes(4, "big"), fixed=None,
            ).derive(OMK.raw())
            assert kdf(OMK, purpose, context).raw() == expected


def test_ecm_key_epoch() -> None:
    keys = OperatorKeys(OMK)
    assert keys.ecm_key(3, epoch=0) == keys.ecm_key(3)
    assert keys.ecm_key(3, epoch=1) != keys.ecm_key(3)
    assert keys.ecm_key(3, epoch=1).raw() == _cmac_reference(OMK.raw(), Purpose.ECM, 0x103)
    with pytest.raises(CryptoError, match="epoch"):
        keys.ecm_key(3, epoch=1 << 24)


def test_ladder_keys_are_distinct() -> None:
    keys = OperatorKeys(OMK)
    derived = [keys.cuk(1), keys.group_key(1), keys.global_key(), keys.ecm_key(1),
               keys.transport_key(), keys.cuk(2), keys.ecm_key(2), OMK]
    assert len({k.raw() for k in derived}) == len(derived)


@pytest.mark.parametrize(("method", "value"), [
    ("cuk", -1), ("cuk", 1 << 32), ("group_key", 1 << 24), ("ecm_key", 256), ("ecm_key", -1),
    ("cuk", True),
])
def test_ladder_range_checks(method: str, value: int) -> None:
    with pytest.raises(CryptoError, match="range"):
        getattr(OperatorKeys(OMK), method)(value)


@given(st.lists(st.integers(0, 0xFFFFFFFF), max_size=40))
def test_derive_cuks_equals_single_derivation(serials: list[int]) -> None:
    keys = OperatorKeys(OMK)
    bulk = derive_cuks(keys, serials)
    assert bulk == [keys.cuk(s).raw() for s in serials]
    assert derive_cuks_concat(OMK, serials) == b"".join(bulk)


def test_derive_cuks_pinned_and_large() -> None:
    serials = [v["serial"] for v in KDF["cuk"]] * 2000
    out = derive_cuks(OMK, serials)
    assert len(out) == len(serials)
    assert out[-1] == h(KDF["cuk"][-1]["key"])
    assert out[4001] == h(KDF["cuk"][1]["key"])


@pytest.mark.parametrize("bad", [[-1], [1 << 32], [1.5]])
def test_derive_cuks_rejects_bad_serials(bad: list[object]) -> None:
    with pytest.raises(CryptoError):
        derive_cuks(OMK, bad)  # type: ignore[arg-type]


def test_operator_keys_repr_hides_bytes() -> None:
    keys = OperatorKeys(OMK, vendor_keys={1: Key(SECRET)})
    text = repr(keys) + str(keys) + repr(keys.fingerprints())
    assert OMK.raw().hex() not in text and SECRET.hex() not in text


# --- key file -----------------------------------------------------------------------------------
def test_generate_save_load_roundtrip(tmp_path: Path) -> None:
    keys = OperatorKeys.generate(counter_rng(), now_s=1_700_000_000)  # type: ignore[arg-type]
    path = tmp_path / "sub" / "operator-keys.toml"
    keys.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = OperatorKeys.load(path)
    assert loaded.master == keys.master
    assert loaded.created_s == 1_700_000_000
    assert loaded.chipset_vendor_key(1) == keys.chipset_vendor_key(1)
    assert loaded.cuk(42) == keys.cuk(42)


def test_save_refuses_overwrite_then_force(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    first = OperatorKeys.generate(counter_rng(0))  # type: ignore[arg-type]
    second = OperatorKeys.generate(counter_rng(100))  # type: ignore[arg-type]
    first.save(path)
    with pytest.raises(CryptoError, match="already exists"):
        second.save(path)
    assert OperatorKeys.load(path).master == first.master
    path.chmod(0o644)
    second.save(path, force=True)
    assert OperatorKeys.load(path).master == second.master
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_json_key_file(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"format": 1, "omk": OMK.raw().hex(),
                                "chipset_vendor_keys": {"0x0002": SECRET.hex()}}))
    keys = OperatorKeys.load(path)
    assert keys.master == OMK
    assert keys.chipset_vendor_key(2).raw() == SECRET
    with pytest.raises(CryptoError, match="0003"):
        keys.chipset_vendor_key(3)


@pytest.mark.parametrize("content", [
    "omk = 'zz'\nformat = 1\n",
    f"format = 2\nomk = '{SECRET.hex()}'\n",
    f"format = 1\nomk = '{SECRET.hex()}00'\n",
    f"format = 1\nomk = \"{SECRET.hex()}\n",  # broken TOML quoting the key
    "format = 1\n",
    "[1, 2",
])
def test_bad_key_files_give_crypto_error_without_key_bytes(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k.toml"
    path.write_text(content)
    with pytest.raises(CryptoError) as err:
        OperatorKeys.load(path)
    assert SECRET.hex() not in str(err.value)
    assert isinstance(err.value, CasError)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="cas keys init"):
        OperatorKeys.load(tmp_path / "nope.toml")


def test_from_env() -> None:
    env = {ENV_OPERATOR_KEY: OMK.raw().hex(), "CAS_CHIPSET_VENDOR_KEYS": f"1={SECRET.hex()}"}
    keys = OperatorKeys.from_env(env)
    assert keys.master == OMK
    assert keys.chipset_vendor_key(1).raw() == SECRET
    with pytest.raises(CryptoError, match="not set"):
        OperatorKeys.from_env({})
    with pytest.raises(CryptoError) as err:
        OperatorKeys.from_env({ENV_OPERATOR_KEY: SECRET.hex()[:-2] + "zz"})
    assert SECRET.hex()[:10] not in str(err.value)


def test_load_operator_keys_precedence(tmp_path: Path) -> None:
    file_keys = OperatorKeys.generate(counter_rng(7))  # type: ignore[arg-type]
    file_keys.save(tmp_path / "operator-keys.toml")
    env = {ENV_OPERATOR_KEY: OMK.raw().hex()}
    assert load_operator_keys(tmp_path / "operator-keys.toml", environ=env).master == file_keys.master
    assert load_operator_keys(data_dir=tmp_path, environ=env).master == OMK
    assert load_operator_keys(data_dir=tmp_path, environ={}).master == file_keys.master
    with pytest.raises(CryptoError):
        load_operator_keys(environ={})


def test_generate_uses_rng() -> None:
    a = OperatorKeys.generate(counter_rng(1))  # type: ignore[arg-type]
    b = OperatorKeys.generate(counter_rng(1))  # type: ignore[arg-type]
    c = OperatorKeys.generate(os.urandom)
    assert a.master == b.master
    assert a.master != c.master


def test_vendor_ids_in_other_digits_are_refused() -> None:
    # int("１", 0) is 1: a key file or $CAS_CHIPSET_VENDOR_KEYS must say it in ASCII.
    vendor = SECRET.hex()
    assert OperatorKeys.from_env({"CAS_OPERATOR_KEY": OMK.raw().hex(),
                                  "CAS_CHIPSET_VENDOR_KEYS": f"0x1={vendor}"}
                                 ).chipset_vendor_key(1) == Key(SECRET)
    for vid in ("１", "٣", "0x１"):
        with pytest.raises(CryptoError, match="is not a number"):
            OperatorKeys.from_env({"CAS_OPERATOR_KEY": OMK.raw().hex(),
                                   "CAS_CHIPSET_VENDOR_KEYS": f"{vid}={vendor}"})
