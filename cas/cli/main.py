"""The ``cas`` command: head-end, card, stream and diagnostics tools.

Command groups live one per module in ``cas/cli/``; each module defines
``register(cli: click.Group) -> None`` and is discovered here, so adding a group never
touches this file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import click

import cas
from cas.console import (
    Application,
    GuardedGroup,
    ascii_numbers,
    refuse_repeated_options,
    run_cli,
)

_SKIP = {"main", "app", "common"}


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cas.__version__, prog_name="cas")
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable JSON output.")
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="CAS_DATA_DIR",
              help="Where the SQLite store, keys and card images live.")
@click.option("--db-url", envvar="CAS_DB_URL", help="SQLAlchemy URL (default: SQLite in the data dir).")
@click.option("-q", "--quiet", is_flag=True, help="Less output.")
@click.pass_context
def cli(ctx: click.Context, json_mode: bool, data_dir: Path | None, db_url: str | None,
        quiet: bool) -> None:
    """cas-sim head-end: subscribers, cards, EMM/ECM, streams, SimulCrypt, diagnostics."""
    ctx.obj = Application(json_mode=json_mode, data_dir=data_dir, db_url=db_url, quiet=quiet)


def _register_all() -> None:
    import cas.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name in _SKIP or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"cas.cli.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(cli)


_register_all()
ascii_numbers(cli)
refuse_repeated_options(cli)


def main() -> None:
    run_cli(cli, "cas")
