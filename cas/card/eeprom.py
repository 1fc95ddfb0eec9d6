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

The image is the record, then the card's state area (docs/formats.md §2.2,
:mod:`cas.formats.cardstate`: the sharing check, its ECM record and flag, the OSD mailbox)
when that state is not the default.  An image of the record alone — a factory image, or
one written before the state area existed — opens as a card in the default state; a state
area of a version this card OS does not know is a :class:`~cas.errors.FormatError` naming
it.  Record and state are written together, in one atomic replacement.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cas.errors import CardError, FormatError
from cas.formats.cardstate import (
    DEFAULT_CARD_STATE,
    CardState,
    build_card_state,
    parse_card_state,
)
from cas.formats.records import (
    CARD_RECORD_SIZE,
    CardRecord,
    build_card_record,
    parse_card_record,
)


class EepromError(CardError):
    """The card image cannot be read or written."""


def load_image(path: str | os.PathLike[str]) -> CardRecord:
    """Read and verify a card image (``FormatError``/``ChecksumError`` if corrupt): its
    record."""
    return load_card_image(path)[0]


def build_image(record: CardRecord, state: CardState = DEFAULT_CARD_STATE) -> bytes:
    """The image bytes: the record, then the state area unless it is the default."""
    data = build_card_record(record)
    if state != DEFAULT_CARD_STATE:
        data += build_card_state(state)
    return data


def parse_image(data: bytes) -> tuple[CardRecord, CardState]:
    """Record and state of an image (the default state when it has no state area)."""
    record = parse_card_record(data[:CARD_RECORD_SIZE])
    rest = data[CARD_RECORD_SIZE:]
    return record, parse_card_state(rest) if rest else DEFAULT_CARD_STATE


def load_card_image(path: str | os.PathLike[str]) -> tuple[CardRecord, CardState]:
    """Read and verify a card image: its record and its state area."""
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
        return parse_image(data)
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
    """Where an applet keeps its record and its state area.  ``path=None`` is a volatile
    card (tests, demo)."""

    def __init__(self, record: CardRecord, path: str | os.PathLike[str] | None = None, *,
                 sync: bool = True, state: CardState = DEFAULT_CARD_STATE) -> None:
        self.path = Path(path) if path is not None else None
        self.sync = sync
        self._record = record
        self._state = state
        #: the state in memory is newer than the one on disk (:meth:`stage`)
        self.dirty = False
        self.writes = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, sync: bool = True) -> Eeprom:
        record, state = load_card_image(path)
        return cls(record, path, sync=sync, state=state)

    @property
    def record(self) -> CardRecord:
        return self._record

    @property
    def state(self) -> CardState:
        return self._state

    def commit(self, record: CardRecord | None = None, state: CardState | None = None) -> None:
        """Make ``record`` and/or ``state`` the card's: on disk first (one atomic write of
        both), then in memory.

        If the write fails the in-memory state stays the old one, so the card never answers
        as if a change happened that its EEPROM does not hold.
        """
        record = self._record if record is None else record
        state = self._state if state is None else state
        data = build_image(record, state)
        if self.path is not None:
            write_image_atomic(self.path, data, sync=self.sync)
        self._record = record
        self._state = state
        self.dirty = False
        self.writes += 1

    def stage(self, state: CardState) -> None:
        """Make ``state`` the card's in memory only; the next :meth:`commit` (or
        :meth:`flush`) writes it.  For counters a card may lose the newest of in a crash
        (its ECM record, like its clock), to spare EEPROM writes."""
        if state is not self._state:  # identity: comparing two ECM records costs more
            self._state = state
            self.dirty = True

    def flush(self) -> None:
        """Write a staged state (nothing to do when none is waiting)."""
        if self.dirty:
            self.commit()
