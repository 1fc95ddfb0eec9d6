"""``cas`` and ``stb`` start without the heavy libraries: ``--version`` and ``--help`` (and a
command's own ``--help``) import no SQLAlchemy, FastAPI, construct, pyscard or Babel.  Run
in a fresh interpreter, so a module-level import anywhere on the path fails here (the
wall time itself is measured in benchmarks/bench_startup.py, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "fastapi", "starlette", "construct", "smartcard", "babel")

_RUN = """
import json, sys
sys.argv = [{prog!r}, *{args!r}]
from {module} import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.flush()
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _run(prog: str, *args: str) -> tuple[int, list[str], str]:
    module = "cas.cli.main" if prog == "cas" else "firmware_stub.cli"
    code = _RUN.format(prog=prog, args=list(args), module=module, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], report["heavy"], proc.stdout


@pytest.mark.parametrize("prog", ["cas", "stb"])
@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_no_heavy_library(prog: str, args: list[str]) -> None:
    code, heavy, out = _run(prog, *args)
    assert code == 0
    assert heavy == []
    assert (f"{prog}, version" in out) if args == ["--version"] else ("Commands:" in out)


def test_cas_help_lists_every_command() -> None:
    from cas.cli.registry import COMMANDS

    _code, _heavy, out = _run("cas", "--help")
    listed = [line.split()[0] for line in out.split("Commands:\n", 1)[1].splitlines() if line]
    assert listed == sorted(COMMANDS)


@pytest.mark.parametrize(("args", "allowed"), [
    (["stream", "--help"], ()),
    (["decode", "--help"], ("construct",)),
    (["why", "--help"], ("sqlalchemy",)),
])
def test_a_command_imports_only_what_it_uses(args: list[str], allowed: tuple[str, ...]) -> None:
    code, heavy, _out = _run("cas", *args)
    assert code == 0
    assert set(heavy) <= set(allowed)
