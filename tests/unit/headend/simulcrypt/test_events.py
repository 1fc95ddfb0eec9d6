"""Events validate themselves; encode/decode is lossless; CWs stay out of reprs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import LocalProtocolError
from cas.formats.simulcrypt import ECMG_SCS, EMMG_MUX, Parameter, check_message
from cas.formats.simulcrypt import EcmgScsError as EE
from cas.formats.simulcrypt import EmmgMuxError as ME
from cas.headend.simulcrypt import CpCw, Kind
from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.events import Event

from .conftest import ecmg_event, emmg_event

ECMG_KINDS = [k for k in Kind if k not in (Kind.STREAM_BW_REQUEST, Kind.STREAM_BW_ALLOCATION,
                                           Kind.DATA_PROVISION)]
EMMG_KINDS = [k for k in Kind if k not in (Kind.CW_PROVISION, Kind.ECM_RESPONSE)]


def _round_trip(event: Event, version: int) -> Event:
    message = event.to_message(version)
    grouped = check_message(message, event.SPEC)
    return type(event).from_message(message, grouped, version)


@pytest.mark.parametrize("kind", ECMG_KINDS)
def test_ecmg_events_round_trip(kind: Kind) -> None:
    event = ecmg_event(kind)
    assert _round_trip(event, 2) == event
    assert _round_trip(event.replace(extra=(Parameter(type=0x9000, value=b"v"),)), 3) \
        .extra == (Parameter(type=0x9000, value=b"v"),)


@pytest.mark.parametrize("kind", EMMG_KINDS)
def test_emmg_events_round_trip(kind: Kind) -> None:
    event = emmg_event(kind)
    assert _round_trip(event, 2) == event


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.lists(st.tuples(st.integers(0, 0xFFFF), st.sampled_from([8, 16])), max_size=4,
                unique_by=lambda t: t[0]),
       st.one_of(st.none(), st.binary(max_size=30)), st.one_of(st.none(), st.integers(1, 0xFFFF)))
def test_cw_provision_round_trip(channel: int, stream: int, cp: int,
                                 combos: list[tuple[int, int]], criteria: bytes | None,
                                 duration: int | None) -> None:
    event = E.CwProvision(ecm_channel_id=channel, ecm_stream_id=stream, cp_number=cp,
                          cp_cw_combinations=tuple(CpCw(cp_number=n, cw=bytes([n & 0xFF]) * size)
                                                   for n, size in combos),
                          access_criteria=criteria, cp_duration_100ms=duration)
    assert _round_trip(event, 2) == event


@pytest.mark.parametrize(("make", "status"), [
    (lambda: E.ChannelTest(ecm_channel_id=0x10000), EE.INV_PARAM_VALUE),
    (lambda: E.ChannelStatus(ecm_channel_id=1, section_tspkt_flag=2, delay_start_ms=0,
                             delay_stop_ms=0, ecm_rep_period_ms=1, max_streams=0,
                             min_cp_duration_100ms=1, lead_cw=1, cw_per_msg=2,
                             max_comp_time_ms=1), EE.INV_PARAM_VALUE),
    (lambda: E.ChannelStatus(ecm_channel_id=1, section_tspkt_flag=0, delay_start_ms=-40000,
                             delay_stop_ms=0, ecm_rep_period_ms=1, max_streams=0,
                             min_cp_duration_100ms=1, lead_cw=1, cw_per_msg=2,
                             max_comp_time_ms=1), EE.INV_PARAM_VALUE),
    (lambda: E.ChannelStatus(ecm_channel_id=1, section_tspkt_flag=0, delay_start_ms=0,
                             delay_stop_ms=0, ecm_rep_period_ms=1, max_streams=0,
                             min_cp_duration_100ms=1, lead_cw=2, cw_per_msg=2,
                             max_comp_time_ms=1), EE.INV_PARAM_VALUE),
    (lambda: E.ChannelError(ecm_channel_id=1, error_status=()), EE.INV_PARAM_VALUE),
    (lambda: E.StreamStatus(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                            access_criteria_transfer_mode=2), EE.INV_PARAM_VALUE),
    (lambda: E.CwProvision(ecm_channel_id=1, ecm_stream_id=1, cp_number=1,
                           cp_cw_combinations=(CpCw(cp_number=1, cw=bytes(8)),
                                               CpCw(cp_number=1, cw=bytes(8)))),
     EE.INV_PARAM_VALUE),
    (lambda: E.EcmResponse(ecm_channel_id=1, ecm_stream_id=1, cp_number=1, ecm_datagram=b""),
     EE.INV_PARAM_VALUE),
    (lambda: E.ChannelTest(ecm_channel_id=1, extra=(Parameter(type=0x0001, value=b""),)),
     EE.INV_PARAM_TYPE),
    (lambda: M.ChannelSetup(client_id=1, data_channel_id=1, section_tspkt_flag=2),
     ME.INV_PARAM_VALUE),
    (lambda: M.StreamSetup(client_id=1, data_channel_id=1, data_stream_id=1, data_type=9),
     ME.INV_PARAM_VALUE),
    (lambda: M.DataProvision(client_id=1, datagrams=(b"",)), ME.INV_PARAM_VALUE),
    (lambda: M.StreamBwRequest(client_id=1 << 32, data_channel_id=1, data_stream_id=1),
     ME.INV_PARAM_VALUE),
])
def test_invalid_events_are_refused_with_their_status(make: object, status: int) -> None:
    with pytest.raises(LocalProtocolError) as info:
        make()  # type: ignore[operator]
    assert info.value.error_status == status


def test_cws_never_in_repr() -> None:
    cw = bytes.fromhex("0123456789abcdef")
    event = E.CwProvision(ecm_channel_id=1, ecm_stream_id=1, cp_number=1,
                          cp_cw_combinations=(CpCw(cp_number=1, cw=cw),), cw_encryption=b"k")
    assert "0123" not in repr(event) and "\\x01#E" not in repr(event)
    assert "cw_encryption" not in repr(event)


def test_ids_and_specs() -> None:
    event = ecmg_event(Kind.CW_PROVISION)
    assert (event.channel_id, event.stream_id) == (1, 5)
    assert ecmg_event(Kind.CHANNEL_TEST).stream_id is None
    assert event.SPEC is ECMG_SCS and emmg_event(Kind.DATA_PROVISION).SPEC is EMMG_MUX
    assert set(E.EVENTS) == set(ECMG_SCS.messages) and set(M.EVENTS) == set(EMMG_MUX.messages)


def test_log_summaries_name_the_message_and_never_carry_key_or_data_bytes() -> None:
    """The one-line summaries -vv logs (issue 12, item 14)."""
    cw = bytes.fromhex("a1b2c3d4e5f60718")
    provision = E.CwProvision(ecm_channel_id=3, ecm_stream_id=4, cp_number=9,
                              cp_cw_combinations=(CpCw(cp_number=9, cw=cw),
                                                  CpCw(cp_number=10, cw=cw)),
                              access_criteria=b"\x02\x0b\xb9")
    line = provision.summary()
    assert line == "CW_provision channel=3 stream=4 cp_number=9 CWs for CP 9,10"
    assert cw.hex() not in line.lower()
    error = E.StreamError(ecm_channel_id=3, ecm_stream_id=4,
                          error_status=(EE.OUT_OF_COMPUTE,))
    assert error.summary() == "stream_error channel=3 stream=4 error_status 0x000D out_of_compute"
    data = M.DataProvision(client_id=0xDEAD0001, data_id=2, datagrams=(b"\x82\x70\x01\xaa",) * 3)
    assert data.summary() == ("data_provision client_id=0xDEAD0001 data_id=2 "
                              "3 datagram(s), 12 bytes")
