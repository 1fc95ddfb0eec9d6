"""On-screen messages and fingerprints end to end: head-end EMMs → card mailbox → box OSD,
``stb watch`` burning the covert fingerprint into its clear output with ffmpeg, and
``cas diag fingerprint`` reading the card serial back, also after a lower-bitrate re-encode."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cas.access import AccessCriteria
from cas.card.eeprom import write_image_atomic
from cas.card.personalise import default_slot, personalise_card
from cas.cli.main import cli as cas_cli
from cas.formats.chipid import build_chip_id_record
from cas.formats.emm import Fingerprint, FingerprintKind, OsdMail
from cas.formats.records import build_card_record
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from firmware_stub.chipset import save_vendor_key
from firmware_stub.cli import cli as stb_cli
from tests.integration.firmware_stub.headend import (
    DAY_S,
    START_S,
    Card,
    HeadEnd,
    emm_packets,
    insert_after,
)

EMM_PID = 0x0BFF
SERIAL = 3_100_000_042
OTHER_SERIAL = 3_100_000_043
CHANNEL = 201


def _bench(d: Path, he: HeadEnd, osd_emms: list[list[Any]]) -> list[str]:
    """Clip, box files and card image in ``d``; the stb arguments of a watch of ``in.ts``."""
    clear = d / "clear.ts"
    make_test_stream([TestService(service_id=CHANNEL, name="Alpha")], clear,
                     TestStreamOptions(duration_s=4.0, video_size="320x180"))
    chip = he.chip(0x5EB0042)
    (d / "chip.rec").write_bytes(build_chip_id_record(chip))
    save_vendor_key(d / "vendor.key", he.vendor_key)
    (d / "rom.key").write_text(he.keys.transport_key().raw().hex() + "\n")
    write_image_atomic(d / "card.img", build_card_record(
        personalise_card(he.keys, default_slot(SERIAL), now_s=START_S - DAY_S, pin="2468")))
    card = Card(serial=SERIAL, applet=None, transport=None, client=None)  # type: ignore[arg-type]
    other = Card(serial=OTHER_SERIAL, applet=None, transport=None, client=None)  # type: ignore[arg-type]
    emms = [he.pair_emm(card, chip), he.activate_emm(card, [1])]
    for target, commands in osd_emms:
        emms.append(he.emm(card if target == "card" else other, commands))
    scrambled, _ = he.scramble(clear.read_bytes(),
                               {CHANNEL: AccessCriteria(channel_id=CHANNEL, package_ids=(1,))},
                               emm_pid=EMM_PID)
    (d / "in.ts").write_bytes(insert_after(scrambled, emm_packets(EMM_PID, emms), pid=1))
    return ["--chip-record", str(d / "chip.rec"), "--vendor-key", str(d / "vendor.key"),
            "--nvram", str(d / "nvram.json"), "--card-image", str(d / "card.img"),
            "--rom-key-file", str(d / "rom.key")]


def _watch(d: Path, box: list[str], out: Path) -> dict[str, Any]:
    result = CliRunner().invoke(stb_cli, ["--json", "watch", str(d / "in.ts"), "-c", str(CHANNEL),
                                          "-o", str(out), *box])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def _read(clip: Path) -> tuple[int, dict[str, Any] | str]:
    result = CliRunner().invoke(cas_cli, ["diag", "fingerprint", "--json", str(clip)])
    if result.exit_code == 0:
        return 0, json.loads(result.output)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("osd")
    he = HeadEnd(seed=18)
    box = _bench(d, he, [
        ("card", [OsdMail(message_id=1, priority=1, start_s=0, duration_s=10, text="low")]),
        ("card", [OsdMail(message_id=2, priority=5, start_s=0, duration_s=10,
                          text="Оплатите до 5-го")]),
        ("other", [OsdMail(message_id=3, priority=9, start_s=0, duration_s=10,
                           text="not for this card")]),
        ("card", [Fingerprint(kind=FingerprintKind.COVERT, start_s=0, duration_s=3,
                              x_pct=90, y_pct=90),
                  ]),
    ])
    out = d / "out.ts"
    return out, _watch(d, box, out)


def test_messages_shown_once_in_priority_order_and_acknowledged(
        watched: tuple[Path, dict[str, Any]]) -> None:
    _, data = watched
    events = [(e["event"], e["message_id"]) for e in data["osd"]["events"]]
    # 1 was on screen when 2 (higher priority) came: 2 preempts it, 1 comes back after
    assert events == [("osd_shown", 1), ("osd_preempted", 1), ("osd_shown", 2),
                      ("osd_acknowledged", 2), ("osd_shown", 1), ("osd_acknowledged", 1)]
    assert data["osd"]["shown"] == [2, 1]
    assert data["osd"]["events"][2]["text"] == "Оплатите до 5-го"
    # the unique message for another card never reached this card's mailbox
    assert all(e["message_id"] != 3 for e in data["osd"]["events"])


def test_covert_fingerprint_reads_back_from_the_clip(watched: tuple[Path, dict[str, Any]]) -> None:
    out, data = watched
    assert data["fingerprints"] == [{"kind": "covert", "serial": f"{SERIAL:010d}",
                                     "start_s": 0.0, "end_s": 3.0, "x_pct": 90, "y_pct": 90}]
    code, reading = _read(out)
    assert code == 0, reading
    assert isinstance(reading, dict)
    assert reading["serial"] == f"{SERIAL:010d}"
    assert reading["corner"] == "bottom_right"


@pytest.mark.parametrize("encode", [
    ["-c:v", "libx264", "-b:v", "100k"],
    ["-c:v", "mpeg2video", "-b:v", "150k"],
    ["-c:v", "libx264", "-b:v", "60k", "-vf", "scale=192:108"],
], ids=["x264-100k", "mpeg2-150k", "x264-60k-scaled"])
def test_fingerprint_survives_a_lower_bitrate_reencode(watched: tuple[Path, dict[str, Any]],
                                                       tmp_path: Path, encode: list[str]) -> None:
    out, _ = watched
    restream = tmp_path / "restream.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-i", str(out), "-an", *encode, str(restream)], check=True)
    assert restream.stat().st_size < out.stat().st_size / 3
    code, reading = _read(restream)
    assert code == 0, reading
    assert isinstance(reading, dict) and reading["serial"] == f"{SERIAL:010d}"


def test_clip_without_fingerprint_is_not_found(watched: tuple[Path, dict[str, Any]]) -> None:
    out, _ = watched
    code, text = _read(out.parent / "clear.ts")
    assert code == 12
    assert isinstance(text, str) and "no fingerprint found" in text
    assert "Traceback" not in text


def test_not_a_video_is_a_stream_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not a video at all" * 100)
    code, text = _read(bad)
    assert code == 8
    assert isinstance(text, str) and "Traceback" not in text


def test_a_message_acknowledged_is_not_shown_again(tmp_path: Path) -> None:
    """The same message id sent again (a carousel repeat re-sealed) after it was shown."""
    he = HeadEnd(seed=19)
    mail = OsdMail(message_id=7, priority=2, start_s=0, duration_s=5, text="once")
    box = _bench(tmp_path, he, [("card", [mail]), ("card", [mail])])
    data = _watch(tmp_path, box, tmp_path / "out.ts")
    assert data["osd"]["shown"] == [7]
    assert "fingerprints" not in data


def test_scan_table_prints_the_messages_in_the_viewers_language(tmp_path: Path) -> None:
    he = HeadEnd(seed=20)
    box = _bench(tmp_path, he, [("card", [OsdMail(message_id=11, priority=4, start_s=0,
                                                  duration_s=5, text="Оплата получена")])])
    result = CliRunner().invoke(stb_cli, ["scan", str(tmp_path / "in.ts"), *box, "--lang", "ru"])
    assert result.exit_code == 0, result.output
    assert "сообщение на экране 11 (приоритет 4): Оплата получена" in result.output


def test_live_mode_announces_the_messages_as_json_lines(tmp_path: Path) -> None:
    he = HeadEnd(seed=21)
    box = _bench(tmp_path, he, [("card", [OsdMail(message_id=12, priority=2, start_s=0,
                                                  duration_s=5, text="live")])])
    result = CliRunner().invoke(stb_cli, ["--json", "scan", str(tmp_path / "in.ts"), "--live",
                                          *box])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    osd = [(e["event"], e["message_id"]) for e in lines if e["event"].startswith("osd_")]
    assert osd == [("osd_shown", 12), ("osd_acknowledged", 12)]
    assert lines[-1]["event"] == "report" and lines[-1]["osd"]["shown"] == [12]
