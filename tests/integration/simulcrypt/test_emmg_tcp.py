"""EMMG and mux over real TCP/UDP on 127.0.0.1: data, reconnection, error paths."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from cas.errors import FormatError, ProtocolError
from cas.formats import ts
from cas.formats.simulcrypt import EMMG_MUX
from cas.formats.simulcrypt import EmmgMuxError as ME
from cas.formats.simulcrypt import EmmgMuxMessage as MM
from cas.formats.simulcrypt import EmmgMuxParam as MP
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.emmg import (
    EmmgClient,
    EmmgConfig,
    MuxRefused,
    carousel,
    iter_datagrams_file,
)
from cas.headend.simulcrypt.events import Event
from cas.headend.simulcrypt.mux import MemorySink, MuxConfig, MuxServer, TsFileSink
from cas.headend.simulcrypt.outbox import Outbox

from ...unit.headend.simulcrypt.helpers import raw, u16, u32
from .conftest import frame, read_event

pytestmark = pytest.mark.asyncio
CLIENT = 0xDEAD0001


def section(i: int, size: int = 24) -> bytes:
    body = i.to_bytes(4, "big") + bytes(size - 4)
    return bytes((0x82, 0x70 | (len(body) >> 8), len(body) & 0xFF)) + body


def numbers(datagrams: list[bytes]) -> list[int]:
    return [int.from_bytes(d[3:7], "big") for d in datagrams]


def _config(port: int, **changes: object) -> EmmgConfig:
    settings: dict[str, object] = {"host": "127.0.0.1", "port": port, "client_id": CLIENT,
                                   "bandwidth_kbps": 5000, "reconnect_delay_s": 0.05,
                                   "max_reconnect_delay_s": 0.2, "timeout_s": 2.0}
    settings.update(changes)
    return EmmgConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("udp", [False, True])
async def test_emms_reach_the_mux_in_order(udp: bool) -> None:
    sink = MemorySink()
    async with asyncio.timeout(20), MuxServer(sink) as mux:
        outbox = Outbox(section(i) for i in range(1500))
        stats = await EmmgClient(_config(mux.port, udp=udp), outbox).run()
        await asyncio.sleep(0.05)
    assert numbers(sink.datagrams) == list(range(1500))
    assert stats.datagrams_sent == 1500 and stats.connections == 1 and stats.resent == 0
    assert stats.allocated_kbps == 2000          # the mux's cap, below the 5000 asked
    assert outbox.done and outbox.acked == 1500
    if udp:
        assert mux.registry.udp_datagrams == 1500
    else:
        assert stats.confirmed == 1500


async def test_reconnection_loses_and_duplicates_nothing() -> None:
    """The mux goes away three times mid-run; every EMM is written exactly once, in order."""
    sink = MemorySink()
    async with asyncio.timeout(60):
        mux = await MuxServer(sink).start()
        port = mux.port
        outbox = Outbox(section(i) for i in range(2500))
        task = asyncio.create_task(EmmgClient(_config(port, bandwidth_kbps=400), outbox).run())
        for _ in range(3):
            written = len(sink.datagrams)
            while len(sink.datagrams) < written + 200 and not task.done():
                await asyncio.sleep(0.01)
            await mux.close()                      # drops its connections
            await asyncio.sleep(0.15)
            mux = await MuxServer(sink, port=port).start()
        stats = await task
        await mux.close()
    assert numbers(sink.datagrams) == list(range(2500))
    assert stats.connections == 4
    assert stats.resent > 0                        # unconfirmed EMMs did go again...
    assert outbox.acked == 2500                    # ...and were written once


async def test_restarted_emmg_resumes_from_its_state_file(tmp_path: Path) -> None:
    state = tmp_path / "emmg-state.json"
    sink = MemorySink()
    async with asyncio.timeout(30), MuxServer(sink) as mux:
        first = EmmgClient(_config(mux.port, bandwidth_kbps=300),
                           Outbox((section(i) for i in range(1200)), state_path=state))
        task = asyncio.create_task(first.run())
        while len(sink.datagrams) < 300:
            await asyncio.sleep(0.01)
        first.stop()                               # the process "dies" mid-run
        await task
        second_outbox = Outbox((section(i) for i in range(1200)), state_path=state)
        assert second_outbox.acked == len(sink.datagrams)
        await EmmgClient(_config(mux.port), second_outbox).run()
        await asyncio.sleep(0.05)
    assert numbers(sink.datagrams) == list(range(1200))


async def test_ts_file_output(tmp_path: Path) -> None:
    out = tmp_path / "emm.ts"
    sink = TsFileSink.open(out, pid=0x0C01)
    async with asyncio.timeout(20), MuxServer(sink) as mux:
        await EmmgClient(_config(mux.port), Outbox(section(i, 60) for i in range(300))).run()
        await asyncio.sleep(0.05)
    sink.close()
    data = out.read_bytes()
    assert len(data) % ts.PACKET_SIZE == 0
    reassembler = ts.SectionReassembler(0x0C01, check_crc=False)
    sections = reassembler.feed_many(data[i:i + 188] for i in range(0, len(data), 188))
    assert numbers(sections) == list(range(300))
    assert not reassembler.counts                # continuity counters and pointers all fine
    # the file reads back as an EMMG source too
    assert numbers(list(iter_datagrams_file(out))) == list(range(300))
    assert len(list(iter_datagrams_file(out, section_tspkt_flag=1))) == len(data) // 188


async def test_ts_packet_datagrams(tmp_path: Path) -> None:
    source = tmp_path / "in.ts"
    packetizer = ts.Packetizer(0x0C02)
    source.write_bytes(b"".join(b"".join(packetizer.packetize(section(i))) for i in range(50)))
    sink = MemorySink()
    async with asyncio.timeout(20), MuxServer(sink) as mux:
        config = _config(mux.port, section_tspkt_flag=1)
        await EmmgClient(config, Outbox(carousel(source, section_tspkt_flag=1, rounds=2))).run()
        await asyncio.sleep(0.05)
    assert len(sink.datagrams) == 100
    assert all(len(d) == 188 and d[0] == 0x47 for d in sink.datagrams)


async def test_version_1_emmg() -> None:
    sink = MemorySink()
    async with asyncio.timeout(20), MuxServer(sink) as mux:
        await EmmgClient(_config(mux.port, version=1), Outbox(section(i) for i in range(40))).run()
        await asyncio.sleep(0.05)
    assert numbers(sink.datagrams) == list(range(40))


async def test_refused_client() -> None:
    async with asyncio.timeout(10), MuxServer(MemorySink(),
                                              MuxConfig(client_ids=frozenset({1}))) as mux:
        with pytest.raises(MuxRefused) as info:
            await EmmgClient(_config(mux.port), Outbox([section(0)])).run()
    assert info.value.error_statuses == (ME.INV_CLIENT_ID,)


async def test_unreachable_mux_gives_up_when_told() -> None:
    async with asyncio.timeout(10):
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = EmmgClient(_config(port, max_connect_attempts=3), Outbox([section(0)]))
        with pytest.raises(Exception, match="unreachable after 3 attempts"):
            await client.run()


# --- the mux's error paths over TCP -----------------------------------------------------------
IDS = ((MP.CLIENT_ID, u32(CLIENT)), (MP.DATA_CHANNEL_ID, u16(1)), (MP.DATA_STREAM_ID, u16(1)))
MUX_ERRORS: list[tuple[str, bytes, type[Event], int]] = [
    ("unknown message type", raw(2, 0x0020, *IDS[:2]), M.ChannelError, ME.INV_MESSAGE_TYPE),
    # client_id TLV says 6 bytes, the message has 2 left
    ("bad length", bytes.fromhex("0200110006" "00010006" "0000"), M.ChannelError,
     ME.INV_MESSAGE),
    ("inconsistent parameter length", raw(2, MM.STREAM_TEST, *IDS[:2],
                                          (MP.DATA_STREAM_ID, b"\x01")),
     M.ChannelError, ME.INV_PARAM_LENGTH),
    ("missing parameter", raw(2, MM.DATA_PROVISION, *IDS, (MP.DATA_ID, u16(9))), M.StreamError,
     ME.MISSING_PARAM),
    ("out-of-range parameter", raw(2, MM.STREAM_SETUP, *IDS[:2], (MP.DATA_STREAM_ID, u16(2)),
                                   (MP.DATA_ID, u16(2)), (MP.DATA_TYPE, b"\x09")),
     M.StreamError, ME.INV_PARAM_VALUE),
    ("bad datagram", raw(2, MM.DATA_PROVISION, *IDS, (MP.DATA_ID, u16(9)),
                         (MP.DATAGRAM, b"\x82\x70\x09\x00")), M.StreamError, ME.INV_PARAM_VALUE),
    ("unknown channel", raw(2, MM.CHANNEL_TEST, IDS[0], (MP.DATA_CHANNEL_ID, u16(5))),
     M.ChannelError, ME.INV_CHANNEL_ID),
    ("unknown stream", raw(2, MM.STREAM_TEST, *IDS[:2], (MP.DATA_STREAM_ID, u16(5))),
     M.StreamError, ME.INV_STREAM_ID),
    ("wrong client_id", raw(2, MM.STREAM_TEST, (MP.CLIENT_ID, u32(7)), *IDS[1:]),
     M.StreamError, ME.INV_CLIENT_ID),
    ("wrong version", raw(3, MM.STREAM_TEST, *IDS), M.ChannelError, ME.INV_PROTO_VERSION),
]


@pytest.mark.parametrize(("data", "answer", "status"), [c[1:] for c in MUX_ERRORS],
                         ids=[c[0] for c in MUX_ERRORS])
async def test_mux_error_paths(data: bytes, answer: type[Event], status: int) -> None:
    sink = MemorySink()
    async with asyncio.timeout(10), MuxServer(sink) as mux:
        reader, writer = await asyncio.open_connection("127.0.0.1", mux.port)
        writer.write(frame(M.ChannelSetup(client_id=CLIENT, data_channel_id=1,
                                          section_tspkt_flag=0)))
        writer.write(frame(M.StreamSetup(client_id=CLIENT, data_channel_id=1, data_stream_id=1,
                                         data_id=9, data_type=0)))
        assert isinstance(await read_event(reader, EMMG_MUX), M.ChannelStatus)
        assert isinstance(await read_event(reader, EMMG_MUX), M.StreamStatus)
        writer.write(data)
        got = await read_event(reader, EMMG_MUX)
        assert isinstance(got, answer), got
        assert got.error_status == (status,)  # type: ignore[attr-defined]
        # the connection survives: data still flows
        writer.write(frame(M.DataProvision(client_id=CLIENT, data_id=9,
                                           datagrams=(section(1),))))
        writer.write(frame(M.StreamTest(client_id=CLIENT, data_channel_id=1, data_stream_id=1)))
        assert isinstance(await read_event(reader, EMMG_MUX), M.StreamStatus)
        assert sink.datagrams == [section(1)]
        writer.close()


async def test_truncated_frame_then_end_of_stream_closes() -> None:
    async with asyncio.timeout(10), MuxServer(MemorySink()) as mux:
        reader, writer = await asyncio.open_connection("127.0.0.1", mux.port)
        writer.write(bytes.fromhex("0200110040") + bytes(10))     # announces 64, sends 10
        writer.write_eof()
        assert await reader.read() == b""          # the mux closes; nothing hangs
        writer.close()


# --- version 1 with peers that always send data_id (issue 12, item 19) -------------------------
async def test_mux_accepts_a_data_id_in_version_1() -> None:
    """TSDuck sends data_id in every version: our mux takes it in V1 and echoes it."""
    sink = MemorySink()
    async with asyncio.timeout(10), MuxServer(sink) as mux:
        reader, writer = await asyncio.open_connection("127.0.0.1", mux.port)
        writer.write(frame(M.ChannelSetup(client_id=CLIENT, data_channel_id=1,
                                          section_tspkt_flag=0), 1))
        assert isinstance(await read_event(reader, EMMG_MUX), M.ChannelStatus)
        writer.write(raw(1, MM.STREAM_SETUP, *IDS, (MP.DATA_ID, u16(7)), (MP.DATA_TYPE, b"\x00")))
        status = await read_event(reader, EMMG_MUX)
        assert isinstance(status, M.StreamStatus), status
        assert status.data_id == 7
        writer.write(raw(1, MM.DATA_PROVISION, *IDS, (MP.DATA_ID, u16(7)),
                         (MP.DATAGRAM, section(1))))
        writer.write(raw(1, MM.STREAM_TEST, *IDS))
        assert isinstance(await read_event(reader, EMMG_MUX), M.StreamStatus)
        assert sink.by_stream == {(CLIENT, 7): [section(1)]}
        writer.close()


@pytest.mark.parametrize("v1_data_id", [False, True])
async def test_emmg_sends_data_id_in_version_1_when_told(v1_data_id: bool) -> None:
    sink = MemorySink()
    async with asyncio.timeout(20), MuxServer(sink) as mux:
        outbox = Outbox(section(i) for i in range(50))
        config = _config(mux.port, version=1, data_id=7, v1_data_id=v1_data_id)
        stats = await EmmgClient(config, outbox).run()
    assert stats.confirmed == 50 and outbox.done
    assert list(sink.by_stream) == [(CLIENT, 7 if v1_data_id else None)]
    assert numbers(sink.by_stream[(CLIENT, 7 if v1_data_id else None)]) == list(range(50))


async def test_emmg_v1_data_id_satisfies_a_mux_that_insists_on_it() -> None:
    """A mux that wants data_id in V1 (as TSDuck's does) refuses a stream_setup without it
    with missing_param; with ``v1_data_id`` our EMMG gets through."""
    seen: list[int | None] = []

    async def strict_mux(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        setup = await read_event(reader, EMMG_MUX)
        assert isinstance(setup, M.ChannelSetup)
        writer.write(frame(M.ChannelStatus(client_id=CLIENT, data_channel_id=1,
                                           section_tspkt_flag=0), 1))
        stream = await read_event(reader, EMMG_MUX)
        assert isinstance(stream, M.StreamSetup)
        seen.append(stream.data_id)
        if stream.data_id is None:
            writer.write(frame(M.StreamError(client_id=CLIENT, data_channel_id=1,
                                             data_stream_id=1, error_status=(ME.MISSING_PARAM,)),
                               1))
        else:
            writer.write(frame(M.StreamStatus(client_id=CLIENT, data_channel_id=1,
                                              data_stream_id=1, data_id=stream.data_id,
                                              data_type=0), 1))
        await reader.read()
        writer.close()

    async with asyncio.timeout(10):
        server = await asyncio.start_server(strict_mux, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(MuxRefused) as info:
            await EmmgClient(_config(port, version=1), Outbox([section(0)])).run()
        assert info.value.error_statuses == (ME.MISSING_PARAM,)
        client = EmmgClient(_config(port, version=1, v1_data_id=True, timeout_s=0.5,
                                    max_connect_attempts=1), Outbox([section(0)]))
        with pytest.raises(Exception, match="unreachable"):
            await client.run()         # got past stream_setup; this mux allocates nothing
        server.close()
        await server.wait_closed()
    assert seen == [None, 1]


# --- idle connections (issue 12, item 7) ---------------------------------------------------------
async def test_the_mux_has_an_idle_timeout_by_default() -> None:
    assert MuxConfig().idle_timeout_s == 60.0


async def test_mux_closes_connections_that_never_set_up() -> None:
    async with asyncio.timeout(10), MuxServer(MemorySink(), MuxConfig(idle_timeout_s=0.2)) as mux:
        reader, writer = await asyncio.open_connection("127.0.0.1", mux.port)
        assert await reader.read() == b""
        writer.close()


async def test_mux_probes_a_silent_channel_then_closes_it() -> None:
    async with asyncio.timeout(10), MuxServer(MemorySink(), MuxConfig(idle_timeout_s=0.3)) as mux:
        reader, writer = await asyncio.open_connection("127.0.0.1", mux.port)
        writer.write(frame(M.ChannelSetup(client_id=CLIENT, data_channel_id=1,
                                          section_tspkt_flag=0)))
        assert isinstance(await read_event(reader, EMMG_MUX), M.ChannelStatus)
        probe = await read_event(reader, EMMG_MUX)
        assert isinstance(probe, M.ChannelTest) and probe.client_id == CLIENT
        assert await reader.read() == b""
        writer.close()
        await asyncio.sleep(0.05)
        assert mux.registry.channels == set()


async def test_an_emmg_that_answers_the_probe_keeps_its_connection() -> None:
    """Our EMMG answers the mux's channel_test, so a slow EMMG is not cut off."""
    sink = MemorySink()
    async with asyncio.timeout(20), MuxServer(sink, MuxConfig(idle_timeout_s=0.15)) as mux:
        outbox = Outbox(section(i) for i in range(12))
        # 12 sections of 24 bytes at 1 kbit/s: about 2 s, far longer than the idle timeout
        stats = await EmmgClient(_config(mux.port, bandwidth_kbps=1, confirm_every=1,
                                         confirm_interval_s=5.0, timeout_s=5.0),
                                 outbox).run()
    assert numbers(sink.datagrams) == list(range(12))
    assert stats.connections == 1


# --- UDP: the last datagrams and the close (issue 12, item 18) ------------------------------------
class _SlowUdpPath(asyncio.DatagramProtocol):
    """A UDP relay that delivers every datagram ``delay_s`` late: a UDP path slower than the
    TCP connection, so the EMMG's last datagrams arrive after a TCP message sent later."""

    def __init__(self, target: tuple[str, int], delay_s: float) -> None:
        self.target = target
        self.delay_s = delay_s
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        assert self.transport is not None
        asyncio.get_running_loop().call_later(self.delay_s, self.transport.sendto, data,
                                              self.target)


async def _slow_udp_path(mux_port: int, delay_s: float) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _SlowUdpPath(("127.0.0.1", mux_port), delay_s), local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


async def test_emmg_waits_for_its_udp_datagrams_before_closing() -> None:
    """Against a mux that drops UDP data once the stream is closed (as TSDuck's datainject
    does), the EMMG's end wait lets all 100 EMMs in; none is reported as confirmed."""
    sink = MemorySink()
    async with asyncio.timeout(20), MuxServer(sink, MuxConfig(udp_close_linger_s=0)) as mux:
        relay, relay_port = await _slow_udp_path(mux.port, 0.1)
        try:
            outbox = Outbox(section(i) for i in range(100))
            stats = await EmmgClient(_config(mux.port, udp=True, udp_port=relay_port),
                                     outbox).run()
        finally:
            relay.close()
    assert numbers(sink.datagrams) == list(range(100))
    assert mux.registry.udp_dropped == 0 and mux.registry.stream_closes == 1
    assert stats.udp_unconfirmed == 100 and stats.confirmed == 0 and stats.udp_errors == 0


async def test_mux_keeps_udp_data_arriving_around_the_close() -> None:
    """Without any end wait on the EMMG side, our mux still writes the datagrams that
    arrive just after the stream_close_request: 100 of 100."""
    sink = MemorySink()
    async with asyncio.timeout(20), MuxServer(sink) as mux:
        relay, relay_port = await _slow_udp_path(mux.port, 0.1)
        try:
            outbox = Outbox(section(i) for i in range(100))
            await EmmgClient(_config(mux.port, udp=True, udp_port=relay_port,
                                     udp_end_wait_s=0), outbox).run()
            await asyncio.sleep(0.3)
        finally:
            relay.close()
    assert numbers(sink.datagrams) == list(range(100))
    assert mux.registry.udp_after_close > 0 and mux.registry.udp_dropped == 0


async def test_mux_drops_udp_data_for_a_stream_closed_long_ago() -> None:
    sink = MemorySink()
    async with asyncio.timeout(10), MuxServer(sink, MuxConfig(udp_close_linger_s=0.1)) as mux:
        await EmmgClient(_config(mux.port, udp=True, udp_end_wait_s=0),
                         Outbox([section(0)])).run()
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                     remote_addr=("127.0.0.1", mux.port))
        udp.sendto(frame(M.DataProvision(client_id=CLIENT, data_id=1, datagrams=(section(1),))))
        await asyncio.sleep(0.2)
        udp.close()
    assert sink.datagrams == [section(0)] and mux.registry.udp_dropped == 1


# --- the EMMG's failures are reported and leave the mux clean (issue 12, item 14) ------------------
async def test_a_source_error_closes_stream_and_channel(tmp_path: Path) -> None:
    source = tmp_path / "emm.sections"
    source.write_bytes(b"".join(section(i) for i in range(5)))
    async with asyncio.timeout(10), MuxServer(MemorySink()) as mux:
        outbox = Outbox(carousel(source, section_tspkt_flag=1))
        with pytest.raises(FormatError, match="TS packets requested"):
            await EmmgClient(_config(mux.port, section_tspkt_flag=1), outbox).run()
        await asyncio.sleep(0.05)
    assert mux.registry.stream_closes == 1 and mux.registry.channel_closes == 1


async def test_the_emmg_gives_up_on_a_missing_mux_by_default_and_says_why(
        caplog: pytest.LogCaptureFixture) -> None:
    assert EmmgConfig(host="127.0.0.1", port=1).max_connect_attempts == 10
    async with asyncio.timeout(10):
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        caplog.set_level(logging.WARNING, logger="cas.simulcrypt.emmg")
        client = EmmgClient(_config(port, max_connect_attempts=3), Outbox([section(0)]))
        with pytest.raises(ProtocolError) as info:
            await client.run()
    assert str(info.value) == f"mux 127.0.0.1:{port} unreachable after 3 attempts: " \
        "connection refused"
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(attempts) == 2
    assert "connection refused (attempt 1 of 3); retrying" in attempts[0]
    assert "(attempt 2 of 3)" in attempts[1]
