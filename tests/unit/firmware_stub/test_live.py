"""The live parts that need no socket: input URLs, RTP unwrapping, which verdicts are news."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from cas.errors import UsageError
from cas.reasons import Reason
from firmware_stub.live import ChannelWatch, utc_text
from firmware_stub.report import ChannelStatus
from firmware_stub.udpin import InputKind, InputStats, RtpUnwrapper, parse_input

AT = datetime(2026, 12, 3, 8, 0, 0, 123_000, tzinfo=UTC)
TS = b"\x47" + bytes(187)


# --- inputs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, host, port, group, source, iface", [
    ("udp://127.0.0.1:5000", InputKind.UDP, "127.0.0.1", 5000, None, None, None),
    ("udp://@239.1.1.1:1234", InputKind.UDP, "239.1.1.1", 1234, "239.1.1.1", None, None),
    ("udp://239.1.1.1:1234", InputKind.UDP, "239.1.1.1", 1234, "239.1.1.1", None, None),
    ("udp://@:5000", InputKind.UDP, "0.0.0.0", 5000, None, None, None),
    ("rtp://@239.1.1.1:1234?interface=10.0.0.2", InputKind.RTP, "239.1.1.1", 1234,
     "239.1.1.1", None, "10.0.0.2"),
    ("udp://10.0.0.9@232.1.1.1:1234", InputKind.UDP, "232.1.1.1", 1234, "232.1.1.1",
     "10.0.0.9", None),
])
def test_parse_network_inputs(text: str, kind: InputKind, host: str, port: int,
                              group: str | None, source: str | None, iface: str | None) -> None:
    spec = parse_input(text)
    assert (spec.kind, spec.host, spec.port, spec.group, spec.source, spec.interface) == (
        kind, host, port, group, source, iface)
    assert spec.network


def test_parse_files_and_stdin() -> None:
    assert parse_input("-").kind is InputKind.STDIN
    spec = parse_input("captures/a.ts")
    assert spec.kind is InputKind.FILE and str(spec.path) == "captures/a.ts"
    assert str(parse_input("file:///tmp/a.ts").path) == "/tmp/a.ts"
    assert not spec.network


def test_interface_option_applies_unless_the_url_names_one() -> None:
    assert parse_input("udp://@239.1.1.1:1", interface="10.0.0.1").interface == "10.0.0.1"
    assert parse_input("udp://@239.1.1.1:1?interface=10.0.0.2",
                       interface="10.0.0.1").interface == "10.0.0.2"


@pytest.mark.parametrize("text, message", [
    ("udp://127.0.0.1", "no port"),
    ("udp://127.0.0.1:x", "not a number"),
    ("udp://127.0.0.1:70000", "out of range"),
    ("udp://localhost:5000", "not an IPv4 address"),
    ("udp://10.0.0.1@127.0.0.1:5000", "needs a multicast group"),
    ("http://127.0.0.1:5000", "unsupported input"),
    ("udp://@239.1.1.1:1?ttl=2", "unknown option"),
    ("udp://@239.1.1.1:1?interface=eth0", "not an IPv4 address"),
])
def test_bad_inputs_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_input(text)


def _rtp(seq: int, payload: bytes, *, csrc: int = 0, ext_words: int | None = None,
         pad: int = 0) -> bytes:
    first = 0x80 | csrc | (0x10 if ext_words is not None else 0) | (0x20 if pad else 0)
    head = struct.pack(">BBHII", first, 33, seq, seq * 3600, 7) + bytes(4 * csrc)
    if ext_words is not None:
        head += struct.pack(">HH", 0xBEDE, ext_words) + bytes(4 * ext_words)
    tail = bytes(pad - 1) + bytes([pad]) if pad else b""
    return head + payload + tail


def test_rtp_headers_are_stripped_and_plain_ts_passes() -> None:
    stats = InputStats(url="udp://x")
    unwrap = RtpUnwrapper(stats)
    assert unwrap.payload(TS * 7) == TS * 7
    assert unwrap.payload(_rtp(0, TS * 7)) == TS * 7
    assert unwrap.payload(_rtp(1, TS, csrc=2)) == TS
    assert unwrap.payload(_rtp(2, TS, ext_words=3)) == TS
    assert unwrap.payload(_rtp(3, TS, pad=4)) == TS
    assert (stats.datagrams, stats.rtp_datagrams, stats.bad_datagrams) == (5, 4, 0)
    assert stats.bytes == 188 * 7 * 2 + 188 * 3


def test_rtp_sequence_gaps_and_garbage_are_counted() -> None:
    stats = InputStats(url="rtp://x")
    unwrap = RtpUnwrapper(stats, force=True)
    for seq in (65534, 65535, 0, 3, 2):  # wraps; 1 and 2 missing; then 2 arrives late
        assert unwrap.payload(_rtp(seq, TS)) == TS
    assert (stats.rtp_lost, stats.rtp_reordered) == (2, 1)
    assert unwrap.payload(TS) == b""  # rtp:// insists on the header
    assert unwrap.payload(b"\x80\x21") == b""  # too short
    assert unwrap.payload(_rtp(4, b"\x00" * 188)) == b""  # no TS behind the header
    assert stats.bad_datagrams == 3


# --- events ---------------------------------------------------------------------------------
def _status(channel: int, reason: Reason, detail: str = "", ecm_pid: int | None = 0x600) -> (
        ChannelStatus):
    return ChannelStatus(channel=channel, service_id=channel + 1000, name=f"ch{channel}",
                         reason=reason, scrambled=True, ecm_pid=ecm_pid, detail=detail)


def test_each_change_is_announced_once() -> None:
    watch = ChannelWatch()
    first = watch.update([_status(1, Reason.NOT_SUBSCRIBED), _status(2, Reason.OPEN)], 0.0, AT)
    assert [(e.status.channel, e.status.reason, e.previous) for e in first] == [
        (1, Reason.NOT_SUBSCRIBED, None), (2, Reason.OPEN, None)]
    # the detail changing (PES starts counted) is not news
    assert watch.update([_status(1, Reason.NOT_SUBSCRIBED, "again"),
                         _status(2, Reason.OPEN, "10 PES starts checked")], 0.1, AT) == []
    paid = watch.update([_status(1, Reason.OPEN), _status(2, Reason.OPEN)], 0.2, AT)
    assert [(e.status.channel, e.status.reason, e.previous) for e in paid] == [
        (1, Reason.OPEN, Reason.NOT_SUBSCRIBED)]
    blocked = watch.update([_status(1, Reason.FINANCIAL_BLOCK)], 0.3, AT)
    assert [e.status.state for e in blocked] == ["LOCKED"]
    assert watch.states() == {1001: Reason.FINANCIAL_BLOCK, 1002: Reason.OPEN}


def test_the_channel_number_arriving_after_the_verdict_is_announced() -> None:
    """Before the SDT, a channel is known by its service id; when the SDT's logical channel
    number arrives the channel is announced again under it, with the same reason (a
    listener keyed by channel number must not miss the channel)."""
    watch = ChannelWatch()
    early = ChannelStatus(channel=1001, service_id=1001, name="service 1001",
                          reason=Reason.OPEN, scrambled=True, ecm_pid=0x600)
    assert [e.status.channel for e in watch.update([early], 0.0, AT)] == [1001]
    named = watch.update([_status(1, Reason.OPEN)], 0.5, AT)
    assert [(e.status.channel, e.status.reason, e.previous) for e in named] == [
        (1, Reason.OPEN, Reason.OPEN)]
    assert watch.update([_status(1, Reason.OPEN)], 0.6, AT) == []


def test_waiting_for_the_first_ecm_is_held_back_until_it_settles() -> None:
    watch = ChannelWatch(settle_s=1.0)
    waiting = _status(1, Reason.NO_ECM)
    assert watch.update([waiting], 0.0, AT, waiting=lambda s: True) == []
    assert watch.update([waiting], 0.9, AT, waiting=lambda s: True) == []
    events = watch.update([waiting], 1.0, AT, waiting=lambda s: True)
    assert [e.status.reason for e in events] == [Reason.NO_ECM]


def test_first_ecm_answer_before_settling_is_the_first_event() -> None:
    watch = ChannelWatch(settle_s=1.0)
    assert watch.update([_status(1, Reason.NO_ECM)], 0.0, AT, waiting=lambda s: True) == []
    events = watch.update([_status(1, Reason.OPEN)], 0.2, AT)
    assert [(e.status.reason, e.previous) for e in events] == [(Reason.OPEN, None)]


def test_final_update_announces_what_was_held_back() -> None:
    watch = ChannelWatch(settle_s=10.0)
    assert watch.update([_status(1, Reason.NO_ECM)], 0.0, AT, waiting=lambda s: True) == []
    events = watch.update([_status(1, Reason.NO_ECM)], 0.1, AT, waiting=lambda s: True,
                          final=True)
    assert [e.status.reason for e in events] == [Reason.NO_ECM]


def test_watch_mode_announces_only_the_tuned_channel() -> None:
    watch = ChannelWatch(channel=2)
    events = watch.update([_status(1, Reason.OPEN), _status(2, Reason.CARD_SUSPENDED)], 0, AT)
    assert [e.status.channel for e in events] == [2]


def test_event_json_line() -> None:
    event = ChannelWatch().update([_status(7, Reason.CARD_SUSPENDED, "card: SW 9806")], 0, AT)[0]
    data = event.to_json()
    assert data == {"event": "channel", "time": "2026-12-03T08:00:00.123Z", "channel": 7,
                    "service_id": 1007, "name": "ch7", "state": "LOCKED",
                    "reason": "CARD_SUSPENDED", "code": data["code"],
                    "message": data["message"], "detail": "card: SW 9806", "previous": None}
    assert data["code"] == "E16" and data["message"]
    assert utc_text(datetime(2026, 1, 1, 3, 0, tzinfo=UTC)) == "2026-01-01T03:00:00.000Z"
