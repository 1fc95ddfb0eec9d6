"""``stb buy`` and ``stb ppv-report`` through click's CliRunner on the bench's files: the card
image's PPV file keeps the purse and the purchase between runs, as a card keeps its EEPROM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.access import AccessCriteria, PpvEvent
from cas.billing.ppv import verify_report
from cas.cli.main import cli as cas_cli
from cas.formats.emm import PurseCredit
from firmware_stub.cli import cli
from tests.integration.firmware_stub.headend import (
    START_S,
    HeadEnd,
    emm_packets,
    insert_after,
    write_box_bench,
)

EMM_PID = 0x0BFF
SERIAL = 3_000_000_018
EVENT = PpvEvent(event_id=4242, start_s=START_S - 60, end_s=START_S + 3600, price_tokens=40)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HeadEnd]:
    d = tmp_path_factory.mktemp("ppv-bench")
    he = HeadEnd(seed=19)
    clear, chip, card = write_box_bench(d, he, chip_id=0x5EB0018, serial=SERIAL,
                                        duration_s=2.0)
    emms = [he.pair_emm(card, chip), he.activate_emm(card, [1]),
            he.emm(card, [PurseCredit(tokens=100, credit_limit_tokens=0)])]
    scrambled, _ = he.scramble(clear.read_bytes(), {
        201: AccessCriteria(channel_id=201, package_ids=(1,)),
        202: AccessCriteria(channel_id=202, package_ids=()),
    }, emm_pid=EMM_PID, ppv_events={202: [EVENT]})
    (d / "in.ts").write_bytes(insert_after(scrambled, emm_packets(EMM_PID, emms), pid=1))
    return d, he


def _args(d: Path, *extra: str) -> list[str]:
    return [*extra, "--chip-record", str(d / "chip.rec"), "--vendor-key", str(d / "vendor.key"),
            "--nvram", str(d / "nvram.json"), "--card-image", str(d / "card.img"),
            "--rom-key-file", str(d / "rom.key")]


def _scan(d: Path) -> dict[int, str]:
    r = CliRunner().invoke(cli, ["--json", *_args(d, "scan", str(d / "in.ts"))])
    assert r.exit_code == 0, r.output
    return {c["channel"]: c["reason"] for c in json.loads(r.output)["channels"]}


def test_buy_then_watchable_then_report(bench: tuple[Path, HeadEnd]) -> None:
    d, he = bench
    assert _scan(d) == {201: "OPEN", 202: "PPV_NOT_PURCHASED"}
    wrong = CliRunner().invoke(cli, ["--json", *_args(
        d, "buy", str(d / "in.ts"), "--channel", "202", "--event", "4242", "--pin", "1111")])
    assert wrong.exit_code == 10
    assert json.loads(wrong.output)["reason"] == "PPV_PIN_WRONG"
    assert "2 tries left" in json.loads(wrong.output)["detail"]
    r = CliRunner().invoke(cli, ["--json", *_args(
        d, "buy", str(d / "in.ts"), "--channel", "202", "--event", "4242", "--pin", "2468")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["purse"]["purse_tokens"] == 60
    assert _scan(d) == {201: "OPEN", 202: "OPEN"}
    r = CliRunner().invoke(cli, ["--json", *_args(d, "ppv-report", "-o", str(d / "r.bin"))])
    assert r.exit_code == 0, r.output
    report = verify_report(he.keys, (d / "r.bin").read_bytes())
    assert report.serial == SERIAL and [p.event_id for p in report.purchases] == [4242]
    # a second purchase of another event the purse cannot cover: refused with the reason
    poor = CliRunner().invoke(cli, [*_args(
        d, "buy", str(d / "in.ts"), "--channel", "202", "--event", "9", "--pin", "2468")])
    assert poor.exit_code == 10 and "PPV_NOT_ON_AIR" in poor.output
    # `cas decode` reads the report (authentic under the operator keys) and the PPV file
    keys = d / "keys.toml"
    he.keys.save(keys)
    r = CliRunner().invoke(cas_cli, ["--json", "decode", str(d / "r.bin"), "--keys", str(keys)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["kind"] == "ppv-report" and out["authenticated"] is True
    assert out["purchases"][0]["event_id"] == 4242
    r = CliRunner().invoke(cas_cli, ["--json", "decode", str(d / "card.img.ppv")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["purse_tokens"] == 60

