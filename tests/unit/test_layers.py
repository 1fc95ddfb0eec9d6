"""The layer contract: one table, declared in pyproject.toml and shown in docs/architecture.md.

- the table in docs/architecture.md (between the ``layers:begin``/``layers:end`` markers)
  is the ``layers`` contract of ``[tool.importlinter]``, row for row;
- every top-level module of ``cas`` and the ``firmware_stub`` package are in the table;
- ``lint-imports`` (run by scripts/test.sh) fails on a forbidden import: a copy of the tree
  with ``cas.formats`` importing ``cas.store`` breaks the layers contract, the unchanged copy
  keeps it; a private module imported from outside its package breaks the private contract;
  a socket opened by a pure core (the SimulCrypt state machine) breaks the pure-cores one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def _contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["id"] == contract_id:
            return dict(contract)
    raise AssertionError(f"no import-linter contract {contract_id!r}")


def _declared_layers() -> list[set[str]]:
    layers = _contract("layers")["layers"]
    assert isinstance(layers, list)
    return [{name.strip() for name in str(row).split("|")} for row in layers]


def _doc_layers() -> list[set[str]]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", text, re.S)
    assert match, "docs/architecture.md has no layers:begin/layers:end table"
    rows = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue
        rows.append((int(cells[0]), set(re.findall(r"`([\w.]+)`", cells[1]))))
    assert [n for n, _ in rows] == list(range(1, len(rows) + 1)), "layers numbered 1, 2, ..."
    return [modules for _, modules in rows]


def test_doc_table_is_the_contract() -> None:
    assert _doc_layers() == _declared_layers()


def test_every_top_level_module_has_a_layer() -> None:
    listed = set().union(*_declared_layers())
    ours = {"firmware_stub"}
    for path in (ROOT / "cas").iterdir():
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py" or (path / "__init__.py").exists():
            ours.add(f"cas.{path.stem}")
    assert ours - listed == set(), "modules missing from the layer table"
    assert listed - ours == set(), "the layer table names modules that do not exist"


def _tree_copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__", "static", "templates", "locales", "*.mako")
    for package in ("cas", "firmware_stub"):
        shutil.copytree(ROOT / package, root / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-c", "import sys; from importlinter.cli import "
            "lint_imports_command; sys.exit(lint_imports_command())",
            "--no-cache", "--no-logo"]
    for contract in contracts:
        args += ["--contract", contract]
    return subprocess.run(args, cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_lint_imports_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    root = _tree_copy(tmp_path)
    kept = _lint_imports(root, "layers")
    assert kept.returncode == 0, kept.stdout + kept.stderr

    crc = root / "cas" / "formats" / "crc.py"
    crc.write_text(crc.read_text(encoding="utf-8") + "\nimport cas.store.models  # noqa\n",
                   encoding="utf-8")
    broken = _lint_imports(root, "layers")
    assert broken.returncode == 1
    assert "cas.formats is not allowed to import cas.store" in broken.stdout
    assert "cas.formats.crc -> cas.store.models" in broken.stdout


@pytest.mark.slow
def test_lint_imports_fails_on_a_private_module_imported_from_outside(tmp_path: Path) -> None:
    root = _tree_copy(tmp_path)
    (root / "cas" / "crypto" / "_secret.py").write_text("X = 1\n", encoding="utf-8")
    (root / "cas" / "formats" / "leak.py").write_text("import cas.crypto._secret  # noqa\n",
                                                       encoding="utf-8")
    broken = _lint_imports(root, "private")
    assert broken.returncode == 1
    assert "cas.formats.leak -> cas.crypto._secret" in broken.stdout


@pytest.mark.slow
def test_lint_imports_fails_on_io_in_a_pure_core(tmp_path: Path) -> None:
    root = _tree_copy(tmp_path)
    kept = _lint_imports(root, "pure-cores")
    assert kept.returncode == 0, kept.stdout + kept.stderr

    state = root / "cas" / "headend" / "simulcrypt" / "state.py"
    state.write_text(state.read_text(encoding="utf-8") + "\nimport socket  # noqa\n",
                     encoding="utf-8")
    broken = _lint_imports(root, "pure-cores")
    assert broken.returncode == 1
    assert "cas.headend.simulcrypt.state is not allowed to import socket" in broken.stdout
