"""The ``--help`` examples (``cas.cli.examples``, the ``stb`` epilogs) and shell completion:
every example names options its command has; completion scripts come out of both commands."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from cas.cli.examples import EXAMPLES
from cas.cli.main import cli
from firmware_stub.cli import cli as stb_cli


def _examples(text: str) -> list[str]:
    """The example command lines of a help text, continuation lines joined."""
    lines = text.split("Examples:\n", 1)[1].splitlines()
    out: list[str] = []
    for line in lines:
        line = line.strip()
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1] + " " + line
        elif line:
            out.append(line)
    return out


def _split(words: list[str], sep: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for w in words:
        if w == sep:
            parts.append([])
        else:
            parts[-1].append(w)
    return parts


def _check(root: click.Group, prog: str, example: str) -> None:
    words = shlex.split(example, comments=True)
    # printf ... | cas ...  or  stb ... | ffplay -: the part that is our command
    words = next(part for part in _split(words, "|") if part and part[0] == prog)
    assert words[0] == prog, example
    command: click.Command = root
    args = words[1:]
    while isinstance(command, click.Group):
        name = next(a for a in args if not a.startswith("-") and a not in ("en", "ru"))
        before = args[:args.index(name)]
        assert set(before) <= {"--json", "--lang", "en", "ru", "-q"}, example
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, example
        command = sub
        args = args[args.index(name) + 1:]
    ctx = click.Context(command, info_name=command.name)
    _opts, rest, _order = command.make_parser(ctx).parse_args(args=list(args))
    wanted = [p for p in command.params if isinstance(p, click.Argument)]
    assert len(rest) <= sum(1 if p.nargs == 1 else 99 for p in wanted), example


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_every_example_is_a_valid_command_line(path: str) -> None:
    result = CliRunner().invoke(cli, [*path.split(), "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    shown = _examples(result.output)
    assert len(shown) == len([e for e in EXAMPLES[path] if not e.startswith("    ")])
    for example in shown:
        _check(cli, "cas", example)


@pytest.mark.parametrize("name", ["scan", "watch"])
def test_stb_examples(name: str) -> None:
    result = CliRunner().invoke(stb_cli, [name, "--help"], env={"COLUMNS": "250"})
    shown = _examples(result.output)
    assert len(shown) >= 2
    for example in shown:
        _check(stb_cli, "stb", example)


def test_an_example_with_a_wrong_option_is_caught() -> None:
    with pytest.raises(click.NoSuchOption):
        _check(cli, "cas", "cas why --card 2256884759 --chanel 12")


def test_ten_most_used_commands_have_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize(("prog", "var", "words", "expected"), [
    ("cas", "_CAS_COMPLETE", "cas wh", "why"),
    ("cas", "_CAS_COMPLETE", "cas why --la", "--lang"),
    ("stb", "_STB_COMPLETE", "stb sc", "scan"),
])
def test_shell_completion(prog: str, var: str, words: str, expected: str) -> None:
    module = "cas.cli.main" if prog == "cas" else "firmware_stub.cli"
    code = f"from {module} import main; main()"
    env = {**os.environ, var: "bash_source"}
    script = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert f"_{prog}_completion()" in script and "complete " in script
    env = {**os.environ, var: "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    answer = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert f"plain,{expected}" in answer.splitlines()
