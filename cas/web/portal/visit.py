"""One request to the portal (:class:`Visit`): its operator, language, CSRF cookie, the
logged-in subscriber if any, the one-shot flash message, and the cookies the answer sets.
Opened by the dependencies in :mod:`cas.web.portal.deps`."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

from fastapi import Request

from cas.web import audit
from cas.web.errors import WebError
from cas.web.i18n import LANG_COOKIE, Translator, pick_language
from cas.web.settings import Tenant
from cas.web.state import WebState, client_ip, web_state

CSRF_COOKIE = "cas_csrf"
FLASH_COOKIE = "cas_flash"
_SESSION_COOKIE = "cas_sid_"


def session_cookie_name(op: str) -> str:
    return _SESSION_COOKIE + op


@dataclass(frozen=True, slots=True, kw_only=True)
class PortalUser:
    """The portal session's holder: logged in (``stage == "in"``) or half-way through an SMS
    login (``"code_sent"``)."""

    token_sha256: str
    account_id: int | None
    account_number: str | None
    stage: str
    method: str
    verification_token: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    """A logged-in subscriber: what the login-required pages and actions get."""

    token_sha256: str
    account_id: int
    account_number: str
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


def request_language(request: Request) -> Translator:
    """The language asked by ``?lang=``, else the language cookie, else Accept-Language."""
    return Translator(pick_language(request.query_params.get("lang"),
                                    request.cookies.get(LANG_COOKIE),
                                    request.headers.get("accept-language")))


def open_visit(request: Request, op: str) -> Visit:
    """The visit of ``request`` to operator ``op`` (404 when it is not served here), without
    its user: the CSRF cookie (a new one when missing or malformed) and the flash message
    left by the previous answer (read once, then cleared)."""
    state = web_state(request)
    tenant = state.tenants.get(op)
    if tenant is None:
        raise WebError(f"no operator {op!r} here", code="NOT_FOUND", category="NOT_FOUND").with_id(
            "web.no_operator_here", op=f"{op!r}")
    query_lang = request.query_params.get("lang")
    csrf = request.cookies.get(CSRF_COOKIE)
    is_new = not csrf or not re.fullmatch(r"[A-Za-z0-9_\-]{20,64}", csrf)
    v = Visit(request=request, state=state, tenant=tenant, t=request_language(request),
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
    return v
