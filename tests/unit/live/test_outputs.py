"""Outputs on real sockets and files: whole datagrams, RTP header, TTL options."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.errors import ConfigError
from cas.live.config import OutputConfig, OutputKind
from cas.live.outputs import RTP_PT_MP2T, RtpHeader, UdpOutput, open_output


def _datagram(seed: int) -> bytes:
    return b"".join(bytes((0x47, 0, 0x10, (seed + i) & 0x0F)) + bytes([seed]) * 184
                    for i in range(7))


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_udp_unicast_sends_each_datagram_whole(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    out = open_output(OutputConfig(kind=OutputKind.UDP, url=f"udp://127.0.0.1:{port}",
                                   host="127.0.0.1", port=port))
    try:
        for seed in range(3):
            out.send(_datagram(seed))
        got = [receiver.recv(65536) for _ in range(3)]
    finally:
        out.close()
    assert got == [_datagram(s) for s in range(3)]


def test_rtp_header_in_front(receiver: socket.socket) -> None:
    port = receiver.getsockname()[1]
    out = open_output(OutputConfig(kind=OutputKind.RTP, url=f"rtp://127.0.0.1:{port}",
                                   host="127.0.0.1", port=port))
    try:
        out.send(_datagram(1))
        out.send(_datagram(2))
        a, b = receiver.recv(65536), receiver.recv(65536)
    finally:
        out.close()
    va, pta, seqa, _, ssrca = struct.unpack("!BBHII", a[:12])
    _vb, _, seqb, _, ssrcb = struct.unpack("!BBHII", b[:12])
    assert va >> 6 == 2 and pta == RTP_PT_MP2T
    assert seqb == (seqa + 1) & 0xFFFF and ssrca == ssrcb
    assert a[12:] == _datagram(1) and b[12:] == _datagram(2)


def test_rtp_sequence_wraps() -> None:
    hdr = RtpHeader(ssrc=1, first_seq=0xFFFF)
    a, b = hdr.next(0.0), hdr.next(0.0)
    assert struct.unpack("!H", a[2:4])[0] == 0xFFFF and struct.unpack("!H", b[2:4])[0] == 0


def test_multicast_ttl_and_unicast_ttl_are_set() -> None:
    mc = UdpOutput("239.1.1.1", 1234, ttl=7)
    uc = UdpOutput("127.0.0.1", 1234, ttl=9)
    try:
        assert mc.multicast and not uc.multicast
        assert mc._sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 7
        assert uc._sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 9
    finally:
        mc.close()
        uc.close()


def test_multicast_interface_that_does_not_exist_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="interface"):
        UdpOutput("239.1.1.1", 1234, interface="192.0.2.123")


def test_file_output(tmp_path: Path) -> None:
    path = tmp_path / "out.ts"
    out = open_output(OutputConfig(kind=OutputKind.FILE, url=f"file://{path}", path=path))
    out.send(_datagram(1))
    out.send(_datagram(2))
    out.close()
    assert path.read_bytes() == _datagram(1) + _datagram(2)


def test_file_output_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "out.ts"
    with pytest.raises(ConfigError, match=r"out\.ts"):
        open_output(OutputConfig(kind=OutputKind.FILE, url=f"file://{path}", path=path))
