"""The head-end commands through click's CliRunner: make a test stream, scramble it with the
CW log, generate ECMs and EMMs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.formats import psi
from cas.formats.ecm import parse_ecm
from cas.formats.sections import iter_sections
from cas.headend.scrambler import read_cw_log
from tests.unit.headend.helpers import descramble, packets, pid, sections_on, without_pids


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    OperatorKeys.generate().save(path)
    return path


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_make_scramble_and_descramble_by_the_log(tmp_path: Path, key_file: Path) -> None:
    clear = tmp_path / "clear.ts"
    _run(["stream", "make-test-stream", "--lineup", "atvplus.toml", "--channels", "2",
          "--duration", "2.5", "-o", str(clear)])
    scrambled = tmp_path / "scr.ts"
    log = tmp_path / "cw.jsonl"
    out = _run(["--json", "stream", "scramble", str(clear), str(scrambled), "--algo", "cissa",
                "--crypto-period-s", "1", "--lineup", "atvplus.toml", "--keys", str(key_file),
                "--cw-log", str(log)])
    report = json.loads(out)
    assert report["crypto_periods"] >= 3 and report["scrambled_packets"] > 100
    entries = read_cw_log(log.read_text().splitlines())
    es = {p: s["service_id"] for s in report["services"] for p in s["es_pids"]}
    data = scrambled.read_bytes()
    assert any(pk[3] >> 6 for pk in packets(data) if pid(pk) in es)
    back, n = descramble(data, entries, es, "cissa")
    assert n == report["scrambled_packets"]
    drop = {1, psi.SDT_PID, report["emm_pid"], *(s["ecm_pid"] for s in report["services"]),
            *(s["pmt_pid"] for s in report["services"])}
    assert without_pids(back, drop) == without_pids(clear.read_bytes(), drop)
    # the SDT carries the lineup's channel numbers (atvplus: 3001 → 1, 3002 → 2)
    lcns: dict[int, int] = {}
    for _, section in sections_on(data, psi.SDT_PID):
        for sv in psi.parse_sdt(section).services:
            for d in sv.descriptors:
                lcns.update(psi.logical_channel_numbers(d))
    assert lcns == {3001: 1, 3002: 2}
    # --no-lcn leaves the SDT as it came
    _run(["stream", "scramble", str(clear), str(tmp_path / "plain.ts"), "--lineup",
          "atvplus.toml", "--keys", str(key_file), "--no-lcn"])
    sdt_packets = [pk for pk in packets((tmp_path / "plain.ts").read_bytes())
                   if pid(pk) == psi.SDT_PID]
    assert sdt_packets == [pk for pk in packets(clear.read_bytes()) if pid(pk) == psi.SDT_PID]


def test_ecm_generate_writes_sections_and_cw_log(tmp_path: Path, key_file: Path) -> None:
    out = tmp_path / "ecm.sections"
    log = tmp_path / "ecm.jsonl"
    _run(["ecm", "generate", "--lineup", "tvplus.toml", "--channel", "1001", "--channel",
          "1002", "--periods", "4", "--keys", str(key_file), "-o", str(out), "--cw-log",
          str(log)])
    sections = list(iter_sections(out.read_bytes()))
    assert len(sections) == 8
    assert [parse_ecm(s).header.table_id for s in sections[::2]] == [0x80, 0x81, 0x80, 0x81]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(e["channel_id"], e["cp"]) for e in lines[:2]] == [(1001, 0), (1002, 0)]
    # `cas decode` reads the file whole, section by section (it used to stop at the first)
    result = CliRunner().invoke(cli, ["--json", "decode", str(out), "--keys", str(key_file)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["kind"], doc["count"], doc["counts"]) == ("sections", 8, {"ecm": 8})
    assert all(s["authenticated"] for s in doc["sections"])


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, key_file: Path) -> None:
    garbage = tmp_path / "g.ts"
    garbage.write_bytes(b"\x00" * 1880)
    result = CliRunner().invoke(cli, ["stream", "scramble", str(garbage), str(tmp_path / "o.ts"),
                                      "--lineup", "tvplus.toml", "--keys", str(key_file)])
    assert result.exit_code != 0
    assert result.output.strip().startswith("error:") and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "d"), "emm", "generate",
                                      "--keys", str(key_file)])
    assert result.exit_code == 2 and "choose --full" in result.output
