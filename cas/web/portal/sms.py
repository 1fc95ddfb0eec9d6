"""SMS codes inside the account (Uzonline subscribe, TV+ promo): send one to a phone and keep
its verification in the portal session; check a typed code."""

from __future__ import annotations

from cas.billing import accounts as acc_mod
from cas.billing.clock import clock_now
from cas.billing.selfcare import send_sms_code
from cas.errors import BillingError, CasError
from cas.store.models import Account
from cas.web import audit
from cas.web.models import WebSession
from cas.web.portal import throttle
from cas.web.portal.pages import error_text
from cas.web.portal.sessions import session_verification_token
from cas.web.portal.visit import Subscriber, Visit


def send_code(v: Visit, user: Subscriber, phone: str | None, action: str) -> str | None:
    """Send an SMS code for the logged-in account to ``phone`` (default: the account's) and
    keep its token in the session.  Returns an error text or None."""
    keys = throttle.sms_send_keys(v, user.account_id)
    throttle.check(v, keys)
    throttle.count(v, keys)
    try:
        with v.tenant.transaction() as s:
            at = clock_now(s)
            acc = s.get(Account, user.account_id)
            assert acc is not None
            target = phone or acc.phone
            if not target:
                return v.t("verify.no_phone")
            token = send_sms_code(s, account=acc, phone=target, at=at)
            row = s.get(WebSession, user.token_sha256)
            if row is not None:
                row.verification_token = token
            audit.record(s, v.actor(), action, user.account_number, wall_s=v.now_s, sim_at=at,
                         detail={"phone": target})
    except CasError as exc:
        return error_text(v, exc)
    return None


def confirm_code(v: Visit, user: Subscriber, code: str) -> bool:
    """Check ``code`` against the session's SMS verification (failures are counted)."""
    keys = throttle.code_keys(v, user.account_id)
    throttle.check(v, keys)
    token = session_verification_token(v, user.token_sha256)
    ok = False
    if token is not None:
        ok = verify_code(v, token, code)
    if not ok:
        throttle.count(v, keys)
    return ok


def verify_code(v: Visit, token: str, code: str) -> bool:
    """One attempt at the verification ``token`` (wrong codes are counted by the billing
    layer, which closes the verification after its limit)."""
    with v.tenant.transaction() as s:
        try:
            return acc_mod.confirm_verification(s, token=token, code=code.strip()[:16],
                                                at=clock_now(s)).verified
        except BillingError:
            return False
