"""Passwords (argon2id), API keys, signed cookies and CSRF tokens."""

from __future__ import annotations

import pytest
from argon2 import extract_parameters

from cas.errors import ValidationError
from cas.web import security
from cas.web.security import (
    CookieSigner,
    hash_password,
    mint_api_key,
    parse_api_key,
    sha256_hex,
    verify_password,
)


def test_password_hash_round_trip_and_policy() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$") and "correct" not in h
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "correct horse batterY")
    assert not verify_password("not a hash", "x" * 10)
    for bad in ("short", "x" * 129, " padded password", "padded password "):
        with pytest.raises(ValidationError) as err:
            hash_password(bad)
        assert err.value.code == "BAD_PASSWORD"


def test_no_account_costs_the_same_argon2_work() -> None:
    # The dummy hash verified for unknown accounts has the very parameters of a real one.
    real = extract_parameters(hash_password("some password"))
    dummy = extract_parameters(security._DUMMY_HASH)
    assert (dummy.time_cost, dummy.memory_cost, dummy.parallelism, dummy.type) == \
        (real.time_cost, real.memory_cost, real.parallelism, real.type)
    assert verify_password(None, "cas-sim: no such account") is False


def test_api_keys() -> None:
    key = mint_api_key("atvplus")
    assert key.full.startswith(f"cas.atvplus.{key.key_id}.")
    assert key.full not in repr(key) and key.full.split(".")[3] not in repr(key)
    parsed = parse_api_key(key.full)
    assert parsed is not None and parsed.operator == "atvplus" and parsed.key_id == key.key_id
    assert parsed.secret_sha256 == key.secret_sha256 == sha256_hex(key.full.split(".")[3])
    assert mint_api_key("atvplus").full != key.full
    for bad in ("", "cas.atvplus", key.full + "0", key.full.replace("cas.", "sac."),
                key.full.upper(), "cas.ATV.0123456789abcdef." + "0" * 64):
        assert parse_api_key(bad) is None
    with pytest.raises(ValidationError):
        mint_api_key("Bad Operator")


def test_signed_session_cookie_and_flash() -> None:
    signer = CookieSigner(b"k" * 32)
    value = signer.sign_session("tok123")
    assert signer.unsign_session(value) == "tok123"
    assert signer.unsign_session(value[:-1] + ("A" if value[-1] != "A" else "B")) is None
    assert signer.unsign_session("tok123") is None and signer.unsign_session(None) is None
    assert CookieSigner(b"j" * 32).unsign_session(value) is None
    # Purposes do not mix: a flash signature is not a session signature.
    assert signer.unsign_session(signer.sign_flash("tok123")) is None


def test_csrf_tokens_are_bound_to_the_cookie_and_the_secret() -> None:
    signer = CookieSigner(b"k" * 32)
    token = signer.csrf_token("cookie-value-1")
    assert signer.csrf_ok("cookie-value-1", token)
    assert not signer.csrf_ok("cookie-value-2", token)
    assert not signer.csrf_ok(None, token) and not signer.csrf_ok("cookie-value-1", None)
    assert not signer.csrf_ok("cookie-value-1", "")
    assert not CookieSigner(b"j" * 32).csrf_ok("cookie-value-1", token)
