"""Phone verification (Uzonline seed): a code sent by SMS, valid until the authentication
session ends; only the code's salted hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from cas.billing.identifiers import normalise_phone
from cas.billing.txn import account_by_number, atomic, current_profile
from cas.errors import BillingError
from cas.store.errors import RecordNotFound
from cas.store.models import Account, VerificationSession
from cas.store.repo import from_s, to_s


def hash_code(token: str, code: str) -> str:
    return hashlib.sha256(f"{token}:{code}".encode()).hexdigest()



@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationChallenge:
    """The session token, and the code the simulated SMS carries (shown by the CLI; only its
    salted hash is stored)."""

    token: str
    code: str
    phone: str
    expires_at: datetime


@atomic
def start_verification(session: Session, *, account_number: str, phone: str, at: datetime,
                       rng: Callable[[int], bytes] = os.urandom) -> VerificationChallenge:
    """Send a confirmation code to ``phone`` for this account (Uzonline: phone number + account
    number; TV+ promo: phone number + promo code).  The code is valid until the
    authentication session ends."""
    at_s = to_s(at)
    profile = current_profile(session)
    acc = account_by_number(session, account_number)
    phone_v = normalise_phone(phone)
    token = rng(16).hex()
    digits = profile.verification_code_digits
    code = f"{int.from_bytes(rng(8), 'big') % 10**digits:0{digits}d}"
    expires = at_s + profile.verification_session_minutes * 60
    session.add(VerificationSession(token=token, account_id=acc.id, phone=phone_v,
                                    code_hash=hash_code(token, code), created_at_s=at_s,
                                    expires_at_s=expires, attempts=0))
    session.flush()
    return VerificationChallenge(token=token, code=code, phone=phone_v, expires_at=from_s(expires))


def _live_session(session: Session, token: str | None, at_s: int) -> VerificationSession:
    if not token or not str(token).strip():
        raise BillingError(
            "this needs the phone number confirmed by SMS code, and no verification was "
            "given: start a verification session, confirm the code, then give its token",
            code="VERIFICATION_REQUIRED").with_id("billing.needs_phone_number_confirmed")
    row = session.get(VerificationSession, token, with_for_update=True)
    if row is None:
        raise BillingError("no such verification session", code="VERIFICATION_REQUIRED").with_id(
            "billing.no_such_verification_session")
    if row.ended_at_s is not None or at_s >= row.expires_at_s:
        raise BillingError("the verification session has ended", code="VERIFICATION_EXPIRED").with_id(
            "billing.verification_session_ended")
    return row


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationResult:
    verified: bool
    attempts_left: int


def confirm_verification(session: Session, *, token: str, code: str,
                         at: datetime) -> VerificationResult:
    """Check the code.  A wrong code is counted and reported in the result (not raised), so
    the caller can commit the counter; after the profile's limit the session is closed.
    An unknown or ended session raises ``VERIFICATION_REQUIRED``/``VERIFICATION_EXPIRED``."""
    at_s = to_s(at)
    profile = current_profile(session)
    row = _live_session(session, token, at_s)
    left = max(profile.verification_max_attempts - row.attempts, 0)
    if row.verified_at_s is not None:
        return VerificationResult(verified=True, attempts_left=left)
    if not hmac.compare_digest(row.code_hash, hash_code(token, str(code).strip())):
        row.attempts += 1
        if row.attempts >= profile.verification_max_attempts:
            row.ended_at_s = at_s
        session.flush()
        return VerificationResult(verified=False, attempts_left=max(left - 1, 0))
    row.verified_at_s = at_s
    acc = session.get(Account, row.account_id)
    if acc is not None and acc.phone != row.phone:
        acc.phone = row.phone  # Uzonline: "the number is joined to the account"
    session.flush()
    return VerificationResult(verified=True, attempts_left=left)


@atomic
def end_verification(session: Session, *, token: str, at: datetime) -> None:
    """End the authentication session: its code is no longer valid."""
    at_s = to_s(at)
    row = session.get(VerificationSession, token)
    if row is None:
        raise RecordNotFound("no such verification session", code="UNKNOWN_SESSION").with_id(
            "billing.no_such_verification_session")
    if row.ended_at_s is None:
        row.ended_at_s = at_s


def require_verified(session: Session, *, token: str | None, account_id: int, at_s: int) -> None:
    row = _live_session(session, token, at_s)
    if row.account_id != account_id or row.verified_at_s is None:
        raise BillingError("confirm the phone number with the SMS code first",
                           code="VERIFICATION_REQUIRED").with_id("billing.confirm_phone_number_sms")


__all__ = ["VerificationChallenge", "VerificationResult", "confirm_verification",
           "end_verification", "hash_code", "require_verified", "start_verification"]
