"""Paying by one's own card number (:func:`cas.billing.selfcare.pay_own_card`): a free
amount, or one of the operator's payment-card denominations (ATV+), optionally choosing a
package."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.money import format_amount
from cas.billing.records import current_profile
from cas.billing.selfcare import pay_own_card
from cas.errors import CasError
from cas.web.portal.actions import run_action
from cas.web.portal.deps import CheckedVisit, LoggedIn, PortalVisit
from cas.web.portal.packages import package_rows, switch_lock_text
from cas.web.portal.pages import render

router = APIRouter()


@router.get("/{op}/pay", response_class=HTMLResponse)
def pay_page(v: PortalVisit, user: LoggedIn) -> Response:
    with v.tenant.store.reader() as s:
        profile = current_profile(s)
        cards = acc_mod.list_cards(s, account_number=user.account_number)
        packages = package_rows(s)
        bal = service.balance(s, account_number=user.account_number)
    denominations = [(format_amount(d, profile.minor_per_major), profile.money(d))
                     for d in profile.payment_card_denominations_minor]
    return render(v, "pay.html", profile=profile, cards=cards, packages=packages,
                  balance=bal, denominations=denominations, money=profile.money)


@router.post("/{op}/pay", response_class=HTMLResponse)
def pay(v: CheckedVisit, user: LoggedIn,
        card: Annotated[str, Form()] = "",
        package: Annotated[str, Form()] = "",
        denomination: Annotated[str, Form()] = "",
        voucher: Annotated[str, Form()] = "",
        amount: Annotated[str, Form()] = "") -> Response:
    """Pay by smart-card number, optionally choosing a package (ATV+).  With payment cards the
    denomination is one of the operator's (9, 10, 12, 15) and the payment card's number is the
    payment id, so one payment card pays once."""
    def fn(s: Session, at: datetime) -> str:
        paid = pay_own_card(s, account_id=user.account_id, card=card, amount=amount,
                            denomination=denomination, voucher=voucher,
                            package=package or None, at=at)
        result = paid.result
        profile = current_profile(s)
        parts = [v.t("pay.done", amount=profile.money(paid.amount_minor),
                     balance=profile.money(result.balance_minor))]
        if result.activated:
            parts.append(v.t("pay.activated", packages=", ".join(result.activated)))
        if result.switched_to:
            parts.append(v.t("pay.switched", package=result.switched_to))
        if result.pending:
            parts.append(v.t("pay.pending", packages=", ".join(result.pending)))
        if result.note:
            parts.append(result.note)
        return " ".join(parts)

    def on_error(s: Session, exc: CasError) -> str:
        return switch_lock_text(v, s, exc) or ""
    return run_action(v, user, "payment.create", f"/{v.op}/pay", fn,
                      {"card": card, "package": package, "denomination": denomination,
                       "amount": amount, "voucher": voucher}, on_error)
