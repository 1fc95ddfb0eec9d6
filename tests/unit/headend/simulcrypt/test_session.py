"""The servers' shared event loop (cas.headend.simulcrypt.session), through both servers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cas.errors import CasError, ProtocolError
from cas.formats.simulcrypt import EcmgScsError as EE
from cas.formats.simulcrypt import EmmgMuxError as ME
from cas.headend.simulcrypt import Connection, CpCw, Role
from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.ecmg import EcmgConfig, EcmgRegistry, EcmgSession, EcmRequest
from cas.headend.simulcrypt.mux import MemorySink, MuxConfig, MuxRegistry, MuxSession
from cas.headend.simulcrypt.session import ServerSession, is_refusal

from . import test_ecmg_session as ecmg_wire
from . import test_mux_session as mux_wire
from .helpers import deliver


class _SinkFailed(CasError):
    """A failure of our own, without an error_status of its own."""


class _FailingSink(MemorySink):
    def write(self, *, client_id: int, data_id: int | None, datagrams: Sequence[bytes],
              ts_packets: bool) -> None:
        raise _SinkFailed("disk full")


def _out_of_storage(request: EcmRequest) -> bytes:
    raise ProtocolError("no room for this ECM", error_status=EE.OUT_OF_STORAGE)


def test_a_failure_of_our_own_is_answered_with_channel_error_and_the_mux_carries_on() -> None:
    wire = mux_wire.Wire(MuxSession(MuxConfig(), _FailingSink(), MuxRegistry()))
    wire.open()
    answer = wire.provision(mux_wire.section(1))
    assert answer == [M.ChannelError(client_id=mux_wire.CLIENT, data_channel_id=1,
                                     error_status=(ME.UNKNOWN_ERROR,))]
    assert not wire.session.closed
    assert isinstance(wire.one(M.ChannelTest(client_id=mux_wire.CLIENT, data_channel_id=1)),
                      M.ChannelStatus)


def test_a_failure_carrying_a_status_is_answered_with_that_status_and_the_ecmg_carries_on() -> None:
    registry = EcmgRegistry()
    wire = ecmg_wire.Wire(EcmgSession(EcmgConfig(), _out_of_storage, registry,
                                      clock=lambda: ecmg_wire.NOW))
    ecmg_wire._open(wire)
    answer = wire.one(E.CwProvision(
        ecm_channel_id=1, ecm_stream_id=1, cp_number=5,
        cp_cw_combinations=(CpCw(cp_number=5, cw=bytes(8)), CpCw(cp_number=6, cw=bytes(8))),
        access_criteria=ecmg_wire.AC_FULL))
    assert answer == E.ChannelError(ecm_channel_id=1, error_status=(EE.OUT_OF_STORAGE,))
    assert registry.errors_sent == 1 and registry.ecms_sent == 0
    assert isinstance(wire.one(E.ChannelTest(ecm_channel_id=1)), E.ChannelStatus)


def _ecmg() -> tuple[ServerSession, Connection, object]:
    session = EcmgSession(EcmgConfig(), ecmg_wire.FakeBuilder(), EcmgRegistry())
    return session, Connection(Role.SCS), E.ChannelSetup(ecm_channel_id=4,
                                                          super_cas_id=ecmg_wire.SUPER)


def _mux() -> tuple[ServerSession, Connection, object]:
    session = MuxSession(MuxConfig(), MemorySink(), MuxRegistry())
    return session, Connection(Role.EMMG), M.ChannelSetup(client_id=mux_wire.CLIENT,
                                                           data_channel_id=4,
                                                           section_tspkt_flag=0)


@pytest.mark.parametrize("make", [_ecmg, _mux], ids=["ecmg", "mux"])
def test_the_idle_probe_is_a_channel_test_only_on_an_open_channel(make: object) -> None:
    session, client, setup = make()  # type: ignore[operator]
    assert session.probe() is None                       # no channel yet: nothing to test
    answer = deliver(session.receive(client.send(setup)), client)
    assert [e.KIND.value for e in answer] == ["channel_status"]  # type: ignore[union-attr]
    probe = session.probe()
    assert probe is not None
    (test,) = deliver(probe, client)
    assert isinstance(test, E.ChannelTest | M.ChannelTest)
    assert test.stream_id is None and test.channel_id == 4
    session.receive(b"")                                 # the client went away
    assert session.closed and session.probe() is None


def test_refusals_are_the_error_messages_of_both_interfaces() -> None:
    assert is_refusal(E.ChannelError(ecm_channel_id=1, error_status=(EE.INV_MESSAGE,)))
    assert is_refusal(M.StreamError(client_id=1, data_channel_id=1, data_stream_id=1,
                                    error_status=(ME.INV_MESSAGE,)))
    assert not is_refusal(E.ChannelTest(ecm_channel_id=1))
    assert not is_refusal(M.StreamCloseResponse(client_id=1, data_channel_id=1,
                                                data_stream_id=1))
