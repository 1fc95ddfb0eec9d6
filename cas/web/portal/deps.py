"""What portal handlers share, declared once as dependencies, in the order they run:

1. :func:`scan_form` (on every route): notes a control character in any posted field.
2. ``BareVisit`` — the visit without its user (login forms); ``PortalVisit`` — with the
   user of the session cookie.
3. ``CheckedVisit`` / ``CheckedBareVisit`` — the same after the CSRF check: every portal
   form carries the token; a POST without it (or with a wrong one, or without the cookie it
   is bound to) is refused with 403 before anything is read or written; then a noted
   control character is refused.
4. ``LoggedIn`` — the logged-in subscriber; without one :class:`LoginRequired` is raised and
   the app's exception handler (:func:`on_login_required`) redirects to the login page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import Response

from cas.errors import CasError, ValidationError
from cas.text import control_refusal
from cas.web.errors import Forbidden
from cas.web.portal.pages import redirect
from cas.web.portal.sessions import load_user
from cas.web.portal.visit import CSRF_COOKIE, Subscriber, Visit, open_visit


async def scan_form(request: Request) -> None:
    """Note a control character in any field of a posted form (:mod:`cas.text`; no portal
    field is multi-line).  The CSRF check refuses it, once the form's token is known good,
    before anything is read or written."""
    if request.method != "POST":
        return
    form = await request.form()  # parsed once: the handler's Form() fields reuse it
    for name, value in form.multi_items():
        if isinstance(value, str):
            refusal = control_refusal(value, f"the field {name[:32]!r}")
            if refusal is not None:
                request.state.form_refusal = refusal
                return


async def _bare_visit(request: Request, op: str) -> Visit:
    v = open_visit(request, op)
    request.state.portal_visit = v  # for on_login_required
    return v


BareVisit = Annotated[Visit, Depends(_bare_visit)]


def _visit(v: BareVisit) -> Visit:
    v.user = load_user(v)
    return v


PortalVisit = Annotated[Visit, Depends(_visit)]


def _check_csrf(v: Visit, token: str | None) -> Visit:
    cookie = v.request.cookies.get(CSRF_COOKIE)
    if not v.state.signer.csrf_ok(cookie, token):
        raise Forbidden("the form's security token is missing or wrong; reload the page").with_id(
            "web.form_security_token_missing")
    refusal = getattr(v.request.state, "form_refusal", None)
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_TEXT").with_id(
            refusal.message_id, **refusal.params)
    return v


async def _checked_visit(v: PortalVisit,
                         csrf_token: Annotated[str | None, Form()] = None) -> Visit:
    return _check_csrf(v, csrf_token)


async def _checked_bare_visit(v: BareVisit,
                              csrf_token: Annotated[str | None, Form()] = None) -> Visit:
    return _check_csrf(v, csrf_token)


CheckedVisit = Annotated[Visit, Depends(_checked_visit)]
CheckedBareVisit = Annotated[Visit, Depends(_checked_bare_visit)]


class LoginRequired(CasError):
    """No logged-in subscriber: answered by a redirect to the login page."""


async def _logged_in(v: PortalVisit) -> Subscriber:
    user = v.user
    if user is None or user.stage != "in" or user.account_number is None \
            or user.account_id is None:
        raise LoginRequired()
    return Subscriber(token_sha256=user.token_sha256, account_id=user.account_id,
                      account_number=user.account_number,
                      verification_token=user.verification_token)


LoggedIn = Annotated[Subscriber, Depends(_logged_in)]


async def on_login_required(request: Request, exc: Exception) -> Response:
    """The app's exception handler for :class:`LoginRequired`."""
    v: Visit = request.state.portal_visit
    return redirect(v, f"/{v.op}/login", error=v.t("login.required"))
