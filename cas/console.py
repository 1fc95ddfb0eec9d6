"""The console both command lines share: ``cas`` (:mod:`cas.cli`) and ``stb``
(:mod:`firmware_stub.cli`).

* :class:`Application` — the one object every command writes through (hatch-style), in
  ``ctx.obj``.  People get rich tables; ``--json`` gets one JSON document on stdout.
* :class:`Exit` — the exit codes; errors are one line on stderr and a non-zero code.
* :class:`GuardedGroup` and :func:`run_cli` — our errors become that one line, never a
  traceback; :func:`refuse_repeated_options` and :func:`ascii_numbers` are installed on the
  finished command tree by each entry module.

It sits beside the domain packages, not under either command line, so that the box's
command line does not import the head-end's (docs/architecture.md).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cas.errors import CasError, UsageError

F = TypeVar("F", bound=Callable[..., Any])


class Exit(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    FORMAT = 3
    CRYPTO = 4
    CARD = 5
    STORE = 6
    RULE = 7
    STREAM = 8
    PROTOCOL = 9
    LOCKED = 10  # a report found locked channels where the caller asked for all open
    MISMATCH = 11  # the demo / diagnostics found disagreeing explanations


def default_data_dir() -> Path:
    return Path(os.environ.get("CAS_DATA_DIR", Path.home() / ".local" / "share" / "cas-sim"))


class Application:
    def __init__(self, *, json_mode: bool = False, data_dir: Path | None = None,
                 db_url: str | None = None, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.data_dir = data_dir or default_data_dir()
        self.db_url = db_url or os.environ.get("CAS_DB_URL")
        self.quiet = quiet
        # Piped output (CI logs, `| less`) gets wide tables instead of rich's 80 columns.
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
        self.console = Console(highlight=False, soft_wrap=True, width=width)
        self.err_console = Console(stderr=True, highlight=False, soft_wrap=True)

    # --- output -------------------------------------------------------------------------------
    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.json_mode and not self.quiet:
            self.console.print(*objects, **kwargs)

    def emit_json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def output(self, data: Any, render: Callable[[], None]) -> None:
        """``--json``: dump ``data``; otherwise call ``render`` (which prints rich output)."""
        if self.json_mode:
            self.emit_json(data)
        else:
            render()

    def fail(self, message: str, code: int = Exit.ERROR) -> NoReturn:
        self.err_console.print(f"error: {message}", markup=False)
        raise SystemExit(int(code))

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar with rate and ETA (stderr, hidden for --json/--quiet or non-tty)."""
        show = not self.json_mode and not self.quiet and self.err_console.is_terminal
        if not show:
            yield lambda n: None
            return
        columns = (
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), TextColumn("{task.speed} /s"), TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.err_console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)

    # --- data dir ---------------------------------------------------------------------------
    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def run_guarded(fn: Callable[[], Any], app: Application | None = None) -> Any:
    """Call ``fn``; turn our errors into one line + exit code, never a traceback."""
    try:
        return fn()
    except CasError as exc:
        console = app.err_console if app else Console(stderr=True)
        console.print(f"error: {exc}", markup=False, highlight=False)
        raise SystemExit(exc.exit_code) from None
    except (OSError, ValueError) as exc:
        console = app.err_console if app else Console(stderr=True)
        console.print(f"error: {exc}", markup=False, highlight=False)
        raise SystemExit(int(Exit.ERROR)) from None


pass_app = click.make_pass_decorator(Application)


def _single_value(param: click.Parameter) -> bool:
    """An option that takes one value (not a flag, a counter or a ``multiple`` option)."""
    return (isinstance(param, click.Option) and not param.multiple and not param.count
            and not param.is_flag)


def _refusing_parse_args(cmd: click.Command) -> Callable[[click.Context, list[str]], list[str]]:
    original = cmd.parse_args

    def parse_args(ctx: click.Context, args: list[str]) -> list[str]:
        if args and not ctx.resilient_parsing:
            # click keeps the last of a repeated option; a payment by `--card A --card B`
            # must not silently go to B.  The parser lists every occurrence in order.
            _opts, _rest, order = cmd.make_parser(ctx).parse_args(args=list(args))
            seen: set[str | None] = set()
            for param in order:
                if not _single_value(param):
                    continue
                if param.name in seen:
                    names = "/".join(param.opts)
                    raise UsageError(f"option {names} given more than once (it takes one "
                                     f"value; see '{ctx.command_path} --help')")
                seen.add(param.name)
        return original(ctx, args)

    return parse_args


def refuse_repeated_options(command: click.Command) -> None:
    """Make ``command`` and every sub-command refuse a single-value option given twice
    (``--card 1 --card 2``: usage error, exit 2) instead of click's last-wins.

    Commands are plain ``click.command`` objects spread over many modules, so the check is
    installed on the finished tree by the ``cas`` and ``stb`` entry modules."""
    if not getattr(command, "_cas_refuses_repeats", False):
        setattr(command, "parse_args", _refusing_parse_args(command))  # noqa: B010
        setattr(command, "_cas_refuses_repeats", True)  # noqa: B010
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            refuse_repeated_options(sub)


class GuardedGroup(click.Group):
    """Our errors become one line on stderr and their exit code; never a traceback.

    ``one_line_internal_errors``: any other exception (a bug of ours) is one line too,
    ``internal error: ...`` and exit 1, unless ``CAS_DEBUG`` is set."""

    one_line_internal_errors: ClassVar[bool] = True

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CasError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (OSError, ValueError, UnicodeError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if not self.one_line_internal_errors or os.environ.get("CAS_DEBUG"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc} "
                       "(set CAS_DEBUG=1 for a traceback)", err=True)
            ctx.exit(1)


def run_cli(group: click.Group, prog_name: str) -> None:
    """Run a click group as a console script with one-line errors.

    Bad arguments (click's usage errors) and our own errors are printed as one line,
    ``error: ...`` on stderr, with a non-zero exit code (2 for usage) — never a traceback.
    """
    try:
        rc = group.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except CasError as exc:  # raised outside a command (e.g. during option parsing)
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


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
