"""The ECMG over real TCP on 127.0.0.1: every exchange, every error path, many clients."""

from __future__ import annotations

import asyncio
import os

import pytest

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys, generate_cw
from cas.errors import LocalProtocolError
from cas.formats import ts
from cas.formats.simulcrypt import EcmgScsError as EE
from cas.formats.simulcrypt import EcmgScsMessage as EM
from cas.formats.simulcrypt import EcmgScsParam as EP
from cas.headend.ecmgen import cw_slots
from cas.headend.simulcrypt import CpCw
from cas.headend.simulcrypt import access_criteria as ac
from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt.ecmg import EcmgConfig, EcmgServer, sealed_ecm_builder
from cas.headend.simulcrypt.events import Event
from cas.headend.simulcrypt.scs import EcmgRefused, ScsClient, SimulcryptTimeout
from cas.messages import open_ecm

from ...unit.headend.simulcrypt.helpers import raw, u16, u32
from .conftest import frame, read_event, read_frame

SUPER = 0xDEAD0000
CRITERIA = AccessCriteria(channel_id=3001, package_ids=(2,), regions=(), maturity_rating=0)
AC = ac.encode_full(CRITERIA)

pytestmark = pytest.mark.asyncio


def _cws(cp: int, length: int = 8) -> dict[int, bytes]:
    return {cp: generate_cw(os.urandom, length), cp + 1: generate_cw(os.urandom, length)}


def _assert_ecm(keys: OperatorKeys, section: bytes, cp: int, cws: dict[int, bytes]) -> None:
    header, body = open_ecm(keys.ecm_key(0), section)
    assert header.table_id == 0x80 | (cp & 1)
    assert (body.cw_even, body.cw_odd) == cw_slots(cp, cws[cp], cws[cp + 1])
    assert body.crypto_period == cp and body.package_ids == (2,)


async def test_every_exchange_with_the_scs_client(keys: OperatorKeys) -> None:
    async with asyncio.timeout(20), EcmgServer(sealed_ecm_builder(keys)) as server:
        scs = await ScsClient.connect("127.0.0.1", server.port, channel_id=7,
                                      super_cas_id=SUPER)
        async with scs:
            status = scs.channel_status
            assert status is not None and status.ecm_channel_id == 7
            assert (status.lead_cw, status.cw_per_msg, status.section_tspkt_flag) == (1, 2, 0)
            assert status.max_comp_time_ms == 100 and status.ecm_rep_period_ms == 100
            for sid in (1, 2, 3):
                stream = await scs.setup_stream(sid, ecm_id=10 + sid, nominal_cp_duration_100ms=100)
                assert stream.ecm_id == 10 + sid and stream.access_criteria_transfer_mode == 0
            # pipelined: many CW_provisions in flight on one connection
            requests = {(sid, cp): _cws(cp, 16 if sid == 3 else 8)
                        for sid in (1, 2, 3) for cp in range(5)}
            responses = await asyncio.gather(*(
                scs.cw_provision(sid, cp, cws, access_criteria=AC)
                for (sid, cp), cws in requests.items()))
            for ((sid, cp), cws), response in zip(requests.items(), responses, strict=True):
                assert (response.ecm_stream_id, response.cp_number) == (sid, cp)
                _assert_ecm(keys, scs.section_of(response), cp, cws)
            assert await scs.test_channel() == status
            assert (await scs.test_stream(2)).ecm_id == 12
            await scs.close_stream(2)
            with pytest.raises(LocalProtocolError):      # our side knows it is closed
                await scs.test_stream(2)
            # ... and so does the ECMG
            await scs.send_raw(frame(E.StreamTest(ecm_channel_id=7, ecm_stream_id=2)))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        assert server.registry.channels == set() and server.registry.stream_count == 0
        assert server.registry.ecms_sent == 15
        assert server.registry.errors_sent == 1     # the stream_test on the closed stream


async def test_ts_packet_ecms(keys: OperatorKeys) -> None:
    config = EcmgConfig(ts_packets=True)
    async with (asyncio.timeout(10),
                EcmgServer(sealed_ecm_builder(keys), config) as server,
                await ScsClient.connect("127.0.0.1", server.port, channel_id=1,
                                        super_cas_id=SUPER) as scs):
        assert scs.ts_packets
        await scs.setup_stream(1, ecm_id=1, nominal_cp_duration_100ms=100)
        for cp in (8, 9):
            cws = _cws(cp)
            response = await scs.cw_provision(1, cp, cws, access_criteria=AC)
            assert len(response.ecm_datagram) % ts.PACKET_SIZE == 0
            assert ts.cc_of(response.ecm_datagram) == cp - 8
            _assert_ecm(keys, scs.section_of(response), cp, cws)


@pytest.mark.parametrize("version", [1, 2, 3])
async def test_each_protocol_version_is_answered_in_kind(keys: OperatorKeys,
                                                         version: int) -> None:
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(frame(E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER), version))
        answer = await read_frame(reader)
        assert answer[0] == version and answer[1:3] == u16(EM.CHANNEL_STATUS)
        writer.close()
        async with await ScsClient.connect("127.0.0.1", server.port, channel_id=2,
                                           super_cas_id=SUPER, version=version) as scs:
            await scs.setup_stream(1, ecm_id=1 if version > 1 else None,
                                   nominal_cp_duration_100ms=100)
            cws = _cws(4)
            _assert_ecm(keys, scs.section_of(
                await scs.cw_provision(1, 4, cws, access_criteria=AC)), 4, cws)


# --- error paths: the matching error, and the connection survives ---------------------------
IDS = ((EP.ECM_CHANNEL_ID, u16(1)), (EP.ECM_STREAM_ID, u16(1)))
CW = ((EP.CP_NUMBER, u16(4)), (EP.CP_CW_COMBINATION, u16(4) + bytes(8)),
      (EP.CP_CW_COMBINATION, u16(5) + bytes(8)))
ERROR_CASES: list[tuple[str, bytes, type[Event], int]] = [
    ("unknown message type", raw(2, 0x0042, (EP.ECM_CHANNEL_ID, u16(1))), E.ChannelError,
     EE.INV_MESSAGE_TYPE),
    ("bad message length", bytes.fromhex("020002000600 0e0004 0001".replace(" ", "")),
     E.ChannelError, EE.INV_MESSAGE),
    ("bad parameter length", raw(2, EM.STREAM_TEST, (EP.ECM_CHANNEL_ID, u16(1)),
                                 (EP.ECM_STREAM_ID, b"\x01")), E.ChannelError,
     EE.INV_PARAM_LENGTH),
    ("unknown parameter", raw(2, EM.STREAM_TEST, *IDS, (0x0abc, b"")), E.StreamError,
     EE.INV_PARAM_TYPE),
    ("missing parameter", raw(2, EM.CW_PROVISION, *IDS, *CW[1:]), E.StreamError,
     EE.MISSING_PARAM),
    ("out-of-range parameter", raw(2, EM.STREAM_SETUP, (EP.ECM_CHANNEL_ID, u16(1)),
                                   (EP.ECM_STREAM_ID, u16(2)), (EP.ECM_ID, u16(2)),
                                   (EP.NOMINAL_CP_DURATION, u16(0))), E.StreamError,
     EE.INV_PARAM_VALUE),
    ("bad CW length", raw(2, EM.CW_PROVISION, *IDS, (EP.CP_NUMBER, u16(4)),
                          (EP.CP_CW_COMBINATION, u16(4) + bytes(3))), E.StreamError,
     EE.INV_PARAM_VALUE),
    ("not enough CWs", raw(2, EM.CW_PROVISION, *IDS, *CW[:2]), E.StreamError,
     EE.NOT_ENOUGH_CW),
    ("no access criteria yet", raw(2, EM.CW_PROVISION, *IDS, *CW), E.StreamError,
     EE.MISSING_PARAM),
    ("malformed access criteria", raw(2, EM.CW_PROVISION, *IDS, *CW,
                                      (EP.ACCESS_CRITERIA, b"\x07")), E.StreamError,
     EE.INV_PARAM_VALUE),
    ("unknown channel", raw(2, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(9))), E.ChannelError,
     EE.INV_CHANNEL_ID),
    ("unknown stream", raw(2, EM.CW_PROVISION, (EP.ECM_CHANNEL_ID, u16(1)),
                           (EP.ECM_STREAM_ID, u16(9)), *CW), E.StreamError, EE.INV_STREAM_ID),
    ("wrong version", raw(3, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(1))), E.ChannelError,
     EE.INV_PROTO_VERSION),
    ("too long", raw(2, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(1)), (0x8000, bytes(5000))),
     E.ChannelError, EE.MESSAGE_TOO_LONG),
    ("stream id in use", raw(2, EM.STREAM_SETUP, *IDS, (EP.ECM_ID, u16(3)),
                             (EP.NOMINAL_CP_DURATION, u16(100))), E.StreamError,
     EE.STREAM_ID_IN_USE),
    ("ECM_id in use", raw(2, EM.STREAM_SETUP, (EP.ECM_CHANNEL_ID, u16(1)),
                          (EP.ECM_STREAM_ID, u16(2)), (EP.ECM_ID, u16(1)),
                          (EP.NOMINAL_CP_DURATION, u16(100))), E.StreamError,
     EE.ECM_ID_IN_USE),
    ("channel id in use", raw(2, EM.CHANNEL_SETUP, (EP.ECM_CHANNEL_ID, u16(1)),
                              (EP.SUPER_CAS_ID, u32(SUPER))), E.ChannelError,
     EE.CHANNEL_ID_IN_USE),
    ("wrong direction", raw(2, EM.ECM_RESPONSE, *IDS, (EP.CP_NUMBER, u16(1)),
                            (EP.ECM_DATAGRAM, b"\x80")), E.StreamError, EE.INV_MESSAGE),
]


async def _open_raw(port: int, *, channel: int = 1,
                    stream: int | None = 1) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(E.ChannelSetup(ecm_channel_id=channel, super_cas_id=SUPER)))
    assert isinstance(await read_event(reader), E.ChannelStatus)
    if stream is not None:
        writer.write(frame(E.StreamSetup(ecm_channel_id=channel, ecm_stream_id=stream,
                                         ecm_id=stream, nominal_cp_duration_100ms=100)))
        assert isinstance(await read_event(reader), E.StreamStatus)
    return reader, writer


async def _still_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       channel: int = 1) -> None:
    writer.write(frame(E.ChannelTest(ecm_channel_id=channel)))
    writer.write(frame(E.CwProvision(
        ecm_channel_id=channel, ecm_stream_id=1, cp_number=4, access_criteria=AC,
        cp_cw_combinations=(CpCw(cp_number=4, cw=bytes(8)), CpCw(cp_number=5, cw=bytes(8))))))
    assert isinstance(await read_event(reader), E.ChannelStatus)
    assert isinstance(await read_event(reader), E.EcmResponse)


@pytest.mark.parametrize(("data", "answer", "status"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
async def test_error_paths(keys: OperatorKeys, data: bytes, answer: type[Event],
                           status: int) -> None:
    config = EcmgConfig(max_message_length=4096)
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys), config) as server:
        reader, writer = await _open_raw(server.port)
        writer.write(data)
        got = await read_event(reader)
        assert isinstance(got, answer), got
        assert got.error_status == (status,)  # type: ignore[attr-defined]
        await _still_alive(reader, writer)
        writer.close()


async def test_ecmg_wide_refusals_between_connections(keys: OperatorKeys) -> None:
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys)) as server:
        first_r, first_w = await _open_raw(server.port, channel=1, stream=1)
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        for event, status in (
                (E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER), EE.CHANNEL_ID_IN_USE),
                (E.ChannelSetup(ecm_channel_id=2, super_cas_id=0x12340000), EE.INV_SUPER_CAS_ID)):
            w.write(frame(event))
            got = await read_event(r)
            assert isinstance(got, E.ChannelError) and got.error_status == (status,)
        w.write(frame(E.ChannelSetup(ecm_channel_id=2, super_cas_id=SUPER)))
        assert isinstance(await read_event(r), E.ChannelStatus)
        w.write(frame(E.StreamSetup(ecm_channel_id=2, ecm_stream_id=1, ecm_id=1,
                                    nominal_cp_duration_100ms=100)))
        got = await read_event(r)
        assert isinstance(got, E.StreamError) and got.error_status == (EE.ECM_ID_IN_USE,)
        # the first connection goes away: its ids are free again
        first_w.close()
        await first_w.wait_closed()
        assert await first_r.read() == b""
        for _ in range(50):
            if 1 not in server.registry.channels:
                break
            await asyncio.sleep(0.01)
        w.write(frame(E.StreamSetup(ecm_channel_id=2, ecm_stream_id=1, ecm_id=1,
                                    nominal_cp_duration_100ms=100)))
        assert isinstance(await read_event(r), E.StreamStatus)
        w.close()


async def test_channel_close_ends_the_connection(keys: OperatorKeys) -> None:
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys)) as server:
        reader, writer = await _open_raw(server.port)
        writer.write(frame(E.ChannelClose(ecm_channel_id=1)))
        assert await reader.read() == b""          # no answer, then the ECMG closes
        writer.close()


async def test_many_isolated_clients_at_once(keys: OperatorKeys) -> None:
    async with asyncio.timeout(30), EcmgServer(sealed_ecm_builder(keys)) as server:
        async def one_client(channel: int) -> int:
            async with await ScsClient.connect("127.0.0.1", server.port, channel_id=channel,
                                               super_cas_id=SUPER) as scs:
                for sid in range(1, 6):
                    await scs.setup_stream(sid, ecm_id=channel * 10 + sid,
                                           nominal_cp_duration_100ms=10)
                done = 0
                for cp in range(4):
                    batch = {sid: _cws(cp) for sid in range(1, 6)}
                    responses = await asyncio.gather(*(
                        scs.cw_provision(sid, cp, cws, access_criteria=AC)
                        for sid, cws in batch.items()))
                    for (sid, cws), response in zip(batch.items(), responses, strict=True):
                        assert response.ecm_stream_id == sid
                        _assert_ecm(keys, response.ecm_datagram, cp, cws)
                        done += 1
                return done

        async def vandal() -> None:
            # garbage, a half frame, then a reset: must not disturb anybody else
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(os.urandom(3000) + b"\x02\x00\x01\xff")
            await asyncio.sleep(0.05)
            writer.transport.abort()

        results = await asyncio.gather(*(one_client(c) for c in range(1, 21)), vandal())
        assert results[:20] == [20] * 20
        assert server.registry.ecms_sent == 400


async def test_idle_connections_are_closed(keys: OperatorKeys) -> None:
    config = EcmgConfig(idle_timeout_s=0.2)
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys), config) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await reader.read() == b""
        writer.close()


async def test_the_ecmg_has_an_idle_timeout_by_default() -> None:
    """Issue 12, item 7: idle half-open connections were held forever."""
    assert EcmgConfig().idle_timeout_s == 60.0


async def test_a_silent_channel_is_probed_then_closed(keys: OperatorKeys) -> None:
    """An open channel that stops talking gets a channel_test; no answer: closed."""
    config = EcmgConfig(idle_timeout_s=0.3)
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys), config) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(frame(E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER)))
        assert isinstance(await read_event(reader), E.ChannelStatus)
        probe = await read_event(reader)
        assert isinstance(probe, E.ChannelTest) and probe.ecm_channel_id == 1
        assert await reader.read() == b""           # no channel_status back: closed
        writer.close()
        await asyncio.sleep(0.05)
        assert server.registry.channels == set()    # and its channel id is free again


async def test_a_quiet_scs_that_answers_the_probe_keeps_its_connection(
        keys: OperatorKeys) -> None:
    """A live SCS with a long crypto-period says nothing for a while: it answers the
    ECMG's channel_test (our SCS client does) and keeps its channel."""
    config = EcmgConfig(idle_timeout_s=0.2)
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys), config) as server:
        scs = await ScsClient.connect("127.0.0.1", server.port, channel_id=3,
                                      super_cas_id=SUPER)
        async with scs:
            await scs.setup_stream(1, ecm_id=1, nominal_cp_duration_100ms=100)
            await asyncio.sleep(1.0)                # five idle timeouts
            cws = _cws(4)
            response = await scs.cw_provision(1, 4, cws, access_criteria=AC)
            _assert_ecm(keys, scs.section_of(response), 4, cws)
        assert server.connections == 1


async def test_scs_client_answers_the_ecmgs_tests() -> None:
    """channel_test / stream_test from the ECMG side: the SCS echoes its last status."""
    got: list[Event] = []

    async def fake_ecmg(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        setup = await read_event(reader)
        assert isinstance(setup, E.ChannelSetup)
        writer.write(frame(E.ChannelStatus(
            ecm_channel_id=1, section_tspkt_flag=0, delay_start_ms=0, delay_stop_ms=0,
            ecm_rep_period_ms=100, max_streams=0, min_cp_duration_100ms=1, lead_cw=1,
            cw_per_msg=2, max_comp_time_ms=100)))
        assert isinstance(await read_event(reader), E.StreamSetup)
        writer.write(frame(E.StreamStatus(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                                          access_criteria_transfer_mode=0)))
        writer.write(frame(E.ChannelTest(ecm_channel_id=1)))
        writer.write(frame(E.StreamTest(ecm_channel_id=1, ecm_stream_id=1)))
        got.append(await read_event(reader))
        got.append(await read_event(reader))
        writer.close()

    async with asyncio.timeout(10):
        server = await asyncio.start_server(fake_ecmg, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        scs = await ScsClient.connect("127.0.0.1", port, channel_id=1, super_cas_id=SUPER)
        await scs.setup_stream(1, ecm_id=1, nominal_cp_duration_100ms=100)
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        await scs.abort()
        server.close()
        await server.wait_closed()
    assert [type(e) for e in got] == [E.ChannelStatus, E.StreamStatus]


async def test_scs_client_reports_refusal_and_silence(keys: OperatorKeys) -> None:
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys)) as server:
        with pytest.raises(EcmgRefused) as info:
            await ScsClient.connect("127.0.0.1", server.port, channel_id=1,
                                    super_cas_id=0x00010000)
        assert info.value.error_statuses == (EE.INV_SUPER_CAS_ID,)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with asyncio.timeout(10):
        quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
        with pytest.raises(SimulcryptTimeout):
            await ScsClient.connect("127.0.0.1", quiet.sockets[0].getsockname()[1],
                                    channel_id=1, super_cas_id=SUPER, timeout_s=0.2)
        quiet.close()


async def test_raw_frames_split_anywhere(keys: OperatorKeys) -> None:
    """TCP may cut frames anywhere: byte-by-byte writes still give whole answers."""
    async with asyncio.timeout(10), EcmgServer(sealed_ecm_builder(keys)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        data = frame(E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER)) + frame(
            E.StreamSetup(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                          nominal_cp_duration_100ms=100))
        for byte in data:
            writer.write(bytes((byte,)))
            await writer.drain()
        assert isinstance(await read_event(reader), E.ChannelStatus)
        assert isinstance(await read_event(reader), E.StreamStatus)
        await _still_alive(reader, writer)
        writer.close()


async def test_an_overloaded_ecmg_sheds_what_it_cannot_answer_in_time(
        keys: OperatorKeys) -> None:
    """Issue 12, item 20: a burst the ECMG cannot compute within max_comp_time gets
    stream_error out_of_compute (0x000D) at once for what would come late; the ECMs it does
    send are on time, and it serves again as soon as it has caught up."""
    import time

    sealed = sealed_ecm_builder(keys)

    def slow_builder(request: object) -> bytes:
        time.sleep(0.04)                       # a compute of 40 ms, holding the event loop
        return sealed(request)  # type: ignore[arg-type]

    config = EcmgConfig(max_comp_time_ms=60, shed_after_ms=30)
    async with asyncio.timeout(20), EcmgServer(slow_builder, config) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(frame(E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER)))
        writer.write(frame(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                                         nominal_cp_duration_100ms=10)))
        assert isinstance(await read_event(reader), E.ChannelStatus)
        assert isinstance(await read_event(reader), E.StreamStatus)
        burst = b"".join(frame(E.CwProvision(
            ecm_channel_id=1, ecm_stream_id=1, cp_number=cp,
            cp_cw_combinations=tuple(CpCw(cp_number=k, cw=v) for k, v in _cws(cp).items()),
            access_criteria=AC)) for cp in range(6))
        writer.write(burst)                    # six at once: one fits in 60 ms
        answers = [await read_event(reader) for _ in range(6)]
        assert isinstance(answers[0], E.EcmResponse) and answers[0].cp_number == 0
        for shed in answers[1:]:
            assert isinstance(shed, E.StreamError), shed
            assert shed.error_status == (EE.OUT_OF_COMPUTE,)
        cws = _cws(6)
        writer.write(frame(E.CwProvision(
            ecm_channel_id=1, ecm_stream_id=1, cp_number=6,
            cp_cw_combinations=tuple(CpCw(cp_number=k, cw=v) for k, v in cws.items()))))
        served = await read_event(reader)
        assert isinstance(served, E.EcmResponse)
        _assert_ecm(keys, served.ecm_datagram, 6, cws)
        writer.close()
    assert server.registry.shed == 5 and server.registry.ecms_sent == 2
