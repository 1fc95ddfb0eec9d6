"""`cas keys init` / `cas keys show` through click's CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from cas.cli.main import cli
from cas.crypto import OperatorKeys


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env or {"CAS_OPERATOR_KEY": ""})
    return result.exit_code, result.stdout, result.stderr


def test_init_writes_0600_file_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    code, out, _ = run("keys", "init", "--path", str(path))
    assert code == 0, out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = OperatorKeys.load(path)
    assert keys.master.fingerprint() in out
    assert keys.master.raw().hex() not in out

    code, out, err = run("keys", "init", "--path", str(path))
    assert code == 4
    assert "already exists" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1
    assert OperatorKeys.load(path).master == keys.master

    code, _, _ = run("keys", "init", "--path", str(path), "--force")
    assert code == 0
    assert OperatorKeys.load(path).master != keys.master
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_default_path_in_data_dir_and_show_json(tmp_path: Path) -> None:
    code, _, _ = run("--data-dir", str(tmp_path), "keys", "init")
    assert code == 0
    path = tmp_path / "operator-keys.toml"
    keys = OperatorKeys.load(path)
    code, out, _ = run("--json", "--data-dir", str(tmp_path), "keys", "show")
    assert code == 0
    doc = json.loads(out)
    assert doc["path"] == str(path)
    assert doc["fingerprints"]["omk"] == keys.master.fingerprint()
    assert doc["fingerprints"]["global_key"] == keys.global_key().fingerprint()
    assert keys.master.raw().hex() in path.read_text()
    assert keys.master.raw().hex() not in out


def test_show_from_env(tmp_path: Path) -> None:
    omk = bytes(range(16)).hex()
    code, out, _ = run("--json", "--data-dir", str(tmp_path), "keys", "show",
                       env={"CAS_OPERATOR_KEY": omk})
    assert code == 0
    assert json.loads(out)["path"] == "$CAS_OPERATOR_KEY"
    assert omk not in out


def test_show_missing_file_is_one_line_error(tmp_path: Path) -> None:
    code, out, err = run("keys", "show", "--path", str(tmp_path / "none.toml"))
    assert code == 4
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err
