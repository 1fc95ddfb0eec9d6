"""docs/field-guide.md carries the reason-code table as ``cas diag codes --markdown`` prints
it from cas/reasons.py, and names only ``cas diag`` options that exist."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from cas.cli.main import cli
from cas.diag.render import codes_markdown
from cas.reasons import REASONS

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "field-guide.md"


def test_guide_has_the_current_code_table() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert codes_markdown() in text
    for info in REASONS.values():
        assert f"`{info.reason.value}`" in text


def test_codes_markdown_command_prints_the_same_table() -> None:
    result = CliRunner().invoke(cli, ["diag", "codes", "--markdown"])
    assert result.exit_code == 0 and result.stdout == codes_markdown()


def test_guide_uses_existing_options() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for sub in ("stream", "card", "box", "visit", "codes"):
        help_text = CliRunner().invoke(cli, ["diag", sub, "--help"],
                                       env={"COLUMNS": "200"}).stdout
        for line in re.findall(rf"^\$ cas diag {sub} (.*)$", text, flags=re.M):
            for option in re.findall(r"(--[a-z][a-z-]+)", line):
                assert option in help_text, f"cas diag {sub}: {option}"
