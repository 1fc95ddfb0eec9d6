"""The operator API's payment: :func:`cas.billing.payments.pay` in a few SQLAlchemy Core
statements when nothing but the money moves, and the ORM path itself whenever a rule might
act.

A top-up usually changes three rows: the payment, the ledger line and the balance.  The
full path (``pay``) also runs the account's due events (renewals, reminders, the end of a
suspension, a promise falling due), repays an open promise, activates what the money now
covers and lifts a financial block; all of those read the account's subscriptions and
promise through the ORM, about 17 statements.  :func:`pay_fast` first reads, in one
statement that also locks the account row, everything those rules look at, and decides:

1. the inputs and the payer kind are the common ones (no package chosen, no payment card,
   a reference of ASCII digits that names an account), and
2. no rule can act at ``at`` (:func:`_quiet`): no suspension, no block, no open promise,
   no subscription waiting for money or blocked, none due for renewal or for a reminder,
   and the new balance is not below the account's floor.

Then the payment, the balance and the ledger line are written with three Core statements
and the result is what ``pay`` would return.  Otherwise (or when the payment id is taken)
``pay`` runs in the same transaction, on the same locked row, and decides everything itself,
refusals included.  ``tests/unit/billing/test_payments_fast.py`` runs the same sequences
through both and compares every row.

The operator profile comes with the locking statement (its ``settings`` row, parsed once
per process and text by :func:`cas.billing.txn.profile_of_text`), so ``cas operator use``
takes effect on the next payment without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cas.billing.clock import CLOCK_KEY, clock_now
from cas.billing.money import MAX_AMOUNT_MINOR
from cas.billing.payments import PAYMENT_METHODS, PaymentResult, pay
from cas.billing.profile import OperatorProfile
from cas.billing.txn import DAY_S, PROFILE_TOML_KEY, profile_of_text
from cas.billing.vocab import OPEN_STATES, LedgerKind, PayerKind, SubscriptionStatus
from cas.store.fastsql import HotStatement
from cas.store.models import (
    Account,
    Card,
    LedgerEntry,
    Payment,
    PromisedPayment,
    Setting,
    Subscription,
)
from cas.store.repo import from_s, to_s
from cas.text import is_ascii_digits, parse_digits

_PAYMENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_ACTIVE = str(SubscriptionStatus.ACTIVE)
_WAITING = (str(SubscriptionStatus.PENDING), str(SubscriptionStatus.BLOCKED))


def _locking_statement(by: str) -> Select[Any]:
    """The account (locked), the settings the payment needs, whether a promise is open, and
    one row per open subscription (or one row with NULLs when there is none)."""
    acc = Account.__table__
    stmt = select(
        Account.id, Account.account_number, Account.kind, Account.credit_limit_minor,
        Account.balance_minor, Account.suspended_from_s, Account.suspended_until_s,
        Account.blocked_since_s,
        select(Setting.value).where(Setting.key == PROFILE_TOML_KEY).scalar_subquery(),
        select(Setting.value).where(Setting.key == CLOCK_KEY).scalar_subquery(),
        exists().where(PromisedPayment.account_id == Account.id,
                       PromisedPayment.status == "open"),
        Subscription.status, Subscription.auto_renew, Subscription.paid_until_s,
        Subscription.reminded_until_s, Subscription.period_start_s,
    )
    subs = and_(Subscription.account_id == Account.id,
                Subscription.status.in_([str(s) for s in OPEN_STATES]))
    if by == PayerKind.CARD:
        stmt = (stmt.select_from(Card).join(acc, Account.id == Card.account_id)
                .where(Card.serial == bindparam("serial")))
    elif by == PayerKind.CONTRACT:
        stmt = stmt.select_from(acc).where(Account.contract_number == bindparam("text"))
    else:
        stmt = stmt.select_from(acc).where(Account.account_number == bindparam("text"))
    # FOR UPDATE OF accounts: PostgreSQL refuses to lock the nullable side of an outer
    # join; SQLite emits nothing (its write transactions are exclusive: BEGIN IMMEDIATE).
    return stmt.outerjoin(Subscription, subs).with_for_update(of=Account.__table__)


_LOCK = {kind: HotStatement(_locking_statement(kind),
                             ("serial",) if kind == PayerKind.CARD else ("text",))
         for kind in PayerKind}
_BALANCE = HotStatement(
    update(Account).where(Account.id == bindparam("account_id"))
    .values(balance_minor=Account.balance_minor + bindparam("amount",
                                                            type_=Account.balance_minor.type))
    .returning(Account.balance_minor), ("account_id", "amount"))
_PAYMENT_COLUMNS = ("payment_id", "account_id", "at_s", "amount_minor", "method", "by_kind",
                    "ref", "package_code")


def _insert_payment(dialect: str) -> HotStatement:
    ins = postgresql.insert(Payment) if dialect == "postgresql" else sqlite.insert(Payment)
    stmt = (ins.values({c: bindparam(c) for c in _PAYMENT_COLUMNS})
            .on_conflict_do_nothing(index_elements=["payment_id"]).returning(Payment.id))
    return HotStatement(stmt, _PAYMENT_COLUMNS)


_INSERT_PAYMENT = {"postgresql": _insert_payment("postgresql"), "sqlite": _insert_payment("sqlite")}
_LEDGER_COLUMNS = ("account_id", "at_s", "amount_minor", "balance_after_minor", "kind", "ref",
                   "description")
_INSERT_LEDGER = HotStatement(
    insert(LedgerEntry).values({c: bindparam(c) for c in _LEDGER_COLUMNS}), _LEDGER_COLUMNS)


@dataclass(frozen=True, slots=True)
class _Locked:
    """What :data:`_LOCK` read."""

    account_id: int
    account_number: str
    floor_minor: int
    balance_minor: int
    at_s: int
    profile: OperatorProfile
    quiet: bool


def _read_locked(conn: Connection, by: str, ref: str, at: datetime | None) -> _Locked | None:
    text = ref.strip()
    if by == PayerKind.CARD:
        serial = parse_digits(text, max_value=0xFFFF_FFFF)
        if not serial:
            return None
        params: dict[str, Any] = {"serial": serial}
    elif is_ascii_digits(text):
        params = {"text": text}
    else:
        return None
    rows = _LOCK[PayerKind(by)].run(conn, params)
    if not rows or rows[0][8] is None:
        return None
    first = rows[0]
    profile = profile_of_text(first[8])
    if at is not None:
        at_s = to_s(at)
    elif first[9] is not None:
        at_s = int(first[9])
    else:
        return None  # no store clock yet: the ORM path reads the wall clock its own way
    floor = -int(first[3]) if first[2] == "postpaid" else 0
    return _Locked(account_id=int(first[0]), account_number=str(first[1]), floor_minor=floor,
                   balance_minor=int(first[4]), at_s=at_s, profile=profile,
                   quiet=_quiet(rows, profile, at_s))


def _quiet(rows: Sequence[Sequence[Any]], profile: OperatorProfile, at_s: int) -> bool:
    """No rule of :func:`pay` other than booking the money can act on this account at
    ``at_s`` (the conditions of :mod:`cas.billing.events`, :func:`cas.billing.renewals.settle`
    and ``_repay_promise``, read the other way round)."""
    first = rows[0]
    if first[5] is not None or first[6] is not None:  # suspended, or a suspension ends
        return False
    if first[7] is not None or first[10]:  # financially blocked; a promise is open
        return False
    for row in rows:
        status, auto_renew, paid_until_s, reminded_until_s, period_start_s = (
            row[11], row[12], row[13], row[14], row[15])
        if status is None:  # the outer join's row of an account without subscriptions
            continue
        if status in _WAITING:  # settle would try to activate it
            return False
        if status != _ACTIVE or paid_until_s is None:
            continue
        if paid_until_s <= at_s:  # a renewal is due
            return False
        remind_s = paid_until_s - profile.reminder_days * DAY_S
        if (profile.reminder_days and auto_renew and remind_s <= at_s
                and reminded_until_s != paid_until_s and remind_s >= (period_start_s or 0)):
            return False
    return True


def pay_fast(session: Session, *, by: PayerKind | str, ref: str | int, amount_minor: int,
             payment_id: str, at: datetime | None = None, method: str = "online",
             package: str | None = None) -> tuple[PaymentResult, datetime]:
    """:func:`cas.billing.payments.pay` with the same rules, rows and refusals, in four
    statements when only the money moves (see the module doc).  ``at=None``: the store's
    clock, read with the account.  Returns the result and the time the payment was booked
    at.  Runs in the caller's transaction and never commits; on an error the caller rolls
    back (nothing here writes before the last check)."""
    ref_text = str(ref)
    plain = (package is None and method in PAYMENT_METHODS and method != "payment_card"
             and by in (PayerKind.CARD, PayerKind.CONTRACT, PayerKind.ACCOUNT)
             and isinstance(amount_minor, int) and not isinstance(amount_minor, bool)
             and 0 < amount_minor <= MAX_AMOUNT_MINOR
             and isinstance(payment_id, str) and _PAYMENT_ID.match(payment_id) is not None
             and len(ref_text) <= 32)
    conn = session.connection()
    locked = _read_locked(conn, str(by), ref_text, at) if plain else None
    if (locked is None or not locked.quiet or by not in locked.profile.payment_by
            or locked.balance_minor + amount_minor < locked.floor_minor):
        return _full(session, by=by, ref=ref, amount_minor=amount_minor, payment_id=payment_id,
                     at=at, method=method, package=package)
    at_s = locked.at_s
    dialect = conn.dialect.name
    inserted = _INSERT_PAYMENT[dialect if dialect in _INSERT_PAYMENT else "sqlite"].first(conn, {
        "payment_id": payment_id, "account_id": locked.account_id, "at_s": at_s,
        "amount_minor": amount_minor, "method": method, "by_kind": str(by), "ref": ref_text,
        "package_code": None})
    if inserted is None:  # the payment id is taken: pay() refuses it (DUPLICATE_PAYMENT)
        return _full(session, by=by, ref=ref, amount_minor=amount_minor, payment_id=payment_id,
                     at=from_s(at_s), method=method, package=package)
    row = _BALANCE.first(conn, {"account_id": locked.account_id, "amount": amount_minor})
    assert row is not None  # the row is locked: it is there
    balance = int(row[0])
    _INSERT_LEDGER.run(conn, {
        "account_id": locked.account_id, "at_s": at_s, "amount_minor": amount_minor,
        "balance_after_minor": balance, "kind": str(LedgerKind.PAYMENT), "ref": payment_id,
        "description": f"payment by {by} {ref} ({method})"[:256]})
    result = PaymentResult(payment_id=payment_id, account_number=locked.account_number,
                           amount_minor=amount_minor, balance_minor=balance, activated=(),
                           pending=(), switched_to=None, choice_refused=None, note="")
    return result, from_s(at_s)


def _full(session: Session, *, by: PayerKind | str, ref: str | int, amount_minor: int,
          payment_id: str, at: datetime | None, method: str,
          package: str | None) -> tuple[PaymentResult, datetime]:
    when = at if at is not None else clock_now(session)
    return pay(session, by=by, ref=ref, amount_minor=amount_minor, payment_id=payment_id,
               at=when, method=method, package=package), when


__all__ = ["pay_fast"]
