"""Public read access to billing records for the layers above (web, CLI): the operator profile
in force, an account by its number, a payment by its id.

The first two are the billing core's own functions, named here so that callers outside
``cas.billing`` never import the private ``cas.billing._core``.  Like every billing function
they take a session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.txn import DAY_S, account_by_number, current_profile
from cas.store.errors import RecordNotFound
from cas.store.models import Account, Payment

__all__ = ["DAY_S", "PaymentView", "account_by_number", "current_profile", "get_payment"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentView:
    payment_id: str
    account_number: str
    at_s: int
    amount_minor: int
    method: str
    by: str
    ref: str
    package: str | None


def get_payment(session: Session, payment_id: str) -> PaymentView:
    row = session.execute(select(Payment, Account.account_number)
                          .join(Account, Account.id == Payment.account_id)
                          .where(Payment.payment_id == payment_id)).first()
    if row is None:
        raise RecordNotFound(f"unknown payment {payment_id!r}", code="UNKNOWN_PAYMENT").with_id(
            "unknown_payment", ref=payment_id)
    p, number = row
    return PaymentView(payment_id=p.payment_id, account_number=number, at_s=p.at_s,
                       amount_minor=p.amount_minor, method=p.method, by=p.by_kind, ref=p.ref,
                       package=p.package_code)
