"""CardClient over the in-process transport: chaining, 6Cxx, typed errors, tracing."""

from __future__ import annotations

import pytest

from cas.card.client import CardClient, build_apdu
from cas.card.errors import (
    AccessDeniedError,
    CardCommandError,
    MessageRefusedError,
    PinBlockedError,
    WrongPinError,
    error_for,
)
from cas.card.transport import ApduTracer, InProcessTransport, format_exchange, mask_apdu
from cas.errors import StatusWordError, UsageError
from cas.reasons import Reason

from .helpers import PIN, SERIAL, make_applet


class ScriptedTransport:
    """Answers from a list, records commands: for the client's own logic only."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []

    def atr(self) -> bytes:
        return b"\x3b\x00"

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.answers.pop(0)


def test_client_retries_with_exact_le_and_follows_chains() -> None:
    t = ScriptedTransport([b"\x6c\x04", b"\x01\x02\x03\x04\x90\x00"])
    assert CardClient(t, select=False).get_data(1) == b"\x01\x02\x03\x04"
    assert t.sent == [bytes.fromhex("80CA010100"), bytes.fromhex("80CA010104")]
    t = ScriptedTransport([b"\xaa" * 3 + b"\x61\x02", b"\xbb\xbb\x61\x01", b"\xcc\x90\x00"])
    resp = CardClient(t, select=False).exchange(bytes.fromhex("8032000000"))
    assert resp.data == b"\xaa\xaa\xaa\xbb\xbb\xcc" and resp.sw == 0x9000
    assert t.sent[1:] == [bytes.fromhex("00C0000002"), bytes.fromhex("00C0000001")]


def test_endless_chaining_is_an_error() -> None:
    from cas.errors import CardError

    t = ScriptedTransport([b"\x61\x01"] * 100)
    with pytest.raises(CardError):
        CardClient(t, select=False).exchange(bytes.fromhex("8032000000"))


@pytest.mark.parametrize(("sw", "command", "cls"), [
    (0x63C1, "VERIFY", WrongPinError),
    (0x6983, "VERIFY", PinBlockedError),
    (0x9804, "PROCESS ECM", AccessDeniedError),
    (0x9815, "PROCESS ECM", AccessDeniedError),
    (0x9811, "PROCESS EMM", MessageRefusedError),
    (0x6982, "PROCESS ECM", MessageRefusedError),
    (0x6D00, "GET DATA", CardCommandError),
])
def test_error_types(sw: int, command: str, cls: type[StatusWordError]) -> None:
    err = error_for(sw, command=command)
    assert isinstance(err, cls) and err.sw == sw


def test_access_denied_carries_the_reason() -> None:
    err = error_for(0x9805, command="PROCESS ECM")
    assert isinstance(err, AccessDeniedError) and err.reason is Reason.MATURITY_LOCKED
    assert "Parental control" in str(err)


def test_build_apdu_limits() -> None:
    assert build_apdu(0x80, 0xCA, 1, 1, le=256) == bytes.fromhex("80CA010100")
    with pytest.raises(UsageError):
        build_apdu(0x80, 0x40, 0, 0, bytes(256))
    with pytest.raises(UsageError):
        build_apdu(0x80, 0xCA, 1, 1, le=0)


def test_bad_pin_format_never_reaches_the_card() -> None:
    t = ScriptedTransport([])
    with pytest.raises(UsageError):
        CardClient(t, select=False).verify_pin("12a4")
    assert t.sent == []


def test_tracer_sees_every_exchange_with_pins_masked() -> None:
    lines: list[str] = []
    transport = InProcessTransport(make_applet())
    transport.add_observer(ApduTracer(lines.append))
    client = CardClient(transport)
    client.verify_pin(PIN)
    assert client.serial() == SERIAL
    text = "\n".join(lines)
    assert "> 00 20 00 81 04 FF FF FF FF" in text
    assert PIN.encode().hex(" ").upper() not in text
    assert "< 3B 9A CA 01 90 00" in text


def test_mask_and_format() -> None:
    assert mask_apdu(bytes.fromhex("0024008108") + b"12345678") == \
        bytes.fromhex("0024008108") + b"\xff" * 8
    assert mask_apdu(bytes.fromhex("80CA010100")) == bytes.fromhex("80CA010100")
    assert format_exchange(b"\x00", None, 0).endswith("(transport error)")
