"""``cas keys``: create and inspect the operator key file (DESIGN §2, ``docs/keys.md``)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.crypto import OperatorKeys, default_key_path, load_operator_keys


def register(cli: click.Group) -> None:
    keys = group(cli, "keys", "Operator key file: create it, show fingerprints.")
    keys.add_command(init_cmd)
    keys.add_command(show_cmd)


def _render(app: Application, path: str, keys: OperatorKeys, title: str) -> None:
    prints = keys.fingerprints()

    def render() -> None:
        table = Table(title=title, show_header=True)
        table.add_column("key")
        table.add_column("fingerprint")
        for name, fp in prints.items():
            table.add_row(name, fp)
        app.print(table)
        app.print(f"key file: {path}")

    app.output({"path": path, "fingerprints": prints}, render)


@click.command("init")
@click.option("--path", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Key file to write (default: <data-dir>/operator-keys.toml).")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@pass_app
def init_cmd(app: Application, path: Path | None, force: bool) -> None:
    """Generate a new operator master key and write it with mode 0600."""
    target = path if path is not None else default_key_path(app.data_dir)
    keys = OperatorKeys.generate(os.urandom)
    written = keys.save(target, force=force)
    _render(app, str(written), keys, "new operator keys")


@click.command("show")
@click.option("--path", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Key file to read (default: $CAS_OPERATOR_KEY, then <data-dir>/operator-keys.toml).")
@pass_app
def show_cmd(app: Application, path: Path | None) -> None:
    """Print key fingerprints (never the keys)."""
    keys = load_operator_keys(path, data_dir=app.data_dir)
    where = str(path) if path is not None else (
        "$CAS_OPERATOR_KEY" if os.environ.get("CAS_OPERATOR_KEY")
        else str(default_key_path(app.data_dir)))
    _render(app, where, keys, "operator keys")
