"""The ECMG's decisions (EcmgSession) wired to an SCS Connection in memory."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys, generate_cw
from cas.errors import FormatError, LocalProtocolError
from cas.formats import ts
from cas.formats.ecm import parse_ecm
from cas.formats.simulcrypt import EcmgScsError as EE
from cas.formats.simulcrypt import EcmgScsParam as EP
from cas.headend.simulcrypt import Connection, CpCw, Role
from cas.headend.simulcrypt import access_criteria as ac
from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt.ecmg import (
    EcmgConfig,
    EcmgRegistry,
    EcmgSession,
    EcmRequest,
    sealed_ecm_builder,
)
from cas.headend.simulcrypt.events import Event
from cas.headend.simulcrypt.scs import section_from_datagram
from cas.messages import open_ecm

from .helpers import deliver, raw, u16

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
SUPER = 0xDEAD0001
CRITERIA = AccessCriteria(channel_id=3001, package_ids=(1, 4), regions=(7,), maturity_rating=16)
AC_FULL = ac.encode_full(CRITERIA)


class FakeBuilder:
    """Records requests; returns a small section naming the CP."""

    def __init__(self) -> None:
        self.requests: list[EcmRequest] = []

    def __call__(self, request: EcmRequest) -> bytes:
        self.requests.append(request)
        body = request.cp_number.to_bytes(2, "big") + bytes(10)
        return bytes((0x80 | (request.cp_number & 1), 0x70, len(body))) + body


class Wire:
    """An SCS Connection talking to an EcmgSession, in memory."""

    def __init__(self, session: EcmgSession, *, version: int = 2) -> None:
        self.session = session
        self.scs = Connection(Role.SCS, version=version)

    def send(self, event: Event) -> list[Event]:
        return self.send_raw(self.scs.send(event))

    def send_raw(self, data: bytes) -> list[Event]:
        answer = self.session.receive(data)
        got = deliver(answer, self.scs) if answer else []
        assert all(isinstance(e, Event) for e in got), got
        return [e for e in got if isinstance(e, Event)]

    def one(self, event: Event) -> Event:
        got = self.send(event)
        assert len(got) == 1, got
        return got[0]


def _session(config: EcmgConfig | None = None, builder: object = None,
             registry: EcmgRegistry | None = None) -> EcmgSession:
    return EcmgSession(config or EcmgConfig(), builder or FakeBuilder(),  # type: ignore[arg-type]
                       registry or EcmgRegistry(), clock=lambda: NOW)


def _open(wire: Wire, *, channel: int = 1, stream: int = 1, ecm_id: int | None = 1) -> None:
    status = wire.one(E.ChannelSetup(ecm_channel_id=channel, super_cas_id=SUPER))
    assert isinstance(status, E.ChannelStatus)
    if stream:
        answer = wire.one(E.StreamSetup(ecm_channel_id=channel, ecm_stream_id=stream,
                                        ecm_id=ecm_id, nominal_cp_duration_100ms=100))
        assert isinstance(answer, E.StreamStatus), answer


def _cw(cp: int, *, channel: int = 1, stream: int = 1, criteria: bytes | None = AC_FULL,
        cws: tuple[CpCw, ...] | None = None) -> E.CwProvision:
    if cws is None:
        cws = (CpCw(cp_number=cp, cw=bytes([cp]) * 8), CpCw(cp_number=cp + 1, cw=bytes([cp + 1]) * 8))
    return E.CwProvision(ecm_channel_id=channel, ecm_stream_id=stream, cp_number=cp,
                         cp_cw_combinations=cws, access_criteria=criteria)


def test_channel_status_announces_our_timing() -> None:
    wire = Wire(_session(EcmgConfig(max_comp_time_ms=50, ecm_rep_period_ms=200)))
    status = wire.one(E.ChannelSetup(ecm_channel_id=3, super_cas_id=SUPER))
    assert status == E.ChannelStatus(
        ecm_channel_id=3, section_tspkt_flag=0, delay_start_ms=0, delay_stop_ms=0,
        ecm_rep_period_ms=200, max_streams=0, min_cp_duration_100ms=1, lead_cw=1, cw_per_msg=2,
        max_comp_time_ms=50)
    assert wire.one(E.ChannelTest(ecm_channel_id=3)) == status


def test_cw_provision_gives_the_builders_ecm() -> None:
    builder = FakeBuilder()
    wire = Wire(_session(builder=builder))
    _open(wire)
    response = wire.one(_cw(10))
    assert isinstance(response, E.EcmResponse)
    assert response.cp_number == 10
    assert response.ecm_datagram[0] == 0x80
    request = builder.requests[0]
    assert (request.channel_id, request.stream_id, request.ecm_id, request.cp_number) == (1, 1, 1, 10)
    assert request.super_cas_id == SUPER and request.at == NOW
    assert request.cw_for(11) == bytes([11]) * 8 and request.cw_for(12) is None
    # access_criteria_transfer_mode 0: the SCS may leave it out once sent
    assert isinstance(wire.one(_cw(11, criteria=None)), E.EcmResponse)
    assert builder.requests[1].access_criteria == AC_FULL
    assert wire.session.registry.ecms_sent == 2


def test_ecm_as_ts_packets() -> None:
    wire = Wire(_session(EcmgConfig(ts_packets=True)))
    status = wire.one(E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER))
    assert isinstance(status, E.ChannelStatus) and status.section_tspkt_flag == 1
    wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                           nominal_cp_duration_100ms=100))
    datagrams = []
    for cp in (4, 5):
        response = wire.one(_cw(cp))
        assert isinstance(response, E.EcmResponse)
        datagrams.append(response.ecm_datagram)
    for cc, datagram in enumerate(datagrams):
        assert len(datagram) == ts.PACKET_SIZE
        assert ts.pid_of(datagram) == 0x1FFF and ts.pusi_of(datagram)
        assert ts.cc_of(datagram) == cc     # the continuity counter runs on per stream
    assert section_from_datagram(datagrams[1], True)[:5] == bytes((0x81, 0x70, 12, 0, 5))


def test_ts_packets_per_super_cas_id() -> None:
    config = EcmgConfig(ts_packets_for={SUPER: True})
    assert config.packets_for(SUPER) and not config.packets_for(0xDEAD0002)


@pytest.mark.parametrize(("event", "status", "info"), [
    (_cw(10, cws=(CpCw(cp_number=10, cw=bytes(8)),)), EE.NOT_ENOUGH_CW, EP.CP_CW_COMBINATION),
    (_cw(10, cws=(CpCw(cp_number=10, cw=bytes(8)), CpCw(cp_number=12, cw=bytes(8)))),
     EE.NOT_ENOUGH_CW, EP.CP_CW_COMBINATION),
    (_cw(10, cws=(CpCw(cp_number=10, cw=bytes(8)), CpCw(cp_number=11, cw=bytes(16)))),
     EE.INV_PARAM_VALUE, EP.CP_CW_COMBINATION),
    (_cw(10, criteria=None), EE.MISSING_PARAM, EP.ACCESS_CRITERIA),
    (E.CwProvision(ecm_channel_id=1, ecm_stream_id=1, cp_number=1, cw_encryption=b"\x01",
                   cp_cw_combinations=_cw(1).cp_cw_combinations, access_criteria=AC_FULL),
     EE.INV_PARAM_VALUE, EP.CW_ENCRYPTION),
])
def test_cw_provision_refusals(event: E.CwProvision, status: int, info: int) -> None:
    wire = Wire(_session())
    _open(wire)
    answer = wire.one(event)
    assert answer == E.StreamError(ecm_channel_id=1, ecm_stream_id=1, error_status=(status,),
                                   error_information=(u16(info),))
    assert isinstance(wire.one(_cw(20)), E.EcmResponse)   # the stream goes on


def test_builder_errors_become_stream_errors() -> None:
    def bad_criteria(request: EcmRequest) -> bytes:
        raise FormatError("nope", path="access_criteria")

    def busy(request: EcmRequest) -> bytes:
        raise LocalProtocolError("busy", error_status=EE.OUT_OF_COMPUTE)

    for builder, status in ((bad_criteria, EE.INV_PARAM_VALUE), (busy, EE.OUT_OF_COMPUTE)):
        wire = Wire(_session(builder=builder))
        _open(wire)
        answer = wire.one(_cw(1))
        assert isinstance(answer, E.StreamError) and answer.error_status == (status,)


def test_channel_setup_refusals_are_ecmg_wide() -> None:
    registry = EcmgRegistry()
    first = Wire(_session(registry=registry))
    _open(first, channel=5, ecm_id=9)
    second = Wire(_session(registry=registry))
    answer = second.one(E.ChannelSetup(ecm_channel_id=5, super_cas_id=SUPER))
    assert isinstance(answer, E.ChannelError) and answer.error_status == (EE.CHANNEL_ID_IN_USE,)
    answer = second.one(E.ChannelSetup(ecm_channel_id=6, super_cas_id=0xBEEF0000))
    assert isinstance(answer, E.ChannelError) and answer.error_status == (EE.INV_SUPER_CAS_ID,)
    second.one(E.ChannelSetup(ecm_channel_id=6, super_cas_id=SUPER))
    answer = second.one(E.StreamSetup(ecm_channel_id=6, ecm_stream_id=1, ecm_id=9,
                                      nominal_cp_duration_100ms=100))
    assert isinstance(answer, E.StreamError) and answer.error_status == (EE.ECM_ID_IN_USE,)
    # closing the first connection frees its channel id and ECM_id
    first.session.close()
    assert isinstance(second.one(E.StreamSetup(ecm_channel_id=6, ecm_stream_id=1, ecm_id=9,
                                               nominal_cp_duration_100ms=100)), E.StreamStatus)
    third = Wire(_session(registry=registry))
    assert isinstance(third.one(E.ChannelSetup(ecm_channel_id=5, super_cas_id=SUPER)),
                      E.ChannelStatus)


def test_limits() -> None:
    registry = EcmgRegistry()
    config = EcmgConfig(max_channels=1, max_streams_per_channel=1, min_cp_duration_100ms=10)
    wire = Wire(_session(config, registry=registry))
    wire.one(E.ChannelSetup(ecm_channel_id=1, super_cas_id=SUPER))
    short = wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                                   nominal_cp_duration_100ms=5))
    assert isinstance(short, E.StreamError) and short.error_status == (EE.INV_PARAM_VALUE,)
    wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                           nominal_cp_duration_100ms=100))
    extra = wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=2, ecm_id=2,
                                   nominal_cp_duration_100ms=100))
    assert isinstance(extra, E.StreamError) and extra.error_status == (EE.TOO_MANY_STM_CHAN,)
    other = Wire(_session(config, registry=registry))
    refused = other.one(E.ChannelSetup(ecm_channel_id=2, super_cas_id=SUPER))
    assert isinstance(refused, E.ChannelError)
    assert refused.error_status == (EE.TOO_MANY_CHANNELS,)
    wide = Wire(_session(EcmgConfig(max_streams=1), registry=EcmgRegistry()))
    _open(wide)
    over = wide.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=2, ecm_id=2,
                                  nominal_cp_duration_100ms=100))
    assert isinstance(over, E.StreamError) and over.error_status == (EE.TOO_MANY_STM_ECMG,)


def test_stream_test_close_and_channel_close() -> None:
    wire = Wire(_session())
    _open(wire)
    status = wire.one(E.StreamTest(ecm_channel_id=1, ecm_stream_id=1))
    assert status == E.StreamStatus(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                                    access_criteria_transfer_mode=0)
    assert wire.one(E.StreamCloseRequest(ecm_channel_id=1, ecm_stream_id=1)) == \
        E.StreamCloseResponse(ecm_channel_id=1, ecm_stream_id=1)
    assert wire.session.registry.stream_count == 0
    assert wire.send(E.ChannelClose(ecm_channel_id=1)) == []
    assert wire.session.closed and wire.session.registry.channels == set()


def test_protocol_errors_are_answered_and_the_session_goes_on() -> None:
    wire = Wire(_session())
    _open(wire)
    answers = wire.send_raw(raw(2, 0x0042) + raw(2, 0x0102, (EP.ECM_CHANNEL_ID, u16(1)),
                                                   (EP.ECM_STREAM_ID, u16(9))))
    assert [type(a) for a in answers] == [E.ChannelError, E.StreamError]
    assert answers[0].error_status == (EE.INV_MESSAGE_TYPE,)  # type: ignore[attr-defined]
    assert answers[1].error_status == (EE.INV_STREAM_ID,)     # type: ignore[attr-defined]
    assert wire.session.registry.errors_sent == 2
    assert isinstance(wire.one(_cw(3)), E.EcmResponse)


def test_version_1_channel() -> None:
    wire = Wire(_session(), version=1)
    _open(wire, ecm_id=None)
    status = wire.one(E.StreamTest(ecm_channel_id=1, ecm_stream_id=1))
    assert isinstance(status, E.StreamStatus) and status.ecm_id is None
    assert isinstance(wire.one(_cw(8)), E.EcmResponse)


def test_config_rejects_what_our_ecm_cannot_carry() -> None:
    with pytest.raises(ValueError):
        EcmgConfig(cw_per_msg=3)
    with pytest.raises(ValueError):
        EcmgConfig(ca_system_id=0)


# --- the real builder -----------------------------------------------------------------------
def test_sealed_builder_ecm_opens_with_the_operator_key() -> None:
    keys = OperatorKeys.generate(os.urandom)
    wire = Wire(_session(builder=sealed_ecm_builder(keys, ecm_key_index=3)))
    _open(wire)
    cw7, cw8 = generate_cw(os.urandom), generate_cw(os.urandom)
    response = wire.one(_cw(7, cws=(CpCw(cp_number=7, cw=cw7), CpCw(cp_number=8, cw=cw8))))
    assert isinstance(response, E.EcmResponse)
    header, body = open_ecm(keys.ecm_key(3), response.ecm_datagram)
    assert header.table_id == 0x81 and header.channel_id == 3001
    assert header.ecm_key_index == 3 and header.timestamp_s == int(NOW.timestamp())
    assert (body.cw_odd, body.cw_even) == (cw7, cw8)      # CP 7 is odd: CW(7) in the odd slot
    assert body.crypto_period == 7
    assert body.criteria(3001) == CRITERIA
    assert parse_ecm(response.ecm_datagram).header.channel_id == 3001


def test_sealed_builder_with_a_lineup_reference() -> None:
    keys = OperatorKeys.generate(os.urandom)
    builder = sealed_ecm_builder(keys, resolve=ac.resolver_from([CRITERIA]))
    wire = Wire(_session(builder=builder))
    _open(wire)
    response = wire.one(_cw(2, criteria=ac.encode_reference(3001)))
    assert isinstance(response, E.EcmResponse)
    _, body = open_ecm(keys.ecm_key(0), response.ecm_datagram)
    assert body.package_ids == (1, 4) and body.cw_even == bytes([2]) * 8
    unknown = wire.one(_cw(3, criteria=ac.encode_reference(42)))
    assert isinstance(unknown, E.StreamError)
    assert unknown.error_status == (EE.INV_PARAM_VALUE,)
    assert unknown.error_information == (u16(EP.ACCESS_CRITERIA),)


# --- max_comp_time kept: shedding and the load accepted (issue 12, item 20) -----------------------
class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _timed(config: EcmgConfig, builder: FakeBuilder) -> tuple[Wire, EcmgSession, Clock]:
    clock = Clock()
    session = EcmgSession(config, builder, EcmgRegistry(), clock=lambda: NOW, monotonic=clock)
    return Wire(session), session, clock


def _at(wire: Wire, session: EcmgSession, event: Event, received_at: float) -> list[Event]:
    answer = session.receive(wire.scs.send(event), received_at=received_at)
    got = deliver(answer, wire.scs)
    return [e for e in got if isinstance(e, Event)]


def test_a_cw_provision_that_waited_past_its_share_of_max_comp_time_is_shed() -> None:
    builder = FakeBuilder()
    wire, session, clock = _timed(EcmgConfig(max_comp_time_ms=100, shed_after_ms=50), builder)
    _open(wire)
    # waited 60 ms before its turn (> 50 ms): shed at once
    (shed,) = _at(wire, session, _cw(4), received_at=clock.now - 0.060)
    assert isinstance(shed, E.StreamError) and shed.error_status == (EE.OUT_OF_COMPUTE,)
    assert builder.requests == [] and session.registry.shed == 1
    # its access_criteria still count (sent once, transfer mode 0); a fresh one is served
    (ecm,) = _at(wire, session, _cw(5, criteria=None), received_at=clock.now - 0.040)
    assert isinstance(ecm, E.EcmResponse) and ecm.cp_number == 5
    assert builder.requests[0].access_criteria == AC_FULL
    assert session.registry.in_ecmg_summary()["count"] == 1


def test_shedding_follows_its_configuration() -> None:
    builder = FakeBuilder()
    for never in (None, 0):
        wire, session, clock = _timed(EcmgConfig(max_comp_time_ms=100, shed_after_ms=never),
                                      builder)
        _open(wire)
        (ecm,) = _at(wire, session, _cw(4), received_at=clock.now - 5.0)
        assert isinstance(ecm, E.EcmResponse)
    wire, session, clock = _timed(EcmgConfig(max_comp_time_ms=100, shed_after_ms=20), builder)
    _open(wire)
    (shed,) = _at(wire, session, _cw(4), received_at=clock.now - 0.021)
    assert isinstance(shed, E.StreamError) and shed.error_status == (EE.OUT_OF_COMPUTE,)
    with pytest.raises(ValueError):
        EcmgConfig(max_comp_time_ms=100, shed_after_ms=101)


def test_stream_setups_beyond_the_accepted_load_are_refused() -> None:
    """max_cw_per_s: streams bring 1 / nominal_CP_duration CW_provisions per second each."""
    registry = EcmgRegistry()
    config = EcmgConfig(max_cw_per_s=2.5)
    wire = Wire(EcmgSession(config, FakeBuilder(), registry, clock=lambda: NOW))
    _open(wire, stream=0)
    for sid in (1, 2):          # 1 CW_provision/s each
        status = wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=sid, ecm_id=sid,
                                        nominal_cp_duration_100ms=10))
        assert isinstance(status, E.StreamStatus)
    refused = wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=3, ecm_id=3,
                                     nominal_cp_duration_100ms=10))
    assert isinstance(refused, E.StreamError) and refused.error_status == (EE.OUT_OF_COMPUTE,)
    slower = wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=3, ecm_id=3,
                                    nominal_cp_duration_100ms=20))   # 0.5/s fits
    assert isinstance(slower, E.StreamStatus)
    assert wire.one(E.StreamCloseRequest(ecm_channel_id=1, ecm_stream_id=1)) == \
        E.StreamCloseResponse(ecm_channel_id=1, ecm_stream_id=1)
    assert registry.cw_per_s == pytest.approx(1.5)
    again = wire.one(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=4, ecm_id=4,
                                   nominal_cp_duration_100ms=10))
    assert isinstance(again, E.StreamStatus)
