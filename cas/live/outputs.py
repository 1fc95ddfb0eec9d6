"""Where the multiplex goes: UDP (unicast or multicast, optionally RTP), a file, stdout.

Each output takes whole datagrams (whole TS packets, 7 by default) from the pacer.

* **UDP**: one ``sendto`` per datagram.  Multicast gets ``IP_MULTICAST_TTL`` and, with an
  ``interface`` (a local IPv4 address), ``IP_MULTICAST_IF``; unicast gets ``IP_TTL``.
* **RTP** (RFC 3550 with the MP2T payload of RFC 2250 §2): a 12-byte header in front of the
  packets: version 2, payload type 33, a sequence number per datagram, a 90 kHz timestamp
  from the send time, a random SSRC.
* **file** / **stdout**: the packets back to back (a ``.ts`` file any tool reads).

An output never sends part of a datagram: the pacer stops between datagrams, and
:meth:`close` only closes.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from typing import IO, Protocol

from cas.errors import ConfigError
from cas.live.config import OutputConfig, OutputKind
from cas.live.pacer import Datagram

RTP_VERSION = 2
#: RFC 3551 static payload type for MPEG-2 TS (MP2T).
RTP_PT_MP2T = 33
RTP_CLOCK_HZ = 90_000


class Output(Protocol):
    def send(self, datagram: Datagram) -> None: ...

    def close(self) -> None: ...


class RtpHeader:
    """RFC 3550 §5.1 fixed header for consecutive MP2T datagrams."""

    def __init__(self, *, ssrc: int | None = None, first_seq: int | None = None) -> None:
        self.ssrc = int.from_bytes(os.urandom(4), "big") if ssrc is None else ssrc
        self.seq = int.from_bytes(os.urandom(2), "big") if first_seq is None else first_seq
        self._t0 = time.monotonic()

    def next(self, now_s: float | None = None) -> bytes:
        t = (time.monotonic() if now_s is None else now_s) - self._t0
        ts = int(t * RTP_CLOCK_HZ) & 0xFFFF_FFFF
        header = struct.pack("!BBHII", RTP_VERSION << 6, RTP_PT_MP2T, self.seq, ts, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        return header


class UdpOutput:
    """Datagrams to ``host:port`` (unicast or multicast), optionally behind an RTP header."""

    def __init__(self, host: str, port: int, *, ttl: int = 16, interface: str = "",
                 rtp: bool = False) -> None:
        try:
            addr = socket.gethostbyname(host)
        except OSError as exc:
            raise ConfigError(f"[output].url: cannot resolve {host!r}: {exc}").with_id(
                "live.output_url_cannot_resolve", host=f"{host!r}", exc=exc) from None
        self.address = (addr, port)
        first = int(addr.split(".", 1)[0])
        self.multicast = 224 <= first <= 239
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.multicast:
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
                if interface:
                    self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                          socket.inet_aton(interface))
            else:
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                if interface:
                    self._sock.bind((interface, 0))
            # A bigger send buffer absorbs the scheduler's hiccups at high bitrates.
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"[output].interface: {interface!r}: {exc.strerror or exc}").with_id(
                "live.output_interface", interface=f"{interface!r}", value=exc.strerror or exc) from None
        self._rtp = RtpHeader() if rtp else None
        self.errors = 0

    def send(self, datagram: Datagram) -> None:
        if self._rtp is not None:
            datagram = self._rtp.next() + datagram
        try:
            self._sock.sendto(datagram, self.address)
        except (BlockingIOError, ConnectionRefusedError):
            # A unicast receiver not listening yet answers with ICMP port unreachable; a live
            # output keeps going (a receiver may join at any time).
            self.errors += 1

    def close(self) -> None:
        self._sock.close()


class StreamOutput:
    """Datagrams written back to back to a file object (a ``.ts`` file or stdout)."""

    def __init__(self, fh: IO[bytes], *, flush_each: bool, owned: bool) -> None:
        self._fh = fh
        self._flush_each = flush_each
        self._owned = owned

    def send(self, datagram: Datagram) -> None:
        self._fh.write(datagram)
        if self._flush_each:
            self._fh.flush()

    def close(self) -> None:
        try:
            self._fh.flush()
        finally:
            if self._owned:
                self._fh.close()


def open_output(cfg: OutputConfig) -> Output:
    """The output named by ``[output]``."""
    if cfg.kind is OutputKind.STDOUT:
        return StreamOutput(sys.stdout.buffer, flush_each=True, owned=False)
    if cfg.kind is OutputKind.FILE:
        assert cfg.path is not None
        try:
            fh = cfg.path.open("wb")
        except OSError as exc:
            raise ConfigError(f"[output].url: {cfg.path}: {exc.strerror or exc}").with_id(
                "live.output_url", path=cfg.path, value=exc.strerror or exc) from None
        return StreamOutput(fh, flush_each=False, owned=True)
    return UdpOutput(cfg.host, cfg.port, ttl=cfg.ttl, interface=cfg.interface,
                     rtp=cfg.kind is OutputKind.RTP)
