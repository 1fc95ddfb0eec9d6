"""The state tables, and that a real Connection follows every entry (and refuses the rest)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from cas.errors import LocalProtocolError
from cas.formats.simulcrypt import build_message
from cas.headend.simulcrypt import ChannelState, Connection, Kind, PeerProtocolError, Side
from cas.headend.simulcrypt import StreamState as SS
from cas.headend.simulcrypt.events import Event
from cas.headend.simulcrypt.state import (
    CHANNEL_TABLE,
    ERROR_KINDS,
    STREAM_TABLE,
    next_channel_state,
    next_stream_state,
)

from .conftest import ST, ecmg_event, ecmg_pair, emmg_event, emmg_pair
from .helpers import deliver, exchange

ECMG_ONLY = {Kind.CW_PROVISION, Kind.ECM_RESPONSE}
EMMG_ONLY = {Kind.STREAM_BW_REQUEST, Kind.STREAM_BW_ALLOCATION, Kind.DATA_PROVISION}
INTERFACES: dict[str, tuple[Callable[..., tuple[Connection, Connection]],
                            Callable[..., Event], set[Kind]]] = {
    "ecmg": (ecmg_pair, ecmg_event, EMMG_ONLY),
    "emmg": (emmg_pair, emmg_event, ECMG_ONLY),
}


def _channel_in(state: ChannelState, name: str) -> tuple[Connection, Connection]:
    make_pair, make_event, _ = INTERFACES[name]
    client, server = make_pair(channel_open=state is ChannelState.OPEN)
    if state is ChannelState.OPENING:
        exchange(make_event(Kind.CHANNEL_SETUP), client, server)
    return client, server


def _stream_in(state: SS, name: str) -> tuple[Connection, Connection]:
    make_pair, make_event, _ = INTERFACES[name]
    client, server = make_pair(stream_open=state in (SS.OPEN, SS.CLOSING))
    if state is SS.OPENING:
        exchange(make_event(Kind.STREAM_SETUP), client, server)
    elif state is SS.CLOSING:
        exchange(make_event(Kind.STREAM_CLOSE_REQUEST), client, server)
    return client, server


def test_tables_cover_every_message_kind() -> None:
    in_tables = {k for _, k, _ in CHANNEL_TABLE} | {k for _, k, _ in STREAM_TABLE} | ERROR_KINDS
    assert in_tables == set(Kind)
    assert all(k.is_channel_level for _, k, _ in CHANNEL_TABLE)
    assert not any(k.is_channel_level for _, k, _ in STREAM_TABLE)


def test_errors_only_cancel_a_pending_setup() -> None:
    for side, state in itertools.product(Side, ChannelState):
        expected = ChannelState.IDLE if (side is Side.SERVER and state is ChannelState.OPENING) \
            else state
        assert next_channel_state(side, Kind.CHANNEL_ERROR, state) is expected
    for side, sstate in itertools.product(Side, SS):
        expected_s = SS.ABSENT if (side is Side.SERVER and sstate is SS.OPENING) else sstate
        assert next_stream_state(side, Kind.STREAM_ERROR, sstate) is expected_s


@pytest.mark.parametrize("name", ["ecmg", "emmg"])
@pytest.mark.parametrize(("entry", "result"), list(CHANNEL_TABLE.items()),
                         ids=[f"{s.value}-{k.value}-{st.value}" for s, k, st in CHANNEL_TABLE])
def test_connection_follows_channel_table(name: str, entry: tuple[Side, Kind, ChannelState],
                                          result: ChannelState) -> None:
    sender_side, kind, state = entry
    client, server = _channel_in(state, name)
    sender, receiver = (client, server) if sender_side is Side.CLIENT else (server, client)
    event = INTERFACES[name][1](kind)
    got = exchange(event, sender, receiver)
    assert got == event
    assert sender.channel_state is result
    assert receiver.channel_state is result


@pytest.mark.parametrize("name", ["ecmg", "emmg"])
@pytest.mark.parametrize(("entry", "result"), list(STREAM_TABLE.items()),
                         ids=[f"{s.value}-{k.value}-{st.value}" for s, k, st in STREAM_TABLE])
def test_connection_follows_stream_table(name: str, entry: tuple[Side, Kind, SS],
                                         result: SS) -> None:
    sender_side, kind, state = entry
    if kind in INTERFACES[name][2]:
        return   # the other interface's message
    client, server = _stream_in(state, name)
    sender, receiver = (client, server) if sender_side is Side.CLIENT else (server, client)
    event = INTERFACES[name][1](kind)
    got = exchange(event, sender, receiver)
    assert got == event
    assert sender.stream_state(ST) is result
    assert receiver.stream_state(ST) is result


def _refused_everywhere(name: str, sender_side: Side, kind: Kind,
                        pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    sender, receiver = (client, server) if sender_side is Side.CLIENT else (server, client)
    event = INTERFACES[name][1](kind)
    before = (sender.channel_state, sender.stream_state(ST))
    with pytest.raises(LocalProtocolError):
        sender.send(event)
    assert (sender.channel_state, sender.stream_state(ST)) == before
    got = deliver(build_message(event.to_message(2)), receiver)
    assert len(got) == 1 and isinstance(got[0], PeerProtocolError)


@pytest.mark.parametrize("name", ["ecmg", "emmg"])
def test_channel_messages_outside_the_table_are_refused_both_ways(name: str) -> None:
    for side, kind, state in itertools.product(
            Side, [k for k in Kind if k.is_channel_level and k not in ERROR_KINDS],
            [ChannelState.IDLE, ChannelState.OPENING, ChannelState.OPEN]):
        if (side, kind, state) in CHANNEL_TABLE:
            continue
        _refused_everywhere(name, side, kind, _channel_in(state, name))


@pytest.mark.parametrize("name", ["ecmg", "emmg"])
def test_stream_messages_outside_the_table_are_refused_both_ways(name: str) -> None:
    kinds = [k for k in Kind if not k.is_channel_level and k not in ERROR_KINDS
             and k not in INTERFACES[name][2]]
    for side, kind, state in itertools.product(Side, kinds, list(SS)):
        if (side, kind, state) in STREAM_TABLE:
            continue
        _refused_everywhere(name, side, kind, _stream_in(state, name))
    # and every stream message needs an open channel
    for side, kind in itertools.product(Side, kinds):
        _refused_everywhere(name, side, kind, _channel_in(ChannelState.IDLE, name))


@pytest.mark.parametrize("name", ["ecmg", "emmg"])
def test_channel_close_forgets_every_stream(name: str) -> None:
    client, server = _stream_in(SS.OPEN, name)
    exchange(INTERFACES[name][1](Kind.CHANNEL_CLOSE), client, server)
    for conn in (client, server):
        assert conn.channel_state is ChannelState.CLOSED
        assert conn.streams == {}
