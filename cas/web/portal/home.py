"""The operator list (``/``) and an operator's home (``/<op>/``: the account or the login)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cas.web.portal.deps import PortalVisit
from cas.web.portal.pages import redirect, render_plain
from cas.web.state import web_state

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> Response:
    tenants = web_state(request).tenants.all()
    if len(tenants) == 1:
        return RedirectResponse(f"/{tenants[0].key}/", status_code=303)
    return render_plain(request, "index.html")


@router.get("/{op}/", response_class=HTMLResponse)
def home(v: PortalVisit) -> Response:
    if v.user is not None and v.user.stage == "in":
        return redirect(v, f"/{v.op}/account")
    return redirect(v, f"/{v.op}/login")
