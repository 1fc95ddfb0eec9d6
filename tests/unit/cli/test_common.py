"""Numbers on the command line are ASCII digits: every integer option of ``cas`` and ``stb``
(``type=int``, ``click.IntRange``, the ``0x`` parsers) refuses "１０", "²" and "٣" with one
line and exit 2 — ``int()`` would have read "１０" as 10."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cas.cli.lazy import walk
from cas.cli.main import cli
from cas.cli.simulcrypt import AUTO_INT, _host_port
from cas.console import AsciiInt, AsciiIntRange
from cas.errors import UsageError
from firmware_stub.cli import cli as stb_cli


def _params(root: click.Command) -> Iterator[tuple[str, click.Parameter]]:
    for path, command in walk(root):
        for p in command.params:
            yield f"{' ' + path if path else ''} {p.name}", p


@pytest.mark.parametrize("root", [cli, stb_cli], ids=["cas", "stb"])
def test_every_integer_parameter_reads_ascii_digits_only(root: click.Group) -> None:
    ints = [(where, p) for where, p in _params(root)
            if isinstance(p.type, click.types.IntParamType)]
    assert len(ints) > (30 if root is cli else 0)
    plain = [where for where, p in ints if not isinstance(p.type, AsciiInt | AsciiIntRange)]
    assert plain == []


@pytest.mark.parametrize("args", [
    ["account", "list", "--limit", "２"],
    ["mux", "serve", "--port", "１０"],
    ["emm", "generate", "--full", "--workers", "٣"],
    ["ecmg", "serve", "--port", "8⁰"],
])
def test_cas_integer_options_refuse_other_digits(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert "not an integer in ASCII digits 0-9" in result.output


def test_stb_integer_options_refuse_other_digits(tmp_path: Path) -> None:
    ts = tmp_path / "in.ts"
    ts.write_bytes(b"")
    result = CliRunner().invoke(stb_cli, ["watch", str(ts), "--channel", "１"])
    assert result.exit_code == 2
    assert "not an integer in ASCII digits 0-9" in result.output


def test_range_and_help_are_kept() -> None:
    limit = next(p for where, p in _params(cli) if where == " account list limit")
    assert isinstance(limit.type, AsciiIntRange)
    assert (limit.type.min, limit.type.max) == (1, 100_000)
    assert limit.type.convert("  42 ", limit, None) == 42
    with pytest.raises(click.BadParameter):
        limit.type.convert("0", limit, None)  # the range still holds


def test_auto_int_and_host_port() -> None:
    assert AUTO_INT.convert("0x1F", None, None) == 31
    assert AUTO_INT.convert("12", None, None) == 12
    for text in ("１０", "0x１", "²"):
        with pytest.raises(click.BadParameter):
            AUTO_INT.convert(text, None, None)
    assert _host_port("127.0.0.1:2222") == ("127.0.0.1", 2222)
    for text in ("127.0.0.1:２２２２", "h:²", "h:70000", "h:"):
        with pytest.raises(UsageError):
            _host_port(text)
