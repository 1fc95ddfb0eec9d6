"""The box's live inputs: a transport stream from UDP (plain or RTP), from stdin, or a file.

What an IP set-top box's network front end does before its demux sees a byte:

* ``udp://127.0.0.1:5000`` — unicast: bind that address and port.
* ``udp://@239.1.1.1:1234`` (or ``udp://239.1.1.1:1234``) — multicast: bind the port, join
  the group (IGMP, ``IP_ADD_MEMBERSHIP``) on ``?interface=ADDR`` or the default interface;
  ``udp://SOURCE@239.1.1.1:1234`` joins source-specific (``IP_ADD_SOURCE_MEMBERSHIP``).
* ``udp://@:5000`` — any local address.  Port ``0`` lets the kernel pick one
  (:attr:`UdpInput.url` names it).
* ``rtp://…`` — the same, every datagram carries an RTP header (RFC 3550; MP2T payload, RFC
  2250).  On ``udp://`` an RTP header is detected per datagram: version 2 and a 0x47 right
  after the header, where a plain datagram starts with 0x47 itself.
* ``-`` — stdin; anything else is a file path.

:meth:`LiveInput.read` waits at most ``timeout_s`` and returns what arrived (possibly
nothing), so the caller's loop can look at its stop flag and its deadline between reads.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import parse_qs, urlsplit

from cas.errors import StreamError, UsageError
from firmware_stub.tsreader import READ_SIZE

#: Receive buffer asked of the kernel: ~0.8 s of a 40 Mbit/s multiplex (the box reads in
#: bursts between decisions; a small buffer would drop datagrams in between).
RCVBUF_BYTES = 4 << 20
#: Largest UDP datagram (an IPv4 payload) and the most bytes handed on per read.
MAX_DATAGRAM = 65_535
MAX_READ_BYTES = 1 << 20
RTP_VERSION = 2
RTP_HEADER = 12
# Linux <netinet/in.h>; Python's socket module lacks the source-specific one on some builds.
IP_ADD_SOURCE_MEMBERSHIP = getattr(socket, "IP_ADD_SOURCE_MEMBERSHIP", 39)


class InputKind(StrEnum):
    FILE = "file"
    STDIN = "stdin"
    UDP = "udp"
    RTP = "rtp"


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSpec:
    """Where the stream comes from (parsed from the command line's STREAM argument)."""

    kind: InputKind
    text: str
    path: Path | None = None
    host: str = ""  # address to bind (the group itself for multicast)
    port: int = 0
    group: str | None = None  # multicast group to join
    source: str | None = None  # source-specific multicast sender
    interface: str | None = None  # local interface address for the join

    @property
    def network(self) -> bool:
        return self.kind in (InputKind.UDP, InputKind.RTP)


def _ipv4(text: str, what: str, url: str) -> str:
    try:
        socket.inet_aton(text)
    except OSError:
        raise UsageError(f"{url}: {what} {text!r} is not an IPv4 address").with_id(
            "box.not_ipv4_address", url=url, what=what, text=f"{text!r}") from None
    if text.count(".") != 3:
        raise UsageError(f"{url}: {what} {text!r} is not an IPv4 address").with_id(
            "box.not_ipv4_address", url=url, what=what, text=f"{text!r}")
    return text


def _is_multicast(address: str) -> bool:
    return 224 <= int(address.split(".")[0]) <= 239


def parse_input(text: str, *, interface: str | None = None) -> InputSpec:
    """``udp://[source@][@]host:port[?interface=ADDR]``, ``rtp://…``, ``-`` or a path."""
    if text == "-":
        return InputSpec(kind=InputKind.STDIN, text=text)
    scheme, sep, _ = text.partition("://")
    if not sep or scheme.lower() == "file":
        path = Path(text[len("file://"):] if sep else text)
        return InputSpec(kind=InputKind.FILE, text=text, path=path)
    scheme = scheme.lower()
    if scheme not in ("udp", "rtp"):
        raise UsageError(f"{text}: unsupported input (use udp://, rtp://, - or a file)").with_id(
            "box.unsupported_input_udp_rtp", text=text)
    parts = urlsplit(text)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"interface", "localaddr"})
    if unknown:
        raise UsageError(f"{text}: unknown option {unknown[0]!r} (interface=ADDR)").with_id(
            "box.unknown_option_interface_addr", text=text, unknown=f"{unknown[0]!r}")
    for key in ("interface", "localaddr"):
        if key in query:
            interface = query[key][-1]
    netloc = parts.netloc
    source: str | None = None
    if "@" in netloc:
        source_text, _, netloc = netloc.rpartition("@")
        source = source_text or None
    host, colon, port_text = netloc.rpartition(":")
    if not colon:
        raise UsageError(f"{text}: no port (e.g. {scheme}://@239.1.1.1:1234)").with_id(
            "box.no_port_e_g", text=text, scheme=scheme)
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"{text}: port {port_text!r} is not a number").with_id(
            "box.port_not_number", text=text, port_text=f"{port_text!r}") from None
    if not 0 <= port <= 65_535:
        raise UsageError(f"{text}: port {port} is out of range").with_id(
            "box.port_out_range", text=text, port=port)
    group = None
    if host:
        _ipv4(host, "address", text)
        if _is_multicast(host):
            group = host
    if source is not None:
        _ipv4(source, "source", text)
        if group is None:
            raise UsageError(f"{text}: a source@ address needs a multicast group").with_id(
                "box.source_address_needs_multicast", text=text)
    if interface is not None:
        _ipv4(interface, "interface", text)
    return InputSpec(kind=InputKind(scheme), text=text, host=host or "0.0.0.0", port=port,
                     group=group, source=source, interface=interface)


@dataclass(slots=True)
class InputStats:
    """What the front end saw (the report's ``input`` object)."""

    url: str
    datagrams: int = 0
    bytes: int = 0  # TS bytes handed on
    rtp_datagrams: int = 0
    rtp_lost: int = 0  # gaps in the RTP sequence numbers
    rtp_reordered: int = 0
    bad_datagrams: int = 0  # neither TS nor RTP-with-TS (counted, dropped)

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "datagrams": self.datagrams, "bytes": self.bytes,
                "rtp_datagrams": self.rtp_datagrams, "rtp_lost": self.rtp_lost,
                "rtp_reordered": self.rtp_reordered, "bad_datagrams": self.bad_datagrams}


class RtpUnwrapper:
    """Datagram -> TS bytes: strips an RTP header (RFC 3550 §5.1) when there is one.

    ``force``: every datagram must be RTP (``rtp://``); otherwise a datagram starting with
    0x47 is plain TS and anything else is tried as RTP.  Sequence numbers are followed to
    count lost and reordered datagrams (the box cannot ask for them again: it just counts).
    """

    def __init__(self, stats: InputStats, *, force: bool = False) -> None:
        self.stats = stats
        self.force = force
        self._next_seq: int | None = None

    def payload(self, datagram: bytes) -> bytes:
        stats = self.stats
        stats.datagrams += 1
        if not self.force and datagram[:1] == b"\x47":
            stats.bytes += len(datagram)
            return datagram
        ts = self._rtp(datagram)
        if ts is None:
            stats.bad_datagrams += 1
            return b""
        stats.bytes += len(ts)
        return ts

    def _rtp(self, datagram: bytes) -> bytes | None:
        n = len(datagram)
        if n < RTP_HEADER or datagram[0] >> 6 != RTP_VERSION:
            return None
        start = RTP_HEADER + 4 * (datagram[0] & 0x0F)  # CSRC list
        if datagram[0] & 0x10:  # header extension: 16-bit profile, 16-bit length in words
            if n < start + 4:
                return None
            start += 4 + 4 * struct.unpack_from(">H", datagram, start + 2)[0]
        end = n - (datagram[-1] if datagram[0] & 0x20 else 0)  # padding
        if start >= end or datagram[start] != 0x47:
            return None
        self.stats.rtp_datagrams += 1
        seq = struct.unpack_from(">H", datagram, 2)[0]
        if self._next_seq is not None and seq != self._next_seq:
            gap = (seq - self._next_seq) & 0xFFFF
            if gap < 0x8000:
                self.stats.rtp_lost += gap
            else:
                self.stats.rtp_reordered += 1
                return datagram[start:end]  # late: keep the sequence where it was
        self._next_seq = (seq + 1) & 0xFFFF
        return datagram[start:end]


class LiveInput(Protocol):
    """A source the live loop reads with a timeout."""

    stats: InputStats

    @property
    def url(self) -> str: ...

    @property
    def eof(self) -> bool: ...

    def read(self, timeout_s: float) -> bytes: ...

    def close(self) -> None: ...


class UdpInput:
    """A bound (and, for multicast, joined) UDP socket; :meth:`read` drains what is queued."""

    def __init__(self, spec: InputSpec, *, rcvbuf_bytes: int = RCVBUF_BYTES) -> None:
        self.spec = spec
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
            if spec.group is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((spec.host, spec.port))
            if spec.group is not None:
                self._join(sock, spec)
        except OSError as exc:
            sock.close()
            raise StreamError(f"cannot listen on {spec.text}: {exc.strerror or exc}").with_id(
                "box.cannot_listen", text=spec.text, value=exc.strerror or exc) from exc
        sock.setblocking(False)
        self._sock = sock
        port = sock.getsockname()[1]
        where = f"@{spec.group}" if spec.group else spec.host
        if spec.source:
            where = f"{spec.source}@{spec.group}"
        self._url = f"{spec.kind.value}://{where}:{port}"
        self.stats = InputStats(url=self._url)
        self._unwrap = RtpUnwrapper(self.stats, force=spec.kind is InputKind.RTP)

    @staticmethod
    def _join(sock: socket.socket, spec: InputSpec) -> None:
        assert spec.group is not None
        group = socket.inet_aton(spec.group)
        iface = socket.inet_aton(spec.interface or "0.0.0.0")
        if spec.source is not None:
            # struct ip_mreq_source (Linux): multiaddr, interface, sourceaddr
            mreq = group + iface + socket.inet_aton(spec.source)
            sock.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, mreq)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + iface)

    @property
    def url(self) -> str:
        return self._url

    @property
    def eof(self) -> bool:
        return False  # a network input never ends by itself

    def read(self, timeout_s: float) -> bytes:
        """Wait up to ``timeout_s`` for a datagram, then take every queued one (up to
        :data:`MAX_READ_BYTES`) without waiting again."""
        ready, _, _ = select.select([self._sock], [], [], max(timeout_s, 0.0))
        if not ready:
            return b""
        out = bytearray()
        while len(out) < MAX_READ_BYTES:
            try:
                datagram = self._sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError as exc:
                raise StreamError(f"{self._url}: {exc.strerror or exc}").with_id(
                    "box.error", url=self._url, value=exc.strerror or exc) from exc
            out += self._unwrap.payload(datagram)
        return bytes(out)

    def close(self) -> None:
        self._sock.close()


class PipeInput:
    """stdin or a file, read with a timeout (``select`` on the descriptor) until EOF."""

    def __init__(self, handle: BinaryIO, *, url: str, owned: bool) -> None:
        self._handle = handle
        self._fd = handle.fileno()
        self._owned = owned
        self._eof = False
        self.stats = InputStats(url=url)

    @property
    def url(self) -> str:
        return self.stats.url

    @property
    def eof(self) -> bool:
        return self._eof

    def read(self, timeout_s: float) -> bytes:
        if self._eof:
            return b""
        ready, _, _ = select.select([self._fd], [], [], max(timeout_s, 0.0))
        if not ready:
            return b""
        try:
            data = os.read(self._fd, READ_SIZE)
        except OSError as exc:
            raise StreamError(f"cannot read {self.url}: {exc.strerror or exc}").with_id(
                "box.cannot_read_2", url=self.url, value=exc.strerror or exc) from exc
        if not data:
            self._eof = True
        self.stats.bytes += len(data)
        return data

    def close(self) -> None:
        if self._owned:
            self._handle.close()


def open_input(spec: InputSpec) -> LiveInput:
    """Open the input a live run reads (a socket, stdin or a file)."""
    if spec.network:
        return UdpInput(spec)
    if spec.kind is InputKind.STDIN:
        return PipeInput(sys.stdin.buffer, url="-", owned=False)
    assert spec.path is not None
    try:
        handle = spec.path.open("rb", buffering=0)
    except OSError as exc:
        raise StreamError(f"cannot read {spec.path}: {exc.strerror}").with_id(
            "box.cannot_read_3", path=spec.path, strerror=exc.strerror) from exc
    return PipeInput(handle, url=str(spec.path), owned=True)  # type: ignore[arg-type]


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the event (a live run then ends cleanly: report, NVRAM)
    instead of killing the process; the previous handlers come back afterwards."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
