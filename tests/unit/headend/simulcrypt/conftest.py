"""Event factories and connection pairs in a given state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cas.headend.simulcrypt import Connection, CpCw, Kind, Role
from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.events import Event

from .helpers import exchange

CH, ST, SUPER = 1, 5, 0xDEAD0000
CLIENT_ID = 0xDEAD0001


def ecmg_event(kind: Kind, *, channel: int = CH, stream: int = ST, cp: int = 10,
               ecm_id: int | None = 7) -> Event:
    """A valid ECMG⇔SCS event of ``kind``."""
    c, s = channel, stream
    factories: dict[Kind, Callable[[], Event]] = {
        Kind.CHANNEL_SETUP: lambda: E.ChannelSetup(ecm_channel_id=c, super_cas_id=SUPER),
        Kind.CHANNEL_TEST: lambda: E.ChannelTest(ecm_channel_id=c),
        Kind.CHANNEL_STATUS: lambda: E.ChannelStatus(
            ecm_channel_id=c, section_tspkt_flag=0, delay_start_ms=0, delay_stop_ms=0,
            ecm_rep_period_ms=100, max_streams=0, min_cp_duration_100ms=1, lead_cw=1,
            cw_per_msg=2, max_comp_time_ms=100),
        Kind.CHANNEL_CLOSE: lambda: E.ChannelClose(ecm_channel_id=c),
        Kind.CHANNEL_ERROR: lambda: E.ChannelError(ecm_channel_id=c, error_status=(0x7000,)),
        Kind.STREAM_SETUP: lambda: E.StreamSetup(ecm_channel_id=c, ecm_stream_id=s,
                                                 ecm_id=ecm_id, nominal_cp_duration_100ms=100),
        Kind.STREAM_TEST: lambda: E.StreamTest(ecm_channel_id=c, ecm_stream_id=s),
        Kind.STREAM_STATUS: lambda: E.StreamStatus(ecm_channel_id=c, ecm_stream_id=s,
                                                   ecm_id=ecm_id, access_criteria_transfer_mode=0),
        Kind.STREAM_CLOSE_REQUEST: lambda: E.StreamCloseRequest(ecm_channel_id=c, ecm_stream_id=s),
        Kind.STREAM_CLOSE_RESPONSE: lambda: E.StreamCloseResponse(ecm_channel_id=c,
                                                                  ecm_stream_id=s),
        Kind.STREAM_ERROR: lambda: E.StreamError(ecm_channel_id=c, ecm_stream_id=s,
                                                 error_status=(0x7000,)),
        Kind.CW_PROVISION: lambda: E.CwProvision(
            ecm_channel_id=c, ecm_stream_id=s, cp_number=cp,
            cp_cw_combinations=(CpCw(cp_number=cp, cw=bytes(range(8))),
                                CpCw(cp_number=cp + 1, cw=bytes(range(8, 16)))),
            access_criteria=b"\x02\x0b\xb9"),
        Kind.ECM_RESPONSE: lambda: E.EcmResponse(ecm_channel_id=c, ecm_stream_id=s, cp_number=cp,
                                                 ecm_datagram=b"\x80\x70\x01\x00"),
    }
    return factories[kind]()


def emmg_event(kind: Kind, *, channel: int = CH, stream: int = ST, data_id: int | None = 9,
               client_id: int = CLIENT_ID) -> Event:
    """A valid EMMG⇔MUX event of ``kind``."""
    ids: dict[str, Any] = {"client_id": client_id, "data_channel_id": channel}
    c, s = channel, stream
    factories: dict[Kind, Callable[[], Event]] = {
        Kind.CHANNEL_SETUP: lambda: M.ChannelSetup(**ids, section_tspkt_flag=0),
        Kind.CHANNEL_TEST: lambda: M.ChannelTest(**ids),
        Kind.CHANNEL_STATUS: lambda: M.ChannelStatus(**ids, section_tspkt_flag=0),
        Kind.CHANNEL_CLOSE: lambda: M.ChannelClose(**ids),
        Kind.CHANNEL_ERROR: lambda: M.ChannelError(**ids, error_status=(0x7000,)),
        Kind.STREAM_SETUP: lambda: M.StreamSetup(client_id=client_id, data_channel_id=c,
                                                 data_stream_id=s, data_id=data_id, data_type=0),
        Kind.STREAM_TEST: lambda: M.StreamTest(client_id=client_id, data_channel_id=c,
                                               data_stream_id=s),
        Kind.STREAM_STATUS: lambda: M.StreamStatus(client_id=client_id, data_channel_id=c,
                                                   data_stream_id=s, data_id=data_id,
                                                   data_type=0),
        Kind.STREAM_CLOSE_REQUEST: lambda: M.StreamCloseRequest(
            client_id=client_id, data_channel_id=c, data_stream_id=s),
        Kind.STREAM_CLOSE_RESPONSE: lambda: M.StreamCloseResponse(
            client_id=client_id, data_channel_id=c, data_stream_id=s),
        Kind.STREAM_ERROR: lambda: M.StreamError(client_id=client_id, data_channel_id=c,
                                                 data_stream_id=s, error_status=(0x7000,)),
        Kind.STREAM_BW_REQUEST: lambda: M.StreamBwRequest(
            client_id=client_id, data_channel_id=c, data_stream_id=s, bandwidth_kbps=100),
        Kind.STREAM_BW_ALLOCATION: lambda: M.StreamBwAllocation(
            client_id=client_id, data_channel_id=c, data_stream_id=s, bandwidth_kbps=50),
        Kind.DATA_PROVISION: lambda: M.DataProvision(
            client_id=client_id, data_channel_id=c, data_stream_id=s, data_id=data_id,
            datagrams=(b"\x82\x70\x01\xaa",)),
    }
    return factories[kind]()


Pair = tuple[Connection, Connection]


def ecmg_pair(*, channel_open: bool = True, stream_open: bool = False,
              version: int = 2) -> Pair:
    """(scs, ecmg) connections, driven to the requested state."""
    scs, ecmg = Connection(Role.SCS, version=version), Connection(Role.ECMG)
    ecm_id = 7 if version >= 2 else None
    if channel_open or stream_open:
        exchange(ecmg_event(Kind.CHANNEL_SETUP), scs, ecmg)
        exchange(ecmg_event(Kind.CHANNEL_STATUS), ecmg, scs)
    if stream_open:
        exchange(ecmg_event(Kind.STREAM_SETUP, ecm_id=ecm_id), scs, ecmg)
        exchange(ecmg_event(Kind.STREAM_STATUS, ecm_id=ecm_id), ecmg, scs)
    return scs, ecmg


def emmg_pair(*, channel_open: bool = True, stream_open: bool = False,
              version: int = 2) -> Pair:
    """(emmg, mux) connections, driven to the requested state."""
    emmg, mux = Connection(Role.EMMG, version=version), Connection(Role.MUX)
    data_id = 9 if version >= 2 else None
    if channel_open or stream_open:
        exchange(emmg_event(Kind.CHANNEL_SETUP), emmg, mux)
        exchange(emmg_event(Kind.CHANNEL_STATUS), mux, emmg)
    if stream_open:
        exchange(emmg_event(Kind.STREAM_SETUP, data_id=data_id), emmg, mux)
        exchange(emmg_event(Kind.STREAM_STATUS, data_id=data_id), mux, emmg)
    return emmg, mux


@pytest.fixture
def scs_ecmg() -> Pair:
    return ecmg_pair(stream_open=True)


@pytest.fixture
def emmg_mux() -> Pair:
    return emmg_pair(stream_open=True)
