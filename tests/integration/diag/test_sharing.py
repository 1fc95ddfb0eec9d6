"""Card-sharing caught from the card's real ECM log (docs/sharing.md): one card image cloned
into three ``stb watch`` processes on three channels at once is flagged by ``cas diag
sharing``; one ``stb scan`` box on two channels with the same card is not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.access import AccessCriteria
from cas.cli.main import cli as cas_cli
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from tests.integration.firmware_stub.headend import (
    HeadEnd,
    emm_packets,
    insert_after,
    write_box_bench,
)

EMM_PID = 0x0BFF
SERIAL = 3_000_000_077
STB = [sys.executable, "-c", "from firmware_stub.cli import main; main()"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``two.ts`` (Alpha, Beta) and ``three.ts`` (plus Gamma), all in package 1, 1 s
    crypto-periods, the card's pairing and activation EMMs inside; the box files of
    :func:`write_box_bench`."""
    d = tmp_path_factory.mktemp("sharing")
    he = HeadEnd(seed=23)
    clear2, chip, card = write_box_bench(d, he, chip_id=0x5EB0077, serial=SERIAL,
                                         duration_s=4.0)
    clear3 = d / "clear3.ts"
    make_test_stream([TestService(service_id=201, name="Alpha"),
                      TestService(service_id=202, name="Beta"),
                      TestService(service_id=203, name="Gamma")], clear3,
                     TestStreamOptions(duration_s=4.0))
    emms = emm_packets(EMM_PID, [he.pair_emm(card, chip), he.activate_emm(card, [1])])
    for clear, name, ids in ((clear2, "two.ts", (201, 202)), (clear3, "three.ts", (201, 202, 203))):
        scrambled, _ = he.scramble(clear.read_bytes(), {
            ch: AccessCriteria(channel_id=ch, package_ids=(1,)) for ch in ids},
            emm_pid=EMM_PID, crypto_period_ms=1000)
        (d / name).write_bytes(insert_after(scrambled, emms, pid=1))
    return d


def _box(bench: Path, name: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A box process with its own copy of the card image (a clone: same serial, same keys)."""
    home = bench / name
    home.mkdir()
    shutil.copy(bench / "card.img", home / "card.img")
    return subprocess.Popen(
        [*STB, *args, "--chip-record", str(bench / "chip.rec"),
         "--vendor-key", str(bench / "vendor.key"), "--nvram", str(home / "nvram.json"),
         "--card-image", str(home / "card.img"), "--rom-key-file", str(bench / "rom.key"),
         "--card-ecm-log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (out[-2000:], err[-2000:])


def _sharing(log: Path) -> tuple[int, dict[str, object]]:
    r = CliRunner().invoke(cas_cli, ["--json", "diag", "sharing", str(log), "--window", "1"])
    return r.exit_code, json.loads(r.stdout)


def test_one_card_cloned_into_three_boxes_is_caught(bench: Path) -> None:
    log = bench / "shared.jsonl"
    _wait(*(_box(bench, f"box{ch}", log, "watch", str(bench / "three.ts"), "-c", str(ch),
                 "-o", str(bench / f"out{ch}.ts")) for ch in (201, 202, 203)))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert {x["channel"] for x in lines} == {201, 202, 203}
    assert {x["card"] for x in lines} == {SERIAL}
    code, data = _sharing(log)
    assert code == 7
    assert data["flagged"] == [SERIAL]
    (card,) = data["cards"]  # type: ignore[misc]
    assert card["rules"] == ["services"] and card["max_services"] == 3


def test_one_two_channel_box_with_the_same_card_is_not_flagged(bench: Path) -> None:
    log = bench / "normal.jsonl"
    _wait(_box(bench, "normal", log, "scan", str(bench / "two.ts")))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert {x["channel"] for x in lines} == {201, 202}
    code, data = _sharing(log)
    assert code == 0, data
    assert data["flagged"] == []
    (card,) = data["cards"]  # type: ignore[misc]
    assert card["max_services"] == 2 and card["max_rate"] <= 4
