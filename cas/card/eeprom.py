"""The card's EEPROM: one smart-card record image on disk, replaced atomically.

The card's whole persistent state *is* a :class:`~cas.formats.records.CardRecord` (format in
``docs/formats.md`` §2, with its CRC-32).  A real card protects its EEPROM against tearing
(power lost mid-write) with a transaction buffer; the file equivalent is:

1. write the new image to a temporary file in the same directory,
2. ``fsync`` it,
3. ``rename`` it over the image (atomic on POSIX within one file system),
4. ``fsync`` the directory, so the rename itself survives a crash.

Killing the process at any instant therefore leaves either the old image or the new one,
never a mix; :func:`load_image` also verifies the record's CRC on every load.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cas.errors import CardError, FormatError
from cas.formats.records import CardRecord, build_card_record, parse_card_record


class EepromError(CardError):
    """The card image cannot be read or written."""


def load_image(path: str | os.PathLike[str]) -> CardRecord:
    """Read and verify a card image (``FormatError``/``ChecksumError`` if corrupt)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise EepromError(f"card image {p} not found").with_id(
            "card.card_image_not_found", p=p) from None
    except OSError as exc:
        raise EepromError(f"cannot read card image {p}: {exc.strerror}").with_id(
            "card.cannot_read_card_image", p=p, strerror=exc.strerror) from None
    try:
        return parse_card_record(data)
    except FormatError as exc:
        raise type(exc)(f"card image {p}: {exc}") from exc


def write_image_atomic(path: str | os.PathLike[str], data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, fsync dir)."""
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    tmp = directory / f".{p.name}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
        if sync:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise EepromError(f"cannot write card image {p}: {exc.strerror}").with_id(
            "card.cannot_write_card_image", p=p, strerror=exc.strerror) from None


class Eeprom:
    """Where an applet keeps its record.  ``path=None`` is a volatile card (tests, demo)."""

    def __init__(self, record: CardRecord, path: str | os.PathLike[str] | None = None, *,
                 sync: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.sync = sync
        self._record = record
        self.writes = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, sync: bool = True) -> Eeprom:
        return cls(load_image(path), path, sync=sync)

    @property
    def record(self) -> CardRecord:
        return self._record

    def commit(self, record: CardRecord) -> None:
        """Make ``record`` the card's state: on disk first, then in memory.

        If the write fails the in-memory state stays the old one, so the card never answers
        as if a change happened that its EEPROM does not hold.
        """
        data = build_card_record(record)
        if self.path is not None:
            write_image_atomic(self.path, data, sync=self.sync)
        self._record = record
        self.writes += 1
