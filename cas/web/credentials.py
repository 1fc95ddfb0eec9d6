"""The web layer's own records: portal passwords (``web_credentials``) and operator API keys
(``web_api_keys``).  Like the billing functions these take a session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.records import account_by_number
from cas.errors import ValidationError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.web.models import WebApiKey, WebCredential
from cas.web.security import MintedKey, hash_password, mint_api_key, verify_password


# --- portal passwords -------------------------------------------------------------------------------
def password_hash_of(session: Session, account_id: int) -> str | None:
    row = session.get(WebCredential, account_id)
    return row.password_hash if row is not None else None


def set_portal_password(session: Session, *, account_number: str, password: str,
                        wall_s: int) -> None:
    """Set (or replace) the portal password of an account (argon2id hash only)."""
    acc = account_by_number(session, account_number)
    digest = hash_password(password)
    row = session.get(WebCredential, acc.id)
    if row is None:
        session.add(WebCredential(account_id=acc.id, password_hash=digest, updated_at_s=wall_s))
    else:
        row.password_hash = digest
        row.updated_at_s = wall_s
    session.flush()


def change_portal_password(session: Session, *, account_id: int, account_number: str,
                           current: str, new: str, repeat: str, wall_s: int) -> None:
    """Set or change the portal password: the current one must be given when there is one,
    and the new one typed twice alike."""
    stored = password_hash_of(session, account_id)
    if stored is not None and not verify_password(stored, current[:256]):
        raise ValidationError("the current password is wrong", code="WRONG_PASSWORD").with_id(
            "web.current_password_wrong")
    if new != repeat:
        raise ValidationError("the two new passwords differ", code="PASSWORD_MISMATCH").with_id(
            "web.two_new_passwords_differ")
    set_portal_password(session, account_number=account_number, password=new, wall_s=wall_s)


# --- API keys -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyView:
    key_id: str
    operator: str
    label: str
    created_at_s: int
    last_used_at_s: int | None
    revoked_at_s: int | None


def create_api_key(session: Session, *, operator: str, label: str, wall_s: int) -> MintedKey:
    minted = mint_api_key(operator)
    session.add(WebApiKey(key_id=minted.key_id, operator=operator, label=label[:128],
                          secret_sha256=minted.secret_sha256, created_at_s=wall_s))
    session.flush()
    return minted


def list_api_keys(session: Session) -> list[ApiKeyView]:
    return [ApiKeyView(key_id=k.key_id, operator=k.operator, label=k.label,
                       created_at_s=k.created_at_s, last_used_at_s=k.last_used_at_s,
                       revoked_at_s=k.revoked_at_s)
            for k in session.execute(select(WebApiKey).order_by(WebApiKey.id)).scalars()]


def revoke_api_key(session: Session, *, key_id: str, wall_s: int) -> None:
    row = session.execute(select(WebApiKey).where(WebApiKey.key_id == key_id)).scalar()
    if row is None:
        raise RecordNotFound(f"unknown API key {key_id!r}", code="UNKNOWN_API_KEY").with_id(
            "web.unknown_api_key", key_id=f"{key_id!r}")
    if row.revoked_at_s is not None:
        raise RecordConflict(f"API key {key_id} is already revoked", code="ALREADY_REVOKED").with_id(
            "web.api_key_already_revoked", key_id=key_id)
    row.revoked_at_s = wall_s
