"""What the account shows about money: the payment statement (ledger lines between two
balances), the balance with its block, suspension and open promise, and amounts in the
operator's currency.

Reads only; nothing here writes or commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cas.billing.money import format_amount
from cas.billing.txn import PROFILE_TOML_KEY, account_by_number, current_profile, profile_of_text
from cas.errors import StoreError
from cas.i18n import Translator
from cas.store.errors import RecordNotFound
from cas.store.fastsql import HotStatement
from cas.store.models import Account, LedgerEntry, PromisedPayment, Setting
from cas.store.repo import from_s, to_s
from cas.text import is_ascii_digits


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
        raise StoreError(f"ledger of account {acc.account_number} does not add up to its balance").with_id(
            "billing.ledger_account_does_not", account_number=acc.account_number)
    return Statement(account_number=acc.account_number, currency=profile.currency,
                     opening_balance_minor=opening, closing_balance_minor=closing, lines=lines)


def balance_view(session: Session, acc: Account) -> BalanceView:
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
    return balance_view(session, account_by_number(session, account_number))


#: :func:`balance` as one indexed statement (the account by its unique number, its open
#: promise by ``account_id``, and the profile's settings row for the currency).
_BALANCE = (
    select(Account.account_number, Account.balance_minor, Account.blocked_since_s,
           Account.block_cause, Account.suspended_from_s, Account.suspended_until_s,
           PromisedPayment.amount_minor, PromisedPayment.due_at_s,
           select(Setting.value).where(Setting.key == PROFILE_TOML_KEY).scalar_subquery())
    .select_from(Account)
    .outerjoin(PromisedPayment, and_(PromisedPayment.account_id == Account.id,
                                     PromisedPayment.status == "open"))
    .where(Account.account_number == bindparam("number"))
    .limit(1)
)


_BALANCE_HOT = HotStatement(_BALANCE, ("number",))


def balance_fast(conn: Connection, *, account_number: str) -> BalanceView:
    """:func:`balance` in one round trip, the Core statement run on the driver's cursor
    (:class:`cas.store.fastsql.HotStatement`; the operator API's hot path): the same view
    and the same refusals."""
    text = str(account_number).strip()
    row = _BALANCE_HOT.first(conn, {"number": text}) if is_ascii_digits(text) else None
    if row is None:
        raise RecordNotFound(f"unknown account {account_number!r}", code="UNKNOWN_ACCOUNT").with_id(
            "unknown_account", ref=account_number)
    (number, balance_minor, blocked_since_s, block_cause, suspended_from_s, suspended_until_s,
     promised_minor, promised_due_s, profile_text) = row
    return BalanceView(
        account_number=number, balance_minor=balance_minor,
        currency=profile_of_text(profile_text).currency,
        blocked_since=from_s(blocked_since_s) if blocked_since_s is not None else None,
        block_cause=block_cause,
        suspended_from=from_s(suspended_from_s) if suspended_from_s is not None else None,
        suspended_until=from_s(suspended_until_s) if suspended_until_s is not None else None,
        promised_minor=promised_minor if promised_minor is not None else 0,
        promised_due=from_s(promised_due_s) if promised_due_s is not None else None)



def money_text(session: Session, amount_minor: int) -> str:
    profile = current_profile(session)
    return format_amount(amount_minor, profile.minor_per_major, profile.currency)


__all__ = [
    "BalanceView",
    "Statement",
    "StatementLine",
    "balance",
    "balance_fast",
    "balance_view",
    "ledger_text",
    "money_text",
    "statement",
]


# --- the ledger's descriptions for people -----------------------------------------------------
#: The ledger descriptions the billing rules write (cas/billing), as catalogue messages;
#: anything else (an operator's adjustment reason) is shown as it was typed.
_LEDGER_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"payment by (?P<by>card|contract|account) (?P<ref>\S+) \((?P<method>\w+)\)"),
     "ticket.ledger_desc.payment"),
    (re.compile(r"(?P<package>.+): (?P<n>\d+) unused days"), "ticket.ledger_desc.unused"),
    (re.compile(r"(?P<package>.+): period (?P<n>\d+)"), "ticket.ledger_desc.period"),
    (re.compile(r"promised payment, due (?P<day>\d{4}-\d\d-\d\d)"),
     "ticket.ledger_desc.promised"),
    (re.compile(r"promised payment repaid"), "ticket.ledger_desc.promise_repaid"),
    (re.compile(r"promised payment not repaid in time"), "ticket.ledger_desc.promise_lapsed"),
    (re.compile(r"PPV event (?P<event>\d+) bought on card (?P<card>\d+)"),
     "statement.desc.ppv_bought"),
    (re.compile(r"PPV event (?P<event>\d+) (?P<title>.*)"), "statement.desc.ppv_booked"),
)


def ledger_text(description: str, t: Translator) -> str:
    """A ledger row's description in ``t``'s language (the store keeps the English one, so
    the statement, the portal's payments page and the support ticket all read it here)."""
    for pattern, key in _LEDGER_TEXT:
        if m := pattern.fullmatch(description):
            params: dict[str, Any] = dict(m.groupdict())
            if "by" in params:
                params["by"] = t.word("ticket.payer", params["by"])
                params["method"] = t.word("ticket.method", params["method"])
            if "n" in params:
                params["n"] = int(params["n"])
            if "day" in params:
                day = datetime.strptime(params["day"], "%Y-%m-%d").replace(tzinfo=UTC)
                params["day"] = t.date(int(day.timestamp()))
            return t(key, **params)
    return description
