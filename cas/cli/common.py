"""Helpers shared by the command modules."""

from __future__ import annotations

import re
from typing import Any

import click


def group(cli: click.Group, name: str, help_text: str) -> click.Group:
    """Return the sub-group ``name`` of ``cli``, creating it on first use.

    Several modules may add commands to one group (e.g. ``cas card personalise`` from the
    card layer and ``cas card link`` from the subscriber layer) without knowing each other.
    """
    existing = cli.commands.get(name)
    if isinstance(existing, click.Group):
        return existing
    grp = click.Group(name=name, help=help_text)
    cli.add_command(grp)
    return grp


# --- numbers are ASCII digits (cas.text) -------------------------------------------------------
#: What click's integer types may read: an optional sign and ASCII digits.  (They call
#: ``int()``, which also reads "１０", "٣" and "1_0".)
_ASCII_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


def _refuse_other_digits(ptype: click.ParamType[Any], value: Any, param: click.Parameter | None,
                         ctx: click.Context | None) -> None:
    if isinstance(value, str) and not _ASCII_INTEGER.fullmatch(value):
        ptype.fail(f"{value!r} is not an integer in ASCII digits 0-9", param, ctx)


class AsciiInt(click.types.IntParamType):
    """``type=int``, reading ASCII digits only."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        _refuse_other_digits(self, value, param, ctx)
        return super().convert(value, param, ctx)


class AsciiIntRange(click.IntRange):
    """``click.IntRange``, reading ASCII digits only."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        _refuse_other_digits(self, value, param, ctx)
        return super().convert(value, param, ctx)


def ascii_numbers(command: click.Command) -> None:
    """Make every integer option and argument under ``command`` (``type=int``,
    ``click.IntRange``) read ASCII digits only — applied once to the whole tree by the
    ``cas`` and ``stb`` entry points, so no command can forget it."""
    for param in command.params:
        t = param.type
        if isinstance(t, AsciiInt | AsciiIntRange):
            continue
        if isinstance(t, click.IntRange):
            param.type = AsciiIntRange(min=t.min, max=t.max, min_open=t.min_open,
                                       max_open=t.max_open, clamp=t.clamp)
        elif type(t) is click.types.IntParamType:
            param.type = AsciiInt()
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            ascii_numbers(sub)
