"""Issue 12, item 13: commands that commit to the store (or do a long job) before they write
their output check the output path first.  ``cas emm generate -o <directory>`` used to do the
whole run, commit the sequence numbers, fail at the rename and leave ``*.emm-partial``.
Real SQLite store, click's CliRunner.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cas.cli.main import cli
from cas.formats.emm import parse_emm
from cas.formats.sections import iter_sections


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CAS_DB_URL", raising=False)
    monkeypatch.delenv("CAS_OPERATOR_KEY", raising=False)
    d = tmp_path / "data"
    for args in (["keys", "init"], ["operator", "use", "tvplus", "--clock-start", "2026-11-01"],
                 ["card", "personalise", "-n", "3", "--out", str(tmp_path / "cards"),
                  "--pin", "1234"]):
        r = _cas(d, *args)
        assert r.exit_code == 0, r.output
    # one card on its own needs a unique EMM (different rights from its group)
    r = _cas(d, "card", "kill", "1000000003", "--yes")
    assert r.exit_code == 0, r.output
    return d


def _cas(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])


def _refused(r: Result, *words: str) -> None:
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1, r.output
    for w in words:
        assert w in r.output, r.output


def _seqs(path: Path) -> list[int]:
    return sorted(parse_emm(s).header.seq for s in iter_sections(path.read_bytes()))


@pytest.mark.parametrize("bad", ["dir", "file-as-parent", "no-parent", "proc"])
def test_emm_output_is_checked_before_the_run_commits(data_dir: Path, tmp_path: Path,
                                                      bad: str) -> None:
    target = {
        "dir": tmp_path / "out.d",
        "file-as-parent": tmp_path / "plain" / "emms.sections",
        "no-parent": tmp_path / "nowhere" / "emms.sections",
        "proc": Path("/proc/emms.sections"),
    }[bad]
    (tmp_path / "out.d").mkdir()
    (tmp_path / "plain").write_bytes(b"")
    _refused(_cas(data_dir, "emm", "generate", "--full", "-o", str(target)), str(target))
    assert list(tmp_path.rglob("*.emm-partial")) == []
    assert list((tmp_path / "out.d").iterdir()) == []
    # nothing was committed: the next run is a fresh one with the first sequence numbers
    ok = tmp_path / "ok.sections"
    r = _cas(data_dir, "--json", "emm", "generate", "--full", "-o", str(ok))
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["resumed"] is False
    assert _seqs(ok) and set(_seqs(ok)) == {1}


def test_personalise_checks_its_directories_before_registering(data_dir: Path,
                                                               tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    _refused(_cas(data_dir, "card", "personalise", "-n", "1", "--out",
                  str(tmp_path / "plain" / "cards")), "--out")
    _refused(_cas(data_dir, "card", "personalise", "-n", "1", "--out", str(tmp_path / "c2"),
                  "--batch-out", str(tmp_path / "plain" / "b.casb")), "--batch-out")
    # no card was registered by the refused runs: the next serial follows the first three
    r = _cas(data_dir, "--json", "card", "personalise", "-n", "1", "--out",
             str(tmp_path / "c3"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["cards"][0]["serial"] == "1000000004"


def test_other_writers_check_first(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "plain").write_bytes(b"")
    _refused(_cas(data_dir, "box", "manufacture", "--count", "1", "--out",
                  str(tmp_path / "plain" / "boxes")), "--out")
    _refused(_cas(data_dir, "ecm", "generate", "-o", str(tmp_path / "d")), "is a directory")
    _refused(_cas(data_dir, "ecm", "generate", "-o", str(tmp_path / "e.sections"), "--cw-log",
                  str(tmp_path / "plain" / "cw.jsonl")), "--cw-log")
    _refused(_cas(data_dir, "stream", "make-test-stream", "--channels", "1", "--duration",
                  "0.2", "-o", str(tmp_path / "plain" / "x.ts")), "cannot write there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cards", "d", "data", "plain"]
