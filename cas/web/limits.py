"""The request-body limit: a pure ASGI middleware that answers 413 before a body too large is
read whole.

* A ``Content-Length`` above the limit is refused at once, before a byte of the body is read.
* Without one (``Transfer-Encoding: chunked``), or with one that lies, the bytes are counted
  as they arrive; the chunk that crosses the limit is never handed on, and the answer is 413
  whatever the application was about to say (its body parser may have turned the cut-off
  into a 400).

So one request costs at most the limit plus one chunk of memory.  The limit is
:attr:`cas.web.settings.WebSettings.max_body_bytes` (``cas serve --max-body-bytes``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cas.text import parse_digits

CODE = "PAYLOAD_TOO_LARGE"
CATEGORY = "PAYLOAD_TOO_LARGE"


class _BodyTooLarge(Exception):
    """Raised inside ``receive`` when the count passes the limit (never leaves this module)."""


def too_large_body(limit_bytes: int) -> bytes:
    """The JSON error document of a 413 (the same shape as every other error)."""
    return json.dumps({"error": {
        "code": CODE, "category": CATEGORY,
        "message": f"the request body is larger than {limit_bytes} bytes"}}).encode()


class BodyLimit:
    """Refuse request bodies longer than ``limit_bytes`` with 413 ``PAYLOAD_TOO_LARGE``."""

    def __init__(self, app: ASGIApp, *, limit_bytes: int) -> None:
        if limit_bytes < 0:
            raise ValueError("the body limit must not be negative")
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit_bytes:
            await self._refuse(send)
            return
        received = 0
        over = False
        answered = False  # our 413 went out
        started = False  # the application's answer went out

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered, started
            if over:
                # Whatever the application makes of the cut-off body, the answer is 413.
                if not answered and not started:
                    answered = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            if not answered and not started:
                answered = True
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = too_large_body(self.limit_bytes)
        headers: list[Any] = [(b"content-type", b"application/json"),
                              (b"content-length", str(len(body)).encode()),
                              (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    """The declared length, or ``None`` when absent or unreadable (then the count decides)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return parse_digits(value.decode("latin-1").strip())
    return None
