"""Promo codes (TV+ seed): a code activates a package for some days, free, once per account,
within the code's validity and use limit.

The entry point runs in a SAVEPOINT (:func:`cas.billing.txn.atomic`) and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cas.billing.events import prepare_account
from cas.billing.ledger import touch_rights
from cas.billing.packages import SubscriptionView, subscription_view
from cas.billing.renewals import base_of, open_subscriptions, update_block
from cas.billing.txn import DAY_S, account_by_number, atomic
from cas.billing.verification import require_verified
from cas.billing.vocab import SubscriptionStatus
from cas.errors import BillingError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Package, PromoCode, PromoRedemption, Subscription
from cas.store.repo import to_s
from cas.text import control_character


@atomic
def redeem_promo(session: Session, *, account_number: str, code: str, at: datetime,
                 verification: str | None = None) -> SubscriptionView:
    """TV+ promo: a code activates a subscription for some days, free (confirmed by the SMS
    code sent to the phone when the profile asks for it)."""
    at_s = to_s(at)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    if not profile.promo_enabled:
        raise BillingError(f"{profile.name} has no promo codes", code="PROMO_UNSUPPORTED").with_id(
            "billing.no_promo_codes", name=profile.name)
    if profile.promo_requires_verification:
        require_verified(session, token=verification, account_id=acc.id, at_s=at_s)
    key = str(code).strip().upper()
    promo_row = session.get(PromoCode, key) if key and control_character(key) is None else None
    if promo_row is None:
        raise RecordNotFound(f"unknown promo code {code!r}", code="UNKNOWN_PROMO").with_id(
            "unknown_promo", ref=code)
    if promo_row.valid_until_s is not None and at_s >= promo_row.valid_until_s:
        raise BillingError("this promo code has expired", code="PROMO_EXPIRED").with_id(
            "billing.promo_code_expired")
    if session.execute(select(PromoRedemption.id).where(
            PromoRedemption.code == key, PromoRedemption.account_id == acc.id)).first():
        # A rule refusal (exit 7, like every rule), not a store conflict.
        raise BillingError("this account already used this promo code", code="PROMO_USED").with_id(
            "billing.account_already_used_promo")
    pkg = session.get(Package, promo_row.package_id)
    assert pkg is not None
    subs = open_subscriptions(session, acc)
    base = base_of(subs)
    if pkg.kind == "addon" and (base is None or base[0].status != SubscriptionStatus.ACTIVE):
        raise BillingError(f"{pkg.name} is an add-on: it needs a base package first",
                           code="ADDON_NEEDS_BASE").with_id(
            "billing.add_needs_base_package", name=pkg.name)
    if pkg.kind == "base" and base is not None and base[0].status == SubscriptionStatus.ACTIVE \
            and base[1].id != pkg.id:
        raise RecordConflict(f"the account already has the base package {base[1].name}",
                             code="HAS_BASE_PACKAGE").with_id(
            "billing.account_already_base_package", name=base[1].name)
    bumped = session.execute(  # type: ignore[attr-defined]  # CursorResult.rowcount
        update(PromoCode).where(PromoCode.code == key,
                                (PromoCode.max_uses.is_(None))
                                | (PromoCode.used_count < PromoCode.max_uses))
        .values(used_count=PromoCode.used_count + 1)
        .execution_options(synchronize_session=False)).rowcount
    if not bumped:
        raise BillingError("this promo code has been used up", code="PROMO_EXHAUSTED").with_id(
            "billing.promo_code_been_used")
    session.add(PromoRedemption(code=key, account_id=acc.id, at_s=at_s))
    days_s = promo_row.days * DAY_S
    sub = next((s for s, p in subs if p.id == pkg.id), None)
    if sub is not None and sub.status == SubscriptionStatus.ACTIVE and sub.paid_until_s is not None:
        sub.paid_until_s += days_s
    else:
        if pkg.kind == "base" and base is not None and base[0] is not sub:
            # A pending/expired/blocked choice of another base.
            base[0].status = SubscriptionStatus.CLOSED
            base[0].closed_at_s = at_s
        if sub is None:
            sub = Subscription(account_id=acc.id, package_id=pkg.id, created_at_s=at_s,
                               auto_renew=profile.auto_renew_default, source="promo")
            session.add(sub)
        sub.status = SubscriptionStatus.ACTIVE
        sub.start_s = at_s
        sub.period_start_s = at_s
        sub.paid_until_s = at_s + days_s
        sub.period_price_minor = 0
        sub.reminded_until_s = None
        if sub.activated_at_s is None:
            sub.activated_at_s = at_s
        session.flush()
    update_block(session, profile, acc, at_s)
    touch_rights(session, acc, at_s, "promo")
    return subscription_view(session, sub, pkg, at_s)


__all__ = ["redeem_promo"]
