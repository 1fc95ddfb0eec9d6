"""The console both command lines share: ``cas`` (:mod:`cas.cli`) and ``stb``
(:mod:`firmware_stub.cli`).

* :class:`Application` — the one object every command writes through (hatch-style), in
  ``ctx.obj``.  People get rich tables; ``--json`` gets one JSON document on stdout.
* :class:`Exit` — the exit codes; errors are one line on stderr and a non-zero code.
* :class:`GuardedGroup` and :func:`run_cli` — our errors become that one line, never a
  traceback (under ``--json``, one JSON document ``{"error": {"code", "message",
  "exit_code"}}`` on stderr); :func:`refuse_repeated_options`, :func:`ascii_numbers` and
  :func:`lang_everywhere` are installed on the finished command tree by each entry module.
* The language (:mod:`cas.i18n`): ``--lang en|ru`` on every command, else ``CAS_LANG``, else
  the locale; ``app.t(key, ...)`` is the catalogue in that language.

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

from cas.errors import CasError, UsageError
from cas.i18n import DEFAULT_LANGUAGE, LANGUAGES, Translator, resolve_language

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
    NOT_FOUND = 12  # `cas diag fingerprint`: no fingerprint in the clip


def default_data_dir() -> Path:
    return Path(os.environ.get("CAS_DATA_DIR", Path.home() / ".local" / "share" / "cas-sim"))


class Application:
    def __init__(self, *, json_mode: bool = False, data_dir: Path | None = None,
                 db_url: str | None = None, quiet: bool = False,
                 lang: str | None = None) -> None:
        self.json_mode = json_mode
        self.set_lang(lang)
        self.data_dir = data_dir or default_data_dir()
        self.db_url = db_url or os.environ.get("CAS_DB_URL")
        self.quiet = quiet
        # Piped output (CI logs, `| less`) gets wide tables instead of rich's 80 columns.
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
        self.console = Console(highlight=False, soft_wrap=True, width=width)
        self.err_console = Console(stderr=True, highlight=False, soft_wrap=True)

    def set_lang(self, lang: str | None) -> None:
        """``--lang`` (or ``None``: ``CAS_LANG``, then the locale)."""
        self.lang = resolve_language(lang)
        self.t = Translator(self.lang)

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
        report_error(message, exit_code=int(code), json_mode=self.json_mode, lang=self.lang)
        raise SystemExit(int(code))

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar with rate and ETA (stderr, hidden for --json/--quiet or non-tty)."""
        with self.progress_bars((description, total)) as (advance,):
            yield advance

    @contextmanager
    def progress_bars(self, *bars: tuple[str, int | None]
                      ) -> Iterator[tuple[Callable[[int], None], ...]]:
        """Several progress bars shown together (phases that run at the same time), one
        ``advance`` each; like :meth:`progress` otherwise.  ``advance`` may be called from
        another thread."""
        show = not self.json_mode and not self.quiet and self.err_console.is_terminal
        if not show:
            yield tuple((lambda n: None) for _ in bars)
            return
        # Imported here: rich.progress (and the rich.table it pulls in) is a tenth of the
        # start-up of a command that never shows a bar.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), TextColumn("{task.speed} /s"), TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.err_console, transient=True) as bar:
            tasks = [bar.add_task(description, total=total) for description, total in bars]
            yield tuple(_advancer(bar, task) for task in tasks)

    # --- data dir ---------------------------------------------------------------------------
    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def run_guarded(fn: Callable[[], Any], app: Application | None = None) -> Any:
    """Call ``fn``; turn our errors into one line + exit code, never a traceback."""
    json_mode = app.json_mode if app else False
    lang = app.lang if app else None
    try:
        return fn()
    except CasError as exc:
        report_error(exc, code=error_code(exc), exit_code=exc.exit_code,
                     json_mode=json_mode, lang=lang)
        raise SystemExit(exc.exit_code) from None
    except (OSError, ValueError) as exc:
        report_error(exc, code=error_code(exc), exit_code=int(Exit.ERROR),
                     json_mode=json_mode, lang=lang)
        raise SystemExit(int(Exit.ERROR)) from None


pass_app = click.make_pass_decorator(Application)


# --- errors ----------------------------------------------------------------------------------
def error_code(exc: BaseException) -> str:
    """The stable code of an error under ``--json``: the error's own ``code`` (the API's,
    e.g. ``UNKNOWN_CARD``) if it has one, else its class in upper snake case
    (``StoreMissing`` -> ``STORE_MISSING``)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()


def _json_requested() -> bool:
    """``--json`` anywhere on the command line: for errors raised before the root command
    has read its options (click's usage errors)."""
    return "--json" in sys.argv[1:]


_NAME = r"(?P<name>'[^']*')"
#: click's own usage messages (click 8, English), read back into catalogue messages
#: (``errors.click.*``): click words them through gettext, which this project does not set up.
_CLICK_TEXT: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), key) for pattern, key in (
        (rf"Missing option {_NAME}\.", "missing_option"),
        (rf"Missing argument {_NAME}\.", "missing_argument"),
        (rf"Missing parameter:? {_NAME}\.?", "missing_parameter"),
        (r"Missing command\.", "missing_command"),
        (rf"No such option:? {_NAME}\.? Did you mean (?P<hint>'[^']*')\?", "no_such_option_hint"),
        (rf"No such option:? {_NAME}\.? \(Did you mean one of: (?P<hint>.+)\?\)",
         "no_such_option_hint"),
        (rf"No such option:? {_NAME}\.?", "no_such_option"),
        (rf"No such command {_NAME}\.", "no_such_command"),
        (r"Got unexpected extra arguments? \((?P<args>.*)\)", "extra_arguments"),
        (rf"Option {_NAME} requires an argument\.", "needs_argument"),
        (rf"Option {_NAME} requires (?P<n>\d+) arguments\.", "needs_arguments"),
        (rf"Option {_NAME} does not take a value\.", "takes_no_value"),
        (rf"Invalid value for {_NAME}: (?P<value>'.*') is not (?:one of )?(?P<choices>'.*')\.",
         "not_a_choice"),
        (rf"Invalid value for {_NAME}: (?P<value>.+) is not in the range (?P<range>.+)\.",
         "out_of_range"),
        (rf"Invalid value for {_NAME}: (?P<value>'.*') is not an integer in ASCII digits 0-9",
         "not_an_integer"),
        (rf"Invalid value for {_NAME}: (?P<value>'.*') is not a valid integer\.",
         "not_an_integer"),
        (rf"Invalid value for {_NAME}: (?P<value>'.*') is not a valid float\.", "not_a_number"),
        (rf"Invalid value for {_NAME}: (?:File|Directory|Path) (?P<path>'.*') does not exist\.",
         "path_missing"),
        (rf"Invalid value for {_NAME}: (?:File|Directory|Path) (?P<path>'.*') is a file\.",
         "path_is_file"),
        (rf"Invalid value for {_NAME}: (?:File|Directory|Path) (?P<path>'.*') is a directory\.",
         "path_is_directory"),
        (rf"Invalid value for {_NAME}: (?:File|Directory|Path) (?P<path>'.*') is not readable\.",
         "path_unreadable"),
        (rf"Invalid value for {_NAME}: (?:File|Directory|Path) (?P<path>'.*') is not writable\.",
         "path_unwritable"),
    ))


def click_text(message: str, t: Translator) -> str | None:
    """One of click's usage messages in ``t``'s language, or ``None`` if it is not one we
    know (it is then shown as untranslated)."""
    for pattern, key in _CLICK_TEXT:
        if m := pattern.fullmatch(message.strip()):
            params: dict[str, Any] = dict(m.groupdict())
            if "n" in params:
                params["n"] = int(params["n"])
            return t(f"errors.click.{key}", **params)
    return None


def error_text(error: str | BaseException, t: Translator) -> str:
    """An error's one line in ``t``'s language: English as raised; another language from
    the catalogue when the error names its message (:meth:`CasError.with_id`), else the
    English line marked as untranslated (``error.untranslated``) — never a silent mix."""
    english = str(error)
    if t.lang == DEFAULT_LANGUAGE:
        return english
    if isinstance(error, str) and (text := click_text(error, t)) is not None:
        return text
    if isinstance(error, CasError) and error.message_id is not None:
        text = t.error(error.message_id, error.message_params)
        if text is not None:
            return text
    if isinstance(error, OSError) and error.filename is not None:
        # The operating system's refusals, by kind; the file name as given.
        kind = {FileNotFoundError: "not_found", PermissionError: "permission",
                IsADirectoryError: "is_a_directory", NotADirectoryError: "not_a_directory",
                FileExistsError: "exists"}.get(type(error))
        if kind is not None:
            return t(f"errors.os.{kind}", path=error.filename)
    return t("error.untranslated", message=english)


def report_error(message: str | BaseException, *, code: str = "ERROR", exit_code: int = 1,
                 json_mode: bool | None = None, lang: str | None = None,
                 internal: bool = False, translated: bool = False) -> None:
    """One line on stderr, ``error: ...`` (``ошибка: ...`` in Russian); under ``--json`` one
    JSON document ``{"error": {"code": ..., "message": ..., "exit_code": ...}}`` on stderr
    instead (``message_en`` too when the language is not English), so a script reading
    stdout never mistakes it for data (README, "Errors").  ``message`` is an error (put in
    the language by :func:`error_text`) or a line; ``translated``: the line is in the
    language already."""
    if json_mode is None:
        json_mode = _json_requested()
    t = Translator(resolve_language(lang))
    text = str(message) if translated or internal else error_text(message, t)
    if json_mode:
        doc: dict[str, Any] = {"code": code, "message": text, "exit_code": exit_code}
        if t.lang != DEFAULT_LANGUAGE and not (translated or internal):
            doc["message_en"] = str(message)
        click.echo(json.dumps({"error": doc}, ensure_ascii=False), err=True)
        return
    prefix = t("error.internal" if internal else "error.prefix")
    click.echo(f"{prefix}: {text}", err=True)


def _context_app(ctx: click.Context | None) -> Application | None:
    return ctx.find_object(Application) if ctx is not None else None


def _set_lang(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    app = ctx.find_object(Application)
    if value is not None and app is not None:
        app.set_lang(value)
    return value


def lang_option(f: F) -> F:
    """``--lang en|ru`` on one command (after the command name too: ``cas why --lang ru``)."""
    return click.option("--lang", "lang_here", type=click.Choice(LANGUAGES), default=None,
                        expose_value=False, callback=_set_lang, is_eager=True,
                        help="Language of the output: en or ru (default: CAS_LANG, then "
                             "the locale).")(f)


def examples_epilog(lines: tuple[str, ...]) -> str:
    """A ``--help`` epilog listing example command lines ("\\b" keeps click from re-wrapping
    them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def lang_everywhere(command: click.Command) -> None:
    """Give every command under ``command`` a ``--lang`` option unless it has one."""
    if not any(p.name in ("lang", "lang_here") for p in command.params):
        lang_option(command)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            lang_everywhere(sub)


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
                                     f"value; see '{ctx.command_path} --help')").with_id(
                                         "option_twice", option=names, command=ctx.command_path)
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
            self._report(ctx, exc, error_code(exc), exc.exit_code)
            ctx.exit(exc.exit_code)
        except (OSError, ValueError, UnicodeError) as exc:
            self._report(ctx, exc, error_code(exc), 1)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if not self.one_line_internal_errors or os.environ.get("CAS_DEBUG"):
                raise
            app = _context_app(ctx)
            t = app.t if app is not None else Translator(resolve_language())
            self._report(ctx, f"{type(exc).__name__}: {exc} ({t('error.debug_hint')})",
                         "INTERNAL_ERROR", 1, internal=True)
            ctx.exit(1)

    @staticmethod
    def _report(ctx: click.Context, message: str | BaseException, code: str, exit_code: int, *,
                internal: bool = False) -> None:
        app = _context_app(ctx)
        report_error(message, code=code, exit_code=exit_code, internal=internal,
                     json_mode=app.json_mode if app is not None else None,
                     lang=app.lang if app is not None else None)


def run_cli(group: click.Group, prog_name: str) -> None:
    """Run a click group as a console script with one-line errors.

    Bad arguments (click's usage errors) and our own errors are printed as one line,
    ``error: ...`` on stderr, with a non-zero exit code (2 for usage) — never a traceback.
    """
    try:
        rc = group.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        report_error(Translator(_argv_lang())("error.aborted"), code="ABORTED", lang=_argv_lang(),
                     translated=True)
        sys.exit(1)
    except click.UsageError as exc:
        lang = _argv_lang(exc.ctx)
        t = Translator(lang)
        hint = (" (" + t("error.help_hint", command=exc.ctx.command_path) + ")"
                if exc.ctx else "")
        report_error(f"{error_text(exc.format_message(), t)}{hint}", code="USAGE_ERROR",
                     exit_code=exc.exit_code, lang=lang, translated=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        report_error(exc.format_message(), code="ERROR", exit_code=exc.exit_code,
                     lang=_argv_lang(getattr(exc, "ctx", None)))
        sys.exit(exc.exit_code)
    except CasError as exc:  # raised outside a command (e.g. during option parsing)
        report_error(exc, code=error_code(exc), exit_code=exc.exit_code,
                     lang=_argv_lang())
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


def _argv_lang(ctx: click.Context | None = None) -> str:
    """The language for an error raised while the command line was being read: the
    application's if it exists already, else ``--lang X`` / ``--lang=X`` on the command
    line, else ``CAS_LANG`` / the locale."""
    app = _context_app(ctx)
    if app is not None:
        return app.lang
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv) and argv[i + 1] in LANGUAGES:
            return argv[i + 1]
        if arg.startswith("--lang=") and arg[7:] in LANGUAGES:
            return arg[7:]
    return resolve_language()


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


def _advancer(bar: Any, task: Any) -> Callable[[int], None]:
    return lambda n: bar.advance(task, n)
