"""Helpers shared by the command modules."""

from __future__ import annotations

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
