"""``stb`` refuses a single-value option given twice (click would keep the last)."""

from __future__ import annotations

from click.testing import CliRunner

from firmware_stub.cli import cli


def test_a_repeated_pin_is_refused_not_last_wins() -> None:
    r = CliRunner().invoke(cli, ["scan", "missing.ts", "--pin", "1111", "--pin", "2222"])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "error: option --pin given more than once (it takes one value; see 'cli scan --help')"]


def test_repeated_flags_are_harmless() -> None:
    r = CliRunner().invoke(cli, ["--json", "--json", "scan", "--help"])
    assert r.exit_code == 0 and "--fail-on-locked" in r.stdout
