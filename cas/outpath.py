"""Checking where a command will write, before it does any work or commits anything.

An EMM run advances sequence numbers in the store, and ``cas card personalise`` registers
cards, before their files are written.  If the output path turns out to be a directory, or
somewhere nothing can be written, the store has moved on and the files are missing.  So such
commands check their output paths first, with these two functions, and refuse with a
one-line :class:`~cas.errors.UsageError` (exit 2).

The check is the operation itself, not a guess from permission bits (root passes every
``os.access`` test, a read-only file system fails none of them): it opens the file for
appending, or creates a temporary file in the directory, and removes what it created.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cas.errors import UsageError


def check_output_file(path: str | os.PathLike[str], what: str) -> None:
    """Refuse an output file that cannot be written; ``"-"`` (stdout) is always fine.

    An existing file is left as it is (opened for appending, not truncated); a file made
    only to find out is removed again.
    """
    if str(path) == "-":
        return
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:  # e.g. a parent that is a file (ENOTDIR)
        raise UsageError(f"{what} {p}: cannot write there ({exc.strerror or exc})").with_id(
            "outpath.cannot_write_there", what=what, p=p, value=exc.strerror or exc) from exc
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} {p}: is a directory; give a file name").with_id(
            "outpath.directory_give_file_name", what=what, p=p)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return  # a device or a pipe (/dev/stdout, a FIFO): opening it could block or eat data
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot write there ({exc.strerror or exc})").with_id(
            "outpath.cannot_write_there", what=what, p=p, value=exc.strerror or exc) from exc
    os.close(fd)
    if st is None:
        p.unlink(missing_ok=True)


def check_output_dir(path: str | os.PathLike[str], what: str) -> None:
    """Refuse an output directory that is a file or cannot be made or written into.

    Nothing is created: the nearest existing ancestor must be a directory in which a file
    can be made (that is where the missing levels will be created).
    """
    p = Path(path)
    probe = p
    while True:
        try:
            st = probe.stat()
            break
        except FileNotFoundError:
            if probe.parent == probe:
                raise UsageError(f"{what} {p}: no such place").with_id(
                    "outpath.no_such_place", what=what, p=p) from None
            probe = probe.parent
        except OSError as exc:
            raise UsageError(f"{what} {p}: cannot write there ({exc.strerror or exc})").with_id(
                "outpath.cannot_write_there", what=what, p=p, value=exc.strerror or exc) from exc
    if not stat.S_ISDIR(st.st_mode):
        what_is = "is a file" if probe == p else f"{probe} is not a directory"
        raise UsageError(f"{what} {p}: {what_is}").with_id(
            "outpath.error", what=what, p=p, what_is=what_is)
    try:
        fd, name = tempfile.mkstemp(prefix=".cas-write-check-", dir=probe)
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot write there ({exc.strerror or exc})").with_id(
            "outpath.cannot_write_there", what=what, p=p, value=exc.strerror or exc) from exc
    os.close(fd)
    os.unlink(name)
