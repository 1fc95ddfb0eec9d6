"""The subscriber rules of DESIGN §6 as plain domain functions.

Every function takes a SQLAlchemy :class:`~sqlalchemy.orm.Session`, keyword arguments and an
explicit time ``at`` (timezone-aware UTC); reads every rule from the store's operator profile;
raises only our typed errors (``ValidationError``, ``RecordNotFound``/``NotFoundError``,
``RecordConflict``/``ConflictError``, ``BillingError`` — each with a stable ``code``); and
runs inside a SAVEPOINT, so a refused operation writes nothing.  None of them commits: wrap
calls in :meth:`cas.store.engine.Store.transaction`.

Before acting on an account, each function processes that account's events due by ``at``
(renewals, reminders, promise expiry, end of suspension), so the result never depends on
whether someone advanced the clock first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cas.billing._core import (
    DAY_S,
    WINDOW_STATES,
    account_by_number,
    atomic,
    base_of,
    can_afford,
    current_profile,
    floor_minor,
    is_suspended,
    lock_account,
    next_price,
    notify,
    open_subscriptions,
    post,
    run_account_until,
    settle,
    touch_rights,
    update_block,
)
from cas.billing.catalog import get_package, price_for_period
from cas.billing.money import check_amount, format_amount, parse_amount
from cas.billing.profile import OperatorProfile
from cas.errors import BillingError, ValidationError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import (
    Account,
    Box,
    Card,
    LedgerEntry,
    Package,
    Payment,
    PromisedPayment,
    PromoCode,
    PromoRedemption,
    Subscription,
)
from cas.store.repo import from_s, to_s
from cas.text import (
    control_character,
    control_refusal,
    foreign_number_refusal,
    parse_digits,
)

PAYMENT_METHODS = ("online", "terminal", "payment_card", "sms", "bank", "cash")
_PAYMENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


# --- results --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionView:
    """A subscription as the personal account shows it (Uzonline: activation date, end date,
    days left)."""

    package_id: int
    package_code: str
    package_name: str
    kind: str
    status: str
    auto_renew: bool
    activated_at: datetime | None
    start: datetime | None
    end: datetime | None
    days_left: int
    next_price_minor: int


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchResult:
    account_number: str
    from_package: str
    to_package: str
    unused_days: int
    credited_minor: int
    charged_minor: int
    balance_minor: int
    next_switch_from: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementLine:
    at: datetime
    kind: str
    amount_minor: int
    balance_after_minor: int
    ref: str | None
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """Ledger lines of a period; ``opening + sum(lines) == closing`` always holds."""

    account_number: str
    currency: str
    opening_balance_minor: int
    closing_balance_minor: int
    lines: tuple[StatementLine, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceView:
    account_number: str
    balance_minor: int
    currency: str
    blocked_since: datetime | None
    block_cause: str | None
    suspended_from: datetime | None
    suspended_until: datetime | None
    promised_minor: int
    promised_due: datetime | None


# --- helpers --------------------------------------------------------------------------------------
def _prepare(session: Session, account_id: int, at_s: int) -> tuple[OperatorProfile, Account]:
    """Profile + locked account with its due events processed up to ``at_s``."""
    profile = current_profile(session)
    acc = lock_account(session, account_id)
    run_account_until(session, profile, acc, at_s)
    return profile, acc


def _view(session: Session, sub: Subscription, pkg: Package, at_s: int) -> SubscriptionView:
    end_s = sub.paid_until_s if sub.status != "pending" else None
    days_left = 0
    if end_s is not None and end_s > at_s and sub.status == "active":
        days_left = -(-(end_s - at_s) // DAY_S)  # a started day counts as left
    return SubscriptionView(
        package_id=pkg.id, package_code=pkg.code, package_name=pkg.name, kind=pkg.kind,
        status=sub.status, auto_renew=sub.auto_renew,
        activated_at=from_s(sub.activated_at_s) if sub.activated_at_s is not None else None,
        start=from_s(sub.start_s) if sub.start_s is not None and sub.status != "pending" else None,
        end=from_s(end_s) if end_s is not None else None,
        days_left=days_left, next_price_minor=next_price(session, sub, pkg))


def subscriptions(session: Session, *, account_number: str, at: datetime,
                  include_closed: bool = False) -> list[SubscriptionView]:
    """The account's subscriptions (base first), as of ``at``."""
    at_s = to_s(at)
    acc = account_by_number(session, account_number)
    rows: list[tuple[Subscription, Package]]
    if include_closed:
        rows = [(r[0], r[1]) for r in session.execute(
            select(Subscription, Package).join(Package, Package.id == Subscription.package_id)
            .where(Subscription.account_id == acc.id).order_by(Subscription.id))]
    else:
        rows = open_subscriptions(session, acc)
    return [_view(session, s, p, at_s) for s, p in rows]


def card_serial(ref: str | int) -> int:
    """A card number as typed (ASCII digits, 1 to 4294967295), else ``BAD_SERIAL``."""
    text = str(ref).strip()
    serial = parse_digits(text, max_value=0xFFFF_FFFF)
    if not serial:
        shown = text if control_character(text) is None else "(with control characters)"
        raise ValidationError(f"card number {shown!r} is not a card number (1 to 4294967295 "
                              "in ASCII digits)", code="BAD_SERIAL")
    return serial


def find_account(session: Session, *, by: str, ref: str | int) -> Account:
    """Resolve a payer's reference: ``by`` is ``card`` (serial), ``contract`` or ``account``."""
    text = str(ref).strip()
    refusal = control_refusal(text, "a payer's reference")
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_TEXT")
    refusal = foreign_number_refusal(text, f"{by} number")
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_SERIAL" if by == "card" else "BAD_NUMBER")
    if by == "card":
        serial = card_serial(text)
        card = session.get(Card, serial)
        if card is None:
            raise RecordNotFound(f"unknown card {serial:010d}", code="UNKNOWN_CARD")
        if card.account_id is None:
            raise RecordNotFound(f"card {serial:010d} is not linked to an account",
                                 code="CARD_NOT_LINKED")
        acc = session.get(Account, card.account_id)
    elif by == "contract":
        acc = session.execute(select(Account).where(Account.contract_number == text)).scalar()
        if acc is None:
            raise RecordNotFound(f"unknown contract {text!r}", code="UNKNOWN_CONTRACT")
    elif by == "account":
        acc = session.execute(select(Account).where(Account.account_number == text)).scalar()
        if acc is None:
            raise RecordNotFound(f"unknown account {text!r}", code="UNKNOWN_ACCOUNT")
    else:
        raise ValidationError(f"pay by card, contract or account, not {by!r}", code="BAD_PAYER")
    assert acc is not None
    return acc


def _account_id(session: Session, *, by: str, ref: str | int) -> int:
    """:func:`find_account`'s answer as an id, without loading the account for a card (the
    caller locks it next)."""
    if by == "card":
        serial = parse_digits(str(ref).strip(), max_value=0xFFFF_FFFF)
        if serial:
            card = session.get(Card, serial)
            if card is not None and card.account_id is not None:
                return card.account_id
    return find_account(session, by=by, ref=ref).id


#: The order in which a bare reference is tried, and the kind recorded when several kinds
#: name the same account (docs/subscribers.md, "References").
REFERENCE_ORDER = ("contract", "card", "account")


def resolve_reference(session: Session, ref: str | int, *,
                      kinds: tuple[str, ...] = REFERENCE_ORDER) -> tuple[str, Account]:
    """A bare reference (NTV Plus SMS: "ntvplus <card-or-contract-number> <amount>"; the CLI's
    REF) -> ``(kind, account)``.

    Every kind in ``kinds`` is tried.  NTV Plus contract numbers have 10 digits like card
    numbers, so one number can be both a contract and a card: if all the matches name the
    same account, the first kind of :data:`REFERENCE_ORDER` that matched is reported; if they
    name different accounts the reference is refused (``AMBIGUOUS_REFERENCE``, naming every
    match) — money is never booked on a guess."""
    text = str(ref).strip()
    found: list[tuple[str, Account]] = []
    for by in REFERENCE_ORDER:
        if by not in kinds:
            continue
        try:
            found.append((by, find_account(session, by=by, ref=text)))
        except (RecordNotFound, ValidationError):
            continue
    if not found:
        names = [k for k in ("card", "contract", "account") if k in kinds]
        what = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        raise RecordNotFound(f"no {what} {text!r}", code="UNKNOWN_CARD_OR_CONTRACT")
    if len({acc.id for _by, acc in found}) > 1:
        named = " and ".join(f"{by} {_ref_text(by, text)} of account {acc.account_number}"
                             for by, acc in found)
        raise ValidationError(f"{text!r} is {named}: use the account number, or pay by card "
                              "or by contract explicitly", code="AMBIGUOUS_REFERENCE")
    return found[0]


def _ref_text(by: str, text: str) -> str:
    return f"{int(text):010d}" if by == "card" else text


def find_account_any(session: Session, ref: str) -> Account:
    """A card number, contract number or account number — whichever matches (see
    :func:`resolve_reference`).  Two different accounts matching is an error, never a guess."""
    return resolve_reference(session, ref)[1]


def _check_verification(session: Session, profile: OperatorProfile, acc: Account,
                        token: str | None, at_s: int) -> None:
    from cas.billing.accounts import require_verified

    require_verified(session, token=token, account_id=acc.id, at_s=at_s)


# --- payments ---------------------------------------------------------------------------------------
@atomic
def pay(session: Session, *, by: str, ref: str | int, amount_minor: int, payment_id: str,
        at: datetime, method: str = "online", package: str | None = None) -> PaymentResult:
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
                              code="BAD_PAYMENT_ID")
    if method not in PAYMENT_METHODS:
        raise ValidationError(f"unknown payment method {method!r}", code="BAD_METHOD")
    profile = current_profile(session)
    if by not in profile.payment_by:
        raise ValidationError(f"{profile.name} does not take payments by {by}", code="BAD_PAYER")
    if method == "payment_card":
        if not profile.payment_card_denominations_minor:
            raise ValidationError(f"{profile.name} has no payment cards",
                                  code="PAYMENT_CARDS_UNSUPPORTED")
        if amount_minor not in profile.payment_card_denominations_minor:
            allowed = ", ".join(profile.money(d) for d in profile.payment_card_denominations_minor)
            raise ValidationError(f"payment cards come in {allowed}", code="BAD_DENOMINATION")
    account_id = _account_id(session, by=by, ref=ref)
    if session.execute(select(Payment.id).where(Payment.payment_id == payment_id)).first():
        raise RecordConflict(f"payment {payment_id!r} was already booked",
                             code="DUPLICATE_PAYMENT")
    profile, acc = _prepare(session, account_id, at_s)

    switch_to: Package | None = None
    refused: BillingError | RecordConflict | None = None
    chosen: Package | None = None
    if package is not None:
        chosen = get_package(session, package)
        try:
            with session.begin_nested():  # a refused choice leaves no trace, the money stays
                switch_to = _choose_package(session, profile, acc, chosen, at_s)
        except (BillingError, RecordConflict) as exc:
            refused = exc

    session.add(Payment(payment_id=payment_id, account_id=acc.id, at_s=at_s,
                        amount_minor=amount_minor, method=method, by_kind=by, ref=str(ref),
                        package_code=package))
    session.flush()  # the unique payment id is enforced here, before any money moves
    post(session, acc, amount_minor, at_s=at_s, kind="payment", ref=payment_id,
         description=f"payment by {by} {ref} ({method})")
    _repay_promise(session, acc, at_s)
    note = ""
    switched: str | None = None
    if switch_to is not None:
        try:
            with session.begin_nested():
                _do_switch(session, profile, acc, switch_to, at_s)
            switched = switch_to.code
        except (BillingError, RecordConflict) as exc:
            refused = exc
    if refused is not None:
        assert chosen is not None
        what = "switch to" if chosen.kind == "base" else "choice of"
        note = (f"paid {profile.money(amount_minor)} to the balance; {what} {chosen.code} "
                f"not done: {refused}")
    activated = settle(session, profile, acc, at_s, "payment")
    waiting = [(s, p) for s, p in open_subscriptions(session, acc) if s.status == "pending"]
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
            f"SMS must read '{keyword} <card-or-contract-number> <amount>'", code="BAD_SMS")
    return m.group(2), m.group(3)


def pay_by_sms(session: Session, *, text: str, payment_id: str, at: datetime) -> PaymentResult:
    """NTV Plus SMS payment: ``ntvplus <card-or-contract-number> <amount>`` (seed 001)."""
    profile = current_profile(session)
    if profile.sms_keyword is None:
        raise BillingError(f"{profile.name} takes no SMS payments", code="SMS_UNSUPPORTED")
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
                              code="BAD_AMOUNT")
    check_amount(abs(amount_minor))
    if not reason.strip():
        raise ValidationError("an adjustment needs a reason", code="BAD_REASON")
    refusal = control_refusal(reason, "the reason", multiline=True)
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_TEXT")
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    post(session, acc, amount_minor, at_s=at_s, kind="adjustment", description=reason.strip())
    settle(session, profile, acc, at_s, "adjustment")
    return acc.balance_minor


def _repay_promise(session: Session, acc: Account, at_s: int) -> None:
    """A payment that leaves room for it repays an open promised payment (written off)."""
    promise = session.execute(
        select(PromisedPayment).where(PromisedPayment.account_id == acc.id,
                                      PromisedPayment.status == "open")).scalars().first()
    if promise is not None and acc.balance_minor - promise.amount_minor >= floor_minor(acc):
        post(session, acc, -promise.amount_minor, at_s=at_s, kind="promised_repayment",
             ref=f"promise:{promise.id}", description="promised payment repaid")
        promise.status = "repaid"
        promise.settled_at_s = at_s


# --- packages ------------------------------------------------------------------------------------
def _choose_package(session: Session, profile: OperatorProfile, acc: Account, pkg: Package,
                    at_s: int) -> Package | None:
    """Record the subscriber's choice of ``pkg``; return it if choosing it means switching an
    active base package (done later, once the money is in).  Refusals happen here, before
    anything is written."""
    subs = open_subscriptions(session, acc)
    base = base_of(subs)
    if pkg.kind == "base":
        if base is not None and base[1].id == pkg.id:
            if base[0].status in ("expired", "blocked"):
                base[0].status = "pending" if base[0].status == "expired" else "blocked"
                base[0].auto_renew = True
            return None
        if base is not None and base[0].status == "active":
            _check_switch_lock(profile, acc, at_s)
            return pkg
        if base is not None:  # pending/blocked/expired on another package: replace the choice
            base[0].status = "closed"
            base[0].closed_at_s = at_s
            if base[0].paid_until_s is not None and base[0].paid_until_s > at_s:
                base[0].paid_until_s = at_s
        session.add(Subscription(account_id=acc.id, package_id=pkg.id, status="pending",
                                 auto_renew=profile.auto_renew_default, created_at_s=at_s,
                                 source="choice"))
        session.flush()
        return None
    if base is None or base[0].status not in ("active", "pending"):
        raise BillingError(f"{pkg.name} is an add-on: it needs a base package first",
                           code="ADDON_NEEDS_BASE")
    for sub, p in subs:
        if p.id == pkg.id:
            if sub.status in ("active", "pending"):
                raise RecordConflict(f"{pkg.name} is already on this account",
                                     code="ALREADY_SUBSCRIBED")
            sub.status = "pending"
            sub.auto_renew = True
            return None
    session.add(Subscription(account_id=acc.id, package_id=pkg.id, status="pending",
                             auto_renew=profile.auto_renew_default, created_at_s=at_s,
                             source="choice"))
    session.flush()
    return None


def _check_switch_lock(profile: OperatorProfile, acc: Account, at_s: int) -> None:
    # ATV+ seed: "a repeated package switch is possible no earlier than 30 days after the
    # last switch".
    if profile.switch_lock_days and acc.last_switch_at_s is not None:
        free_s = acc.last_switch_at_s + profile.switch_lock_days * DAY_S
        if at_s < free_s:
            raise BillingError(
                f"the package was switched on {from_s(acc.last_switch_at_s):%Y-%m-%d}; the next "
                f"switch is possible from {from_s(free_s):%Y-%m-%d %H:%M} UTC "
                f"({profile.switch_lock_days}-day rule)", code="SWITCH_LOCKED")


def _do_switch(session: Session, profile: OperatorProfile, acc: Account, new_pkg: Package,
               at_s: int) -> SwitchResult:
    base = base_of(open_subscriptions(session, acc))
    if base is None or base[0].status != "active":
        raise BillingError("no active base package to switch from", code="NO_ACTIVE_BASE")
    old_sub, old_pkg = base
    if old_pkg.id == new_pkg.id:
        raise RecordConflict(f"{new_pkg.name} is already the base package",
                             code="ALREADY_SUBSCRIBED")
    _check_switch_lock(profile, acc, at_s)
    assert old_sub.paid_until_s is not None
    unused_days = max(0, (old_sub.paid_until_s - at_s) // DAY_S)
    credit = 0
    if profile.switch_credit_unused and unused_days:
        # ATV+ seed: "the remaining sum for the unused days is put on your balance".
        credit = old_sub.period_price_minor * unused_days // old_pkg.period_days
    new_sub = Subscription(account_id=acc.id, package_id=new_pkg.id, status="pending",
                           auto_renew=old_sub.auto_renew, created_at_s=at_s, source="switch")
    price = price_for_period(session, new_pkg, 1)
    if acc.balance_minor + credit - price < floor_minor(acc):
        short = price - (acc.balance_minor + credit - floor_minor(acc))
        raise BillingError(f"switching to {new_pkg.name} needs {profile.money(short)} more",
                           code="INSUFFICIENT_FUNDS")
    if credit:
        post(session, acc, credit, at_s=at_s, kind="unused_credit", ref=f"sub:{old_sub.id}",
             description=f"{old_pkg.name}: {unused_days} unused days")
    old_sub.status = "closed"
    old_sub.closed_at_s = at_s
    old_sub.paid_until_s = at_s
    session.add(new_sub)
    session.flush()
    before = acc.balance_minor
    if not _activate_now(session, acc, new_sub, new_pkg, at_s):  # pragma: no cover - checked
        raise BillingError("insufficient balance", code="INSUFFICIENT_FUNDS")
    acc.last_switch_at_s = at_s
    from cas.billing.accounts import enforce_device_limit

    enforce_device_limit(session, profile, acc, at_s)
    touch_rights(session, acc, at_s, "switch")
    return SwitchResult(
        account_number=acc.account_number, from_package=old_pkg.code, to_package=new_pkg.code,
        unused_days=unused_days, credited_minor=credit, charged_minor=before - acc.balance_minor,
        balance_minor=acc.balance_minor,
        next_switch_from=(from_s(at_s + profile.switch_lock_days * DAY_S)
                          if profile.switch_lock_days else None))


def _activate_now(session: Session, acc: Account, sub: Subscription, pkg: Package,
                  at_s: int) -> bool:
    from cas.billing._core import activate

    return activate(session, acc, sub, pkg, at_s)


@atomic
def switch_package(session: Session, *, account_number: str, package: str, at: datetime
                   ) -> SwitchResult:
    """Switch the base package (ATV+ seed): at most once per ``switch_lock_days``; the unused
    whole days of the old package are credited back, the new package's price debited."""
    at_s = to_s(at)
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    pkg = get_package(session, package)
    if pkg.kind != "base":
        raise ValidationError(f"{pkg.name} is an add-on; switching is between base packages",
                              code="NOT_A_BASE_PACKAGE")
    return _do_switch(session, profile, acc, pkg, at_s)


@atomic
def subscribe(session: Session, *, account_number: str, package: str, at: datetime,
              verification: str | None = None) -> SubscriptionView:
    """Choose a package.  It is active at once if the balance covers the price (debited),
    otherwise pending until a payment does.  Add-ons need a base package (TV+ seed); with an
    active base package, choosing another base is a switch (:func:`switch_package`)."""
    at_s = to_s(at)
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    if profile.subscribe_requires_verification:
        # Uzonline seed: activation by phone + account number, confirmed by the SMS code.
        _check_verification(session, profile, acc, verification, at_s)
    pkg = get_package(session, package)
    base = base_of(open_subscriptions(session, acc))
    if pkg.kind == "base" and base is not None and base[0].status == "active":
        if base[1].id == pkg.id:
            raise RecordConflict(f"{pkg.name} is already active", code="ALREADY_SUBSCRIBED")
        raise RecordConflict(f"the account already has the base package {base[1].name}; "
                             "use a package switch", code="HAS_BASE_PACKAGE")
    if pkg.kind == "base" and base is not None and base[1].id == pkg.id \
            and base[0].status == "pending":
        raise RecordConflict(f"{pkg.name} is already chosen and waits for payment",
                             code="ALREADY_SUBSCRIBED")
    _choose_package(session, profile, acc, pkg, at_s)
    settle(session, profile, acc, at_s, "subscribe")
    for sub, p in open_subscriptions(session, acc):
        if p.id == pkg.id:
            return _view(session, sub, p, at_s)
    raise RecordNotFound("subscription vanished", code="UNKNOWN_SUBSCRIPTION")  # pragma: no cover


@atomic
def extend(session: Session, *, account_number: str, package: str, at: datetime,
           periods: int = 1) -> SubscriptionView:
    """Prepay ``periods`` more periods of an active subscription (Uzonline "+ Продлить")."""
    at_s = to_s(at)
    if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= 24:
        raise ValidationError("periods must be 1..24", code="BAD_PERIODS")
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    pkg = get_package(session, package)
    sub = next((s for s, p in open_subscriptions(session, acc) if p.id == pkg.id), None)
    if sub is None or sub.status != "active":
        raise BillingError(f"{pkg.name} is not active on this account", code="NOT_ACTIVE")
    from cas.billing._core import renew

    for _ in range(periods):
        assert sub.paid_until_s is not None
        if not renew(session, acc, sub, pkg, at_s):
            raise BillingError(
                f"extending {pkg.name} needs {profile.money(next_price(session, sub, pkg))}; "
                f"balance {profile.money(acc.balance_minor)}", code="INSUFFICIENT_FUNDS")
    touch_rights(session, acc, at_s, "extend")
    return _view(session, sub, pkg, at_s)


@atomic
def set_renewal(session: Session, *, account_number: str, on: bool, at: datetime,
                package: str | None = None) -> list[SubscriptionView]:
    """Turn auto-renewal off or on (TV+ seed) without losing prepaid days: turning it off
    keeps the paid window; turning it on again before the window ends charges nothing now;
    after it ended, the package is chosen again and activates when the balance covers it."""
    at_s = to_s(at)
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    if not profile.renewal_toggle:
        raise BillingError(f"{profile.name} renews automatically; it cannot be switched off",
                           code="RENEWAL_FIXED")
    targets = [(s, p) for s, p in open_subscriptions(session, acc)
               if package is None or p.code == package or str(p.id) == str(package)]
    if not targets:
        raise RecordNotFound("no such subscription on this account", code="UNKNOWN_SUBSCRIPTION")
    for sub, _pkg in targets:
        sub.auto_renew = bool(on)
        if not on and sub.status == "blocked":
            sub.status = "expired"  # nothing more to charge: the block is lifted below
        elif on and sub.status == "expired":
            sub.status = "pending"
    settle(session, profile, acc, at_s, "renewal")
    return [_view(session, s, p, at_s) for s, p in open_subscriptions(session, acc)]


# --- suspension ----------------------------------------------------------------------------------
@atomic
def suspend(session: Session, *, account_number: str, at: datetime,
            until: datetime | None = None) -> BalanceView:
    """Temporary suspension ("holiday", NTV Plus seed): the cards are suspended, renewals stop,
    and on resumption the paid days left are moved past the suspension."""
    at_s = to_s(at)
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    rules = profile.suspension
    if rules is None:
        raise BillingError(f"{profile.name} has no temporary suspension", code="SUSPENSION_UNSUPPORTED")
    if acc.suspended_from_s is not None:
        raise RecordConflict("the service is already suspended", code="ALREADY_SUSPENDED")
    until_s = to_s(until) if until is not None else at_s + rules.max_days * DAY_S
    days = (until_s - at_s) / DAY_S
    if not rules.min_days <= days <= rules.max_days:
        raise ValidationError(
            f"a suspension lasts {rules.min_days} to {rules.max_days} days", code="BAD_SUSPENSION")
    acc.suspended_from_s = at_s
    acc.suspended_until_s = until_s
    notify(session, acc, at_s, "suspended",
           f"Service suspended until {from_s(until_s):%Y-%m-%d}")
    touch_rights(session, acc, at_s, "suspend")
    return _balance_view(session, acc)


@atomic
def resume(session: Session, *, account_number: str, at: datetime) -> BalanceView:
    """End a temporary suspension now (the planned end is processed by the clock)."""
    at_s = to_s(at)
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    if acc.suspended_from_s is None:
        raise RecordConflict("the service is not suspended", code="NOT_SUSPENDED")
    _resume_at(session, profile, acc, at_s)
    return _balance_view(session, acc)


def _resume_at(session: Session, profile: OperatorProfile, acc: Account, at_s: int) -> None:
    assert acc.suspended_from_s is not None
    frozen_s = max(0, at_s - acc.suspended_from_s)
    for sub, _pkg in open_subscriptions(session, acc):
        if sub.status == "active" and sub.paid_until_s is not None \
                and sub.paid_until_s > acc.suspended_from_s:
            sub.paid_until_s += frozen_s  # no paid day is lost to the holiday
            if sub.reminded_until_s is not None:
                sub.reminded_until_s = None
    acc.suspended_from_s = None
    acc.suspended_until_s = None
    notify(session, acc, at_s, "resumed", "Service resumed")
    touch_rights(session, acc, at_s, "resume")
    settle(session, profile, acc, at_s, "resume")


# --- promised payment --------------------------------------------------------------------------
@atomic
def promise(session: Session, *, account_number: str, at: datetime,
            amount_minor: int | None = None) -> BalanceView:
    """NTV Plus "Promised Payment": a short credit for those out of money.  It is written off
    by the next payment that covers it; if none comes within ``days``, it is written off
    anyway and the account falls into a financial block."""
    at_s = to_s(at)
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    rules = profile.promised_payment
    if rules is None:
        raise BillingError(f"{profile.name} has no promised payment", code="PROMISE_UNSUPPORTED")
    if session.execute(select(PromisedPayment.id).where(
            PromisedPayment.account_id == acc.id, PromisedPayment.status == "open")).first():
        raise RecordConflict("a promised payment is already open", code="PROMISE_OPEN")
    if is_suspended(acc, at_s):
        raise BillingError("the service is suspended", code="SUSPENDED")
    if amount_minor is None:
        need = 0
        for sub, pkg in open_subscriptions(session, acc):
            if sub.status in ("pending", "blocked") or (sub.status == "active" and sub.auto_renew):
                need += next_price(session, sub, pkg)
        amount_minor = max(need - (acc.balance_minor - floor_minor(acc)), 0)
        amount_minor = min(amount_minor, rules.max_minor)
        if amount_minor == 0:
            raise BillingError("the balance already covers the packages; nothing to promise",
                               code="PROMISE_NOT_NEEDED")
    check_amount(amount_minor)
    if amount_minor > rules.max_minor:
        raise ValidationError(f"a promised payment is at most {profile.money(rules.max_minor)}",
                              code="PROMISE_TOO_LARGE")
    row = PromisedPayment(account_id=acc.id, amount_minor=amount_minor, granted_at_s=at_s,
                          due_at_s=at_s + rules.days * DAY_S, status="open")
    session.add(row)
    session.flush()
    post(session, acc, amount_minor, at_s=at_s, kind="promised_credit", ref=f"promise:{row.id}",
         description=f"promised payment, due {from_s(row.due_at_s):%Y-%m-%d}")
    settle(session, profile, acc, at_s, "promise")
    notify(session, acc, at_s, "promise",
           f"Promised payment {profile.money(amount_minor)}: please pay by "
           f"{from_s(row.due_at_s):%Y-%m-%d}")
    return _balance_view(session, acc)


# --- promo codes ----------------------------------------------------------------------------------
@atomic
def redeem_promo(session: Session, *, account_number: str, code: str, at: datetime,
                 verification: str | None = None) -> SubscriptionView:
    """TV+ promo: a code activates a subscription for some days, free (confirmed by the SMS
    code sent to the phone when the profile asks for it)."""
    at_s = to_s(at)
    profile, acc = _prepare(session, account_by_number(session, account_number).id, at_s)
    if not profile.promo_enabled:
        raise BillingError(f"{profile.name} has no promo codes", code="PROMO_UNSUPPORTED")
    if profile.promo_requires_verification:
        _check_verification(session, profile, acc, verification, at_s)
    key = str(code).strip().upper()
    promo_row = session.get(PromoCode, key) if key and control_character(key) is None else None
    if promo_row is None:
        raise RecordNotFound(f"unknown promo code {code!r}", code="UNKNOWN_PROMO")
    if promo_row.valid_until_s is not None and at_s >= promo_row.valid_until_s:
        raise BillingError("this promo code has expired", code="PROMO_EXPIRED")
    if session.execute(select(PromoRedemption.id).where(
            PromoRedemption.code == key, PromoRedemption.account_id == acc.id)).first():
        # A rule refusal (exit 7, like every rule), not a store conflict.
        raise BillingError("this account already used this promo code", code="PROMO_USED")
    pkg = session.get(Package, promo_row.package_id)
    assert pkg is not None
    subs = open_subscriptions(session, acc)
    base = base_of(subs)
    if pkg.kind == "addon" and (base is None or base[0].status != "active"):
        raise BillingError(f"{pkg.name} is an add-on: it needs a base package first",
                           code="ADDON_NEEDS_BASE")
    if pkg.kind == "base" and base is not None and base[0].status == "active" \
            and base[1].id != pkg.id:
        raise RecordConflict(f"the account already has the base package {base[1].name}",
                             code="HAS_BASE_PACKAGE")
    bumped = session.execute(  # type: ignore[attr-defined]  # CursorResult.rowcount
        update(PromoCode).where(PromoCode.code == key,
                                (PromoCode.max_uses.is_(None))
                                | (PromoCode.used_count < PromoCode.max_uses))
        .values(used_count=PromoCode.used_count + 1)
        .execution_options(synchronize_session=False)).rowcount
    if not bumped:
        raise BillingError("this promo code has been used up", code="PROMO_EXHAUSTED")
    session.add(PromoRedemption(code=key, account_id=acc.id, at_s=at_s))
    days_s = promo_row.days * DAY_S
    sub = next((s for s, p in subs if p.id == pkg.id), None)
    if sub is not None and sub.status == "active" and sub.paid_until_s is not None:
        sub.paid_until_s += days_s
    else:
        if pkg.kind == "base" and base is not None and base[0] is not sub:
            base[0].status = "closed"  # a pending/expired/blocked choice of another base
            base[0].closed_at_s = at_s
        if sub is None:
            sub = Subscription(account_id=acc.id, package_id=pkg.id, created_at_s=at_s,
                               auto_renew=profile.auto_renew_default, source="promo")
            session.add(sub)
        sub.status = "active"
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
    return _view(session, sub, pkg, at_s)


# --- statements, balance, lookup -------------------------------------------------------------------
def statement(session: Session, *, account_number: str, since: datetime | None = None,
              until: datetime | None = None) -> Statement:
    """The payment statement (NTV Plus seed): ledger lines in ``[since, until)``, with the
    opening and closing balances they connect."""
    acc = account_by_number(session, account_number)
    profile = current_profile(session)
    since_s = to_s(since) if since is not None else None
    until_s = to_s(until) if until is not None else None
    opening = 0
    if since_s is not None:
        opening = int(session.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0))
            .where(LedgerEntry.account_id == acc.id, LedgerEntry.at_s < since_s)).scalar_one())
    stmt = select(LedgerEntry).where(LedgerEntry.account_id == acc.id)
    if since_s is not None:
        stmt = stmt.where(LedgerEntry.at_s >= since_s)
    if until_s is not None:
        stmt = stmt.where(LedgerEntry.at_s < until_s)
    rows = session.execute(stmt.order_by(LedgerEntry.id)).scalars().all()
    lines = tuple(StatementLine(at=from_s(r.at_s), kind=r.kind, amount_minor=r.amount_minor,
                                balance_after_minor=r.balance_after_minor, ref=r.ref,
                                description=r.description) for r in rows)
    closing = opening + sum(line.amount_minor for line in lines)
    if until_s is None and closing != acc.balance_minor:
        from cas.errors import StoreError

        raise StoreError(f"ledger of account {acc.account_number} does not add up to its balance")
    return Statement(account_number=acc.account_number, currency=profile.currency,
                     opening_balance_minor=opening, closing_balance_minor=closing, lines=lines)


def _balance_view(session: Session, acc: Account) -> BalanceView:
    promise_row = session.execute(
        select(PromisedPayment).where(PromisedPayment.account_id == acc.id,
                                      PromisedPayment.status == "open")).scalars().first()
    profile = current_profile(session)
    return BalanceView(
        account_number=acc.account_number, balance_minor=acc.balance_minor,
        currency=profile.currency,
        blocked_since=from_s(acc.blocked_since_s) if acc.blocked_since_s is not None else None,
        block_cause=acc.block_cause,
        suspended_from=from_s(acc.suspended_from_s) if acc.suspended_from_s is not None else None,
        suspended_until=(from_s(acc.suspended_until_s)
                         if acc.suspended_until_s is not None else None),
        promised_minor=promise_row.amount_minor if promise_row else 0,
        promised_due=from_s(promise_row.due_at_s) if promise_row else None)


def balance(session: Session, *, account_number: str) -> BalanceView:
    """The balance and the account's money state (block, suspension, open promise)."""
    return _balance_view(session, account_by_number(session, account_number))


def lookup_by_chip_and_card(session: Session, *, chip_id: int, card_serial: int) -> str:
    """MTS seed: find the personal account number from the box's Chip ID and the smart-card
    number.  Both must belong to the same account; any mismatch gives the same answer, so
    the lookup never tells whether someone else's card or box exists."""
    card = session.get(Card, card_serial) if isinstance(card_serial, int) else None
    box = session.get(Box, chip_id) if isinstance(chip_id, int) else None
    if card is not None and box is not None and card.account_id is not None and (
            box.account_id == card.account_id or card.paired_chip_id == box.chip_id):
        acc = session.get(Account, card.account_id)
        if acc is not None:
            return acc.account_number
    raise RecordNotFound("no account matches this Chip ID and card number", code="NO_MATCH")


def money_text(session: Session, amount_minor: int) -> str:
    profile = current_profile(session)
    return format_amount(amount_minor, profile.minor_per_major, profile.currency)


__all__ = [
    "PAYMENT_METHODS", "REFERENCE_ORDER", "WINDOW_STATES", "BalanceView", "PaymentResult", "Statement",
    "StatementLine", "SubscriptionView", "SwitchResult", "adjust_balance", "balance",
    "can_afford", "extend", "find_account", "find_account_any", "lookup_by_chip_and_card",
    "money_text", "parse_sms", "pay", "pay_by_sms", "promise", "redeem_promo",
    "resolve_reference", "resume",
    "set_renewal", "statement", "subscribe", "subscriptions", "suspend", "switch_package",
]
