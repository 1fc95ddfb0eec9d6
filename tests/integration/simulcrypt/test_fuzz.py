"""Fuzzing the live ECMG and mux with random and mutated messages over TCP.

Never a crash: every answer is a well-formed message of the interface, and the server keeps
serving new connections.  Never a hung connection: after random bytes and our end of stream
the server closes within the deadline; after mutated (frame-aligned) messages a probe is
still answered.  Each example is bounded by socket timeouts.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas.errors import CasError
from cas.formats.simulcrypt import (
    ECMG_SCS,
    EMMG_MUX,
    InterfaceSpec,
    Message,
    Parameter,
    build_message,
    parse_message,
)
from cas.headend.simulcrypt import CpCw
from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.events import Event

from .conftest import TIMEOUT_S, FrameReader, ThreadedServer, decode, frame

SUPER = 0xDEAD0000
CLIENT = 0xDEAD0001
PROBE_CHANNEL = 0x7777

ECMG_SEEDS = [frame(e) for e in (
    E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER),
    E.StreamSetup(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1, nominal_cp_duration_100ms=100),
    E.CwProvision(ecm_channel_id=1, ecm_stream_id=1, cp_number=3, access_criteria=b"\x02\x0b\xb9",
                  cp_cw_combinations=(CpCw(cp_number=3, cw=bytes(8)),
                                      CpCw(cp_number=4, cw=bytes(8)))),
    E.CwProvision(ecm_channel_id=1, ecm_stream_id=1, cp_number=3,
                  access_criteria=b"\x01\x0b\xb9\x00\x01\x00\x02\x00",
                  cp_cw_combinations=(CpCw(cp_number=3, cw=bytes(16)),
                                      CpCw(cp_number=4, cw=bytes(16)))),
    E.ChannelTest(ecm_channel_id=1),
    E.StreamTest(ecm_channel_id=1, ecm_stream_id=1),
    E.StreamCloseRequest(ecm_channel_id=1, ecm_stream_id=1),
    E.ChannelError(ecm_channel_id=1, error_status=(0x7000,)),
)]
MUX_SEEDS = [frame(e) for e in (
    M.ChannelSetup(client_id=CLIENT, data_channel_id=1, section_tspkt_flag=0),
    M.StreamSetup(client_id=CLIENT, data_channel_id=1, data_stream_id=1, data_id=1, data_type=0),
    M.StreamBwRequest(client_id=CLIENT, data_channel_id=1, data_stream_id=1, bandwidth_kbps=50),
    M.DataProvision(client_id=CLIENT, data_channel_id=1, data_stream_id=1, data_id=1,
                    datagrams=(b"\x82\x70\x02\x00\x01",)),
    M.DataProvision(client_id=CLIENT, data_id=1, datagrams=(b"\x82\x70\x00", b"\x83\x70\x00")),
    M.StreamTest(client_id=CLIENT, data_channel_id=1, data_stream_id=1),
    M.ChannelTest(client_id=CLIENT, data_channel_id=1),
    M.StreamCloseRequest(client_id=CLIENT, data_channel_id=1, data_stream_id=1),
)]


def _probe(spec: InterfaceSpec) -> bytes:
    if spec is ECMG_SCS:
        return frame(E.ChannelTest(ecm_channel_id=PROBE_CHANNEL))
    return frame(M.ChannelTest(client_id=CLIENT, data_channel_id=PROBE_CHANNEL))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed message, mutated in its body, kept frame-aligned (the length is recomputed)."""
    message = parse_message(draw(st.sampled_from(seeds)))
    params = list(message.parameters)
    version, mtype = message.protocol_version, message.message_type
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 6))
        if choice == 0 and params:                       # drop a parameter
            params.pop(draw(st.integers(0, len(params) - 1)))
        elif choice == 1 and params:                     # repeat one
            params.append(params[draw(st.integers(0, len(params) - 1))])
        elif choice == 2 and params:                     # corrupt a value
            i = draw(st.integers(0, len(params) - 1))
            params[i] = Parameter(type=params[i].type, value=draw(st.binary(max_size=24)))
        elif choice == 3:                                # a stranger parameter
            params.insert(draw(st.integers(0, len(params))), Parameter(
                type=draw(st.integers(0, 0xFFFF)), value=draw(st.binary(max_size=8))))
        elif choice == 4:
            version = draw(st.integers(0, 6))
        elif choice == 5:
            mtype = draw(st.one_of(st.integers(0, 0xFFFF), st.sampled_from(
                [parse_message(s).message_type for s in seeds])))
        elif choice == 6 and params:                     # change a parameter's type
            i = draw(st.integers(0, len(params) - 1))
            params[i] = Parameter(type=draw(st.integers(0, 0x20)), value=params[i].value)
    return build_message(Message(protocol_version=version, message_type=mtype,
                                 parameters=tuple(params)))


def _closes_channel(data: bytes, spec: InterfaceSpec) -> bool:
    try:
        event = decode(data, spec)
    except CasError:
        return False
    return isinstance(event, E.ChannelClose | M.ChannelClose)


def _connect(server: ThreadedServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answers(sock: socket.socket, spec: InterfaceSpec, *, until_probe: bool) -> list[Event]:
    """Read answers until end of stream (or the probe's answer); each must decode."""
    reader = FrameReader(sock)
    deadline = time.monotonic() + TIMEOUT_S
    out: list[Event] = []
    while True:
        data = reader.next(deadline)       # TimeoutError here means a hung connection
        if data is None:
            return out
        event = decode(data, spec)         # a crash would show as garbage or silence
        out.append(event)
        if until_probe and event.channel_id == PROBE_CHANNEL:
            return out


SERVERS = {"ecmg": (ECMG_SCS, ECMG_SEEDS), "mux": (EMMG_MUX, MUX_SEEDS)}
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])


@pytest.fixture(params=["ecmg", "mux"])
def live(request: pytest.FixtureRequest, threaded_ecmg: ThreadedServer,
         threaded_mux: ThreadedServer) -> tuple[ThreadedServer, InterfaceSpec, list[bytes]]:
    spec, seeds = SERVERS[request.param]
    return (threaded_ecmg if request.param == "ecmg" else threaded_mux), spec, seeds


@FUZZ
@given(data=st.binary(max_size=700))
def test_random_bytes(live: tuple[ThreadedServer, InterfaceSpec, list[bytes]],
                      data: bytes) -> None:
    server, spec, _ = live
    with _connect(server) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        _answers(sock, spec, until_probe=False)     # returns only at end of stream


@FUZZ
@given(data=st.data())
def test_seeds_with_random_bytes_spliced_in(live: tuple[ThreadedServer, InterfaceSpec,
                                                        list[bytes]], data: st.DataObject) -> None:
    server, spec, seeds = live
    stream = b"".join(data.draw(st.lists(st.sampled_from(seeds), min_size=1, max_size=6)))
    cut = data.draw(st.integers(0, len(stream)))
    stream = stream[:cut] + data.draw(st.binary(max_size=40)) + stream[cut:]
    with _connect(server) as sock:
        sock.sendall(stream)
        sock.shutdown(socket.SHUT_WR)
        _answers(sock, spec, until_probe=False)


@FUZZ
@given(data=st.data())
def test_mutated_messages_keep_the_connection_usable(
        live: tuple[ThreadedServer, InterfaceSpec, list[bytes]], data: st.DataObject) -> None:
    server, spec, seeds = live
    messages = data.draw(st.lists(st.one_of(mutated(seeds), st.sampled_from(seeds)),
                                  min_size=1, max_size=8))
    may_close = any(_closes_channel(m, spec) for m in messages)
    with _connect(server) as sock:
        sock.sendall(b"".join(messages) + _probe(spec))
        answers = _answers(sock, spec, until_probe=True)
    probe_answered = bool(answers) and answers[-1].channel_id == PROBE_CHANNEL
    assert probe_answered or may_close, answers


def test_servers_still_serve_after_fuzzing(threaded_ecmg: ThreadedServer,
                                           threaded_mux: ThreadedServer) -> None:
    setups: list[tuple[ThreadedServer, InterfaceSpec, Event]] = [
        (threaded_ecmg, ECMG_SCS, E.ChannelSetup(ecm_channel_id=99, super_cas_id=SUPER)),
        (threaded_mux, EMMG_MUX, M.ChannelSetup(client_id=CLIENT, data_channel_id=99,
                                                section_tspkt_flag=0))]
    for server, spec, setup in setups:
        with _connect(server) as sock:
            sock.sendall(frame(setup))
            answer = FrameReader(sock).next(time.monotonic() + TIMEOUT_S)
            assert answer is not None
            status: Any = decode(answer, spec)
            assert type(status).__name__ == "ChannelStatus" and status.channel_id == 99
