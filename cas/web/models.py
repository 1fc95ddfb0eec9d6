"""The web layer's own tables, on the subscriber store's metadata (``cas.store.models.Base``).

Created by the migration ``cas/store/migrations/versions/0002_web_api_portal.py``; a test
compares the two on SQLite and PostgreSQL.  Secrets are never stored in clear: API keys and
session tokens as SHA-256 digests (they are 256-bit random values, so a fast hash is enough
and keeps a request cheap), portal passwords as argon2id hashes (low-entropy, so memory-hard).
Times are ``int`` seconds since the epoch (``*_s``), wall-clock UTC.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cas.store.models import Base, BigId


class WebApiKey(Base):
    """An API key of a billing/CRM system, scoped to one operator (= one store's profile).

    The key handed out once is ``cas.<operator>.<key_id>.<secret>``; only ``key_id`` and
    SHA-256(secret) are kept.
    """

    __tablename__ = "web_api_keys"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    operator: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(128), default="")
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    last_used_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class WebCredential(Base):
    """A personal account's portal password (argon2id hash, never the password)."""

    __tablename__ = "web_credentials"
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    password_hash: Mapped[str] = mapped_column(String(256))
    updated_at_s: Mapped[int] = mapped_column(BigInteger)


class WebSession(Base):
    """A portal session.  The cookie carries the signed random token; the row is keyed by its
    SHA-256, so a copy of the database cannot be replayed as a cookie.

    ``stage``: ``code_sent`` (an SMS code is on its way, not logged in yet) or ``in``.
    ``verification_token`` is the billing layer's SMS verification session: the code stays
    valid until this session ends (Uzonline seed), and logging out ends it.
    """

    __tablename__ = "web_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True, index=True)
    stage: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))  # password | sms
    verification_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    last_seen_at_s: Mapped[int] = mapped_column(BigInteger)
    expires_at_s: Mapped[int] = mapped_column(BigInteger)
    ended_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class WebAuditEntry(Base):
    """One change made through the API or the portal: who, when, what, to which record."""

    __tablename__ = "web_audit_log"
    __table_args__ = (Index("ix_web_audit_log_target", "target"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at_s: Mapped[int] = mapped_column(BigInteger)  # wall clock
    sim_at_s: Mapped[int] = mapped_column(BigInteger)  # the store's simulation clock
    actor_kind: Mapped[str] = mapped_column(String(16))  # api_key | subscriber | public
    actor: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")  # JSON, never a secret


class WebIdempotency(Base):
    """A replayable answer: the same API key + ``Idempotency-Key`` + body gets this response."""

    __tablename__ = "web_idempotency"
    api_key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    idem_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at_s: Mapped[int] = mapped_column(BigInteger)


class WebThrottle(Base):
    """Fixed-window attempt counters for rate limits (login, SMS code send and check), keyed
    by e.g. ``login:acct:<account>`` or ``login:ip:<address>``."""

    __tablename__ = "web_throttle"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    window_start_s: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer, default=0)


WEB_TABLES = ("web_api_keys", "web_credentials", "web_sessions", "web_audit_log",
              "web_idempotency", "web_throttle")
