"""``cas headend run --check`` with ``[[ca_system]]`` tables: the CA systems and their ECM PIDs
per service in the report, a bad table a one-line error with exit 2 (no network needed)."""

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

BODY = '''[output]
url = "file://out.ts"
[[service]]
channel = 1
source = "loop:clear.ts"
[[service]]
channel = 2
source = "loop:clear.ts"
scrambled = false
[[service]]
channel = 3
source = "loop:clear.ts"
[ops]
listen = ""
[[ca_system]]
ca_system_id = 0x4AD0
ecmg = "127.0.0.1:1"
backup_ecmg = "127.0.0.1:2"
private_data = "c0ffee"
'''


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    r = random.Random(5)
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


def test_check_lists_the_ca_systems(data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--json", "headend", "run", str(_write(tmp_path, BODY)),
                                      "--check"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (ca,) = report["ca_systems"]
    assert ca["ca_system_id"] == 0x4AD0
    assert (ca["ecmg"], ca["backup_ecmg"]) == ("127.0.0.1:1", "127.0.0.1:2")
    # the scrambled services (the 1st and the 3rd) in order: base + 0, base + 1
    assert ca["ecm_pids"] == {"1001": 0x0D00, "1003": 0x0D01}
    ours = [s["ecm_pid"] for s in report["services"]]
    assert ours == [0x0C10, None, 0x0C11]


@pytest.mark.parametrize("extra,message", [
    ('[[ca_system]]\nca_system_id = 0x4AD0\necmg = "h:3"\n',
     "headend.toml: [ca_system.2].ca_system_id: 0x4ad0 is already [ca_system.1]"),
    ("", "headend.toml: [ca_system.1].private_data: 'c0ffeeg' is not hex bytes"),
])
def test_bad_ca_system_is_one_line_exit_2(data: Path, tmp_path: Path, extra: str,
                                          message: str) -> None:
    body = BODY + extra if extra else BODY.replace('"c0ffee"', '"c0ffeeg"')
    result = CliRunner().invoke(cli, ["headend", "run", str(_write(tmp_path, body)), "--check"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert lines == [f"error: {message}"]
