"""Bridge between a virtual card and pcscd's ``vsmartcard-vpcd`` reader driver.

The vpcd driver (frankmorgner/vsmartcard, ``virtualsmartcard/src/vpcd/vpcd.c``) listens on
TCP port ``port + slot`` for each of its reader slots; the virtual card ("vicc") connects
to it.  Every message in either direction is a 2-byte big-endian length followed by that
many bytes.  vpcd drives the conversation (WIRE-FACTS §5.3):

* a 1-byte message is a control code: ``0x00`` power off, ``0x01`` power on, ``0x02`` reset
  (no reply to any of these), ``0x04`` get ATR (reply: the ATR, length-prefixed).  pcscd
  polls presence with get-ATR every few hundred milliseconds, so it is answered at any time;
* any longer message is a command APDU; the reply is the response APDU (data + SW).

The protocol logic is :class:`VpcdProtocol` (bytes in, bytes out, no I/O); :class:`VpcdBridge`
runs it over a socket and reconnects with backoff when pcscd goes away and comes back.
``TCP_NODELAY`` stops Nagle from holding back a reply behind the previous one's ACK, and
``TCP_QUICKACK`` (which Linux clears again after it acknowledges, hence re-armed after every
``recv``) stops the delayed-ACK timer from stalling each APDU by ~40 ms.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cas.errors import UsageError

log = logging.getLogger(__name__)

#: Default vpcd port (0x8C7B); slot ``n`` of the first reader listens on ``port + n``.
DEFAULT_VPCD_PORT = 35963
DEFAULT_VPCD_HOST = "127.0.0.1"

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04

_MAX_MESSAGE = 0xFFFF


class VirtualCard(Protocol):
    """What the bridge needs from a card (the applet implements it)."""

    def atr(self) -> bytes: ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...

    def transmit(self, apdu: bytes) -> bytes: ...


def parse_endpoint(text: str, *, default_port: int = DEFAULT_VPCD_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, ""
    host = host or DEFAULT_VPCD_HOST
    try:
        port = int(port_text) if port_text else default_port
    except ValueError as exc:
        raise UsageError(f"bad vpcd endpoint {text!r}: port must be a number").with_id(
            "card.bad_vpcd_endpoint_port", text=f"{text!r}") from exc
    if not 0 < port < 0x10000:
        raise UsageError(f"bad vpcd endpoint {text!r}: port out of range").with_id(
            "card.bad_vpcd_endpoint_port_2", text=f"{text!r}")
    return host, port


class VpcdProtocol:
    """Sans-I/O vicc side of the vpcd protocol for one card.

    :meth:`receive_data` takes whatever arrived on the socket and returns the bytes to send
    back (possibly empty: power controls have no reply, and a message may be incomplete).
    """

    __slots__ = ("_buf", "card")

    def __init__(self, card: VirtualCard) -> None:
        self.card = card
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out = bytearray()
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if n - pos - 2 < size:
                break
            message = bytes(buf[pos + 2 : pos + 2 + size])
            pos += 2 + size
            reply = self._handle(message)
            if reply is not None:
                if len(reply) > _MAX_MESSAGE:  # cannot be framed; a card never answers that much
                    reply = b"\x6f\x00"
                out += len(reply).to_bytes(2, "big")
                out += reply
        if pos:
            del buf[:pos]
        return bytes(out)

    def _handle(self, message: bytes) -> bytes | None:
        if len(message) == 1:
            code = message[0]
            if code == CTRL_GET_ATR:
                return self.card.atr()
            if code == CTRL_POWER_ON:
                self.card.power_on()
            elif code == CTRL_POWER_OFF:
                self.card.power_off()
            elif code == CTRL_RESET:
                self.card.reset()
            else:
                log.warning("vpcd: unknown control code 0x%02X ignored", code)
            return None
        if not message:
            return None
        return self.card.transmit(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Reconnect delays: ``initial_s`` doubling up to ``max_s``; reset after a connection."""

    initial_s: float = 0.05
    max_s: float = 2.0


class VpcdBridge:
    """Keeps one card connected to one vpcd slot, reconnecting whenever the link drops.

    Run :meth:`serve` in a thread (or :meth:`start`); :meth:`stop` ends it from any thread.
    """

    def __init__(self, card: VirtualCard, host: str = DEFAULT_VPCD_HOST,
                 port: int = DEFAULT_VPCD_PORT, *, backoff: Backoff | None = None,
                 on_state: Callable[[str], None] | None = None) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.backoff = backoff or Backoff()
        self._on_state = on_state
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connections = 0  # how many times we (re)connected: reported by tests/diagnostics

    # --- control ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float | None = None) -> bool:
        return self._connected.wait(timeout_s)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve, name=f"vpcd-{self.host}:{self.port}",
                                  daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            # Shutting the socket down wakes up the blocking recv() in the serving thread.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    # --- serving ----------------------------------------------------------------------------
    def serve(self) -> None:
        delay = self.backoff.initial_s
        while not self._stop.is_set():
            sock = self._connect()
            if sock is None:
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff.max_s)
                continue
            delay = self.backoff.initial_s
            self.connections += 1
            self._connected.set()
            self._notify("connected")
            log.info("vpcd: card connected to %s:%d", self.host, self.port)
            try:
                self._run(sock)
            except OSError as exc:
                if not self._stop.is_set():
                    log.info("vpcd: link to %s:%d lost: %s", self.host, self.port, exc)
            finally:
                self._connected.clear()
                with self._lock:
                    self._sock = None
                sock.close()
                # The reader dropped us: whatever session the card had is over.
                self.card.power_off()
                self._notify("disconnected")
            if not self._stop.is_set():
                self._stop.wait(self.backoff.initial_s)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError:
            return None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quickack(sock)
        with self._lock:
            if self._stop.is_set():
                sock.close()
                return None
            self._sock = sock
        return sock

    def _run(self, sock: socket.socket) -> None:
        proto = VpcdProtocol(self.card)
        recv = sock.recv
        sendall = sock.sendall
        while True:
            data = recv(_MAX_MESSAGE + 2)
            if not data:
                log.info("vpcd: %s:%d closed the link", self.host, self.port)
                return
            _quickack(sock)
            reply = proto.receive_data(data)
            if reply:
                sendall(reply)

    def _notify(self, state: str) -> None:
        if self._on_state is not None:
            self._on_state(state)


def _quickack(sock: socket.socket) -> None:
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:  # Linux only; elsewhere NODELAY alone has to do
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


def serve_cards(cards: Sequence[VirtualCard], host: str = DEFAULT_VPCD_HOST,
                port: int = DEFAULT_VPCD_PORT, *, stop: threading.Event,
                backoff: Backoff | None = None,
                on_state: Callable[[int, str], None] | None = None) -> None:
    """Serve ``cards[i]`` on vpcd slot ``i`` (TCP ``port + i``) until ``stop`` is set."""
    bridges: list[VpcdBridge] = []
    for slot, card in enumerate(cards):
        def notify(state: str, slot: int = slot) -> None:
            if on_state is not None:
                on_state(slot, state)
        bridge = VpcdBridge(card, host, port + slot, backoff=backoff, on_state=notify)
        bridge.start()
        bridges.append(bridge)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for bridge in bridges:
            bridge.stop()


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes (helper for callers and tests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
