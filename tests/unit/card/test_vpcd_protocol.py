"""The vicc side of the vpcd protocol, sans I/O: framing, control codes, APDUs
(WIRE-FACTS §5.3).  The same code over real sockets is exercised by the integration tests
against pcscd's vpcd driver."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.card.applet import AID
from cas.card.vpcd import VpcdProtocol, parse_endpoint
from cas.errors import UsageError

from .helpers import SERIAL, make_applet


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def atr(self) -> bytes:
        self.events.append("atr")
        return b"\x3b\x00"

    def power_on(self) -> None:
        self.events.append("on")

    def power_off(self) -> None:
        self.events.append("off")

    def reset(self) -> None:
        self.events.append("reset")

    def transmit(self, apdu: bytes) -> bytes:
        self.events.append(apdu.hex())
        return b"\x90\x00"


def test_control_codes_and_apdus() -> None:
    card = Recorder()
    proto = VpcdProtocol(card)
    out = proto.receive_data(frame(b"\x01") + frame(b"\x04") + frame(b"\x00\xa4\x04\x00")
                             + frame(b"\x02") + frame(b"\x00") + frame(b"\x03"))
    assert card.events == ["on", "atr", "00a40400", "reset", "off"]  # 0x03: unknown, ignored
    # replies only to get-ATR and the APDU, in order
    assert out == frame(b"\x3b\x00") + frame(b"\x90\x00")


@given(st.lists(st.binary(min_size=2, max_size=300), min_size=1, max_size=8),
       st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50))
def test_framing_survives_any_fragmentation(apdus: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(a) for a in apdus)
    card = Recorder()
    proto = VpcdProtocol(card)
    out = b""
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += proto.receive_data(stream[pos : pos + step])
        pos += step
        i += 1
    assert card.events == [a.hex() for a in apdus]
    assert out == frame(b"\x90\x00") * len(apdus)


def test_real_applet_behind_the_protocol() -> None:
    applet = make_applet()
    proto = VpcdProtocol(applet)
    assert proto.receive_data(frame(b"\x01")) == b""
    assert proto.receive_data(frame(b"\x04")) == frame(applet.atr())
    assert proto.receive_data(frame(bytes.fromhex("00A4040008") + AID)) == frame(b"\x90\x00")
    assert proto.receive_data(frame(bytes.fromhex("80CA010100"))) == \
        frame(SERIAL.to_bytes(4, "big") + b"\x90\x00")
    proto.receive_data(frame(b"\x00"))  # power off ends the card session
    assert proto.receive_data(frame(bytes.fromhex("80CA010100"))) == frame(b"\x69\x85")


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:35963", ("127.0.0.1", 35963)),
    ("localhost", ("localhost", 35963)),
    (":40000", ("127.0.0.1", 40000)),
])
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["host:port", "host:0", "host:70000"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_endpoint(text)
