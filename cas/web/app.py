"""The ASGI application: the operator API under ``/api/v1`` and the personal-account portal
under ``/`` (one app, either half can be switched off), with one error mapping for both.

``create_app(tenants, settings, parts=("api", "portal"))`` is what ``cas serve`` runs on
uvicorn and what the tests drive in-process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import cas
from cas.errors import CasError
from cas.text import SINGLE_LINE_PATTERN
from cas.web import api, portal
from cas.web.apidocs import add_api_docs
from cas.web.errors import ErrorAnswer, classify
from cas.web.fastlane import FastLane
from cas.web.limits import BodyLimit
from cas.web.security import CookieSigner
from cas.web.settings import Tenant, Tenants, WebSettings
from cas.web.state import WebState
from cas.web.workers import WORKER_HEADER

log = logging.getLogger("cas.web")

PARTS = ("api", "portal")
STATIC_DIR = Path(__file__).parent / "static"
#: Content-Security-Policy of portal pages: nothing but our own files, no inline script.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

_HTTP_CODES = {404: ("NOT_FOUND", "NOT_FOUND"), 405: ("METHOD_NOT_ALLOWED", "METHOD_NOT_ALLOWED"),
               400: ("BAD_REQUEST", "BAD_REQUEST"), 401: ("API_KEY_REQUIRED", "UNAUTHENTICATED"),
               403: ("FORBIDDEN", "FORBIDDEN")}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(api.API_PREFIX) or request.url.path == "/openapi.json"


def _answer(request: Request, ans: ErrorAnswer) -> Response:
    if _is_api(request) or "portal" not in request.app.state.parts:
        return JSONResponse(ans.body(), status_code=ans.status, headers=ans.headers)
    page = portal.error_page(request, ans.status, ans.code, ans.message)
    for k, v in ans.headers.items():
        page.headers[k] = v
    # A 500 is answered outside the headers middleware: the id the page shows goes here too.
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        page.headers["X-Request-Id"] = request_id
    return page


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "string_pattern_mismatch" \
                and (err.get("ctx") or {}).get("pattern") == SINGLE_LINE_PATTERN:
            msg = "must not contain control characters"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"


class SecurityHeaders:
    """Every answer's request id and security headers, as a pure ASGI middleware (Starlette's
    ``BaseHTTPMiddleware`` costs a task and a memory stream per request, on the hot path of
    every API call).  Portal pages also get the CSP, no framing, and no caching."""

    def __init__(self, app: ASGIApp, *, worker_pid: int | None) -> None:
        self.app = app
        self.worker_pid = str(worker_pid) if worker_pid is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        is_api = path.startswith(api.API_PREFIX) or path == "/openapi.json"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers["X-Request-Id"] = request_id
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                if self.worker_pid is not None:
                    headers[WORKER_HEADER] = self.worker_pid
                if not is_api:
                    headers["Content-Security-Policy"] = CSP
                    headers["X-Frame-Options"] = "DENY"
                    if not path.startswith("/static/"):
                        headers["Cache-Control"] = "no-store"
                message["headers"] = headers.raw
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(tenants: Sequence[Tenant], settings: WebSettings,
               parts: Sequence[str] = PARTS, *, fast_lane: bool = True) -> FastAPI:
    """The app serving ``tenants`` (one store per operator); ``parts`` picks API, portal or
    both.  ``fast_lane``: the balance read's happy path answered in front of FastAPI
    (:mod:`cas.web.fastlane`, with the API only); off, every request goes through FastAPI
    (the tests compare the two)."""
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be some of {PARTS}")
    app = FastAPI(
        title="cas-sim operator API",
        version=cas.__version__,
        description=(
            "Accounts, cards, boxes, packages, payments, subscriptions, suspension, promised "
            "payment, promo, lookup, entitlement state, `why` and the EMM queue of one "
            "operator's subscriber store.  Authenticate with `X-API-Key` (one operator per "
            "key).  Errors: `{\"error\": {\"code\", \"category\", \"message\"}}`, codes in "
            "docs/web.md.  Money: integer minor units; times: integer seconds UTC."),
        openapi_url=f"{api.API_PREFIX}/openapi.json" if "api" in parts else None,
        # FastAPI's pages load their scripts from a CDN: ours are in cas.web.apidocs
        docs_url=None, redoc_url=None,
    )
    app.state.web = WebState(tenants=Tenants(tenants), settings=settings,
                             signer=CookieSigner(settings.secret_key))
    app.state.parts = tuple(parts)
    # Added before the headers middleware, so inside it: a 413 gets X-Request-Id too.
    app.add_middleware(BodyLimit, limit_bytes=settings.max_body_bytes)
    # Inside the headers middleware (its answers get the same request id and headers),
    # outside everything FastAPI does per request.
    if fast_lane and "api" in parts:
        app.add_middleware(FastLane, state=app.state.web)
    app.add_middleware(SecurityHeaders, worker_pid=settings.worker_pid)

    @app.exception_handler(CasError)
    async def on_cas_error(request: Request, exc: CasError) -> Response:
        return _answer(request, classify(exc))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        missing_key = any(e.get("loc", ())[:2] == ("header", "Idempotency-Key")
                          and e.get("type") == "missing" for e in exc.errors())
        code = "IDEMPOTENCY_KEY_REQUIRED" if missing_key else "INVALID_REQUEST"
        body_broken = any(e.get("type") == "json_invalid" for e in exc.errors())
        if body_broken:
            return _answer(request, ErrorAnswer(status=400, code="BAD_REQUEST",
                                                category="BAD_REQUEST",
                                                message="the body is not valid JSON",
                                                headers={}))
        return _answer(request, ErrorAnswer(status=422, code=code, category="INVALID_INPUT",
                                            message=_validation_message(exc)[:500], headers={}))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        code, category = _HTTP_CODES.get(exc.status_code, ("BAD_REQUEST", "BAD_REQUEST"))
        status = exc.status_code if exc.status_code in _HTTP_CODES else 400
        headers = dict(exc.headers or {})
        return _answer(request, ErrorAnswer(status=status, code=code, category=category,
                                            message=str(exc.detail), headers=headers))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path,
                      getattr(request.state, "request_id", "-"))
        return _answer(request, classify(exc))

    if "api" in parts:
        app.include_router(api.router)
        add_api_docs(app, api.API_PREFIX, f"{api.API_PREFIX}/openapi.json")
    if "portal" in parts:
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
        app.add_exception_handler(portal.LoginRequired, portal.on_login_required)
        app.include_router(portal.router)
    return app
