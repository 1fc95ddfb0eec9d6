"""The ops endpoint over real HTTP on 127.0.0.1: /health (200/503 JSON), /metrics
(Prometheus text), and the refusals (404, 405, 400)."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest

from cas.errors import UsageError
from cas.live.metrics import LiveMetrics
from cas.live.ops import OpsHandler, serve_ops


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


async def _with_server(health: dict[str, object] | Exception,
                       requests: list[tuple[str, str]]) -> list[tuple[int, dict[str, str], bytes]]:
    metrics = LiveMetrics()
    metrics.inc("packets_sent_total", 42, service="1")
    metrics.set("carousel_queue_depth", 2)

    def probe() -> dict[str, object]:
        if isinstance(health, Exception):
            raise health
        return health

    server = await serve_ops("127.0.0.1", 0, metrics, probe)
    port = server.sockets[0].getsockname()[1]
    try:
        return [await asyncio.to_thread(_get, port, path, method) for method, path in requests]
    finally:
        server.close()
        await server.wait_closed()


def test_metrics_and_healthy_health_over_http() -> None:
    (m_status, m_headers, m_body), (h_status, h_headers, h_body) = asyncio.run(_with_server(
        {"healthy": True, "services": 2}, [("GET", "/metrics"), ("GET", "/health")]))
    assert m_status == 200
    assert m_headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b'cas_live_packets_sent_total{service="1"} 42\n' in m_body
    assert b"cas_live_carousel_queue_depth 2\n" in m_body
    assert h_status == 200 and h_headers["content-type"] == "application/json"
    assert json.loads(h_body) == {"healthy": True, "services": 2}


def test_unhealthy_is_503_and_a_failing_probe_too() -> None:
    [(status, _, body)] = asyncio.run(_with_server({"healthy": False, "reason": "no output"},
                                                   [("GET", "/health")]))
    assert status == 503 and json.loads(body)["reason"] == "no output"
    [(status, _, body)] = asyncio.run(_with_server(RuntimeError("store down\nmore"),
                                                   [("GET", "/health?x=1")]))
    assert status == 503 and json.loads(body) == {"healthy": False, "error": "store down"}
    [(status, _, body)] = asyncio.run(_with_server({"status": "failing"}, [("GET", "/health")]))
    assert status == 503 and json.loads(body) == {"healthy": False, "status": "failing"}
    [(status, _, body)] = asyncio.run(_with_server({"status": "ok"}, [("GET", "/health")]))
    assert status == 200 and json.loads(body) == {"healthy": True, "status": "ok"}


def test_unknown_path_method_and_head() -> None:
    results = asyncio.run(_with_server({}, [("GET", "/nope"), ("POST", "/metrics"),
                                            ("HEAD", "/health")]))
    assert [r[0] for r in results] == [404, 405, 200]
    assert results[1][1]["allow"] == "GET, HEAD"
    assert results[2][2] == b""  # HEAD: headers only


def test_garbage_request_is_400() -> None:
    handler = OpsHandler(LiveMetrics(), dict)
    assert handler.respond(b"\xff\xfe\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert handler.respond(b"GET /metrics SPDY/3\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_port_in_use_is_a_one_line_usage_error() -> None:
    async def clash() -> None:
        first = await serve_ops("127.0.0.1", 0, LiveMetrics(), dict)
        port = first.sockets[0].getsockname()[1]
        try:
            with pytest.raises(UsageError, match=f"ops.listen: cannot listen on 127.0.0.1:{port}"):
                await serve_ops("127.0.0.1", port, LiveMetrics(), dict)
        finally:
            first.close()
            await first.wait_closed()

    asyncio.run(clash())
