"""Bad command lines through the installed console scripts: one line on stderr, a non-zero
exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(("tool", "args", "code"), [
    ("cas", ["nosuch"], 2),
    ("cas", ["keys", "init", "--bogus"], 2),
    ("cas", ["why", "--card", "12x", "--channel", "1"], 2),
    ("cas", ["decode", "zz-not-hex"], 2),
    ("cas", ["decode", "7c7c7c"], 3),
    ("cas", ["stream", "scramble"], 2),
    ("stb", ["scan"], 2),
    ("stb", ["scan", "/nonexistent.ts", "--chip-record", "/nonexistent.chip",
             "--vendor-key", "/nonexistent.key", "--nvram", "/tmp/x.nvram"], 2),
])
def test_one_line_error(tool: str, args: list[str], code: int, tmp_path: Path) -> None:
    env = {**os.environ, "CAS_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error: ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
