"""Answers of the portal: a page rendered from ``cas/web/templates`` with the visit's cookies,
a redirect (POST → 303 → GET) carrying a one-shot signed flash message, the error page, and a
refusal said in the subscriber's language."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from cas.billing.records import DAY_S, current_profile
from cas.errors import CasError
from cas.web.errors import classify
from cas.web.i18n import LANG_COOKIE, Translator
from cas.web.portal.visit import CSRF_COOKIE, FLASH_COOKIE, Visit, request_language
from cas.web.state import web_state

R = TypeVar("R", bound=Response)

_env = Environment(loader=PackageLoader("cas.web", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


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


def render_plain(request: Request, template: str, *, http_status: int = 200,
                 **ctx: Any) -> HTMLResponse:
    """A page outside any operator (the operator list, the error page)."""
    t = request_language(request)
    page = _env.get_template(template).render(
        t=t, lang=t.lang, op=None, operator_name="", user=None, flash=None, csrf_token="",
        path=request.url.path, tenants=web_state(request).tenants.all(), **ctx)
    return HTMLResponse(page, status_code=http_status)


def redirect(v: Visit, url: str, *, ok: str | None = None, error: str | None = None) -> Response:
    if ok is not None or error is not None:
        payload = json.dumps({"op": v.op, "kind": "error" if error is not None else "ok",
                              "text": error if error is not None else ok})
        v.clear_cookies = [c for c in v.clear_cookies if c[0] != FLASH_COOKIE]
        v.set_cookies.append((FLASH_COOKIE, v.state.signer.sign_flash(payload), None, f"/{v.op}"))
    return _apply_cookies(v, RedirectResponse(url, status_code=303))


def error_page(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    """The HTML answer for portal paths when a request is refused (403 CSRF, 429, 404...)."""
    t: Translator = request_language(request)
    key = f"err.{code}"
    text = t(key) if t.has(key) else message
    return render_plain(request, "error.html", http_status=status, status=status, code=code,
                        message=text, request_id=getattr(request.state, "request_id", ""))


def error_text(v: Visit, exc: CasError) -> str:
    """A refusal in the subscriber's language: a catalog text for the code when there is
    one (``err.SWITCH_LOCKED`` explains the 30-day rule), else the domain's message (its
    Russian line from the command lines' catalogue on a Russian page)."""
    answer = classify(exc)  # hides database and internal details
    key = f"err.{answer.code}"
    if v.t.has(key):
        return v.t(key)
    if v.t.lang == "ru" and answer.message_ru is not None:
        return answer.message_ru
    return answer.message
