"""The asyncio edge both servers share (cas.headend.simulcrypt.endpoint), on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest

from cas.errors import LocalProtocolError
from cas.headend.simulcrypt.ecmg import EcmgServer, EcmRequest
from cas.headend.simulcrypt.mux import MemorySink, MuxConfig, MuxServer

pytestmark = pytest.mark.asyncio


def _no_ecm(request: EcmRequest) -> bytes:
    raise AssertionError("no CW_provision in these tests")


async def test_a_server_has_a_port_only_while_it_listens() -> None:
    server = MuxServer(MemorySink(), MuxConfig(udp=False))
    with pytest.raises(LocalProtocolError, match="the mux is not listening"):
        _ = server.port
    async with server:
        assert server.port > 0
    with pytest.raises(LocalProtocolError, match="the mux is not listening") as info:
        _ = server.port
    assert info.value.error_status == 0x7000                    # unknown_error


async def test_each_server_logs_what_it_listens_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cas.simulcrypt")
    async with EcmgServer(_no_ecm) as ecmg, MuxServer(MemorySink()) as mux, \
            MuxServer(MemorySink(), MuxConfig(udp=False)) as tcp_only:
        expected = {f"ECMG listening on 127.0.0.1:{ecmg.port}",
                    f"mux listening on 127.0.0.1:{mux.port} (TCP + UDP)",
                    f"mux listening on 127.0.0.1:{tcp_only.port} (TCP)"}
    assert expected <= {r.getMessage() for r in caplog.records}
