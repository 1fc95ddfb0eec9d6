"""Setting or changing the portal password (the current one is asked when there is one)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cas.web.credentials import change_portal_password, password_hash_of
from cas.web.portal.actions import run_action
from cas.web.portal.deps import CheckedVisit, LoggedIn, PortalVisit
from cas.web.portal.pages import render

router = APIRouter()


@router.get("/{op}/password", response_class=HTMLResponse)
def password_page(v: PortalVisit, user: LoggedIn) -> Response:
    with v.tenant.store.reader() as s:
        has = password_hash_of(s, user.account_id) is not None
    return render(v, "password.html", has_password=has)


@router.post("/{op}/password", response_class=HTMLResponse)
def password_change(v: CheckedVisit, user: LoggedIn, current: Annotated[str, Form()] = "",
                    new: Annotated[str, Form()] = "",
                    repeat: Annotated[str, Form()] = "") -> Response:
    """Set or change the portal password (the current one is asked when there is one)."""
    def fn(s: Session, _at: datetime) -> str:
        change_portal_password(s, account_id=user.account_id,
                               account_number=user.account_number, current=current, new=new,
                               repeat=repeat, wall_s=v.now_s)
        return v.t("password.done")
    return run_action(v, user, "password.change", f"/{v.op}/password", fn)
