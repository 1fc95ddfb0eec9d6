"""A live source from UDP: a TS arriving unicast or multicast, an RTP header stripped."""

from __future__ import annotations

import socket
import struct
import threading

from cas.errors import ConfigError
from cas.live.sources.live import LiveSource
from cas.live.sources.program import (
    PACKET_SIZE,
)


class UdpSource(LiveSource):
    """A TS on UDP (``udp://HOST:PORT``; a multicast group is joined); an RTP header
    (RFC 3550, 12 bytes, version 2) in front of the packets is stripped."""

    def __init__(self, host: str, port: int, *, latency_s: float = 0.5,
                 program_number: int | None = None) -> None:
        super().__init__(f"udp://{host}:{port}", latency_s=latency_s,
                         program_number=program_number)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        first = host.split(".", 1)[0]
        multicast = first.isdigit() and 224 <= int(first) <= 239
        try:
            self._sock.bind(("0.0.0.0" if multicast else host, port))
            if multicast:
                mreq = struct.pack("4s4s", socket.inet_aton(host), socket.inet_aton("0.0.0.0"))
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"udp://{host}:{port}: {exc.strerror or exc}").with_id(
                "live.udp", host=host, port=port, value=exc.strerror or exc) from None
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._pump, name=f"udp-in-{port}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            self._put(strip_rtp(data))

    def close(self) -> None:
        super().close()
        self._thread.join(timeout=1)
        self._sock.close()


def strip_rtp(datagram: bytes) -> bytes:
    """The TS packets of a datagram, without an RTP header (RFC 3550 §5.1) if it has one."""
    if datagram[:1] == b"\x47" and len(datagram) % PACKET_SIZE == 0:
        return datagram
    if len(datagram) >= 12 and datagram[0] >> 6 == 2:
        cc = datagram[0] & 0x0F
        start = 12 + 4 * cc
        if datagram[0] & 0x10 and len(datagram) >= start + 4:  # header extension
            start += 4 + 4 * int.from_bytes(datagram[start + 2 : start + 4], "big")
        return datagram[start:]
    return datagram
