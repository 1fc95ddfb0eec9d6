"""Login by account number or phone with a password or an SMS code, and logout.  Unknown
account, no password set and wrong password give the same answer after the same work; every
attempt is counted per account (or typed identifier) and per address."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response

from cas.billing.clock import clock_now
from cas.billing.selfcare import account_for_login, send_sms_code
from cas.store.models import Account
from cas.web import audit
from cas.web.credentials import password_hash_of
from cas.web.models import WebSession
from cas.web.portal import throttle
from cas.web.portal.deps import CheckedBareVisit, CheckedVisit, PortalVisit
from cas.web.portal.pages import redirect, render
from cas.web.portal.sessions import end_session, new_session, set_session_cookie
from cas.web.portal.sms import verify_code
from cas.web.portal.visit import Visit, session_cookie_name
from cas.web.security import throttle_reset, verify_password

router = APIRouter()


@router.get("/{op}/login", response_class=HTMLResponse)
def login_page(v: PortalVisit) -> Response:
    return render(v, "login.html")


@router.post("/{op}/login", response_class=HTMLResponse)
def login_password(v: CheckedBareVisit, identifier: Annotated[str, Form()] = "",
                   password: Annotated[str, Form()] = "") -> Response:
    """Log in by account number or phone + password.  Unknown account, no password set and
    wrong password give the same answer after the same argon2 work."""
    with v.tenant.store.reader() as s:
        acc = account_for_login(s, identifier)
        stored = password_hash_of(s, acc.id) if acc is not None else None
        account_id = acc.id if acc is not None else None
        number = acc.account_number if acc is not None else None
    keys = throttle.login_keys(v, identifier, account_id)
    throttle.check(v, keys)
    if not verify_password(stored, password[:256]) or account_id is None or number is None:
        throttle.count(v, keys)
        return render(v, "login.html", status=401, error=v.t("login.failed"),
                      identifier=identifier[:64])
    return _logged_in(v, account_id=account_id, number=number, method="password",
                      verification_token=None, keys=keys, old_sha=None)


def _logged_in(v: Visit, *, account_id: int, number: str, method: str,
               verification_token: str | None, keys: throttle.Keys,
               old_sha: str | None) -> Response:
    """A fresh session token on every login (no fixation); the pre-login session ends."""
    with v.tenant.transaction() as s:
        if old_sha is not None:
            old = s.get(WebSession, old_sha)
            if old is not None:
                old.ended_at_s = v.now_s
        token = new_session(s, v, account_id=account_id, stage="in", method=method,
                            verification_token=verification_token)
        throttle_reset(s, keys[0][0])
        audit.record(s, audit.Actor(kind="subscriber", name=number, client_ip=v.ip),
                     "login", number, wall_s=v.now_s, sim_at=clock_now(s),
                     detail={"method": method})
    set_session_cookie(v, token)
    return redirect(v, f"/{v.op}/account")


@router.post("/{op}/login/sms", response_class=HTMLResponse)
def login_sms_send(v: CheckedBareVisit, identifier: Annotated[str, Form()] = "") -> Response:
    """Send a login code by SMS to the account's phone.  The answer is the same whether or not
    the account exists (a code is only sent when it does and has a phone)."""
    settings = v.state.settings
    with v.tenant.store.reader() as s:
        found = account_for_login(s, identifier)
        account_id = found.id if found is not None else None
    login_keys = throttle.login_keys(v, identifier, account_id)
    send_keys = [("sms:" + login_keys[0][0].removeprefix("login:"), settings.sms_per_account),
                 (f"sms:ip:{v.ip}", settings.sms_per_ip)]
    throttle.check(v, login_keys + send_keys)
    throttle.count(v, send_keys)  # every send counts, found or not
    with v.tenant.transaction() as s:
        acc = s.get(Account, account_id) if account_id is not None else None
        token: str | None = None
        if acc is not None and acc.phone:
            at = clock_now(s)
            token = send_sms_code(s, account=acc, phone=acc.phone, at=at)
            audit.record(s, audit.Actor(kind="public", name="-", client_ip=v.ip),
                         "login.code_sent", acc.account_number, wall_s=v.now_s, sim_at=at)
        session_token = new_session(s, v, account_id=acc.id if acc is not None else None,
                                    stage="code_sent", method="sms", verification_token=token)
    set_session_cookie(v, session_token)
    return redirect(v, f"/{v.op}/login/code?id={quote(identifier[:64], safe='')}")


@router.get("/{op}/login/code", response_class=HTMLResponse)
def login_code_page(v: PortalVisit,
                    identifier: Annotated[str, Query(alias="id", max_length=64)] = ""
                    ) -> Response:
    if v.user is None or v.user.stage != "code_sent":
        return redirect(v, f"/{v.op}/login")
    return render(v, "login_code.html", identifier=identifier)


@router.post("/{op}/login/code", response_class=HTMLResponse)
def login_code_check(v: CheckedVisit, identifier: Annotated[str, Form()] = "",
                     code: Annotated[str, Form()] = "") -> Response:
    if v.user is None or v.user.stage != "code_sent":
        return redirect(v, f"/{v.op}/login", error=v.t("login.code_expired"))
    user = v.user
    keys = throttle.login_keys(v, identifier, user.account_id)
    throttle.check(v, keys)
    verified = False
    if user.verification_token is not None and user.account_id is not None:
        verified = verify_code(v, user.verification_token, code)
    if not verified or user.account_id is None or user.account_number is None:
        throttle.count(v, keys)
        return render(v, "login_code.html", status=401, error=v.t("login.code_failed"),
                      identifier=identifier[:64])
    return _logged_in(v, account_id=user.account_id, number=user.account_number, method="sms",
                      verification_token=user.verification_token, keys=keys,
                      old_sha=user.token_sha256)


@router.post("/{op}/logout", response_class=HTMLResponse)
def logout(v: CheckedVisit) -> Response:
    if v.user is not None:
        end_session(v, v.user.token_sha256)
        if v.user.account_number is not None:
            with v.tenant.transaction() as s:
                audit.record(s, v.actor(), "logout", v.user.account_number, wall_s=v.now_s,
                             sim_at=clock_now(s))
    v.clear_cookies.append((session_cookie_name(v.op), f"/{v.op}"))
    return redirect(v, f"/{v.op}/login", ok=v.t("login.bye"))
