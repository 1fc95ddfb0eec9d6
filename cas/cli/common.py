"""Helpers shared by the command modules.

The ASCII-digit integer types live in :mod:`cas.console` (``stb`` uses them too); they are
re-exported here for the command modules that import them from this module.
"""

from __future__ import annotations

import click

from cas.console import AsciiInt, AsciiIntRange, ascii_numbers

__all__ = ["AsciiInt", "AsciiIntRange", "ascii_numbers", "group"]


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
