"""The box never imports the head-end's layers (docs/architecture.md, DESIGN §7)."""

from __future__ import annotations

import ast
import subprocess
import sys
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



def _loaded_after_import(*modules: str) -> set[str]:
    """The modules a fresh interpreter has loaded after importing ``modules``."""
    code = f"import sys, {', '.join(modules)}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


def test_stb_shares_the_console_without_the_cas_command_line() -> None:
    loaded = _loaded_after_import("firmware_stub.cli")
    assert "cas.console" in loaded
    assert sorted(m for m in loaded if m == "cas.cli" or m.startswith("cas.cli.")) == []


def test_box_and_card_client_do_not_load_the_card_emulator() -> None:
    """APDU constants come from :mod:`cas.formats.apdu`; the emulator (``cas.card.applet``)
    is loaded only when an in-process card is inserted."""
    loaded = _loaded_after_import("firmware_stub.cli", "firmware_stub.box", "cas.card.client",
                                  "cas.card.pcsc")
    assert {"firmware_stub.box", "cas.card.client", "cas.card.pcsc"} <= loaded
    assert "cas.card.applet" not in loaded
