"""Secrets of the web layer: portal passwords, API keys, session tokens, CSRF tokens, signed
cookies and rate-limit counters.

* Passwords: argon2id (memory-hard), via argon2-cffi; a login for an unknown account still
  runs one verification against a dummy hash, so "no such account" and "wrong password"
  take the same time.
* API keys: ``cas.<operator>.<key_id>.<secret>``, 256-bit secret; the store keeps SHA-256 of
  the secret (a fast hash is right for a full-entropy secret and keeps a request cheap).
* Session tokens: 256-bit random, signed in the cookie (itsdangerous), stored as SHA-256.
* CSRF: a random per-browser value in an HttpOnly cookie; forms carry
  HMAC-SHA256(secret, value) (a signed double-submit token), checked on every POST.
* Rate limits: fixed windows counted in the store (``web_throttle``), so they hold across
  worker processes and restarts; one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` per
  counted attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, Signer
from sqlalchemy import Table, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cas.errors import ValidationError
from cas.web.models import WebThrottle
from cas.web.settings import RateLimit

_HASHER = PasswordHasher()  # argon2id, RFC 9106 "second recommended" parameters
_DUMMY_HASH = _HASHER.hash("cas-sim: no such account")

PASSWORD_MIN = 8
PASSWORD_MAX = 128


# --- passwords -----------------------------------------------------------------------------
def check_password_policy(password: str) -> None:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValidationError(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters",
                              code="BAD_PASSWORD").with_id(
            "web.password_characters", password_min=PASSWORD_MIN, password_max=PASSWORD_MAX)
    if password.strip() != password or not password.strip():
        raise ValidationError("a password must not start or end with spaces",
                              code="BAD_PASSWORD").with_id("web.password_not_start_end")


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; ``stored_hash`` None (no such account, no password set)
    still costs one argon2 verification."""
    target = stored_hash or _DUMMY_HASH
    ok: bool
    try:
        ok = bool(_HASHER.verify(target, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    return ok and stored_hash is not None


# --- API keys --------------------------------------------------------------------------------
_API_KEY = re.compile(r"^cas\.([a-z0-9_-]{1,32})\.([0-9a-f]{16})\.([0-9a-f]{64})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class MintedKey:
    """A new API key.  ``full`` is shown once and never stored."""

    operator: str
    key_id: str
    full: str
    secret_sha256: str

    def __repr__(self) -> str:  # never the secret
        return f"MintedKey(operator={self.operator!r}, key_id={self.key_id!r})"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def mint_api_key(operator: str) -> MintedKey:
    if not re.fullmatch(r"[a-z0-9_-]{1,32}", operator):
        raise ValidationError("operator key: 1-32 of a-z 0-9 _ -", code="BAD_OPERATOR").with_id(
            "web.operator_key_z")
    key_id = secrets.token_hex(8)
    secret = secrets.token_hex(32)
    return MintedKey(operator=operator, key_id=key_id, full=f"cas.{operator}.{key_id}.{secret}",
                     secret_sha256=sha256_hex(secret))


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentedKey:
    operator: str
    key_id: str
    secret_sha256: str


def parse_api_key(text: str) -> PresentedKey | None:
    m = _API_KEY.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        return None
    return PresentedKey(operator=m.group(1), key_id=m.group(2),
                        secret_sha256=sha256_hex(m.group(3)))


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --- tokens, cookies, CSRF -----------------------------------------------------------------------
def new_token() -> str:
    return secrets.token_urlsafe(32)


class CookieSigner:
    """Signs and checks cookie values with the web secret (one salt per cookie purpose)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._session = Signer(secret, salt="cas-web-session")
        self._flash = Signer(secret, salt="cas-web-flash")

    def sign_session(self, token: str) -> str:
        return self._session.sign(token.encode()).decode()

    def unsign_session(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return self._session.unsign(value.encode()).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    def sign_flash(self, text: str) -> str:
        return self._flash.sign(text.encode()).decode()

    def unsign_flash(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return self._flash.unsign(value.encode()).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    def csrf_token(self, cookie_value: str) -> str:
        return hmac.new(self._secret, b"csrf:" + cookie_value.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie_value: str | None, form_value: str | None) -> bool:
        if not cookie_value or not form_value:
            return False
        return hmac.compare_digest(self.csrf_token(cookie_value).encode(),
                                   str(form_value).encode())


# --- rate limits ---------------------------------------------------------------------------------
def throttle_retry_after(session: Session, key: str, rule: RateLimit, now_s: int) -> int | None:
    """Seconds until ``key`` may try again, or None if it is under its limit."""
    row = session.get(WebThrottle, key)
    if row is None or now_s >= row.window_start_s + rule.window_s or row.count < rule.limit:
        return None
    return row.window_start_s + rule.window_s - now_s


def throttle_count(session: Session, key: str, rule: RateLimit, now_s: int) -> int:
    """Count one attempt for ``key`` (a new window starts when the old one is over) and
    return the attempts in the current window.  One atomic upsert, safe under concurrency."""
    table = WebThrottle.__table__
    assert isinstance(table, Table)
    expired = table.c.window_start_s + rule.window_s <= now_s
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))
    stmt = ins.values(key=key, window_start_s=now_s, count=1).on_conflict_do_update(
        index_elements=[table.c.key],
        set_={"count": case((expired, 1), else_=table.c.count + 1),
              "window_start_s": case((expired, now_s), else_=table.c.window_start_s)},
    )
    # One round trip: the count the upsert left is returned by it (PostgreSQL; SQLite 3.35+).
    return int(session.execute(stmt.returning(table.c.count)).scalar_one())


def throttle_reset(session: Session, key: str) -> None:
    row = session.get(WebThrottle, key)
    if row is not None:
        session.delete(row)
