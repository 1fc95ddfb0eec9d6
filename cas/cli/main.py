"""The ``cas`` command: head-end, card, stream and diagnostics tools.

Command groups live one per module in ``cas/cli/``; each module defines
``register(cli: click.Group) -> None``.  The root group is lazy
(:class:`cas.cli.lazy.LazyGroup`): its commands are listed in :mod:`cas.cli.registry`
(one line per command) and a command's modules are imported only when that command runs,
so ``cas --version`` and ``cas --help`` import no SQLAlchemy, FastAPI, construct or
pyscard.  A loaded command gets the same treatment the whole tree used to get at import:
``--help`` examples, ASCII-digit integers, ``--lang`` everywhere and the repeated-option
refusal (:func:`decorate`).
"""

from __future__ import annotations

from pathlib import Path

import click

import cas
from cas.cli.examples import install as install_examples
from cas.cli.lazy import LazyGroup
from cas.cli.registry import COMMANDS
from cas.console import (
    Application,
    ascii_numbers,
    lang_everywhere,
    refuse_repeated_options,
    run_cli,
)


def decorate(name: str, command: click.Command) -> None:
    """What every ``cas`` command gets when it is loaded (``name``: its name under ``cas``)."""
    install_examples(name, command)
    ascii_numbers(command)
    lang_everywhere(command)
    refuse_repeated_options(command)


@click.group(cls=LazyGroup, table=COMMANDS, decorate=decorate,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cas.__version__, prog_name="cas")
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable JSON output.")
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="CAS_DATA_DIR",
              help="Where the SQLite store, keys and card images live.")
@click.option("--db-url", envvar="CAS_DB_URL", help="SQLAlchemy URL (default: SQLite in the data dir).")
@click.option("-q", "--quiet", is_flag=True, help="Less output.")
@click.option("--lang", type=click.Choice(["en", "ru"]), default=None,
              help="Language of the output and errors (default: CAS_LANG, then the locale "
                   "LC_ALL / LC_MESSAGES / LANG, then en).")
@click.pass_context
def cli(ctx: click.Context, json_mode: bool, data_dir: Path | None, db_url: str | None,
        quiet: bool, lang: str | None) -> None:
    """cas-sim head-end: subscribers, cards, EMM/ECM, streams, SimulCrypt, diagnostics."""
    ctx.obj = Application(json_mode=json_mode, data_dir=data_dir, db_url=db_url, quiet=quiet,
                          lang=lang)


ascii_numbers(cli)
refuse_repeated_options(cli)


def main() -> None:
    run_cli(cli, "cas")
