"""The sans-I/O Connection: sequences, versions, framing, every refusal and its error_status."""

from __future__ import annotations

import pytest

from cas.errors import LocalProtocolError
from cas.formats.simulcrypt import EcmgScsError as EE
from cas.formats.simulcrypt import EcmgScsMessage as EM
from cas.formats.simulcrypt import EcmgScsParam as EP
from cas.formats.simulcrypt import EmmgMuxError as ME
from cas.formats.simulcrypt import EmmgMuxMessage as MM
from cas.formats.simulcrypt import EmmgMuxParam as MP
from cas.formats.simulcrypt import parse_message
from cas.headend.simulcrypt import (
    NEED_DATA,
    ChannelState,
    Connection,
    ConnectionClosed,
    CpCw,
    Kind,
    PeerProtocolError,
    Role,
    StreamState,
)
from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.events import decode_event

from .conftest import CH, CLIENT_ID, ST, SUPER, Pair, ecmg_event, ecmg_pair, emmg_event, emmg_pair
from .helpers import deliver, exchange, raw, refusal, u16, u32

IDS = ((EP.ECM_CHANNEL_ID, u16(CH)), (EP.ECM_STREAM_ID, u16(ST)))


def test_full_ecmg_sequence() -> None:
    scs, ecmg = Connection(Role.SCS), Connection(Role.ECMG)
    for kind, src, dst in [
        (Kind.CHANNEL_SETUP, scs, ecmg), (Kind.CHANNEL_STATUS, ecmg, scs),
        (Kind.STREAM_SETUP, scs, ecmg), (Kind.STREAM_STATUS, ecmg, scs),
        (Kind.CW_PROVISION, scs, ecmg), (Kind.ECM_RESPONSE, ecmg, scs),
        (Kind.STREAM_TEST, ecmg, scs), (Kind.STREAM_STATUS, scs, ecmg),
        (Kind.CHANNEL_TEST, scs, ecmg), (Kind.CHANNEL_STATUS, ecmg, scs),
        (Kind.STREAM_CLOSE_REQUEST, scs, ecmg), (Kind.STREAM_CLOSE_RESPONSE, ecmg, scs),
        (Kind.CHANNEL_CLOSE, scs, ecmg),
    ]:
        event = ecmg_event(kind)
        assert exchange(event, src, dst) == event
    assert scs.channel_state is ecmg.channel_state is ChannelState.CLOSED
    assert ecmg.version == 2


def test_full_emmg_sequence_with_data_by_data_id() -> None:
    emmg, mux = Connection(Role.EMMG), Connection(Role.MUX)
    for kind, src, dst in [
        (Kind.CHANNEL_SETUP, emmg, mux), (Kind.CHANNEL_STATUS, mux, emmg),
        (Kind.STREAM_SETUP, emmg, mux), (Kind.STREAM_STATUS, mux, emmg),
        (Kind.STREAM_BW_REQUEST, emmg, mux), (Kind.STREAM_BW_ALLOCATION, mux, emmg),
        (Kind.DATA_PROVISION, emmg, mux), (Kind.STREAM_BW_ALLOCATION, mux, emmg),
        (Kind.STREAM_TEST, emmg, mux), (Kind.STREAM_STATUS, mux, emmg),
    ]:
        event = emmg_event(kind)
        assert exchange(event, src, dst) == event
    # V2 data_provision without channel/stream ids: found by data_id (the UDP form)
    bare = M.DataProvision(client_id=CLIENT_ID, data_id=9, datagrams=(b"\x82\x70\x00", b"x"))
    assert exchange(bare, emmg, mux) == bare
    assert mux.streams[ST].data_id == 9
    for kind, src, dst in [(Kind.STREAM_CLOSE_REQUEST, emmg, mux),
                           (Kind.STREAM_CLOSE_RESPONSE, mux, emmg),
                           (Kind.CHANNEL_CLOSE, emmg, mux)]:
        exchange(emmg_event(kind), src, dst)
    assert mux.channel_state is ChannelState.CLOSED


def test_version_1_sequences() -> None:
    scs, ecmg = ecmg_pair(stream_open=True, version=1)
    assert ecmg.version == 1
    assert scs.streams[ST].ecm_id is None
    cw = ecmg_event(Kind.CW_PROVISION)
    assert exchange(cw, scs, ecmg) == cw
    with pytest.raises(LocalProtocolError):  # V1 has no ECM_id
        scs.send(ecmg_event(Kind.STREAM_SETUP, stream=8, ecm_id=3))
    with pytest.raises(LocalProtocolError):  # ... and only 8-byte CWs
        scs.send(E.CwProvision(ecm_channel_id=CH, ecm_stream_id=ST, cp_number=1,
                               cp_cw_combinations=(CpCw(cp_number=1, cw=bytes(16)),)))
    emmg, mux = emmg_pair(stream_open=True, version=1)
    with pytest.raises(LocalProtocolError):  # V1 data_provision needs the ids
        emmg.send(M.DataProvision(client_id=CLIENT_ID, datagrams=(b"x",)))
    provision = M.DataProvision(client_id=CLIENT_ID, data_channel_id=CH, data_stream_id=ST,
                                datagrams=(b"x",))
    assert exchange(provision, emmg, mux) == provision


def test_server_answers_in_the_version_the_peer_speaks() -> None:
    scs, ecmg = Connection(Role.SCS, version=3), Connection(Role.ECMG)
    exchange(ecmg_event(Kind.CHANNEL_SETUP), scs, ecmg)
    assert ecmg.version == 3
    reply = ecmg.send(ecmg_event(Kind.CHANNEL_STATUS))
    assert reply[0] == 3
    assert isinstance(deliver(reply, scs)[0], E.ChannelStatus)
    # a later message in another version is refused, the error still in version 3
    exc = refusal(raw(2, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(CH))), ecmg)
    assert exc.error_status == EE.INV_PROTO_VERSION
    error = ecmg.send(ecmg.error_event(exc))
    assert error[0] == 3
    assert exchange(ecmg_event(Kind.CHANNEL_TEST), scs, ecmg) == ecmg_event(Kind.CHANNEL_TEST)


def test_unsupported_first_version_is_answered_in_the_peers_version() -> None:
    ecmg = Connection(Role.ECMG)
    exc = refusal(raw(4, EM.CHANNEL_SETUP, (EP.ECM_CHANNEL_ID, u16(3)),
                      (EP.SUPER_CAS_ID, u32(SUPER))), ecmg)
    assert exc.error_status == EE.INV_PROTO_VERSION
    assert exc.channel_id == 3
    answer = ecmg.send(ecmg.error_event(exc))
    assert answer[0] == 4
    assert ecmg.version is None
    # the peer falls back to version 2: accepted
    scs = Connection(Role.SCS, version=2)
    assert isinstance(exchange(ecmg_event(Kind.CHANNEL_SETUP), scs, ecmg), E.ChannelSetup)
    assert ecmg.version == 2


def test_client_refuses_a_server_in_another_version() -> None:
    scs = Connection(Role.SCS, version=2)
    scs.send(ecmg_event(Kind.CHANNEL_SETUP))
    other = Connection(Role.ECMG)
    exchange(ecmg_event(Kind.CHANNEL_SETUP), Connection(Role.SCS, version=3), other)
    exc = refusal(other.send(ecmg_event(Kind.CHANNEL_STATUS)), scs)
    assert exc.error_status == EE.INV_PROTO_VERSION
    with pytest.raises(LocalProtocolError):
        Connection(Role.SCS, version=4)
    with pytest.raises(LocalProtocolError):
        Connection(Role.EMMG, version=6)


def test_byte_by_byte_delivery(scs_ecmg: Pair) -> None:
    scs, ecmg = scs_ecmg
    data = scs.send(ecmg_event(Kind.CW_PROVISION)) + scs.send(ecmg_event(Kind.STREAM_TEST))
    events = []
    for i in range(len(data)):
        events.extend(deliver(data[i:i + 1], ecmg))
    assert [type(e) for e in events] == [E.CwProvision, E.StreamTest]
    assert ecmg.trailing_data == 0


def test_end_of_stream() -> None:
    ecmg = Connection(Role.ECMG)
    got = deliver(b"", ecmg)
    assert got == [ConnectionClosed(truncated=False)]
    ecmg = Connection(Role.ECMG)
    ecmg.receive_data(raw(2, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(1)))[:-1])
    assert ecmg.next_event() is NEED_DATA
    assert deliver(b"", ecmg) == [ConnectionClosed(truncated=True)]
    with pytest.raises(LocalProtocolError):
        ecmg.receive_data(b"more")


def test_too_long_message_is_refused_at_once_and_skipped() -> None:
    scs, ecmg = ecmg_pair()
    ecmg.max_message_length = 64
    big = raw(2, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(CH)), (0x8000, bytes(100)))
    exc = refusal(big[:7], ecmg)          # the header is enough to refuse
    assert exc.error_status == EE.MESSAGE_TOO_LONG
    assert isinstance(ecmg.error_event(exc), E.ChannelError)
    assert deliver(big[7:50], ecmg) == []
    tail = big[50:] + scs.send(ecmg_event(Kind.CHANNEL_TEST))
    assert deliver(tail, ecmg) == [ecmg_event(Kind.CHANNEL_TEST)]


# --- every refusal of a peer's message, with its error_status -------------------------------
ECMG_CASES: list[tuple[str, bytes, int, type, int | None]] = [
    # (name, frame, error_status, answer type, error_information parameter)
    ("unknown message type", raw(2, 0x0007, (EP.ECM_CHANNEL_ID, u16(CH))),
     EE.INV_MESSAGE_TYPE, E.ChannelError, None),
    ("user-defined message type", raw(2, 0x8001), EE.INV_MESSAGE_TYPE, E.ChannelError, None),
    ("other interface's message", raw(2, MM.CHANNEL_TEST, (MP.CLIENT_ID, u32(1))),
     EE.INV_MESSAGE_TYPE, E.ChannelError, None),
    ("TLV past the end", bytes.fromhex("020002000600 0e0004 0001".replace(" ", "")),
     EE.INV_MESSAGE, E.ChannelError, EP.ECM_CHANNEL_ID),
    ("unknown parameter", raw(2, EM.STREAM_TEST, *IDS, (0x0999, b"?")),
     EE.INV_PARAM_TYPE, E.StreamError, 0x0999),
    ("parameter of another message", raw(2, EM.STREAM_TEST, *IDS, (EP.CP_NUMBER, u16(1))),
     EE.INV_PARAM_TYPE, E.StreamError, EP.CP_NUMBER),
    ("inconsistent length", raw(2, EM.STREAM_TEST, (EP.ECM_CHANNEL_ID, u16(CH)),
                                (EP.ECM_STREAM_ID, b"\x00\x00\x05")),
     EE.INV_PARAM_LENGTH, E.ChannelError, EP.ECM_STREAM_ID),
    ("missing mandatory", raw(2, EM.CW_PROVISION, *IDS), EE.MISSING_PARAM, E.StreamError,
     EP.CP_NUMBER),
    # two stream ids: no single stream to blame, so the channel answers
    ("repeated parameter", raw(2, EM.STREAM_TEST, *IDS, (EP.ECM_STREAM_ID, u16(ST))),
     EE.INV_MESSAGE, E.ChannelError, EP.ECM_STREAM_ID),
    ("invalid value: CW length", raw(2, EM.CW_PROVISION, *IDS, (EP.CP_NUMBER, u16(1)),
                                     (EP.CP_CW_COMBINATION, u16(1) + bytes(5))),
     EE.INV_PARAM_VALUE, E.StreamError, None),
    ("invalid value: zero CP duration", raw(2, EM.STREAM_SETUP, (EP.ECM_CHANNEL_ID, u16(CH)),
                                            (EP.ECM_STREAM_ID, u16(9)), (EP.ECM_ID, u16(9)),
                                            (EP.NOMINAL_CP_DURATION, u16(0))),
     EE.INV_PARAM_VALUE, E.StreamError, None),
    ("unknown channel", raw(2, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(CH + 1))),
     EE.INV_CHANNEL_ID, E.ChannelError, None),
    ("stream message on an unknown channel", raw(2, EM.STREAM_TEST, (EP.ECM_CHANNEL_ID, u16(9)),
                                                 (EP.ECM_STREAM_ID, u16(ST))),
     EE.INV_CHANNEL_ID, E.ChannelError, None),
    ("unknown stream", raw(2, EM.STREAM_TEST, (EP.ECM_CHANNEL_ID, u16(CH)),
                           (EP.ECM_STREAM_ID, u16(ST + 1))),
     EE.INV_STREAM_ID, E.StreamError, None),
    ("channel id in use", raw(2, EM.CHANNEL_SETUP, (EP.ECM_CHANNEL_ID, u16(CH)),
                              (EP.SUPER_CAS_ID, u32(SUPER))),
     EE.CHANNEL_ID_IN_USE, E.ChannelError, None),
    ("second channel on the connection", raw(2, EM.CHANNEL_SETUP, (EP.ECM_CHANNEL_ID, u16(2)),
                                             (EP.SUPER_CAS_ID, u32(SUPER))),
     EE.TOO_MANY_CHANNELS, E.ChannelError, None),
    ("stream id in use", raw(2, EM.STREAM_SETUP, *IDS, (EP.ECM_ID, u16(70)),
                             (EP.NOMINAL_CP_DURATION, u16(100))),
     EE.STREAM_ID_IN_USE, E.StreamError, None),
    ("ECM_id in use", raw(2, EM.STREAM_SETUP, (EP.ECM_CHANNEL_ID, u16(CH)),
                          (EP.ECM_STREAM_ID, u16(ST + 1)), (EP.ECM_ID, u16(7)),
                          (EP.NOMINAL_CP_DURATION, u16(100))),
     EE.ECM_ID_IN_USE, E.StreamError, None),
    ("wrong direction", raw(2, EM.ECM_RESPONSE, *IDS, (EP.CP_NUMBER, u16(1)),
                            (EP.ECM_DATAGRAM, b"\x80")),
     EE.INV_MESSAGE, E.StreamError, None),
    ("wrong version", raw(3, EM.CHANNEL_TEST, (EP.ECM_CHANNEL_ID, u16(CH))),
     EE.INV_PROTO_VERSION, E.ChannelError, None),
]


@pytest.mark.parametrize(("frame", "status", "answer", "info"),
                         [c[1:] for c in ECMG_CASES], ids=[c[0] for c in ECMG_CASES])
def test_ecmg_refusals(scs_ecmg: Pair, frame: bytes, status: int, answer: type,
                       info: int | None) -> None:
    scs, ecmg = scs_ecmg
    before = (ecmg.channel_state, ecmg.streams)
    exc = refusal(frame, ecmg)
    assert exc.error_status == status
    reply = ecmg.error_event(exc)
    assert isinstance(reply, answer)
    assert reply.error_status == (status,)  # type: ignore[attr-defined]
    assert reply.channel_id in (CH, 9, CH + 1)
    if info is not None:
        assert reply.error_information == (u16(info),)  # type: ignore[attr-defined]
    # the answer goes out and the peer reads it; nothing changed; the connection goes on
    assert deliver(ecmg.send(reply), scs) == [reply]
    assert (ecmg.channel_state, ecmg.streams) == before
    cw = ecmg_event(Kind.CW_PROVISION)
    assert exchange(cw, scs, ecmg) == cw


EMMG_IDS = ((MP.CLIENT_ID, u32(CLIENT_ID)), (MP.DATA_CHANNEL_ID, u16(CH)),
            (MP.DATA_STREAM_ID, u16(ST)))
EMMG_CASES: list[tuple[str, bytes, int, type]] = [
    ("unknown message type", raw(2, 0x0019, *EMMG_IDS[:2]), ME.INV_MESSAGE_TYPE, M.ChannelError),
    ("unknown parameter", raw(2, MM.STREAM_TEST, *EMMG_IDS, (0x0033, b"")), ME.INV_PARAM_TYPE,
     M.StreamError),
    ("inconsistent length", raw(2, MM.STREAM_BW_REQUEST, *EMMG_IDS, (MP.BANDWIDTH, b"\x01")),
     ME.INV_PARAM_LENGTH, M.StreamError),
    ("missing mandatory", raw(2, MM.DATA_PROVISION, *EMMG_IDS, (MP.DATA_ID, u16(9))),
     ME.MISSING_PARAM, M.StreamError),
    ("invalid value", raw(2, MM.STREAM_SETUP, *EMMG_IDS[:2], (MP.DATA_STREAM_ID, u16(8)),
                          (MP.DATA_ID, u16(8)), (MP.DATA_TYPE, b"\x07")),
     ME.INV_PARAM_VALUE, M.StreamError),
    ("unknown channel", raw(2, MM.CHANNEL_TEST, (MP.CLIENT_ID, u32(CLIENT_ID)),
                            (MP.DATA_CHANNEL_ID, u16(4))), ME.INV_CHANNEL_ID, M.ChannelError),
    ("unknown stream", raw(2, MM.STREAM_TEST, *EMMG_IDS[:2], (MP.DATA_STREAM_ID, u16(4))),
     ME.INV_STREAM_ID, M.StreamError),
    ("client_id of another client", raw(2, MM.STREAM_TEST, (MP.CLIENT_ID, u32(1)),
                                        *EMMG_IDS[1:]), ME.INV_CLIENT_ID, M.StreamError),
    ("data_id in use", raw(2, MM.STREAM_SETUP, *EMMG_IDS[:2], (MP.DATA_STREAM_ID, u16(8)),
                           (MP.DATA_ID, u16(9)), (MP.DATA_TYPE, b"\x00")),
     ME.DATA_ID_IN_USE, M.StreamError),
    ("data for an unknown data_id", raw(2, MM.DATA_PROVISION, (MP.CLIENT_ID, u32(CLIENT_ID)),
                                        (MP.DATA_ID, u16(99)), (MP.DATAGRAM, b"x")),
     ME.INV_DATA_ID, M.ChannelError),
    ("data_id of another stream", raw(2, MM.DATA_PROVISION, *EMMG_IDS, (MP.DATA_ID, u16(99)),
                                      (MP.DATAGRAM, b"x")), ME.INV_DATA_ID, M.StreamError),
    ("channel id in use", raw(2, MM.CHANNEL_SETUP, *EMMG_IDS[:2], (MP.SECTION_TSPKT_FLAG, b"\0")),
     ME.CHANNEL_ID_IN_USE, M.ChannelError),
    ("stream id in use", raw(2, MM.STREAM_SETUP, *EMMG_IDS, (MP.DATA_ID, u16(10)),
                             (MP.DATA_TYPE, b"\x00")), ME.STREAM_ID_IN_USE, M.StreamError),
    ("wrong direction", raw(2, MM.STREAM_BW_ALLOCATION, *EMMG_IDS), ME.INV_MESSAGE,
     M.StreamError),
    ("wrong version", raw(1, MM.STREAM_TEST, *EMMG_IDS), ME.INV_PROTO_VERSION, M.ChannelError),
]


@pytest.mark.parametrize(("frame", "status", "answer"), [c[1:] for c in EMMG_CASES],
                         ids=[c[0] for c in EMMG_CASES])
def test_mux_refusals(emmg_mux: Pair, frame: bytes, status: int, answer: type) -> None:
    emmg, mux = emmg_mux
    exc = refusal(frame, mux)
    assert exc.error_status == status
    reply = mux.error_event(exc)
    assert isinstance(reply, answer)
    assert reply.client_id == CLIENT_ID  # type: ignore[attr-defined]
    assert deliver(mux.send(reply), emmg) == [reply]
    provision = emmg_event(Kind.DATA_PROVISION)
    assert exchange(provision, emmg, mux) == provision


# --- refusals of our own misuse --------------------------------------------------------------
def test_local_misuse_raises_local_protocol_error(scs_ecmg: Pair) -> None:
    scs, _ecmg = scs_ecmg
    with pytest.raises(LocalProtocolError) as info:
        scs.send(ecmg_event(Kind.ECM_RESPONSE))
    assert info.value.error_status == EE.INV_MESSAGE
    with pytest.raises(LocalProtocolError) as info:
        scs.send(ecmg_event(Kind.CW_PROVISION, stream=99))
    assert info.value.error_status == EE.INV_STREAM_ID
    with pytest.raises(LocalProtocolError) as info:
        scs.send(E.StreamSetup(ecm_channel_id=CH, ecm_stream_id=2, nominal_cp_duration_100ms=5))
    assert info.value.error_status == EE.MISSING_PARAM  # V2 needs ECM_id
    with pytest.raises(LocalProtocolError) as info:
        scs.send(emmg_event(Kind.CHANNEL_TEST))
    assert info.value.error_status == EE.INV_MESSAGE_TYPE
    with pytest.raises(LocalProtocolError):
        Connection(Role.MUX).send(emmg_event(Kind.CHANNEL_STATUS))


def test_refused_setups_can_be_retried() -> None:
    scs, ecmg = ecmg_pair(channel_open=False)
    exchange(ecmg_event(Kind.CHANNEL_SETUP), scs, ecmg)
    exchange(ecmg_event(Kind.CHANNEL_ERROR), ecmg, scs)
    assert scs.channel_state is ecmg.channel_state is ChannelState.IDLE
    assert ecmg.channel_id is None
    exchange(ecmg_event(Kind.CHANNEL_SETUP, channel=4), scs, ecmg)
    exchange(ecmg_event(Kind.CHANNEL_STATUS, channel=4), ecmg, scs)
    assert scs.channel_id == ecmg.channel_id == 4
    exchange(ecmg_event(Kind.STREAM_SETUP, channel=4), scs, ecmg)
    exchange(ecmg_event(Kind.STREAM_ERROR, channel=4), ecmg, scs)
    assert ecmg.stream_state(ST) is StreamState.ABSENT
    exchange(ecmg_event(Kind.STREAM_SETUP, channel=4), scs, ecmg)
    assert ecmg.stream_state(ST) is StreamState.OPENING


def test_errors_may_name_ids_that_are_not_open(scs_ecmg: Pair) -> None:
    scs, ecmg = scs_ecmg
    for event in (E.ChannelError(ecm_channel_id=77, error_status=(1,)),
                  E.StreamError(ecm_channel_id=CH, ecm_stream_id=77, error_status=(7,))):
        assert exchange(event, ecmg, scs) == event
        assert exchange(event, scs, ecmg) == event
    assert ecmg.stream_state(ST) is StreamState.OPEN


def test_user_defined_parameters_travel_as_extra(scs_ecmg: Pair) -> None:
    _scs, ecmg = scs_ecmg
    frame = raw(2, EM.STREAM_TEST, *IDS, (0x8ABC, b"vendor"))
    got = deliver(frame, ecmg)
    assert len(got) == 1 and isinstance(got[0], E.StreamTest)
    assert [(p.type, p.value) for p in got[0].extra] == [(0x8ABC, b"vendor")]
    echoed = ecmg.send(got[0])     # the ECMG may test the stream too: the extra goes along
    assert echoed.endswith(bytes.fromhex("8abc0006") + b"vendor")


def test_peer_error_carries_what_the_answer_needs(scs_ecmg: Pair) -> None:
    _, ecmg = scs_ecmg
    exc = refusal(raw(2, EM.CW_PROVISION, *IDS), ecmg)
    assert isinstance(exc, PeerProtocolError)
    assert (exc.channel_id, exc.stream_id, exc.stream_level) == (CH, ST, True)
    assert exc.message_type == EM.CW_PROVISION
    assert exc.parameter_type == EP.CP_NUMBER


@pytest.mark.parametrize("version", [0, 9, 255])
def test_errors_in_any_unsupported_version_can_be_built_and_read(version: int) -> None:
    """The answer echoes the peer's version byte and uses our default's parameter rules."""
    for server, frame_ in ((Connection(Role.ECMG), raw(version, EM.CHANNEL_TEST,
                                                       (EP.ECM_CHANNEL_ID, u16(1)))),
                           (Connection(Role.MUX), raw(version, MM.CHANNEL_TEST,
                                                      (MP.CLIENT_ID, u32(1)),
                                                      (MP.DATA_CHANNEL_ID, u16(1))))):
        exc = refusal(frame_, server)
        answer = server.send(server.error_event(exc))
        assert answer[0] == version
        message = parse_message(answer)
        decoded = decode_event(message, E.EVENTS if server.role is Role.ECMG else M.EVENTS,
                               server.spec, version=2)
        assert decoded.error_status[0] == exc.error_status  # type: ignore[attr-defined]
