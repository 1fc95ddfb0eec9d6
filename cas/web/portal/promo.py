"""Promo codes (TV+: phone + promo code, confirmed by the SMS code when the operator asks)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.records import current_profile
from cas.web.portal.actions import run_action
from cas.web.portal.deps import CheckedVisit, LoggedIn, PortalVisit
from cas.web.portal.pages import redirect, render
from cas.web.portal.sessions import session_verification_token
from cas.web.portal.sms import confirm_code, send_code
from cas.web.portal.visit import Subscriber, Visit

router = APIRouter()


@router.get("/{op}/promo", response_class=HTMLResponse)
def promo_page(v: PortalVisit, user: LoggedIn) -> Response:
    with v.tenant.store.reader() as s:
        profile = current_profile(s)
        acc = acc_mod.get_account(s, user.account_number)
    return render(v, "promo.html", profile=profile, phone=acc.phone or "", promo="",
                  sent=False)


@router.post("/{op}/promo/send", response_class=HTMLResponse)
def promo_send(v: CheckedVisit, user: LoggedIn, phone: Annotated[str, Form()] = "",
               promo: Annotated[str, Form()] = "") -> Response:
    with v.tenant.store.reader() as s:
        profile = current_profile(s)
    if not profile.promo_enabled:
        return redirect(v, f"/{v.op}/account", error=v.t("err.PROMO_UNSUPPORTED"))
    if not profile.promo_requires_verification:
        return _redeem(v, user, promo, None)
    err = send_code(v, user, phone.strip()[:32] or None, "promo.code_sent")
    if err is not None:
        return redirect(v, f"/{v.op}/promo", error=err)
    return render(v, "promo.html", profile=profile, phone=phone[:32], promo=promo[:64],
                  sent=True)


@router.post("/{op}/promo", response_class=HTMLResponse)
def promo_redeem(v: CheckedVisit, user: LoggedIn, promo: Annotated[str, Form()] = "",
                 code: Annotated[str, Form()] = "") -> Response:
    if not confirm_code(v, user, code):
        with v.tenant.store.reader() as s:
            profile = current_profile(s)
        return render(v, "promo.html", profile=profile, phone="", promo=promo[:64],
                      sent=True, status=401, error=v.t("login.code_failed"))
    return _redeem(v, user, promo, session_verification_token(v, user.token_sha256))


def _redeem(v: Visit, user: Subscriber, promo: str, token: str | None) -> Response:
    def fn(s: Session, at: datetime) -> str:
        view = service.redeem_promo(s, account_number=user.account_number, code=promo[:64],
                                    at=at, verification=token)
        return v.t("promo.done", package=view.package_name, end=v.t.date(view.end))
    return run_action(v, user, "promo.redeem", f"/{v.op}/account", fn, {"promo": promo[:64]})
