"""The HTTP form of the kit report protocol (docs/kit.md, "Report protocol"): the runner
opens an endpoint on 127.0.0.1 (a free port) and the box POSTs its report lines there
instead of printing them.

Each (step, box) the runner plays gets its own URL in ``KIT_REPORT_URL``::

    POST /kit/<step>/<box> HTTP/1.1
    Content-Type: application/x-ndjson

    {"channel": 1, "state": "OPEN", "reason": "OPEN", "message": "..."}
    {"channel": 27, "state": "LOCKED", "reason": "MATURITY_LOCKED", "message": "..."}

The body is what the stdout form carries (JSON lines, or one document with a ``channels``
list), UTF-8, at most :data:`MAX_BODY` bytes.  A box may POST several times; the last line
about a channel wins.  Answers: ``204`` taken; ``400`` a body with no channel line (the
reason in a one-line ``text/plain`` body); ``404`` a URL that is not the (step, box) being
played now; ``405`` another method; ``411``/``413`` no or too long a Content-Length.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote

from cas.formats.boxreport import Seen, parse_events, parse_report

MAX_BODY = 1 << 20
PATH_PREFIX = "/kit/"


class ReportServer:
    """The endpoint: :meth:`expect` opens the URL of one (step, box), :meth:`take` closes it
    and returns what was posted there."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, dict[int, Seen]] = {}
        self._posts: dict[str, int] = {}
        #: the event lines (purchase, message shown, fingerprint shown) posted per URL
        self._events: dict[str, list[dict[str, Any]]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "cas-kit"
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return  # the runner reports results, not requests

            def _answer(self, status: HTTPStatus, text: str = "") -> None:
                body = (text + "\n").encode() if text else b""
                self.send_response(status)
                if body:
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _refuse_method(self) -> None:
                self._answer(HTTPStatus.METHOD_NOT_ALLOWED, "POST the report lines")

            do_GET = do_PUT = do_DELETE = _refuse_method

            def do_POST(self) -> None:
                length = self.headers.get("Content-Length")
                if length is None or not length.isascii() or not length.isdigit():
                    self._answer(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
                    return
                if int(length) > MAX_BODY:
                    self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                 f"at most {MAX_BODY} bytes")
                    self.close_connection = True
                    return
                raw = self.rfile.read(int(length))
                key = unquote(self.path.split("?", 1)[0])
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self._answer(HTTPStatus.BAD_REQUEST, "the body is not UTF-8")
                    return
                status, problem = server._post(key, text)
                self._answer(status, problem)

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="kit-report",
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @staticmethod
    def path_of(step: int, box: str) -> str:
        return f"{PATH_PREFIX}{step}/{quote(box, safe='')}"

    def expect(self, step: int, box: str) -> str:
        """Open the URL of (step, box) and return it (``KIT_REPORT_URL``)."""
        key = self.path_of(step, box)
        with self._lock:
            self._open[unquote(key)] = {}
            self._posts[unquote(key)] = 0
            self._events[unquote(key)] = []
        return self.base_url + key

    def events(self, step: int, box: str) -> list[dict[str, Any]]:
        """The event lines posted to (step, box); call before :meth:`take`."""
        key = unquote(self.path_of(step, box))
        with self._lock:
            return list(self._events.get(key, []))

    def take(self, step: int, box: str) -> tuple[dict[int, Seen], int]:
        """Close the URL of (step, box): the verdicts posted there and how many POSTs."""
        key = unquote(self.path_of(step, box))
        with self._lock:
            self._events.pop(key, None)
            return self._open.pop(key, {}), self._posts.pop(key, 0)

    def peek(self, step: int, box: str) -> dict[int, Seen]:
        """What has been posted to (step, box) so far (live mode), the URL left open."""
        key = unquote(self.path_of(step, box))
        with self._lock:
            return dict(self._open.get(key, {}))

    def _post(self, key: str, text: str) -> tuple[HTTPStatus, str]:
        seen = parse_report(text)
        with self._lock:
            if key not in self._open:
                return HTTPStatus.NOT_FOUND, f"{key} is not the step and box being played"
            if not seen:
                return HTTPStatus.BAD_REQUEST, "no channel line in the body"
            self._open[key].update(seen)
            self._posts[key] += 1
            self._events[key].extend(parse_events(text))
        return HTTPStatus.NO_CONTENT, ""

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ReportServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
