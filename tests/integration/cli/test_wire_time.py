"""Issue 12, item 5: times and durations beyond what the wire carries (u32 seconds since 1970)
are refused as bad arguments (exit 2, one line) before anything is written, so the store
keeps generating EMMs.  Real SQLite store in a temporary data dir, through click's CliRunner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cas.cli.main import cli


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CAS_DB_URL", raising=False)
    monkeypatch.delenv("CAS_OPERATOR_KEY", raising=False)
    d = tmp_path / "data"
    for args in (["keys", "init"], ["operator", "use", "tvplus", "--clock-start", "2026-11-01"],
                 ["card", "personalise", "-n", "2", "--out", str(tmp_path / "cards")]):
        r = _cas(d, *args)
        assert r.exit_code == 0, r.output
    return d


def _cas(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])


@dataclass(frozen=True)
class Ran:
    exit_code: int
    output: str


def _cas_script(data_dir: Path, *args: str) -> Ran:
    """The installed ``cas`` script (click's own usage errors are one line only there)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CAS_DB_URL", "CAS_OPERATOR_KEY")}
    proc = subprocess.run([str(Path(sys.executable).parent / "cas"), "--data-dir", str(data_dir),
                           *args], capture_output=True, text=True, timeout=120, env=env)
    return Ran(proc.returncode, proc.stdout + proc.stderr)


def _refused(result: Result | Ran, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "internal error" not in lines[0] and "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]


def _clock(data_dir: Path) -> str:
    r = _cas(data_dir, "--json", "clock", "show")
    assert r.exit_code == 0, r.output
    return str(json.loads(r.output))


def _emms_ok(data_dir: Path, out: Path) -> dict[str, object]:
    r = _cas(data_dir, "--json", "emm", "generate", "--full", "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert out.stat().st_size > 0 and doc["resumed"] is False
    return dict(doc)


def test_clock_beyond_the_wire_is_refused_and_the_store_still_makes_emms(
        data_dir: Path, tmp_path: Path) -> None:
    before = _clock(data_dir)
    _refused(_cas(data_dir, "clock", "set", "2107-01-01"), "2107-01-01", "u32")
    # inside u32 but leaving no room for what is derived from "now" (EMM expiry, periods)
    _refused(_cas(data_dir, "clock", "set", "2106-01-01"), "clock")
    _refused(_cas(data_dir, "clock", "advance", "--days", "36600"), "clock")
    _refused(_cas(data_dir, "operator", "use", "tvplus", "--clock-start", "1969-12-31"))
    assert _clock(data_dir) == before
    _emms_ok(data_dir, tmp_path / "a.sections")
    # the latest allowed clock still works end to end
    assert _cas(data_dir, "clock", "set", "2105-01-01").exit_code == 0
    _emms_ok(data_dir, tmp_path / "b.sections")


@pytest.mark.parametrize("args", [
    ["--at", "1969-01-01"],
    ["--at", "2107-01-01"],
    ["--at", "2106-02-06"],           # a u32 time, but at + 7 days of validity is not
    ["--validity-s", "2147483648"],
    ["--validity-s", "0"],
])
def test_emm_time_options_beyond_the_wire_are_refused_before_anything_is_written(
        data_dir: Path, tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "x.sections"
    _refused(_cas_script(data_dir, "emm", "generate", "--full", "-o", str(out), *args))
    assert list(tmp_path.glob("x.sections*")) == []
    # nothing pending: the next run starts afresh, with the first sequence numbers
    first = _emms_ok(data_dir, tmp_path / "ok.sections")
    assert first["cards"] == 2


def test_stream_and_diagnostics_refuse_times_before_1970(data_dir: Path, tmp_path: Path) -> None:
    clear = tmp_path / "clear.ts"
    r = _cas(data_dir, "stream", "make-test-stream", "--channels", "1", "--duration", "0.5",
             "-o", str(clear))
    assert r.exit_code == 0, r.output
    out = tmp_path / "s.ts"
    _refused(_cas(data_dir, "stream", "scramble", str(clear), str(out), "--at", "1969-01-01"),
             "1969-01-01", "1970")
    assert not out.exists()
    _refused(_cas(data_dir, "why", "--card", "1000000001", "--channel", "1", "--at",
                  "2200-01-01"), "2200-01-01")
