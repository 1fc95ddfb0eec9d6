"""A click group whose sub-commands are imported on first use: ``cas`` starts in a blink
(``--version``, ``--help``) and a command imports only its own modules.  (``stb`` has four
commands that all run the box; it imports the box inside those commands instead.)

The group is built from a static table, name -> :class:`LazyCommand` (the command's short
help and where it is defined).  ``--help`` and shell completion of the command names read
the table and import nothing; :meth:`LazyGroup.get_command` imports the one command asked
for, hands it to the group's ``decorate`` hook (the ``--lang`` option, ASCII digits, the
repeated-option refusal, ``--help`` examples: :mod:`cas.console`) and keeps it.

``tests/unit/cli/test_registry.py`` checks that the table's help equals each loaded
command's own short help, so the two never drift, and that every command module is in the
table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from cas.console import GuardedGroup

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

#: What a group does to a command it has just loaded (the command's name, the command).
Decorate = Callable[[str, click.Command], None]

#: The short help shown beside a name: click's first-sentence rule, without a width limit.
FULL_SHORT_HELP = 1_000_000


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """One row of a command table.

    ``help``: the command's short help as ``cmd.get_short_help_str(FULL_SHORT_HELP)``
    gives it (click truncates it to the terminal when it prints).  ``sources``: where the
    command comes from, each ``"module:attr"``; ``attr`` is either the command object
    itself or a ``register(group)`` function that adds it (several modules may add
    sub-commands to one group, e.g. ``cas card``: one ``register`` each)."""

    help: str
    sources: tuple[str, ...]

    def load(self, name: str) -> click.Command:
        """Import the sources and return the command ``name`` they define."""
        scratch = click.Group(name=name)
        found: click.Command | None = None
        for source in self.sources:
            module_name, _, attr = source.partition(":")
            obj: Any = getattr(importlib.import_module(module_name), attr)
            if isinstance(obj, click.Command):
                found = obj
            else:
                obj(scratch)
        command = found or scratch.commands.get(name)
        if command is None:
            raise LookupError(f"{', '.join(self.sources)} define no command {name!r}")
        return command


def lazy(help_text: str, *sources: str) -> LazyCommand:
    """A table row: ``"why": lazy("Explain ...", "cas.cli.why:register")``."""
    return LazyCommand(help_text, sources)


class LazyGroup(GuardedGroup):
    """A :class:`~cas.console.GuardedGroup` whose sub-commands come from ``table`` and are
    imported one at a time, on first use."""

    def __init__(self, *args: Any, table: Mapping[str, LazyCommand] | None = None,
                 decorate: Decorate | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table: Mapping[str, LazyCommand] = table or {}
        self.decorate = decorate

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.table) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        row = self.table.get(cmd_name)
        if row is None:
            return None
        command = row.load(cmd_name)
        if self.decorate is not None:
            self.decorate(cmd_name, command)
        self.add_command(command, cmd_name)
        return command

    def load_all(self, ctx: click.Context | None = None) -> dict[str, click.Command]:
        """Every sub-command, loaded (for tests that walk the whole tree)."""
        ctx = ctx or click.Context(self)
        out: dict[str, click.Command] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None:
                out[name] = command
        return out

    def command_help(self, name: str, limit: int) -> str:
        """A sub-command's short help from the table, or from the command once loaded."""
        command = self.commands.get(name)
        if command is not None:
            return command.get_short_help_str(limit)
        # click's own rule (first sentence, cut at ``limit``) on the table's text.
        return click.Command(name, help=self.table[name].help).get_short_help_str(limit)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's command list, from the table: ``--help`` imports no command module."""
        names = [n for n in self.list_commands(ctx)
                 if n not in self.commands or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(name, self.command_help(name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Command names from the table (nothing imported), then the group's options."""
        from click.shell_completion import CompletionItem

        items = [CompletionItem(name, help=self.command_help(name, 45))
                 for name in self.list_commands(ctx) if name.startswith(incomplete)]
        items.extend(click.Command.shell_complete(self, ctx, incomplete))
        return items


def walk(command: click.Command, path: str = "") -> Iterable[tuple[str, click.Command]]:
    """``(path, command)`` for ``command`` and everything under it, lazy groups loaded."""
    yield path, command
    if isinstance(command, click.Group):
        subs = (command.load_all() if isinstance(command, LazyGroup)
                else dict(command.commands))
        for name, sub in subs.items():
            yield from walk(sub, f"{path} {name}".strip())
