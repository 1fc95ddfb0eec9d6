"""What every request handler reaches through ``request.app.state.web``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from cas.web.security import CookieSigner
from cas.web.settings import Tenants, WebSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class WebState:
    tenants: Tenants
    settings: WebSettings
    signer: CookieSigner


def web_state(request: Request) -> WebState:
    state = request.app.state.web
    assert isinstance(state, WebState)
    return state


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else ""
