"""Issue 12, item 16: a data dir (or database) without a store is refused by every command
that reads or changes one — one line naming the place and how to make a store — and only
``cas operator use`` creates one.  A mistyped ``CAS_DATA_DIR`` must not become a new, empty
store in which the engineer then finds "unknown card".  Real SQLite, click's CliRunner.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cas.cli.main import cli


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CAS_DB_URL", "CAS_OPERATOR_KEY", "CAS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def _cas(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> Result:
    pre = ["--data-dir", str(data_dir)] if data_dir is not None else []
    return CliRunner().invoke(cli, [*pre, *args], env=env)


def _readers(tmp: Path, keys: Path) -> list[list[str]]:
    """Commands that read or change a store (those needing keys get them named, so they get
    as far as the store)."""
    return [
        ["account", "list"],
        ["clock", "show"],
        ["card", "link", "1000000001", "000000000018"],
        ["why", "--card", "1000000001", "--channel", "1"],
        ["emm", "generate", "--full", "-o", str(tmp / "e.sections"), "--keys", str(keys)],
        ["card", "personalise", "-n", "1", "--out", str(tmp / "cards"), "--keys", str(keys)],
        ["pay", "5000", "--card", "1000000001"],
        ["catalog", "show"],
        ["serve", "apikey", "list"],
    ]


def _refused_no_store(result: Result, where: str) -> None:
    assert result.exit_code == 6, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("error: no cas-sim store in ") and where in line, line
    assert "cas operator use" in line and "cas keys init" in line, line


def test_a_mistyped_data_dir_is_refused_and_not_created(tmp_path: Path) -> None:
    good = tmp_path / "data"
    assert _cas("keys", "init", data_dir=good).exit_code == 0
    assert _cas("operator", "use", "tvplus", data_dir=good).exit_code == 0
    typo = tmp_path / "dta"
    # through the environment variable, as the engineer in the issue had it
    for args in _readers(tmp_path, good / "operator-keys.toml"):
        _refused_no_store(_cas(*args, env={"CAS_DATA_DIR": str(typo)}), str(typo))
    assert not typo.exists()
    assert not (tmp_path / "cards").exists() and not (tmp_path / "e.sections").exists()
    # the real data dir is still there and answers
    assert _cas("account", "list", data_dir=good).exit_code == 0


def test_keys_alone_are_no_store_and_operator_use_creates_it(tmp_path: Path) -> None:
    d = tmp_path / "data"
    assert _cas("keys", "init", data_dir=d).exit_code == 0
    for args in _readers(tmp_path, d / "operator-keys.toml"):
        _refused_no_store(_cas(*args, data_dir=d), str(d))
    assert sorted(p.name for p in d.iterdir()) == ["operator-keys.toml"]
    r = _cas("--json", "operator", "use", "tvplus", "--clock-start", "2026-11-01", data_dir=d)
    assert r.exit_code == 0, r.output
    assert (d / "cas.sqlite").is_file()
    r = _cas("--json", "card", "personalise", "-n", "1", "--out", str(tmp_path / "cards"),
             data_dir=d)
    assert r.exit_code == 0, r.output
    serial = json.loads(r.output)["cards"][0]["serial"]
    r = _cas("--json", "card", "show", serial, data_dir=d)
    assert r.exit_code == 0, r.output


def test_a_database_url_without_our_tables_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "x.sqlite"
    _refused_no_store(_cas("--db-url", f"sqlite:///{missing}", "account", "list"), "x.sqlite")
    assert not missing.parent.exists()
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    r = _cas("--db-url", f"sqlite:///{empty}", "account", "list")
    _refused_no_store(r, "empty.sqlite")
    assert "no cas-sim tables" in r.output
    # the creating command makes the schema there, and then readers work
    assert _cas("--db-url", f"sqlite:///{empty}", "operator", "use", "mts").exit_code == 0
    assert _cas("--db-url", f"sqlite:///{empty}", "account", "list").exit_code == 0
