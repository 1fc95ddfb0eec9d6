"""Issue 12, item 1: ``scripts/setup.sh`` on a minimal Debian 12 that has only python3.

The full check is ``scripts/check-fresh-debian.sh`` (debootstrap + chroot, by hand: it needs
root and the Debian mirror).  This cheap one keeps the facts it found: ``python3 -m venv``
needs python3-venv, building pyscard needs gcc and python3-dev (plus swig and
libpcsclite-dev), and they must be installed before anything uses ``python3 -m venv``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SETUP = ROOT / "scripts" / "setup.sh"
NEEDED_FIRST = ("python3-venv", "gcc", "python3-dev", "swig", "libpcsclite-dev")


def _apt_packages(text: str) -> list[str]:
    match = re.search(r"^APT_PACKAGES=\((.*?)^\)", text, re.S | re.M)
    assert match, "setup.sh must list its system packages in APT_PACKAGES=( ... )"
    body = "\n".join(line.split("#", 1)[0] for line in match.group(1).splitlines())
    return body.split()


def _first_line(lines: list[str], pattern: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line.split("#", 1)[0]):
            return i
    raise AssertionError(f"setup.sh has no line matching {pattern!r}")


def test_setup_installs_the_venv_module_and_the_compiler_before_making_the_venv() -> None:
    text = SETUP.read_text()
    packages = _apt_packages(text)
    for p in NEEDED_FIRST:
        assert p in packages, f"setup.sh does not install {p}"
    lines = text.splitlines()
    apt_install = _first_line(lines, r"apt-get install")
    venv = _first_line(lines, r"-m venv")
    pip = _first_line(lines, r"pip install")
    assert _first_line(lines, r"^APT_PACKAGES=\(") < apt_install < venv < pip


def test_setup_says_who_uses_it() -> None:
    text = SETUP.read_text()
    # there is no Makefile: the README's commands are scripts/demo.sh and scripts/test.sh
    assert "make demo" not in text and "make test" not in text
    assert not (ROOT / "Makefile").exists()
    for script in ("demo.sh", "test.sh"):
        assert f"scripts/{script}" in text
        assert "bash scripts/setup.sh" in (ROOT / "scripts" / script).read_text()


def test_the_fresh_debian_check_is_there_and_documented() -> None:
    check = ROOT / "scripts" / "check-fresh-debian.sh"
    text = check.read_text()
    for needed in ("debootstrap", "--variant=minbase", "bookworm", "chroot",
                   "bash scripts/demo.sh", "bash scripts/test.sh", "trap cleanup EXIT",
                   "umount"):
        assert needed in text, needed
    readme = (ROOT / "README.md").read_text()
    dev = readme.split("## Development", 1)
    assert len(dev) == 2, "README.md needs a Development section"
    assert "scripts/check-fresh-debian.sh" in dev[1]


@pytest.mark.parametrize("script", ["setup.sh", "check-fresh-debian.sh", "demo.sh", "test.sh"])
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)
