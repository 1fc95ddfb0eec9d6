"""The card's sharing check seen from the box (docs/sharing.md, "On the card"): a card told by
EMM to refuse (policy REFUSE, 2 tuners) answers a scan of three channels for two of them in
each crypto-period; ``stb scan`` reports the third as SHARING_DETECTED with E60, in JSON and
in its table."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cas.access import AccessCriteria
from cas.formats.emm import SetSharing
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.sharing import SharingPolicy
from firmware_stub.cli import cli
from tests.integration.firmware_stub.headend import (
    HeadEnd,
    emm_packets,
    insert_after,
    write_box_bench,
)

EMM_PID = 0x0BFF
SERIAL = 3_000_000_091


def test_stb_scan_shows_e60_for_what_the_card_refuses(tmp_path: Path) -> None:
    he = HeadEnd(seed=61)
    _clear2, chip, card = write_box_bench(tmp_path, he, chip_id=0x5EB0091, serial=SERIAL,
                                          duration_s=2.0)
    clear = tmp_path / "clear3.ts"
    make_test_stream([TestService(service_id=ch, name=f"Ch{ch}") for ch in (301, 302, 303)],
                     clear, TestStreamOptions(duration_s=2.0))
    emms = [he.pair_emm(card, chip), he.activate_emm(card, [1]),
            he.emm(card, [SetSharing(policy=SharingPolicy.REFUSE, tuners=2, rate_tolerance=1,
                                     window_s=1)])]
    scrambled, _ = he.scramble(clear.read_bytes(), {
        ch: AccessCriteria(channel_id=ch, package_ids=(1,)) for ch in (301, 302, 303)},
        emm_pid=EMM_PID, crypto_period_ms=1000)
    (tmp_path / "in.ts").write_bytes(insert_after(scrambled, emm_packets(EMM_PID, emms), pid=1))
    args = ["scan", str(tmp_path / "in.ts"), "--chip-record", str(tmp_path / "chip.rec"),
            "--vendor-key", str(tmp_path / "vendor.key"), "--nvram", str(tmp_path / "nv.json"),
            "--card-image", str(tmp_path / "card.img"), "--rom-key-file",
            str(tmp_path / "rom.key")]
    result = CliRunner().invoke(cli, ["--json", *args])
    assert result.exit_code == 0, result.output
    channels = {c["channel"]: c for c in json.loads(result.output)["channels"]}
    assert [channels[ch]["reason"] for ch in (301, 302, 303)] == [
        "OPEN", "OPEN", "SHARING_DETECTED"]
    assert "E60" in json.dumps(channels[303])
    table = CliRunner().invoke(cli, ["--lang", "en", *args])
    assert "E60" in table.output and "SHARING_DETECTED" in table.output
