"""Personalisation batch files (docs/formats.md §4): the card factory's output, one card
record per card, in the shared batch container of :mod:`cas.formats.batch`."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cas.formats._common import as_sliceable
from cas.formats.batch import (
    BATCH_HEADER_SIZE,
    CARD_BATCH_MAGIC,
    BatchHeader,
    BatchKind,
)
from cas.formats.records.declaration import CARD_RECORD_SIZE
from cas.formats.records.fast import build_card_record, iter_records
from cas.formats.records.model import CARD_RECORD_VERSION, CardRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class CardBatch:
    """A personalisation batch file: the card factory's output, one record per card."""

    created_s: int
    issuer: str
    records: tuple[CardRecord, ...]



CARD_BATCH = BatchKind(
    magic=CARD_BATCH_MAGIC,
    record_version=CARD_RECORD_VERSION,
    record_size=CARD_RECORD_SIZE,
    root="card_batch",
)


def read_card_batch_header(data: bytes) -> BatchHeader:
    """Check a personalisation batch (header, length, SHA-256) and return its header."""
    return CARD_BATCH.read_header(data)


def iter_card_records(data: Any) -> Iterator[CardRecord]:
    """Yield the records of a personalisation batch (``bytes``, ``memoryview`` or ``mmap``).

    The header and SHA-256 are checked before the first record is yielded; each record is then
    checked (CRC-32 and canonical form) as it is parsed.  Errors name the record index.
    """
    header = read_card_batch_header(data)
    return iter_records(as_sliceable(data), BATCH_HEADER_SIZE, header.count, "card_batch.records")


def parse_card_batch(data: bytes) -> CardBatch:
    """Parse a whole personalisation batch file (docs/formats.md §4)."""
    header = read_card_batch_header(data)
    return CardBatch(
        created_s=header.created_s, issuer=header.issuer, records=tuple(iter_card_records(data))
    )


def build_card_batch(batch: CardBatch) -> bytes:
    """Build a personalisation batch file: header + records + SHA-256."""
    return CARD_BATCH.build(
        created_s=batch.created_s,
        issuer=batch.issuer,
        records=[build_card_record(r) for r in batch.records],
    )


def find_card_records(data: Any, serials: Iterable[int]) -> dict[int, bytes]:
    """The records of the cards ``serials`` in a personalisation batch, by serial (a serial
    not in the batch is left out).  The header and SHA-256 are checked, and each record
    returned is checked as :func:`parse_card_record` checks it.  The serials of the whole
    batch are read as one strided column, so finding a card in a million takes a fraction
    of a second."""
    from cas.formats.records.fast import _RECORD_LAYOUT, parse_card_record

    header = read_card_batch_header(data)
    view = as_sliceable(data)
    size = CARD_RECORD_SIZE
    start = BATCH_HEADER_SIZE + _RECORD_LAYOUT.offset("body.serial")
    end = BATCH_HEADER_SIZE + header.count * size
    column = bytearray(4 * header.count)
    for b in range(4):
        column[b::4] = view[start + b:end:size]
    words = array("I")
    words.frombytes(bytes(column))
    if sys.byteorder == "little":
        words.byteswap()
    index = {serial: n for n, serial in enumerate(words)}
    found: dict[int, bytes] = {}
    for serial in serials:
        n = index.get(serial)
        if n is not None:
            record = bytes(view[BATCH_HEADER_SIZE + n * size:BATCH_HEADER_SIZE + (n + 1) * size])
            parse_card_record(record)
            found[serial] = record
    return found
