"""An account's money and what the subscriber is told: the balance floor, ledger rows,
notifications and the rights journal.

Nothing here commits; callers run inside one transaction (see ``cas.store.engine``).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cas.billing.vocab import LedgerKind
from cas.store.models import Account, LedgerEntry, Notification
from cas.store.repo import account_card_serials, record_rights_change


def floor_minor(acc: Account) -> int:
    """The lowest balance the account may reach: 0 prepaid, minus the credit limit postpaid."""
    return -acc.credit_limit_minor if acc.kind == "postpaid" else 0


def can_afford(acc: Account, price_minor: int) -> bool:
    return acc.balance_minor - price_minor >= floor_minor(acc)


def post(session: Session, acc: Account, amount_minor: int, *, at_s: int, kind: LedgerKind,
         ref: str | None = None, description: str = "") -> int:
    """Change the balance by ``amount_minor`` (signed) and write its ledger row.

    The balance changes with one atomic ``UPDATE … SET balance = balance + x RETURNING``, so
    no concurrent change can be lost, and the row records the balance it produced.
    """
    new_balance = session.execute(
        update(Account).where(Account.id == acc.id)
        .values(balance_minor=Account.balance_minor + amount_minor)
        .returning(Account.balance_minor)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    set_committed_value(acc, "balance_minor", int(new_balance))
    session.add(LedgerEntry(account_id=acc.id, at_s=at_s, amount_minor=amount_minor,
                            balance_after_minor=int(new_balance), kind=kind, ref=ref,
                            description=description[:256]))
    return int(new_balance)


def touch_rights(session: Session, acc: Account, at_s: int, cause: str) -> None:
    record_rights_change(session, account_card_serials(session, acc.id), at_s, cause)


def notify(session: Session, acc: Account, at_s: int, kind: str, text: str) -> None:
    """Queue the SMS/e-mail the subscriber would get (MTS seed: notifications by both)."""
    if acc.phone and acc.notify_sms:
        session.add(Notification(account_id=acc.id, at_s=at_s, channel="sms", kind=kind,
                                 text=text[:512]))
    if acc.email and acc.notify_email:
        session.add(Notification(account_id=acc.id, at_s=at_s, channel="email", kind=kind,
                                 text=text[:512]))


def is_suspended(acc: Account, at_s: int) -> bool:
    return acc.suspended_from_s is not None and acc.suspended_from_s <= at_s


__all__ = ["can_afford", "floor_minor", "is_suspended", "notify", "post", "touch_rights"]
