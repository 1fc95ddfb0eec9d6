"""What a SimulCrypt server does with one connection's bytes, without I/O.

:class:`ServerSession` is the loop both servers share (:class:`~.ecmg.EcmgSession`,
:class:`~.mux.MuxSession`); :mod:`.endpoint` drives it over a socket.  For each event the
:class:`~.connection.Connection` yields, in this order:

1. a message the connection refuses (:class:`~.events.PeerProtocolError`) is logged at
   WARNING and answered with the channel_error / stream_error the connection builds;
2. end of stream ends the session (:meth:`ServerSession._peer_closed`);
3. any other event goes to :meth:`ServerSession.handle`, the server's own decisions; a
   channel_error / stream_error among its answers is a refusal the server decided, logged at
   WARNING (unless the server logs it apart, as the ECMG does its shedding);
4. a :class:`cas.errors.CasError` out of ``handle`` (our bug or a builder's failure) is
   logged and answered with channel_error, and the connection carries on.

Every message in and out is logged at DEBUG.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

from cas.errors import CasError
from cas.formats.simulcrypt import ErrorKind

from .connection import NEED_DATA, Connection, ConnectionClosed, Role
from .events import Event, Kind, PeerProtocolError
from .state import ChannelState

_REFUSALS = frozenset({Kind.CHANNEL_ERROR, Kind.STREAM_ERROR})


def is_refusal(event: Event) -> bool:
    """A channel_error or a stream_error, on either interface."""
    return event.KIND in _REFUSALS


class ServerSession(ABC):
    """The server side of one connection: ``receive(data)`` returns the bytes to answer;
    ``closed`` tells the driver to close the connection."""

    log: ClassVar[logging.Logger]

    def __init__(self, role: Role, *, max_message_length: int, peer: str) -> None:
        self.peer = peer
        self.conn = Connection(role, max_message_length=max_message_length)
        self.closed = False
        self._received_at: float | None = None

    # --- what a server decides ---------------------------------------------------------------
    @abstractmethod
    def handle(self, event: Event) -> list[Event]:
        """The events that answer ``event`` (already accepted by the state machine)."""

    @abstractmethod
    def _channel_test(self) -> Event:
        """A channel_test for the open channel."""

    @abstractmethod
    def _failure_answer(self, error_status: int) -> Event:
        """The channel_error that answers a failure of our own."""

    @abstractmethod
    def _peer_closed(self) -> None:
        """The client ended the stream: release what the session holds."""

    def _logged_apart(self, event: Event, reply: Event) -> bool:
        """A refusal that ``handle`` logs itself (not one warning per refusal)."""
        return False

    @abstractmethod
    def _sent(self, event: Event, *, refusal: bool) -> None:
        """Count ``event``, about to be sent; ``refusal``: it answers a message the
        connection refused, or is a refusal ``handle`` decided and that was logged."""

    # --- bytes in, bytes out -----------------------------------------------------------------
    def receive(self, data: bytes, *, received_at: float | None = None) -> bytes:
        """Feed bytes from the client (``b""`` at end of stream); return the answer bytes.

        ``received_at``: when the bytes were read (``time.perf_counter``); None: unknown.
        """
        self._received_at = received_at
        self.conn.receive_data(data)
        out: list[bytes] = []
        log = self.log
        while not self.closed:
            try:
                event = self.conn.next_event()
            except PeerProtocolError as exc:
                log.warning("%s: refused: %s (0x%04X %s)", self.peer, exc, exc.error_status,
                            self.conn.spec.error_name(exc.error_status))
                out.append(self._send(self.conn.error_event(exc), refusal=True))
                continue
            if event is NEED_DATA:
                break
            if isinstance(event, ConnectionClosed):
                self._peer_closed()
                break
            assert isinstance(event, Event)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: <- %s", self.peer, event.summary())
            try:
                for reply in self.handle(event):
                    refusal = is_refusal(reply) and not self._logged_apart(event, reply)
                    if refusal:
                        # a refusal the server decided (ids in use, limits, CWs, ...)
                        log.warning("%s: %s refused: %s", self.peer, event.KIND.value,
                                    reply.summary())
                    out.append(self._send(reply, refusal=refusal))
            except CasError as exc:  # our own bug or a builder failure: answer, carry on
                log.warning("%s: %s failed: %s", self.peer, event.KIND.value, exc)
                status = getattr(exc, "error_status",
                                 self.conn.spec.status(ErrorKind.UNKNOWN_ERROR))
                out.append(self._send(self._failure_answer(status)))
        return b"".join(out)

    def probe(self) -> bytes | None:
        """The channel_test that checks an idle connection (None: no open channel)."""
        if self.closed or self.conn.channel_state is not ChannelState.OPEN:
            return None
        return self._send(self._channel_test())

    def _send(self, event: Event, *, refusal: bool = False) -> bytes:
        self._sent(event, refusal=refusal)
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s: -> %s", self.peer, event.summary())
        return self.conn.send(event)
