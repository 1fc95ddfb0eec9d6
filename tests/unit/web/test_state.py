"""``cas.web.state.client_ip``: the TCP peer, unless a configured trusted proxy forwards."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from starlette.requests import Request

from cas.errors import UsageError
from cas.web.security import CookieSigner
from cas.web.settings import Tenants, WebSettings, parse_trusted_proxies
from cas.web.state import WebState, client_ip


def _request(peer: str, forwarded: list[str], trusted: str) -> Request:
    secret = os.urandom(32)
    settings = WebSettings(secret_key=secret, trusted_proxies=parse_trusted_proxies(trusted))
    web = WebState(tenants=Tenants([]), settings=settings, signer=CookieSigner(secret))
    app = SimpleNamespace(state=SimpleNamespace(web=web))
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "client": (peer, 40000), "app": app,
             "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded]}
    return Request(scope)


def test_forwarded_header_only_from_trusted_proxies() -> None:
    cases = [
        # (peer, X-Forwarded-For lines, trusted proxies, the client)
        ("127.0.0.1", ["203.0.113.9"], "", "127.0.0.1"),  # nothing trusted by default
        ("198.51.100.1", ["203.0.113.9"], "127.0.0.1", "198.51.100.1"),  # not a proxy
        ("127.0.0.1", ["203.0.113.9"], "127.0.0.1", "203.0.113.9"),
        ("127.0.0.1", [], "127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", ["1.2.3.4, 203.0.113.9"], "127.0.0.1", "203.0.113.9"),  # spoofed hop
        ("127.0.0.1", ["203.0.113.9, 10.0.0.2"], "127.0.0.1,10.0.0.0/8", "203.0.113.9"),
        ("127.0.0.1", ["203.0.113.9", "10.0.0.2"], "127.0.0.1,10.0.0.0/8", "203.0.113.9"),
        ("127.0.0.1", ["not-an-ip"], "127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], "127.0.0.1,10.0.0.0/8", "10.0.0.3"),
        ("::1", ["2001:db8::7"], "::1", "2001:db8::7"),
    ]
    for peer, forwarded, trusted, expected in cases:
        assert client_ip(_request(peer, forwarded, trusted)) == expected, (peer, forwarded)


def test_trusted_proxies_parse() -> None:
    nets = parse_trusted_proxies(" 127.0.0.1 , 10.0.0.0/8,::1,")
    assert [str(n) for n in nets] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert parse_trusted_proxies("") == ()
    with pytest.raises(UsageError, match="not an IP address or network"):
        parse_trusted_proxies("proxy.example")


def test_the_body_limit_setting_is_checked() -> None:
    assert WebSettings(secret_key=os.urandom(32)).max_body_bytes == 1 << 20
    with pytest.raises(UsageError):
        WebSettings(secret_key=os.urandom(32), max_body_bytes=0)
