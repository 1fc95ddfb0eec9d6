"""The console both command lines share (:mod:`cas.console`): one line per error, the exit
code of the error, never a traceback unless asked for."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from cas.console import Application, GuardedGroup, pass_app, refuse_repeated_options
from cas.errors import StreamError


class _Bug(Exception):
    pass


def _group(cls: type[GuardedGroup], *, json_mode: bool = False,
           lang: str | None = "en") -> click.Group:
    @click.group(cls=cls)
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        ctx.obj = Application(json_mode=json_mode, lang=lang)

    @cli.command()
    def stream() -> None:
        raise StreamError("no sync byte")

    @cli.command()
    def named() -> None:
        raise StreamError("in.ts: empty stream").with_id("empty_stream", source="in.ts")

    @cli.command()
    def missing() -> None:
        with open("/nonexistent/cas-sim/in.ts", "rb"):
            pass

    @cli.command()
    def bad_value() -> None:
        raise ValueError("not a number")

    @cli.command()
    def bug() -> None:
        raise _Bug("oops")

    @cli.command()
    @click.option("--card")
    @pass_app
    def pay(app: Application, /, card: str) -> None:
        app.emit_json({"card": card})

    refuse_repeated_options(cli)
    return cli


class _Quiet(GuardedGroup):
    one_line_internal_errors = False


def test_our_error_is_one_line_and_its_exit_code() -> None:
    result = CliRunner().invoke(_group(GuardedGroup), ["stream"])
    assert result.exit_code == StreamError.exit_code
    assert result.output == "error: no sync byte\n"


def test_oserror_and_valueerror_are_one_line_exit_1() -> None:
    result = CliRunner().invoke(_group(GuardedGroup), ["bad-value"])
    assert (result.exit_code, result.output) == (1, "error: not a number\n")


def test_a_bug_is_one_line_unless_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAS_DEBUG", raising=False)
    result = CliRunner().invoke(_group(GuardedGroup), ["bug"])
    assert result.exit_code == 1
    assert result.output == "internal error: _Bug: oops (set CAS_DEBUG=1 for a traceback)\n"
    monkeypatch.setenv("CAS_DEBUG", "1")
    result = CliRunner().invoke(_group(GuardedGroup), ["bug"])
    assert isinstance(result.exception, _Bug)


def test_a_group_may_let_its_bugs_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAS_DEBUG", raising=False)
    result = CliRunner().invoke(_group(_Quiet), ["bug"])
    assert isinstance(result.exception, _Bug)
    result = CliRunner().invoke(_group(_Quiet), ["stream"])
    assert (result.exit_code, result.output) == (StreamError.exit_code,
                                                 "error: no sync byte\n")


def test_a_single_value_option_given_twice_is_refused() -> None:
    cli = _group(GuardedGroup)
    result = CliRunner().invoke(cli, ["pay", "--card", "1", "--card", "2"])
    assert result.exit_code == 2
    assert "option --card given more than once" in result.output
    result = CliRunner().invoke(_group(GuardedGroup, json_mode=True), ["pay", "--card", "1"])
    assert (result.exit_code, result.output) == (0, '{\n  "card": "1"\n}\n')


def test_stb_turns_its_bugs_into_one_line_too() -> None:
    """The box's command group catches an unexpected exception like `cas` does."""
    from firmware_stub.cli import _StbGroup

    assert _StbGroup.one_line_internal_errors
    result = CliRunner().invoke(_group(_StbGroup), ["bug"], env={"CAS_DEBUG": ""})
    assert result.exit_code == 1
    assert result.output.startswith("internal error: _Bug: oops")


def test_under_json_an_error_is_one_json_document_with_code_and_exit_code() -> None:
    runner = CliRunner()
    result = runner.invoke(_group(GuardedGroup, json_mode=True), ["stream"])
    assert result.exit_code == StreamError.exit_code
    assert json.loads(result.stderr) == {"error": {"code": "STREAM_ERROR",
                                                   "message": "no sync byte",
                                                   "exit_code": StreamError.exit_code}}
    assert result.stdout == ""
    result = runner.invoke(_group(GuardedGroup, json_mode=True), ["bug"], env={"CAS_DEBUG": ""})
    assert json.loads(result.stderr)["error"]["code"] == "INTERNAL_ERROR"


def test_errors_speak_the_chosen_language() -> None:
    # An error that names its message in the catalogue speaks Russian ...
    result = CliRunner().invoke(_group(GuardedGroup, lang="ru"), ["named"])
    assert (result.exit_code, result.output) == (StreamError.exit_code,
                                                 "ошибка: in.ts: пустой поток\n")
    english = CliRunner().invoke(_group(GuardedGroup), ["named"])
    assert english.output == "error: in.ts: empty stream\n"
    # ... the system's refusals by their kind ...
    result = CliRunner().invoke(_group(GuardedGroup, lang="ru"), ["missing"])
    assert result.output == "ошибка: /nonexistent/cas-sim/in.ts: нет такого файла или каталога\n"
    # ... and one without an id says so rather than pass English off as Russian.
    result = CliRunner().invoke(_group(GuardedGroup, lang="ru"), ["stream"])
    assert (result.exit_code, result.output) == (
        StreamError.exit_code, "ошибка: no sync byte (сообщение пока без перевода)\n")
    result = CliRunner().invoke(_group(GuardedGroup, lang=None), ["bug"],
                                env={"CAS_DEBUG": "", "CAS_LANG": "", "LC_ALL": "ru_RU.UTF-8"})
    assert result.output.startswith("внутренняя ошибка: _Bug: oops")
    assert "CAS_DEBUG=1" in result.output


def test_under_json_in_russian_the_message_is_russian_and_english_is_kept() -> None:
    result = CliRunner().invoke(_group(GuardedGroup, json_mode=True, lang="ru"), ["named"])
    assert json.loads(result.stderr) == {"error": {
        "code": "STREAM_ERROR", "message": "in.ts: пустой поток",
        "message_en": "in.ts: empty stream", "exit_code": StreamError.exit_code}}


def test_the_code_of_an_error_is_its_own_code_else_its_class() -> None:
    from cas.console import error_code
    from cas.store.errors import RecordNotFound

    assert error_code(StreamError("x")) == "STREAM_ERROR"
    assert error_code(RecordNotFound("x", code="UNKNOWN_CARD")) == "UNKNOWN_CARD"
