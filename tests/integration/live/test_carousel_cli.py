"""``cas headend osd`` / ``ecm-key`` while a carousel runs on the same store: the global EMM
queued by the command is aired at the carousel's next poll and a card applies it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.live.carousel import CarouselSettings, EmmCarousel
from tests.integration.live.test_carousel import T0, make_base, make_card, make_keys, offer

SETTINGS = CarouselSettings(repeat_count=1, repeat_window_s=0.0, cycle_bitrate_bps=0)


def _cas(tmp_path: Path, db_url: str, key_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--json", "--data-dir", str(tmp_path / "data"),
                                      "--db-url", db_url, "headend", *args,
                                      "--keys", str(key_file)])
    return result.exit_code, result.output


def test_osd_and_ecm_key_from_the_cli_reach_the_air(db_url: str, tmp_path: Path) -> None:
    keys: OperatorKeys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    base = make_base(db_url, keys, cards=1)
    carousel = EmmCarousel(base.store, keys, SETTINGS, clock=lambda: T0)
    carousel.poll()
    carousel.take(0.0, 1 << 20)  # the start-up EMM

    code, out = _cas(tmp_path, db_url, key_file, "osd", "Payment received, thank you")
    assert code == 0, out
    assert json.loads(out)["queued"] == "osd"
    code, out = _cas(tmp_path, db_url, key_file, "ecm-key", "2")
    assert code == 0, out
    assert carousel.poll() == 2
    sections = carousel.take(1.0, 1 << 20)
    assert [s[0] for s in sections] == [0x84, 0x84]
    card = make_card(keys, base.slots[base.serials[0]])
    assert offer(card, sections) == (2, 0)
    assert card.osd_message() == "Payment received, thank you"
    carousel.close()


def test_bad_input_is_one_line_and_nonzero(db_url: str, tmp_path: Path) -> None:
    keys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    code, out = _cas(tmp_path, db_url, key_file, "osd", "x" * 300)
    assert code != 0 and "at most 255 bytes" in out and "Traceback" not in out
    code, out = _cas(tmp_path, db_url, key_file, "ecm-key", "256")
    assert code == 2 and "Traceback" not in out
