"""``cas/outpath.py``: output paths are checked by trying them, and leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cas.errors import UsageError
from cas.outpath import check_output_dir, check_output_file


def test_file_ok_cases_leave_no_trace(tmp_path: Path) -> None:
    check_output_file("-", "-o")
    new = tmp_path / "new.sections"
    check_output_file(new, "-o")
    assert not new.exists()
    old = tmp_path / "old.sections"
    old.write_bytes(b"keep me")
    check_output_file(old, "-o")
    assert old.read_bytes() == b"keep me"  # appended to nothing, not truncated
    check_output_file(os.devnull, "-o")      # a device is trusted, not probed


@pytest.mark.parametrize("case, words", [
    ("a directory", "is a directory"),
    ("under a file", "cannot write there"),
    ("under nothing", "cannot write there"),
])
def test_file_refusals(tmp_path: Path, case: str, words: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_bytes(b"")
    path = {"a directory": tmp_path / "d", "under a file": tmp_path / "f" / "x",
            "under nothing": tmp_path / "missing" / "x"}[case]
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UsageError) as exc:
        check_output_file(path, "--out")
    assert words in str(exc.value) and str(path) in str(exc.value)
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)
    assert sorted(tmp_path.rglob("*")) == before


def test_read_only_directory(tmp_path: Path) -> None:
    # root passes permission bits, so use a place no one can write: /proc
    with pytest.raises(UsageError, match="cannot write there"):
        check_output_file("/proc/cas-sim-check.sections", "--out")
    with pytest.raises(UsageError, match="cannot write there"):
        check_output_dir("/proc/cas-sim-check/cards", "--out")


def test_dirs(tmp_path: Path) -> None:
    check_output_dir(tmp_path, "--out")
    check_output_dir(tmp_path / "a" / "b", "--out")
    assert not (tmp_path / "a").exists()
    assert list(tmp_path.iterdir()) == []
    f = tmp_path / "f"
    f.write_bytes(b"")
    with pytest.raises(UsageError, match="is a file"):
        check_output_dir(f, "--out")
    with pytest.raises(UsageError, match="cannot write there"):
        check_output_dir(f / "cards", "--out")
