"""The box never imports the head-end's layers (docs/architecture.md, DESIGN §7)."""

from __future__ import annotations

import ast
from pathlib import Path

import firmware_stub

FORBIDDEN = ("cas.store", "cas.billing", "cas.headend", "cas.web", "cas.cli.main")


def test_firmware_stub_imports_no_head_end_layer() -> None:
    root = Path(firmware_stub.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [(path.name, n) for n in names if n.startswith(FORBIDDEN)]
    assert found == []
    assert len(list(root.rglob("*.py"))) >= 10  # the walk did see the package
