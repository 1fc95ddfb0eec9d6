"""Wire a SimulCrypt client to a server in memory (no sockets), h11-style."""

from __future__ import annotations

from cas.formats.simulcrypt import Message, Parameter, build_message
from cas.headend.simulcrypt import NEED_DATA, Connection, ConnectionClosed, PeerProtocolError
from cas.headend.simulcrypt.events import Event

Received = Event | PeerProtocolError | ConnectionClosed


def deliver(data: bytes, dst: Connection) -> list[Received]:
    """Feed ``data`` to ``dst``; return every event (or refusal) it produced, in order."""
    dst.receive_data(data)
    out: list[Received] = []
    while True:
        try:
            event = dst.next_event()
        except PeerProtocolError as exc:
            out.append(exc)
            continue
        if event is NEED_DATA:
            return out
        assert isinstance(event, Event | ConnectionClosed)
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out


def exchange(event: Event, src: Connection, dst: Connection) -> Received:
    """``src`` sends ``event``; return the single thing ``dst`` makes of it."""
    got = deliver(src.send(event), dst)
    assert len(got) == 1, got
    return got[0]


def refusal(data: bytes, dst: Connection) -> PeerProtocolError:
    """Feed raw ``data`` that must be refused; return the refusal."""
    got = deliver(data, dst)
    assert len(got) == 1 and isinstance(got[0], PeerProtocolError), got
    return got[0]


def raw(version: int, message_type: int, *params: tuple[int, bytes]) -> bytes:
    """A frame built by hand (parameters in the order given)."""
    return build_message(Message(protocol_version=version, message_type=message_type,
                                 parameters=tuple(Parameter(type=t, value=v) for t, v in params)))


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")
