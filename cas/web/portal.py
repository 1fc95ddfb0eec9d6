"""The subscriber's personal account ("личный кабинет"): server-rendered pages per operator
under ``/<operator>/``, in English and Russian, with each seed operator's self-care flows
(DESIGN §6): login by account number or phone with a password or an SMS code, balance and
payment history, payment by card number with a payment-card denomination (ATV+), package
switch with the 30-day rule explained (ATV+), renewal off/on (TV+), suspension and promised
payment (NTV Plus, MTS), promo codes confirmed by SMS (TV+), subscriptions with dates, days
left and "extend" (Uzonline), the account number from Chip ID + card number (MTS), and "why
is my channel locked" with the same explanation as ``cas why``.

Every handler is thin: it checks the session and the CSRF token, calls one domain function
in one transaction together with its audit row, and redirects (POST → 303 → GET) with a
one-shot signed "flash" message.  Pages never say whether someone else's account or card
exists: a card that is not yours reads exactly like a card that does not exist.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.catalog import channel_counts, list_packages
from cas.billing.clock import clock_now
from cas.billing.money import format_amount, parse_amount
from cas.billing.profile import OperatorProfile
from cas.billing.txn import DAY_S, current_profile
from cas.errors import BillingError, CasError, ValidationError
from cas.reasons import Reason, info
from cas.store.models import Account, Notification
from cas.text import control_refusal, parse_digits
from cas.web import audit
from cas.web import domain as web_domain
from cas.web.errors import Forbidden, RateLimited, WebError, classify
from cas.web.i18n import LANG_COOKIE, Translator, pick_language
from cas.web.models import WebSession
from cas.web.security import (
    new_token,
    sha256_hex,
    throttle_count,
    throttle_reset,
    throttle_retry_after,
    verify_password,
)
from cas.web.settings import RateLimit, Tenant
from cas.web.state import WebState, client_ip, web_state


async def _scan_form(request: Request) -> None:
    """Note a control character in any field of a posted form (:mod:`cas.text`; no portal
    field is multi-line).  :func:`_check_csrf` refuses it, once the form's token is known
    good, before anything is read or written."""
    if request.method != "POST":
        return
    form = await request.form()  # parsed once: the handler's Form() fields reuse it
    for name, value in form.multi_items():
        if isinstance(value, str):
            refusal = control_refusal(value, f"the field {name[:32]!r}")
            if refusal is not None:
                request.state.form_refusal = refusal
                return


router = APIRouter(include_in_schema=False, dependencies=[Depends(_scan_form)])
R = TypeVar("R", bound=Response)

CSRF_COOKIE = "cas_csrf"
FLASH_COOKIE = "cas_flash"
_SESSION_COOKIE = "cas_sid_"
#: Refresh a session's ``last_seen_at_s`` at most this often.
_TOUCH_EVERY_S = 60

_env = Environment(loader=PackageLoader("cas.web", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


# --- request context --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class PortalUser:
    token_sha256: str
    account_id: int | None
    account_number: str | None
    stage: str
    method: str
    verification_token: str | None


@dataclass(slots=True, kw_only=True)
class Visit:
    """One request to the portal: tenant, language, CSRF cookie, user, flash message."""

    request: Request
    state: WebState
    tenant: Tenant
    t: Translator
    lang_query: str | None
    csrf_cookie: str
    csrf_is_new: bool
    user: PortalUser | None = None
    flash: dict[str, str] | None = None
    set_cookies: list[tuple[str, str, int | None, str]] = field(default_factory=list)
    clear_cookies: list[tuple[str, str]] = field(default_factory=list)

    @property
    def op(self) -> str:
        return self.tenant.key

    @property
    def now_s(self) -> int:
        return self.state.settings.now_s()

    @property
    def ip(self) -> str:
        return client_ip(self.request)

    def actor(self) -> audit.Actor:
        if self.user is not None and self.user.account_number is not None:
            return audit.Actor(kind="subscriber", name=self.user.account_number,
                               client_ip=self.ip)
        return audit.Actor(kind="public", name="-", client_ip=self.ip)


def session_cookie_name(op: str) -> str:
    return _SESSION_COOKIE + op


def _tenant_or_404(state: WebState, op: str) -> Tenant:
    tenant = state.tenants.get(op)
    if tenant is None:
        raise WebError(f"no operator {op!r} here", code="NOT_FOUND", category="NOT_FOUND")
    return tenant


def _visit(request: Request, op: str, *, load_user: bool = True) -> Visit:
    state = web_state(request)
    tenant = _tenant_or_404(state, op)
    query_lang = request.query_params.get("lang")
    lang = pick_language(query_lang, request.cookies.get(LANG_COOKIE),
                         request.headers.get("accept-language"))
    csrf = request.cookies.get(CSRF_COOKIE)
    is_new = not csrf or not re.fullmatch(r"[A-Za-z0-9_\-]{20,64}", csrf)
    v = Visit(request=request, state=state, tenant=tenant, t=Translator(lang),
              lang_query=query_lang if query_lang in ("en", "ru") else None,
              csrf_cookie=secrets.token_urlsafe(32) if is_new or csrf is None else csrf,
              csrf_is_new=is_new)
    flash_raw = state.signer.unsign_flash(request.cookies.get(FLASH_COOKIE))
    if flash_raw is not None:
        try:
            data = json.loads(flash_raw)
            if isinstance(data, dict) and data.get("op") == op:
                v.flash = {"kind": str(data.get("kind", "ok")), "text": str(data.get("text", ""))}
        except ValueError:
            pass
        v.clear_cookies.append((FLASH_COOKIE, f"/{op}"))
    if load_user:
        v.user = _load_user(v)
    return v


def _check_csrf(v: Visit, token: str | None) -> None:
    """Every portal form carries the CSRF token; a POST without it (or with a wrong one, or
    without the cookie it is bound to) is refused with 403 before anything is read."""
    cookie = v.request.cookies.get(CSRF_COOKIE)
    if not v.state.signer.csrf_ok(cookie, token):
        raise Forbidden("the form's security token is missing or wrong; reload the page")
    refusal = getattr(v.request.state, "form_refusal", None)
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_TEXT")


# --- sessions -----------------------------------------------------------------------------------------
def _load_user(v: Visit) -> PortalUser | None:
    raw = v.request.cookies.get(session_cookie_name(v.op))
    token = v.state.signer.unsign_session(raw)
    if token is None:
        return None
    sha = sha256_hex(token)
    now_s = v.now_s
    settings = v.state.settings
    with v.tenant.store.reader() as s:
        row = s.get(WebSession, sha)
        if row is None or row.ended_at_s is not None:
            return None
        live = now_s < row.expires_at_s and now_s < row.last_seen_at_s + settings.session_idle_s
        number = None
        if row.account_id is not None:
            acc = s.get(Account, row.account_id)
            number = acc.account_number if acc is not None else None
        user = PortalUser(token_sha256=sha, account_id=row.account_id, account_number=number,
                          stage=row.stage, method=row.method,
                          verification_token=row.verification_token)
        touch = live and now_s - row.last_seen_at_s >= _TOUCH_EVERY_S
    if not live:
        _end_session(v, sha)
        return None
    if touch:
        with v.tenant.transaction() as s:
            fresh = s.get(WebSession, sha)
            if fresh is not None:
                fresh.last_seen_at_s = now_s
    return user


def _end_session(v: Visit, sha: str) -> None:
    """End a portal session and the SMS verification it holds (the code was valid "until the
    end of the session", Uzonline seed)."""
    with v.tenant.transaction() as s:
        row = s.get(WebSession, sha)
        if row is None or row.ended_at_s is not None:
            return
        row.ended_at_s = v.now_s
        if row.verification_token:
            with contextlib.suppress(CasError):  # already gone: nothing left to end
                acc_mod.end_verification(s, token=row.verification_token, at=clock_now(s))


def _new_session(s: Session, v: Visit, *, account_id: int | None, stage: str, method: str,
                 verification_token: str | None) -> str:
    token = new_token()
    now_s = v.now_s
    s.add(WebSession(token_sha256=sha256_hex(token), account_id=account_id, stage=stage,
                     method=method, verification_token=verification_token,
                     client_ip=v.ip[:64], created_at_s=now_s, last_seen_at_s=now_s,
                     expires_at_s=now_s + v.state.settings.session_max_s))
    return token


def _set_session_cookie(v: Visit, token: str) -> None:
    v.set_cookies.append((session_cookie_name(v.op), v.state.signer.sign_session(token),
                          v.state.settings.session_max_s, f"/{v.op}"))


# --- responses ----------------------------------------------------------------------------------------
def _apply_cookies(v: Visit, response: R) -> R:
    secure = v.state.settings.secure_cookies
    for name, path in v.clear_cookies:
        response.delete_cookie(name, path=path, secure=secure, httponly=True, samesite="lax")
    if v.csrf_is_new:
        response.set_cookie(CSRF_COOKIE, v.csrf_cookie, httponly=True, samesite="lax",
                            secure=secure, path="/")
    if v.lang_query is not None:
        response.set_cookie(LANG_COOKIE, v.lang_query, max_age=365 * DAY_S, httponly=True,
                            samesite="lax", secure=secure, path="/")
    for name, value, max_age, path in v.set_cookies:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                            secure=secure, path=path)
    return response


def _features(v: Visit) -> dict[str, bool]:
    """Which of the seed flows this operator offers (the menu shows only those)."""
    with v.tenant.store.reader() as s:
        p = current_profile(s)
    return {"promo": p.promo_enabled, "suspension": p.suspension is not None,
            "promise": p.promised_payment is not None, "renewal": p.renewal_toggle}


def render(v: Visit, template: str, *, status: int = 200, **ctx: Any) -> HTMLResponse:
    page = _env.get_template(template).render(
        features=_features(v), t=v.t, lang=v.t.lang, op=v.op, operator_name=v.tenant.name,
        user=v.user,
        flash=v.flash, csrf_token=v.state.signer.csrf_token(v.csrf_cookie),
        path=v.request.url.path, **ctx)
    return _apply_cookies(v, HTMLResponse(page, status_code=status))


def redirect(v: Visit, url: str, *, ok: str | None = None, error: str | None = None) -> Response:
    if ok is not None or error is not None:
        payload = json.dumps({"op": v.op, "kind": "error" if error is not None else "ok",
                              "text": error if error is not None else ok})
        v.clear_cookies = [c for c in v.clear_cookies if c[0] != FLASH_COOKIE]
        v.set_cookies.append((FLASH_COOKIE, v.state.signer.sign_flash(payload), None, f"/{v.op}"))
    return _apply_cookies(v, RedirectResponse(url, status_code=303))


def error_page(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    """The HTML answer for portal paths when a request is refused (403 CSRF, 429, 404...)."""
    state = web_state(request)
    lang = pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                         request.headers.get("accept-language"))
    t = Translator(lang)
    key = f"err.{code}"
    text = t(key) if t.has(key) else message
    page = _env.get_template("error.html").render(
        t=t, lang=t.lang, op=None, operator_name="", user=None, flash=None, csrf_token="",
        path=request.url.path, status=status, code=code, message=text,
        tenants=state.tenants.all())
    return HTMLResponse(page, status_code=status)


def _require_user(v: Visit) -> PortalUser:
    if v.user is None or v.user.stage != "in" or v.user.account_number is None:
        raise _LoginRequired()
    return v.user


class _LoginRequired(CasError):
    """Raised inside a handler; turned into a redirect to the login page."""


def _guard(fn: Callable[[], Response], v: Visit) -> Response:
    try:
        return fn()
    except _LoginRequired:
        return redirect(v, f"/{v.op}/login", error=v.t("login.required"))


def error_text(v: Visit, exc: CasError) -> str:
    """A refusal in the subscriber's language: a catalog text for the code when there is
    one (``err.SWITCH_LOCKED`` explains the 30-day rule), else the domain's message."""
    answer = classify(exc)  # hides database and internal details
    key = f"err.{answer.code}"
    if v.t.has(key):
        return v.t(key)
    return answer.message


# --- rate limits -----------------------------------------------------------------------------------------
def _throttle_check(v: Visit, keys: list[tuple[str, RateLimit]]) -> None:
    now_s = v.now_s
    with v.tenant.store.reader() as s:
        waits = [w for key, rule in keys
                 if (w := throttle_retry_after(s, key, rule, now_s)) is not None]
    if waits:
        raise RateLimited(max(waits))


def _throttle_fail(v: Visit, keys: list[tuple[str, RateLimit]]) -> None:
    now_s = v.now_s
    with v.tenant.transaction() as s:
        for key, rule in keys:
            throttle_count(s, key, rule, now_s)


def _login_keys(v: Visit, identifier: str, account_id: int | None) -> list[tuple[str,
                                                                                 RateLimit]]:
    """Failed-login counters: one per account (whichever identifier named it: account number
    or phone), or per typed identifier when none matches; and one per client address."""
    settings = v.state.settings
    if account_id is not None:
        who = f"acct:{account_id}"
    else:
        who = "id:" + (re.sub(r"[\s()\-+]", "", identifier)[:64].lower() or "-")
    return [(f"login:{who}", settings.login_per_account),
            (f"login:ip:{v.ip}", settings.login_per_ip)]


# --- pages: operator list, language -------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> Response:
    state = web_state(request)
    tenants = state.tenants.all()
    if len(tenants) == 1:
        return RedirectResponse(f"/{tenants[0].key}/", status_code=303)
    lang = pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                         request.headers.get("accept-language"))
    t = Translator(lang)
    page = _env.get_template("index.html").render(
        t=t, lang=t.lang, op=None, operator_name="", user=None, flash=None, csrf_token="",
        path="/", tenants=tenants)
    return HTMLResponse(page)


@router.get("/{op}/", response_class=HTMLResponse)
def home(request: Request, op: str) -> Response:
    v = _visit(request, op)
    if v.user is not None and v.user.stage == "in":
        return redirect(v, f"/{op}/account")
    return redirect(v, f"/{op}/login")


# --- login / logout -----------------------------------------------------------------------------------------
@router.get("/{op}/login", response_class=HTMLResponse)
def login_page(request: Request, op: str) -> Response:
    v = _visit(request, op)
    return render(v, "login.html")


@router.post("/{op}/login", response_class=HTMLResponse)
def login_password(request: Request, op: str,
                   identifier: Annotated[str, Form()] = "",
                   password: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """Log in by account number or phone + password.  Unknown account, no password set and
    wrong password give the same answer after the same argon2 work."""
    v = _visit(request, op, load_user=False)
    _check_csrf(v, csrf_token)
    with v.tenant.store.reader() as s:
        acc = web_domain.account_for_login(s, identifier)
        stored = web_domain.password_hash_of(s, acc.id) if acc is not None else None
        account_id = acc.id if acc is not None else None
        number = acc.account_number if acc is not None else None
    keys = _login_keys(v, identifier, account_id)
    _throttle_check(v, keys)
    if not verify_password(stored, password[:256]) or account_id is None or number is None:
        _throttle_fail(v, keys)
        return render(v, "login.html", status=401, error=v.t("login.failed"),
                      identifier=identifier[:64])
    return _logged_in(v, account_id=account_id, number=number, method="password",
                      verification_token=None, keys=keys, old_sha=None)


def _logged_in(v: Visit, *, account_id: int, number: str, method: str,
               verification_token: str | None, keys: list[tuple[str, RateLimit]],
               old_sha: str | None) -> Response:
    """A fresh session token on every login (no fixation); the pre-login session ends."""
    with v.tenant.transaction() as s:
        if old_sha is not None:
            old = s.get(WebSession, old_sha)
            if old is not None:
                old.ended_at_s = v.now_s
        token = _new_session(s, v, account_id=account_id, stage="in", method=method,
                             verification_token=verification_token)
        throttle_reset(s, keys[0][0])
        audit.record(s, audit.Actor(kind="subscriber", name=number, client_ip=v.ip),
                     "login", number, wall_s=v.now_s, sim_at=clock_now(s),
                     detail={"method": method})
    _set_session_cookie(v, token)
    return redirect(v, f"/{v.op}/account")


@router.post("/{op}/login/sms", response_class=HTMLResponse)
def login_sms_send(request: Request, op: str,
                   identifier: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """Send a login code by SMS to the account's phone.  The answer is the same whether or not
    the account exists (a code is only sent when it does and has a phone)."""
    v = _visit(request, op, load_user=False)
    _check_csrf(v, csrf_token)
    settings = v.state.settings
    with v.tenant.store.reader() as s:
        found = web_domain.account_for_login(s, identifier)
        account_id = found.id if found is not None else None
    login_keys = _login_keys(v, identifier, account_id)
    send_keys = [("sms:" + login_keys[0][0].removeprefix("login:"), settings.sms_per_account),
                 (f"sms:ip:{v.ip}", settings.sms_per_ip)]
    _throttle_check(v, login_keys + send_keys)
    _throttle_fail(v, send_keys)  # every send counts, found or not
    with v.tenant.transaction() as s:
        acc = s.get(Account, account_id) if account_id is not None else None
        token: str | None = None
        if acc is not None and acc.phone:
            at = clock_now(s)
            token = web_domain.send_sms_code(s, account=acc, phone=acc.phone, at=at)
            audit.record(s, audit.Actor(kind="public", name="-", client_ip=v.ip),
                         "login.code_sent", acc.account_number, wall_s=v.now_s, sim_at=at)
        session_token = _new_session(s, v, account_id=acc.id if acc is not None else None,
                                     stage="code_sent", method="sms", verification_token=token)
    _set_session_cookie(v, session_token)
    return redirect(v, f"/{op}/login/code?id={_q(identifier[:64])}")


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@router.get("/{op}/login/code", response_class=HTMLResponse)
def login_code_page(request: Request, op: str,
                    identifier: Annotated[str, Query(alias="id", max_length=64)] = ""
                    ) -> Response:
    v = _visit(request, op)
    if v.user is None or v.user.stage != "code_sent":
        return redirect(v, f"/{op}/login")
    return render(v, "login_code.html", identifier=identifier)


@router.post("/{op}/login/code", response_class=HTMLResponse)
def login_code_check(request: Request, op: str,
                     identifier: Annotated[str, Form()] = "",
                     code: Annotated[str, Form()] = "",
                     csrf_token: Annotated[str | None, Form()] = None) -> Response:
    v = _visit(request, op)
    _check_csrf(v, csrf_token)
    if v.user is None or v.user.stage != "code_sent":
        return redirect(v, f"/{op}/login", error=v.t("login.code_expired"))
    user = v.user
    keys = _login_keys(v, identifier, user.account_id)
    _throttle_check(v, keys)
    verified = False
    if user.verification_token is not None and user.account_id is not None:
        with v.tenant.transaction() as s:
            try:
                res = acc_mod.confirm_verification(s, token=user.verification_token,
                                                   code=code.strip()[:16], at=clock_now(s))
                verified = res.verified
            except BillingError:
                verified = False
    if not verified or user.account_id is None or user.account_number is None:
        _throttle_fail(v, keys)
        return render(v, "login_code.html", status=401, error=v.t("login.code_failed"),
                      identifier=identifier[:64])
    return _logged_in(v, account_id=user.account_id, number=user.account_number, method="sms",
                      verification_token=user.verification_token, keys=keys,
                      old_sha=user.token_sha256)


@router.post("/{op}/logout", response_class=HTMLResponse)
def logout(request: Request, op: str,
           csrf_token: Annotated[str | None, Form()] = None) -> Response:
    v = _visit(request, op)
    _check_csrf(v, csrf_token)
    if v.user is not None:
        _end_session(v, v.user.token_sha256)
        if v.user.account_number is not None:
            with v.tenant.transaction() as s:
                audit.record(s, v.actor(), "logout", v.user.account_number, wall_s=v.now_s,
                             sim_at=clock_now(s))
    v.clear_cookies.append((session_cookie_name(op), f"/{op}"))
    return redirect(v, f"/{op}/login", ok=v.t("login.bye"))


# --- the account page ---------------------------------------------------------------------------------------
def _money(profile: OperatorProfile, amount_minor: int) -> str:
    return profile.money(amount_minor)


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRow:
    """A catalog package as the pages show it (plain values: ORM rows do not outlive their
    session)."""

    id: int
    code: str
    name: str
    kind: str
    price_minor: int
    period_days: int


def _package_rows(s: Session) -> list[PackageRow]:
    return [PackageRow(id=p.id, code=p.code, name=p.name, kind=p.kind, price_minor=p.price_minor,
                       period_days=p.period_days) for p in list_packages(s)]


@router.get("/{op}/account", response_class=HTMLResponse)
def account_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        number = user.account_number
        assert number is not None
        with v.tenant.store.reader() as s:
            now = clock_now(s)
            profile = current_profile(s)
            account = acc_mod.get_account(s, number)
            bal = service.balance(s, account_number=number)
            subs = service.subscriptions(s, account_number=number, at=now)
            cards = acc_mod.list_cards(s, account_number=number)
        return render(v, "account.html", account=account, balance=bal, subs=subs, cards=cards,
                      profile=profile, now=now, money=lambda m: _money(profile, m),
                      suspension=profile.suspension, promised=profile.promised_payment)
    return _guard(run, v)


@router.get("/{op}/payments", response_class=HTMLResponse)
def payments_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        assert user.account_number is not None
        with v.tenant.store.reader() as s:
            profile = current_profile(s)
            stmt = service.statement(s, account_number=user.account_number)
        return render(v, "payments.html", statement=stmt, money=lambda m: _money(profile, m))
    return _guard(run, v)


# --- actions -------------------------------------------------------------------------------------------------
def _act(v: Visit, csrf_token: str | None, action: str, back: str,
         fn: Callable[[Session, datetime, PortalUser], str],
         detail: dict[str, Any] | None = None,
         on_error: Callable[[Session, CasError], str] | None = None) -> Response:
    """A subscriber action: CSRF, session, one transaction (domain call + audit row), then a
    redirect with the outcome."""
    _check_csrf(v, csrf_token)
    return _run_action(v, action, back, fn, detail, on_error)


def _run_action(v: Visit, action: str, back: str,
                fn: Callable[[Session, datetime, PortalUser], str],
                detail: dict[str, Any] | None = None,
                on_error: Callable[[Session, CasError], str] | None = None) -> Response:
    """:func:`_act` after the CSRF check."""

    def run() -> Response:
        user = _require_user(v)
        assert user.account_number is not None
        try:
            with v.tenant.transaction() as s:
                at = clock_now(s)
                message = fn(s, at, user)
                audit.record(s, v.actor(), action, user.account_number, wall_s=v.now_s,
                             sim_at=at, detail=detail)
        except CasError as exc:
            if isinstance(exc, WebError) and exc.category in ("FORBIDDEN", "RATE_LIMITED"):
                raise
            text = error_text(v, exc)
            if on_error is not None:
                with v.tenant.store.reader() as s:
                    text = on_error(s, exc) or text
            return redirect(v, back, error=text)
        return redirect(v, back, ok=message)
    return _guard(run, v)


@router.post("/{op}/renewal", response_class=HTMLResponse)
def renewal(request: Request, op: str, package: Annotated[str, Form()] = "",
            on: Annotated[str, Form()] = "",
            csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """TV+: switch auto-renewal off and back on without losing prepaid days."""
    v = _visit(request, op)
    turn_on = on == "1"

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_number is not None
        service.set_renewal(s, account_number=user.account_number, on=turn_on, at=at,
                            package=package or None)
        return v.t("renewal.on_done" if turn_on else "renewal.off_done")
    return _act(v, csrf_token, "renewal.on" if turn_on else "renewal.off", f"/{op}/account", fn,
                {"package": package, "on": turn_on})


@router.post("/{op}/suspend", response_class=HTMLResponse)
def suspend(request: Request, op: str, until: Annotated[str, Form()] = "",
            csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """NTV Plus / MTS: suspend the service for a holiday (until a date, or the longest
    allowed)."""
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_number is not None
        until_dt = _parse_date(until) if until.strip() else None
        view = service.suspend(s, account_number=user.account_number, at=at, until=until_dt)
        return v.t("suspend.done", until=v.t.date(view.suspended_until))
    return _act(v, csrf_token, "suspension.start", f"/{op}/account", fn, {"until": until})


def _parse_date(text: str) -> datetime:
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError as exc:
        raise ValidationError("a date looks like 2026-03-01", code="BAD_DATE") from exc
    return day.replace(tzinfo=UTC)


@router.post("/{op}/resume", response_class=HTMLResponse)
def resume(request: Request, op: str,
           csrf_token: Annotated[str | None, Form()] = None) -> Response:
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_number is not None
        service.resume(s, account_number=user.account_number, at=at)
        return v.t("resume.done")
    return _act(v, csrf_token, "suspension.end", f"/{op}/account", fn)


@router.post("/{op}/promise", response_class=HTMLResponse)
def promise(request: Request, op: str,
            csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """NTV Plus "Promised Payment"."""
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_number is not None
        view = service.promise(s, account_number=user.account_number, at=at)
        profile = current_profile(s)
        return v.t("promise.done", amount=profile.money(view.promised_minor),
                   due=v.t.date(view.promised_due))
    return _act(v, csrf_token, "promise.take", f"/{op}/account", fn)


@router.post("/{op}/extend", response_class=HTMLResponse)
def extend(request: Request, op: str, package: Annotated[str, Form()] = "",
           csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """Uzonline "+ Продлить": prepay one more period."""
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_number is not None
        view = service.extend(s, account_number=user.account_number, package=package, at=at)
        return v.t("extend.done", package=view.package_name, end=v.t.date(view.end),
                   days=view.days_left)
    return _act(v, csrf_token, "subscription.extend", f"/{op}/account", fn,
                {"package": package})


# --- pay -------------------------------------------------------------------------------------------------------
@router.get("/{op}/pay", response_class=HTMLResponse)
def pay_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        assert user.account_number is not None
        with v.tenant.store.reader() as s:
            profile = current_profile(s)
            cards = acc_mod.list_cards(s, account_number=user.account_number)
            packages = _package_rows(s)
            bal = service.balance(s, account_number=user.account_number)
        denominations = [(format_amount(d, profile.minor_per_major), profile.money(d))
                         for d in profile.payment_card_denominations_minor]
        return render(v, "pay.html", profile=profile, cards=cards, packages=packages,
                      balance=bal, denominations=denominations,
                      money=lambda m: _money(profile, m))
    return _guard(run, v)


@router.post("/{op}/pay", response_class=HTMLResponse)
def pay(request: Request, op: str,
        card: Annotated[str, Form()] = "",
        package: Annotated[str, Form()] = "",
        denomination: Annotated[str, Form()] = "",
        voucher: Annotated[str, Form()] = "",
        amount: Annotated[str, Form()] = "",
        csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """Pay by smart-card number, optionally choosing a package (ATV+).  With payment cards the
    denomination is one of the operator's (9, 10, 12, 15) and the payment card's number is the
    payment id, so one payment card pays once."""
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_id is not None
        profile = current_profile(s)
        serial_text = card.strip()
        serial = parse_digits(serial_text, max_value=0xFFFF_FFFF)
        if not serial or not web_domain.owns_card(s, user.account_id, serial):
            # The same words for "no such card" and "not your card".
            raise ValidationError("unknown card", code="CARD_NOT_YOURS")
        if profile.payment_card_denominations_minor:
            amount_minor = parse_amount(denomination or "0", profile.minor_per_major)
            if not re.fullmatch(r"[0-9]{6,20}", voucher.strip()):
                raise ValidationError("payment card number: 6-20 digits", code="BAD_VOUCHER")
            payment_id, method = f"pcard-{voucher.strip()}", "payment_card"
        else:
            amount_minor = parse_amount(amount or "0", profile.minor_per_major)
            payment_id, method = f"web-{secrets.token_hex(12)}", "online"
        result = service.pay(s, by="card", ref=serial_text, amount_minor=amount_minor,
                             payment_id=payment_id, at=at, method=method,
                             package=package or None)
        parts = [v.t("pay.done", amount=profile.money(amount_minor),
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
        return _switch_lock_text(v, s, exc) or ""
    return _act(v, csrf_token, "payment.create", f"/{op}/pay", fn,
                {"card": card, "package": package, "denomination": denomination,
                 "amount": amount, "voucher": voucher}, on_error)


def _switch_lock_text(v: Visit, s: Session, exc: CasError) -> str | None:
    """ATV+: "a repeated package switch is possible no earlier than 30 days after the last
    one" — said with the dates of this account."""
    if getattr(exc, "code", None) != "SWITCH_LOCKED" or v.user is None \
            or v.user.account_id is None:
        return None
    acc = s.get(Account, v.user.account_id)
    profile = current_profile(s)
    if acc is None or acc.last_switch_at_s is None:
        return None
    last = datetime.fromtimestamp(acc.last_switch_at_s, UTC)
    free = datetime.fromtimestamp(acc.last_switch_at_s + profile.switch_lock_days * DAY_S, UTC)
    return v.t("switch.locked", days=profile.switch_lock_days, last=v.t.date(last),
               next=v.t.date(free))


# --- packages ---------------------------------------------------------------------------------------------------
@router.get("/{op}/packages", response_class=HTMLResponse)
def packages_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        assert user.account_number is not None and user.account_id is not None
        with v.tenant.store.reader() as s:
            now = clock_now(s)
            profile = current_profile(s)
            pkgs = _package_rows(s)
            counts = channel_counts(s, [p.id for p in pkgs])
            subs = service.subscriptions(s, account_number=user.account_number, at=now)
            acc = s.get(Account, user.account_id)
            last_switch = acc.last_switch_at_s if acc is not None else None
        base = next((x for x in subs if x.kind == "base"), None)
        next_switch = None
        if last_switch is not None and profile.switch_lock_days:
            next_switch = datetime.fromtimestamp(last_switch + profile.switch_lock_days * DAY_S,
                                                 UTC)
        return render(v, "packages.html", packages=pkgs, counts=counts, subs=subs, base=base,
                      profile=profile, next_switch=next_switch,
                      money=lambda m: _money(profile, m))
    return _guard(run, v)


@router.post("/{op}/packages/switch", response_class=HTMLResponse)
def switch(request: Request, op: str, package: Annotated[str, Form()] = "",
           csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """ATV+: switch the base package; refused within 30 days of the last switch, with the rule
    and the dates shown."""
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_number is not None
        res = service.switch_package(s, account_number=user.account_number, package=package,
                                     at=at)
        profile = current_profile(s)
        return v.t("switch.done", package=res.to_package, days=res.unused_days,
                   credit=profile.money(res.credited_minor),
                   balance=profile.money(res.balance_minor))

    def on_error(s: Session, exc: CasError) -> str:
        return _switch_lock_text(v, s, exc) or ""
    return _act(v, csrf_token, "package.switch", f"/{op}/packages", fn, {"package": package},
                on_error)


@router.post("/{op}/packages/subscribe", response_class=HTMLResponse)
def subscribe(request: Request, op: str, package: Annotated[str, Form()] = "",
              csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """Choose a package (Uzonline: confirmed by the SMS code of this session)."""
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_number is not None
        view = service.subscribe(s, account_number=user.account_number, package=package,
                                 at=at, verification=user.verification_token)
        if view.status == "active":
            return v.t("subscribe.active", package=view.package_name, end=v.t.date(view.end))
        return v.t("subscribe.pending", package=view.package_name)

    def on_error(s: Session, exc: CasError) -> str:
        if getattr(exc, "code", None) in ("VERIFICATION_REQUIRED", "VERIFICATION_EXPIRED"):
            return v.t("verify.needed")
        return ""
    return _act(v, csrf_token, "subscription.create", f"/{op}/packages", fn,
                {"package": package}, on_error)


# --- SMS confirmation inside the account (Uzonline subscribe) ------------------------------------------------
@router.get("/{op}/verify", response_class=HTMLResponse)
def verify_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        assert user.account_number is not None
        with v.tenant.store.reader() as s:
            acc = acc_mod.get_account(s, user.account_number)
        return render(v, "verify.html", phone=acc.phone, sent=False)
    return _guard(run, v)


def _sms_send_keys(v: Visit, account_id: int | None) -> list[tuple[str, RateLimit]]:
    settings = v.state.settings
    return [(f"sms:acct:{account_id}", settings.sms_per_account),
            (f"sms:ip:{v.ip}", settings.sms_per_ip)]


def _send_code(v: Visit, user: PortalUser, phone: str | None, action: str) -> str | None:
    """Send an SMS code for the logged-in account to ``phone`` (default: the account's) and
    keep its token in the session.  Returns an error text or None."""
    assert user.account_number is not None
    keys = _sms_send_keys(v, user.account_id)
    _throttle_check(v, keys)
    _throttle_fail(v, keys)
    try:
        with v.tenant.transaction() as s:
            at = clock_now(s)
            acc = s.get(Account, user.account_id)
            assert acc is not None
            target = phone or acc.phone
            if not target:
                return v.t("verify.no_phone")
            token = web_domain.send_sms_code(s, account=acc, phone=target, at=at)
            row = s.get(WebSession, user.token_sha256)
            if row is not None:
                row.verification_token = token
            audit.record(s, v.actor(), action, user.account_number, wall_s=v.now_s, sim_at=at,
                         detail={"phone": target})
    except CasError as exc:
        return error_text(v, exc)
    return None


def _confirm_code(v: Visit, user: PortalUser, code: str) -> bool:
    assert user.account_number is not None
    keys = [(f"code:acct:{user.account_id}", v.state.settings.login_per_account),
            (f"code:ip:{v.ip}", v.state.settings.login_per_ip)]
    _throttle_check(v, keys)
    with v.tenant.store.reader() as s:
        row = s.get(WebSession, user.token_sha256)
        token = row.verification_token if row is not None else None
    ok = False
    if token is not None:
        with v.tenant.transaction() as s:
            try:
                ok = acc_mod.confirm_verification(s, token=token, code=code.strip()[:16],
                                                  at=clock_now(s)).verified
            except BillingError:
                ok = False
    if not ok:
        _throttle_fail(v, keys)
    return ok


@router.post("/{op}/verify/send", response_class=HTMLResponse)
def verify_send(request: Request, op: str,
                csrf_token: Annotated[str | None, Form()] = None) -> Response:
    v = _visit(request, op)
    _check_csrf(v, csrf_token)

    def run() -> Response:
        user = _require_user(v)
        err = _send_code(v, user, None, "verification.start")
        if err is not None:
            return redirect(v, f"/{op}/verify", error=err)
        return render(v, "verify.html", sent=True, phone=None)
    return _guard(run, v)


@router.post("/{op}/verify", response_class=HTMLResponse)
def verify_confirm(request: Request, op: str, code: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str | None, Form()] = None) -> Response:
    v = _visit(request, op)
    _check_csrf(v, csrf_token)

    def run() -> Response:
        user = _require_user(v)
        if not _confirm_code(v, user, code):
            return render(v, "verify.html", sent=True, phone=None, status=401,
                          error=v.t("login.code_failed"))
        return redirect(v, f"/{op}/packages", ok=v.t("verify.done"))
    return _guard(run, v)


# --- promo (TV+: phone + promo code, confirmed by the SMS code) -----------------------------------------------
@router.get("/{op}/promo", response_class=HTMLResponse)
def promo_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        assert user.account_number is not None
        with v.tenant.store.reader() as s:
            profile = current_profile(s)
            acc = acc_mod.get_account(s, user.account_number)
        return render(v, "promo.html", profile=profile, phone=acc.phone or "", promo="",
                      sent=False)
    return _guard(run, v)


@router.post("/{op}/promo/send", response_class=HTMLResponse)
def promo_send(request: Request, op: str, phone: Annotated[str, Form()] = "",
               promo: Annotated[str, Form()] = "",
               csrf_token: Annotated[str | None, Form()] = None) -> Response:
    v = _visit(request, op)
    _check_csrf(v, csrf_token)

    def run() -> Response:
        user = _require_user(v)
        with v.tenant.store.reader() as s:
            profile = current_profile(s)
        if not profile.promo_enabled:
            return redirect(v, f"/{op}/account", error=v.t("err.PROMO_UNSUPPORTED"))
        if not profile.promo_requires_verification:
            return _redeem(v, user, promo, None)
        err = _send_code(v, user, phone.strip()[:32] or None, "promo.code_sent")
        if err is not None:
            return redirect(v, f"/{op}/promo", error=err)
        return render(v, "promo.html", profile=profile, phone=phone[:32], promo=promo[:64],
                      sent=True)
    return _guard(run, v)


@router.post("/{op}/promo", response_class=HTMLResponse)
def promo_redeem(request: Request, op: str, promo: Annotated[str, Form()] = "",
                 code: Annotated[str, Form()] = "",
                 csrf_token: Annotated[str | None, Form()] = None) -> Response:
    v = _visit(request, op)
    _check_csrf(v, csrf_token)

    def run() -> Response:
        user = _require_user(v)
        if not _confirm_code(v, user, code):
            with v.tenant.store.reader() as s:
                profile = current_profile(s)
            return render(v, "promo.html", profile=profile, phone="", promo=promo[:64],
                          sent=True, status=401, error=v.t("login.code_failed"))
        with v.tenant.store.reader() as s:
            row = s.get(WebSession, user.token_sha256)
            token = row.verification_token if row is not None else None
        return _redeem(v, user, promo, token)
    return _guard(run, v)


def _redeem(v: Visit, user: PortalUser, promo: str, token: str | None) -> Response:
    def fn(s: Session, at: datetime, u: PortalUser) -> str:
        assert u.account_number is not None
        view = service.redeem_promo(s, account_number=u.account_number, code=promo[:64], at=at,
                                    verification=token)
        return v.t("promo.done", package=view.package_name, end=v.t.date(view.end))
    return _run_action(v, "promo.redeem", f"/{v.op}/account", fn, {"promo": promo[:64]})


# --- why is my channel locked --------------------------------------------------------------------------------
@router.get("/{op}/why", response_class=HTMLResponse)
def why_page(request: Request, op: str,
             card: Annotated[str, Query(max_length=16)] = "",
             channel: Annotated[str, Query(max_length=64)] = "") -> Response:
    """The head-end's explanation (:func:`cas.headend.why.explain`, as ``cas why``) for one of
    the subscriber's own cards."""
    from cas.headend.why import explain

    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        assert user.account_number is not None and user.account_id is not None
        with v.tenant.store.reader() as s:
            cards = acc_mod.list_cards(s, account_number=user.account_number)
            result = None
            error = None
            if card and channel:
                serial = parse_digits(card.strip(), max_value=0xFFFF_FFFF)
                if not serial or not web_domain.owns_card(s, user.account_id, serial):
                    error = v.t("err.CARD_NOT_YOURS")
                else:
                    try:
                        result = explain(s, serial, channel.strip(), clock_now(s))
                    except CasError as exc:
                        error = error_text(v, exc)
        reason_text = fix_text = None
        if result is not None:
            reason_text = v.t(f"reason.{result.reason.value}") \
                if v.t.has(f"reason.{result.reason.value}") else (
                    info(result.reason).ru if v.t.lang == "ru" else info(result.reason).en)
            fix_text = result.fix if v.t.lang == "en" else v.t(f"fix.{result.reason.value}")
        return render(v, "why.html", cards=cards, card=card, channel=channel, result=result,
                      error=error, reason_text=reason_text, fix_text=fix_text,
                      is_open=result is not None and result.reason is Reason.OPEN)
    return _guard(run, v)


# --- account lookup (MTS: Chip ID + card number, no login) ---------------------------------------------------
@router.get("/{op}/lookup", response_class=HTMLResponse)
def lookup_page(request: Request, op: str) -> Response:
    v = _visit(request, op)
    return render(v, "lookup.html", result=None, error=None, chip_id="", card="")


@router.post("/{op}/lookup", response_class=HTMLResponse)
def lookup(request: Request, op: str, chip_id: Annotated[str, Form()] = "",
           card: Annotated[str, Form()] = "",
           csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """Find the personal account number from the box's Chip ID and the smart-card number.
    Any mismatch — unknown box, unknown card, someone else's card — gets one answer, after
    the same queries; attempts per address are limited."""
    v = _visit(request, op)
    _check_csrf(v, csrf_token)
    key = [(f"lookup:ip:{v.ip}", v.state.settings.lookup_per_ip)]
    _throttle_check(v, key)
    _throttle_fail(v, key)
    chip_text = chip_id.strip().upper().removeprefix("0X")
    card_text = card.strip()
    if not re.fullmatch(r"[0-9A-F]{1,8}", chip_text) or not re.fullmatch(r"[0-9]{1,10}",
                                                                            card_text):
        return render(v, "lookup.html", status=422, result=None, error=v.t("lookup.bad_input"),
                      chip_id=chip_id[:16], card=card[:16])
    number = None
    with v.tenant.store.reader() as s:
        try:
            number = service.lookup_by_chip_and_card(s, chip_id=int(chip_text, 16),
                                                     card_serial=int(card_text))
        except CasError:
            number = None
    if number is None:
        return render(v, "lookup.html", status=200, result=None, error=v.t("lookup.no_match"),
                      chip_id=chip_id[:16], card=card[:16])
    return render(v, "lookup.html", result=number, error=None, chip_id=chip_id[:16],
                  card=card[:16])


# --- password --------------------------------------------------------------------------------------------------
@router.get("/{op}/password", response_class=HTMLResponse)
def password_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        assert user.account_id is not None
        with v.tenant.store.reader() as s:
            has = web_domain.password_hash_of(s, user.account_id) is not None
        return render(v, "password.html", has_password=has)
    return _guard(run, v)


@router.post("/{op}/password", response_class=HTMLResponse)
def password_change(request: Request, op: str, current: Annotated[str, Form()] = "",
                    new: Annotated[str, Form()] = "", repeat: Annotated[str, Form()] = "",
                    csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """Set or change the portal password (the current one is asked when there is one)."""
    v = _visit(request, op)

    def fn(s: Session, at: datetime, user: PortalUser) -> str:
        assert user.account_id is not None and user.account_number is not None
        stored = web_domain.password_hash_of(s, user.account_id)
        if stored is not None and not verify_password(stored, current[:256]):
            raise ValidationError("the current password is wrong", code="WRONG_PASSWORD")
        if new != repeat:
            raise ValidationError("the two new passwords differ", code="PASSWORD_MISMATCH")
        web_domain.set_portal_password(s, account_number=user.account_number, password=new,
                                       wall_s=v.now_s)
        return v.t("password.done")
    return _act(v, csrf_token, "password.change", f"/{op}/password", fn)


# --- notifications (the simulated SMS / e-mail outbox of this account) ------------------------------------------
@router.get("/{op}/notifications", response_class=HTMLResponse)
def notifications_page(request: Request, op: str) -> Response:
    v = _visit(request, op)

    def run() -> Response:
        user = _require_user(v)
        from sqlalchemy import select

        with v.tenant.store.reader() as s:
            rows = [{"at_s": n.at_s, "channel": n.channel, "text": n.text}
                    for n in s.execute(
                        select(Notification).where(Notification.account_id == user.account_id,
                                                   Notification.kind != "verification_code")
                        .order_by(Notification.id.desc()).limit(50)).scalars()]
        return render(v, "notifications.html", rows=rows,
                      when=lambda ts: v.t.date(datetime.fromtimestamp(ts, UTC)))
    return _guard(run, v)
