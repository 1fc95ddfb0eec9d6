"""The kit report protocol: JSON lines per channel, or the stub's whole JSON report."""

from __future__ import annotations

import json

from cas.formats.boxreport import channel_line, parse_report


def test_json_lines_are_read_per_channel_and_noise_is_ignored() -> None:
    out = "\n".join([
        "booting...",
        channel_line(1, "OPEN", "Channel open"),
        channel_line(27, "MATURITY_LOCKED", "E22 Parental control: enter PIN"),
        '{"event": "start"}',
        "{not json",
    ])
    seen = parse_report(out)
    assert sorted(seen) == [1, 27]
    assert seen[27].reason == "MATURITY_LOCKED"
    assert seen[27].message == "E22 Parental control: enter PIN"
    assert json.loads(channel_line(27, "MATURITY_LOCKED", ""))["state"] == "LOCKED"


def test_the_last_line_about_a_channel_wins() -> None:
    out = channel_line(1, "NO_ECM", "") + "\n" + channel_line(1, "OPEN", "")
    assert parse_report(out)[1].reason == "OPEN"


def test_a_whole_stb_json_report_is_read_too() -> None:
    report = {"card": {}, "channels": [
        {"channel": 2, "reason": "OPEN", "state": "OPEN", "detail": ""},
        {"channel": 21, "reason": "CHANNEL_NOT_IN_PACKAGE", "detail": "card: SW 980B"}]}
    seen = parse_report(json.dumps(report, indent=2))
    assert {n: s.reason for n, s in seen.items()} == {2: "OPEN", 21: "CHANNEL_NOT_IN_PACKAGE"}
    assert seen[21].message == "card: SW 980B"


def test_nothing_reported() -> None:
    assert parse_report("") == {}
    assert parse_report("error: no such file\n") == {}


def test_event_lines_are_read_beside_the_channel_lines() -> None:
    from cas.formats.boxreport import (
        fingerprint_line,
        message_line,
        parse_events,
        purchase_line,
        shown_fingerprints,
        shown_messages,
    )

    out = "\n".join([channel_line(24, "OPEN", ""), purchase_line(24, 7001, "OPEN", 50),
                     message_line(2, 5, "Сервис"), '{"event": "osd_shown", "message_id": 9}',
                     message_line(1, 1, "low"), fingerprint_line("covert", 2256884701),
                     "{broken"])
    events = parse_events(out)
    assert [e["event"] for e in events] == ["purchase", "message_shown", "message_shown",
                                            "fingerprint_shown"]
    assert events[0] == {"event": "purchase", "channel": 24, "event_id": 7001,
                         "reason": "OPEN", "purse_tokens": 50}
    assert shown_messages(events) == [2, 1]
    assert shown_fingerprints(events) == [("covert", "2256884701")]
    assert sorted(parse_report(out)) == [24]
