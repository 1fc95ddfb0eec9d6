"""``cas headend run``: ``--check`` on a good file, one-line errors with exit 2 on bad ones,
and a short real run to a file."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.billing.setup import use_profile
from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.crypto.keys import default_key_path
from cas.store.engine import open_store
from tests.unit.live.tsgen import make_spts


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    r = random.Random(4)
    OperatorKeys.generate(lambda n: r.randbytes(n)).save(default_key_path(d))
    store = open_store(data_dir=d)
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=datetime(2026, 11, 1, tzinfo=UTC))
    store.dispose()
    (tmp_path / "clear.ts").write_bytes(make_spts(seconds=0.5).data)
    return d


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "headend.toml"
    path.write_text('[headend]\ndata_dir = "data"\n' + body, encoding="utf-8")
    return path


GOOD = '''[output]
url = "file://out.ts"
[[service]]
channel = 1
source = "loop:clear.ts"
[[service]]
channel = 2
source = "loop:clear.ts"
scrambled = false
[ops]
listen = ""
'''


def test_check_prints_the_layout(data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--json", "headend", "run", str(_write(tmp_path, GOOD)),
                                      "--check"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["emm_pid"] == 0x0C00
    one, two = report["services"]
    assert (one["channel"], one["service_id"], one["scrambled"], one["ecm_pid"]) == (
        1, 1001, True, 0x0C10)
    assert (two["channel"], two["scrambled"], two["ecm_pid"]) == (2, False, None)
    assert one["es_pids"] == [0x100, 0x101] and two["es_pids"] == [0x110, 0x111]
    assert not (tmp_path / "out.ts").exists()  # --check opens no output


@pytest.mark.parametrize("body,message", [
    (GOOD.replace("channel = 2", "channel = 999"),
     "headend.toml: [service.2].channel: channel 999 is not in the store's catalogue"),
    (GOOD.replace('"loop:clear.ts"', '"loop:nope.ts"', 1), "[service.1].source: "),
    (GOOD.replace("[ops]", "[ops]\nlog = \"xml\""), "[ops].log: 'xml' is not one of"),
])
def test_bad_configuration_is_one_line_exit_2(data: Path, tmp_path: Path, body: str,
                                              message: str) -> None:
    result = CliRunner().invoke(cli, ["headend", "run", str(_write(tmp_path, body)), "--check"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_a_short_run_writes_a_scrambled_stream(data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["headend", "run", str(_write(tmp_path, GOOD)),
                                      "--duration", "1.5"])
    assert result.exit_code == 0, result.output
    out = (tmp_path / "out.ts").read_bytes()
    assert len(out) > 100 * 188 and len(out) % 188 == 0
    scrambled = {((out[i + 1] & 0x1F) << 8 | out[i + 2]) for i in range(0, len(out), 188)
                 if out[i + 3] >> 6 in (2, 3)}
    assert scrambled <= {0x100, 0x101} and 0x100 in scrambled  # service 2 is in the clear
