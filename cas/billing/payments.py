"""Payments: top-ups by card, contract or account number (with an optional package
choice), SMS payments, operator adjustments, and the repayment of an open promised payment.

Every entry point runs in a SAVEPOINT (:func:`cas.billing.txn.atomic`) and never commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.catalog import get_package
from cas.billing.events import prepare_account
from cas.billing.ledger import floor_minor, post
from cas.billing.money import check_amount, parse_amount
from cas.billing.packages import choose_package, do_switch
from cas.billing.payers import account_id_of, resolve_reference
from cas.billing.renewals import next_price, open_subscriptions, settle
from cas.billing.txn import account_by_number, atomic, current_profile
from cas.billing.vocab import LedgerKind, PayerKind, SubscriptionStatus
from cas.errors import BillingError, ValidationError
from cas.i18n import Msg
from cas.store.errors import RecordConflict
from cas.store.models import Account, Package, Payment, PromisedPayment
from cas.store.repo import to_s
from cas.text import control_refusal

PAYMENT_METHODS = ("online", "terminal", "payment_card", "sms", "bank", "cash")
_PAYMENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentResult:
    payment_id: str
    account_number: str
    amount_minor: int
    balance_minor: int
    activated: tuple[str, ...]
    pending: tuple[str, ...]
    switched_to: str | None
    #: The code of the rule that refused the package chosen with the payment (the money is
    #: booked all the same), e.g. ``SWITCH_LOCKED``; ``None`` when nothing was refused.
    choice_refused: str | None
    note: str



@atomic
def pay(session: Session, *, by: PayerKind | str, ref: str | int, amount_minor: int,
        payment_id: str, at: datetime, method: str = "online",
        package: str | None = None) -> PaymentResult:
    """Top up an account by card, contract or account number (NTV Plus, ATV+, MTS seeds).

    The money goes to the balance (one ledger row).  With ``package`` the payer also chooses
    a package (ATV+ "enter the smart-card number, choose the package, pay"): it is activated
    as soon as the balance covers its price, which is then debited; choosing another base
    package while one is active is a switch, subject to the switch lock.  The first
    activation of a package is not a switch and does not start the lock.

    A package choice the rules refuse (the switch lock, an add-on without a base, a package
    already on the account, too little money for the switch) never refuses the money: the
    top-up is booked, the choice is not, and the result says why (``choice_refused``,
    ``note``) — ATV+ seed: the package option "does not appear".  An unknown package code is
    bad input and refuses the whole payment.  A payment id seen before is refused
    (``DUPLICATE_PAYMENT``); a refused payment writes nothing.
    """
    at_s = to_s(at)
    check_amount(amount_minor)
    if not isinstance(payment_id, str) or not _PAYMENT_ID.match(payment_id):
        raise ValidationError("payment id must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                              code="BAD_PAYMENT_ID").with_id("billing.payment_id_characters_z")
    if method not in PAYMENT_METHODS:
        raise ValidationError(f"unknown payment method {method!r}", code="BAD_METHOD").with_id(
            "bad_method", method=method)
    profile = current_profile(session)
    if by not in profile.payment_by:
        raise ValidationError(f"{profile.name} does not take payments by {by}",
                              code="BAD_PAYER").with_id(
            "bad_payer", operator=profile.name, by=Msg(f"ticket.payer.{by}"))
    if method == "payment_card":
        if not profile.payment_card_denominations_minor:
            raise ValidationError(f"{profile.name} has no payment cards",
                                  code="PAYMENT_CARDS_UNSUPPORTED").with_id(
                "billing.no_payment_cards", name=profile.name)
        if amount_minor not in profile.payment_card_denominations_minor:
            allowed = ", ".join(profile.money(d) for d in profile.payment_card_denominations_minor)
            raise ValidationError(f"payment cards come in {allowed}",
                                  code="BAD_DENOMINATION").with_id(
                "bad_denomination", allowed=allowed)
    account_id = account_id_of(session, by=by, ref=ref)
    if session.execute(select(Payment.id).where(Payment.payment_id == payment_id)).first():
        raise RecordConflict(f"payment {payment_id!r} was already booked",
                             code="DUPLICATE_PAYMENT").with_id("duplicate_payment", ref=payment_id)
    profile, acc = prepare_account(session, account_id, at_s)

    switch_to: Package | None = None
    refused: BillingError | RecordConflict | None = None
    chosen: Package | None = None
    if package is not None:
        chosen = get_package(session, package)
        try:
            with session.begin_nested():  # a refused choice leaves no trace, the money stays
                switch_to = choose_package(session, profile, acc, chosen, at_s)
        except (BillingError, RecordConflict) as exc:
            refused = exc

    session.add(Payment(payment_id=payment_id, account_id=acc.id, at_s=at_s,
                        amount_minor=amount_minor, method=method, by_kind=by, ref=str(ref),
                        package_code=package))
    session.flush()  # the unique payment id is enforced here, before any money moves
    post(session, acc, amount_minor, at_s=at_s, kind=LedgerKind.PAYMENT, ref=payment_id,
         description=f"payment by {by} {ref} ({method})")
    _repay_promise(session, acc, at_s)
    note = ""
    switched: str | None = None
    if switch_to is not None:
        try:
            with session.begin_nested():
                do_switch(session, profile, acc, switch_to, at_s)
            switched = switch_to.code
        except (BillingError, RecordConflict) as exc:
            refused = exc
    if refused is not None:
        assert chosen is not None
        what = "switch to" if chosen.kind == "base" else "choice of"
        note = (f"paid {profile.money(amount_minor)} to the balance; {what} {chosen.code} "
                f"not done: {refused}")
    # One read of the open subscriptions for settling and for what still waits for money.
    subs = open_subscriptions(session, acc)
    activated = settle(session, profile, acc, at_s, "payment", subs=subs)
    waiting = [(s, p) for s, p in subs if s.status == SubscriptionStatus.PENDING]
    pending = tuple(p.code for _s, p in waiting)
    if waiting and not note:
        sub, pkg = waiting[0]
        short = next_price(session, sub, pkg) - (acc.balance_minor - floor_minor(acc))
        note = f"{pkg.code} waits for {profile.money(max(short, 0))} more"
    return PaymentResult(payment_id=payment_id, account_number=acc.account_number,
                         amount_minor=amount_minor, balance_minor=acc.balance_minor,
                         activated=tuple(activated), pending=pending, switched_to=switched,
                         choice_refused=(refused.code if refused is not None else None),
                         note=note)


_SMS = re.compile(r"^\s*(\S+)\s+([0-9]{1,20})\s+([0-9]{1,12}(?:[.,][0-9]{1,2})?)\s*$")


def parse_sms(text: str, keyword: str) -> tuple[str, str]:
    """``"ntvplus 2256884759 425"`` -> ``("2256884759", "425")``; anything else is refused."""
    m = _SMS.match(text) if isinstance(text, str) else None
    if m is None or m.group(1).lower() != keyword.lower():
        raise ValidationError(
            f"SMS must read '{keyword} <card-or-contract-number> <amount>'", code="BAD_SMS").with_id(
            "billing.sms_read_card_contract", keyword=keyword)
    return m.group(2), m.group(3)


def pay_by_sms(session: Session, *, text: str, payment_id: str, at: datetime) -> PaymentResult:
    """NTV Plus SMS payment: ``ntvplus <card-or-contract-number> <amount>`` (seed 001)."""
    profile = current_profile(session)
    if profile.sms_keyword is None:
        raise BillingError(f"{profile.name} takes no SMS payments", code="SMS_UNSUPPORTED").with_id(
            "billing.takes_no_sms_payments", name=profile.name)
    ref, amount_text = parse_sms(text, profile.sms_keyword)
    amount_minor = parse_amount(amount_text, profile.minor_per_major)
    # Booked as what the payer wrote (card or contract number), so the statement says so.
    by, _acc = resolve_reference(session, ref, kinds=profile.payment_by)
    return pay(session, by=by, ref=ref, amount_minor=amount_minor, payment_id=payment_id,
               at=at, method="sms")


@atomic
def adjust_balance(session: Session, *, account_number: str, amount_minor: int, reason: str,
                   at: datetime) -> int:
    """An operator's correction (signed amount), booked in the ledger like every change."""
    at_s = to_s(at)
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor == 0:
        raise ValidationError("adjustment must be a non-zero integer of minor units",
                              code="BAD_AMOUNT").with_id("billing.adjustment_non_zero_integer")
    check_amount(abs(amount_minor))
    if not reason.strip():
        raise ValidationError("an adjustment needs a reason", code="BAD_REASON").with_id(
            "adjustment_reason")
    refusal = control_refusal(reason, "the reason", multiline=True)
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_TEXT").with_id(
            refusal.message_id, **refusal.params)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    post(session, acc, amount_minor, at_s=at_s, kind=LedgerKind.ADJUSTMENT,
         description=reason.strip())
    settle(session, profile, acc, at_s, "adjustment")
    return acc.balance_minor


def _repay_promise(session: Session, acc: Account, at_s: int) -> None:
    """A payment that leaves room for it repays an open promised payment (written off)."""
    promise = session.execute(
        select(PromisedPayment).where(PromisedPayment.account_id == acc.id,
                                      PromisedPayment.status == "open")).scalars().first()
    if promise is not None and acc.balance_minor - promise.amount_minor >= floor_minor(acc):
        post(session, acc, -promise.amount_minor, at_s=at_s, kind=LedgerKind.PROMISED_REPAYMENT,
             ref=f"promise:{promise.id}", description="promised payment repaid")
        promise.status = "repaid"
        promise.settled_at_s = at_s


__all__ = ["PAYMENT_METHODS", "PaymentResult", "adjust_balance", "parse_sms", "pay",
           "pay_by_sms"]
