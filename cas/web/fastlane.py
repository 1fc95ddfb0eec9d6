"""The operator API's hottest read answered in front of FastAPI: a pure ASGI middleware for
the happy path of ``GET /api/v1/accounts/{n}/balance``.

Under load a balance read costs the server about 1 ms of CPU, most of it in routing,
dependency resolution and the request objects of Starlette and FastAPI, not in the two
statements it runs.  This lane recognises the one request shape it knows (method ``GET``,
the exact path with an account number of 4–20 ASCII digits, no query string, no
``root_path``, exactly one non-empty ``X-API-Key`` header, no request body headers), runs
the same key check (:func:`cas.web.api.deps.check_api_key`) and the same balance read
(:func:`cas.billing.statement.balance_fast`) as the route, and sends the same JSON document
and the same headers (the route's ``content-length`` and ``content-type``; the request id,
security headers and ``X-Worker-Pid`` come from :class:`cas.web.app.SecurityHeaders`, which
sits outside this lane).

Anything else is passed on unchanged to the FastAPI app, which decides and answers as
before: another method or path, a query string, a missing, malformed, unknown or revoked
key, an unknown account, a store error or any other failure (nothing has been sent then).
So errors, their language (``Accept-Language`` only changes error messages; the balance
document has no text), the OpenAPI document and the exception handlers are FastAPI's.
``tests/integration/web/test_fast_lane.py`` compares both apps' answers byte for byte.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from cas.billing.statement import balance_fast
from cas.web.api.deps import API_PREFIX, check_api_key
from cas.web.schemas import BalanceOut
from cas.web.state import WebState

log = logging.getLogger(__name__)

#: The route's path with its parameter's own rule (``AccountNumber``: 4–20 ASCII digits).
_BALANCE_PATH = re.compile(re.escape(API_PREFIX) + r"/accounts/([0-9]{4,20})/balance")
#: Request headers that make the request unusual for a GET (a body: the body limit decides).
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
_JSON = b"application/json"


class FastLane:
    """Answer the happy path of the balance read; pass every other request to ``app``."""

    def __init__(self, app: ASGIApp, *, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            body = self._balance(scope)
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode()),
                                        (b"content-type", _JSON)]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _balance(self, scope: Scope) -> bytes | None:
        """The balance document, or None when FastAPI is to answer."""
        match = _BALANCE_PATH.fullmatch(scope["path"])
        if match is None or scope.get("query_string") or scope.get("root_path"):
            return None
        api_key = _api_key(scope["headers"])
        if api_key is None:
            return None
        try:
            tenant, _key_id, _now_s = check_api_key(self.state, api_key)
            with tenant.store.statement_engine.connect() as conn:
                view = balance_fast(conn, account_number=match.group(1))
            body = BalanceOut.of(view).model_dump_json().encode()
        except Exception:  # every refusal and every failure is FastAPI's to answer
            return None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fast lane: balance of account %s", match.group(1))
        return body


def _api_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The one ``X-API-Key`` value, or None (absent, empty, repeated, or a body announced)."""
    found: str | None = None
    for name, value in headers:
        if name == b"x-api-key":
            if found is not None:
                return None
            found = value.decode("latin-1")
        elif name in _BODY_HEADERS:
            return None
    return found or None


__all__ = ["FastLane"]
