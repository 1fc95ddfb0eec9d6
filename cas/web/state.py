"""What every request handler reaches through ``request.app.state.web``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from cas.web.security import CookieSigner
from cas.web.settings import Tenants, WebSettings, parse_ip


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
    """The client's address, as the rate limits and the audit log count it.

    The TCP peer, unless the peer is one of the configured trusted proxies
    (``WebSettings.trusted_proxies``): then ``X-Forwarded-For`` is read from the nearest hop
    back, and the first address that is not itself a trusted proxy is the client.  A header
    from anyone else — or a hop that is not an address — is never believed, so a client
    cannot pick its own address.  (uvicorn's own proxy-header handling is off: ``cas serve``
    runs it with ``proxy_headers=False``.)"""
    peer = request.client.host if request.client is not None else ""
    settings = web_state(request).settings
    if not settings.trusted_proxies or not settings.is_trusted_proxy(peer):
        return peer
    hops = [hop.strip() for line in request.headers.getlist("x-forwarded-for")
            for hop in line.split(",")]
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            return peer
        if not settings.is_trusted_proxy(hop):
            return str(ip)
    # No header, or every hop a trusted proxy: the farthest one is the client.
    first = parse_ip(hops[0]) if hops else None
    return str(first) if first is not None else peer
