"""The ``stb`` command: the set-top-box stub."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """cas-sim set-top-box stub."""


def main() -> None:
    cli.main(prog_name="stb")
