"""The ``cas`` command table (:mod:`cas.cli.registry`) against the commands themselves: every
row's short help is the command's own, every command module is in the table, and the lazy
``cas --help`` is exactly what the fully loaded tree prints."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import cas.cli
from cas.cli.lazy import FULL_SHORT_HELP, LazyGroup, lazy
from cas.cli.main import cli
from cas.cli.registry import COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_table_help_is_the_commands_own(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert command.name == name
    assert COMMANDS[name].help == command.get_short_help_str(FULL_SHORT_HELP)


def test_every_command_module_is_in_the_table() -> None:
    listed = {source.partition(":")[0] for row in COMMANDS.values() for source in row.sources}
    modules = set()
    for info in pkgutil.iter_modules(cas.cli.__path__):
        module = importlib.import_module(f"cas.cli.{info.name}")
        if callable(getattr(module, "register", None)):
            modules.add(module.__name__)
    assert modules - listed == set(), "add a line to cas/cli/registry.py"
    assert listed - modules == set()


@pytest.mark.parametrize("columns", ["80", "200"])
def test_lazy_help_equals_the_loaded_trees_help(columns: str) -> None:
    fresh = _fresh_cli()
    lazy_help = CliRunner().invoke(fresh, ["--help"], env={"COLUMNS": columns}).output
    assert fresh.commands == {}  # --help loaded nothing
    eager = click.Group(name=cli.name, params=cli.params, help=cli.help,
                        context_settings=cli.context_settings,
                        commands=LazyGroup.load_all(cli))
    eager_help = CliRunner().invoke(eager, ["--help"], env={"COLUMNS": columns},
                                    prog_name="cli").output
    assert lazy_help == eager_help
    for name in COMMANDS:
        assert f"\n  {name} " in lazy_help


def test_a_loaded_command_gets_the_tree_decorations() -> None:
    fresh = _fresh_cli()
    why = fresh.get_command(click.Context(fresh), "why")
    assert why is not None and set(fresh.commands) == {"why"}
    assert any("--lang" in p.opts for p in why.params)
    assert why.epilog is not None and "Examples:" in why.epilog
    result = CliRunner().invoke(fresh, ["why", "--card", "1", "--card", "2"])
    assert result.exit_code == 2
    assert "given more than once" in result.output


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nonesuch"])
    assert result.exit_code == 2
    assert "No such command 'nonesuch'" in result.output


def test_completing_a_command_name_imports_no_command_module() -> None:
    code = ("import json, sys, click\n"
            "from cas.cli.main import cli\n"
            "items = cli.shell_complete(click.Context(cli), 'w')\n"
            "print(json.dumps({'items': [[i.value, i.help] for i in items],\n"
            "                  'loaded': sorted(m for m in sys.modules\n"
            "                                   if m.startswith('cas.cli.')\n"
            "                                   and m not in ('cas.cli.main', 'cas.cli.registry', 'cas.cli.lazy',\n"
            "                                                 'cas.cli.examples'))}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout)
    why = cli.get_command(click.Context(cli), "why")
    assert why is not None
    assert out["items"] == [["why", why.get_short_help_str()]]  # click's own completion text
    assert out["loaded"] == []


def _fresh_cli() -> LazyGroup:
    """A root with nothing loaded yet (the module's ``cli`` is shared by every test)."""
    assert isinstance(cli, LazyGroup)
    return LazyGroup(name=cli.name, params=cli.params, help=cli.help, callback=cli.callback,
                     context_settings=cli.context_settings, table=cli.table,
                     decorate=cli.decorate)


@click.command()
def _hello() -> None:
    """Say hello. Then more."""
    click.echo("hello")


def _register_two(group: click.Group) -> None:
    group.add_command(click.Group(name="two", help="Two of them."))


def test_a_row_names_a_command_object_or_a_register_function() -> None:
    here = __name__
    group = LazyGroup(name="t", table={
        "hello": lazy("Say hello.", f"{here}:_hello"),
        "two": lazy("Two of them.", f"{here}:_register_two"),
        "ghost": lazy("Nothing.", f"{here}:_register_two"),
    })
    ctx = click.Context(group)
    assert group.get_command(ctx, "hello") is _hello
    two = group.get_command(ctx, "two")
    assert isinstance(two, click.Group) and two.name == "two"
    assert CliRunner().invoke(group, ["hello"]).output == "hello\n"
    with pytest.raises(LookupError):
        group.get_command(ctx, "ghost")
    assert group.get_command(ctx, "nonesuch") is None
