"""The head-end's operations endpoint: ``GET /health`` and ``GET /metrics`` over HTTP/1.1.

A tiny asyncio server (no framework, no new dependency): one request per connection
(``Connection: close``), GET and HEAD only, a request head of at most 8 KiB read within
5 seconds.

* ``/health``: the ``health()`` callback's dict as JSON, with ``"healthy"`` added; 200 when
  healthy, 503 otherwise, so a load balancer or a watchdog script can act on the status
  alone.  Healthy means: the dict's ``"healthy"`` key is true, or, without one, its
  ``"status"`` is ``"ok"`` (or absent).  A callback that raises answers 503 with the error's one line.
* ``/metrics``: :meth:`cas.live.metrics.LiveMetrics.render_prometheus`, content type
  ``text/plain; version=0.0.4``.

Anything else is 404 (unknown path), 405 (another method) or 400 (not HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from http import HTTPStatus

from cas.errors import UsageError
from cas.live.metrics import LiveMetrics

log = logging.getLogger("cas.live.ops")

MAX_REQUEST_HEAD = 8192
READ_TIMEOUT_S = 5.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


def _response(status: HTTPStatus, body: bytes, content_type: str, *,
              head_only: bool = False, extra: str = "") -> bytes:
    head = (f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            f"{extra}"
            "Connection: close\r\n\r\n").encode("ascii")
    return head if head_only else head + body


def _json(status: HTTPStatus, data: object, *, head_only: bool = False) -> bytes:
    body = (json.dumps(data, sort_keys=True, default=str) + "\n").encode()
    return _response(status, body, JSON_CONTENT_TYPE, head_only=head_only)


class OpsHandler:
    """Request line in, response bytes out (the I/O is in :func:`serve_ops`)."""

    def __init__(self, metrics: LiveMetrics, health: Callable[[], dict[str, object]]) -> None:
        self.metrics = metrics
        self.health = health

    def respond(self, request_head: bytes) -> bytes:
        try:
            request_line = request_head.split(b"\r\n", 1)[0].decode("ascii")
            method, target, version = request_line.split(" ")
        except (UnicodeDecodeError, ValueError):
            return _json(HTTPStatus.BAD_REQUEST, {"error": "not an HTTP/1.x request"})
        if not version.startswith("HTTP/1."):
            return _json(HTTPStatus.BAD_REQUEST, {"error": "not an HTTP/1.x request"})
        path = target.split("?", 1)[0]
        if path not in ("/health", "/metrics"):
            return _json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path[:100]}"})
        if method not in ("GET", "HEAD"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain",
                             extra="Allow: GET, HEAD\r\n")
        head_only = method == "HEAD"
        if path == "/metrics":
            return _response(HTTPStatus.OK, self.metrics.render_prometheus().encode(),
                             PROMETHEUS_CONTENT_TYPE, head_only=head_only)
        try:
            report = dict(self.health())
        except Exception as exc:  # the probe must answer even when the check itself fails
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"healthy": False, "error": message},
                         head_only=head_only)
        healthy = (bool(report["healthy"]) if "healthy" in report
                   else report.get("status", "ok") == "ok")
        report["healthy"] = healthy
        status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
        return _json(status, report, head_only=head_only)


async def serve_ops(host: str, port: int, metrics: LiveMetrics,
                    health: Callable[[], dict[str, object]]) -> asyncio.AbstractServer:
    """Start serving ``/health`` and ``/metrics`` on ``host:port`` (port 0: any free port;
    read it from ``server.sockets[0].getsockname()``).  Close with ``server.close()``."""
    handler = OpsHandler(metrics, health)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except asyncio.LimitOverrunError:
                writer.write(_json(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                   {"error": "request head too large"}))
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            else:
                writer.write(handler.respond(head))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(on_client, host, port, limit=MAX_REQUEST_HEAD)
    except OSError as exc:
        raise UsageError(f"ops.listen: cannot listen on {host}:{port}: {exc.strerror or exc}").with_id(
            "live.ops_listen_cannot_listen", host=host, port=port, value=exc.strerror or exc) \
            from exc
    bound = server.sockets[0].getsockname()
    log.info("ops endpoint listening",
             extra={"fields": {"address": f"{bound[0]}:{bound[1]}"}})
    return server

