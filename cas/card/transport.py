"""How a host reaches a card: the :class:`CardTransport` contract and the in-process transport.

A transport moves raw APDUs (ISO/IEC 7816-4 §5): :meth:`CardTransport.transmit` takes a
command APDU and returns the response APDU *including* its status word, without judging it;
:class:`cas.card.client.CardClient` interprets status words.  Two transports exist:
:class:`InProcessTransport` (an :class:`~cas.card.applet.Applet` object in this process: unit
tests, the embedded demo) and :class:`cas.card.pcsc.PcscTransport` (a real PC/SC reader).

Tracing follows pyscard's ``CardConnection``: observers are told of every command and
response; :class:`ApduTracer` is the observer behind ``--trace``.  PIN bytes (VERIFY and
CHANGE REFERENCE DATA, INS 20/24) are masked in traces: a trace is a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from cas.card.vpcd import VirtualCard


@runtime_checkable
class CardTransport(Protocol):
    """Raw APDU access to one card."""

    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> bytes: ...


class ApduObserver(Protocol):
    """Told of each exchange: the command, the response (or ``None`` on a transport error),
    and the round-trip time in seconds."""

    def __call__(self, command: bytes, response: bytes | None, elapsed_s: float) -> None: ...


_PIN_INS = {0x20, 0x24}


def mask_apdu(command: bytes) -> bytes:
    """The command with PIN data replaced by ``FF`` bytes (for traces and logs)."""
    if len(command) > 5 and command[1] in _PIN_INS:
        return command[:5] + b"\xff" * (len(command) - 5)
    return command


def format_exchange(command: bytes, response: bytes | None, elapsed_s: float) -> str:
    """``> 80 CA 01 01 00`` / ``< 12 34 56 78 90 00  (0.21 ms)`` — two lines, PINs masked."""
    out = "> " + mask_apdu(command).hex(" ").upper()
    if response is None:
        return out + "\n< (transport error)"
    return out + f"\n< {response.hex(' ').upper()}  ({elapsed_s * 1000:.2f} ms)"


class ApduTracer:
    """An observer that writes each exchange through ``write`` (e.g. ``click.echo``)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def __call__(self, command: bytes, response: bytes | None, elapsed_s: float) -> None:
        self._write(format_exchange(command, response, elapsed_s))


class ObservableTransport:
    """Mixin: observer list plus :meth:`_notify`."""

    def __init__(self) -> None:
        self._observers: list[ApduObserver] = []

    def add_observer(self, observer: ApduObserver) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: ApduObserver) -> None:
        self._observers.remove(observer)

    def _notify(self, command: bytes, response: bytes | None, elapsed_s: float) -> None:
        for observer in self._observers:
            observer(command, response, elapsed_s)


class InProcessTransport(ObservableTransport):
    """A card applet in this process, reached by direct calls (no reader, no pcscd).

    ``card`` is anything with the :class:`~cas.card.vpcd.VirtualCard` methods — normally an
    :class:`~cas.card.applet.Applet`.  The card is powered on at construction, as a reader
    does when a card is inserted.
    """

    def __init__(self, card: VirtualCard) -> None:
        super().__init__()
        self.card = card
        card.power_on()

    def atr(self) -> bytes:
        return self.card.atr()

    def transmit(self, apdu: bytes) -> bytes:
        if not self._observers:
            return self.card.transmit(apdu)
        start = time.perf_counter()
        response = self.card.transmit(apdu)
        self._notify(apdu, response, time.perf_counter() - start)
        return response

    def reset(self) -> None:
        """Warm reset: a new card session (verified PIN forgotten)."""
        self.card.reset()

    def close(self) -> None:
        self.card.power_off()
