"""SMS confirmation inside the account (Uzonline subscribe): send a code, check it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from cas.billing import accounts as acc_mod
from cas.web.portal.deps import CheckedVisit, LoggedIn, PortalVisit
from cas.web.portal.pages import redirect, render
from cas.web.portal.sms import confirm_code, send_code

router = APIRouter()


@router.get("/{op}/verify", response_class=HTMLResponse)
def verify_page(v: PortalVisit, user: LoggedIn) -> Response:
    with v.tenant.store.reader() as s:
        acc = acc_mod.get_account(s, user.account_number)
    return render(v, "verify.html", phone=acc.phone, sent=False)


@router.post("/{op}/verify/send", response_class=HTMLResponse)
def verify_send(v: CheckedVisit, user: LoggedIn) -> Response:
    err = send_code(v, user, None, "verification.start")
    if err is not None:
        return redirect(v, f"/{v.op}/verify", error=err)
    return render(v, "verify.html", sent=True, phone=None)


@router.post("/{op}/verify", response_class=HTMLResponse)
def verify_confirm(v: CheckedVisit, user: LoggedIn, code: Annotated[str, Form()] = "") -> Response:
    if not confirm_code(v, user, code):
        return render(v, "verify.html", sent=True, phone=None, status=401,
                      error=v.t("login.code_failed"))
    return redirect(v, f"/{v.op}/packages", ok=v.t("verify.done"))
