"""The ``cas`` command modules' console: re-exported from :mod:`cas.console`, which ``stb``
shares (the box's command line does not import ``cas.cli``)."""

from __future__ import annotations

from cas.console import (
    Application,
    Exit,
    default_data_dir,
    pass_app,
    refuse_repeated_options,
    run_cli,
    run_guarded,
)

__all__ = [
    "Application",
    "Exit",
    "default_data_dir",
    "pass_app",
    "refuse_repeated_options",
    "run_cli",
    "run_guarded",
]
