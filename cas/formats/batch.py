"""Batch files (docs/formats.md §4): a header, fixed-size records, a SHA-256 trailer.

Shared by the card factory's personalisation batch (:mod:`cas.formats.records`) and the
chipset vendor's Chip ID file (:mod:`cas.formats.chipid`); each of them knows its record
format and passes its magic, record version and size here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import construct as cs

from cas.errors import ChecksumError, FormatError
from cas.formats._common import (
    build_struct,
    check_range,
    decode_padded_ascii,
    encode_padded_ascii,
    parse_struct,
)

CARD_BATCH_MAGIC = b"CASB"
CHIP_BATCH_MAGIC = b"CHPB"
BATCH_VERSION = 1
ISSUER_SIZE = 32
BATCH_DIGEST_SIZE = 32  # SHA-256

BATCH_HEADER = cs.Struct(
    "magic" / cs.Bytes(4),
    "format_version" / cs.Const(BATCH_VERSION, cs.Int8ub),
    "record_version" / cs.Int8ub,
    "record_size" / cs.Int16ub,
    "count" / cs.Int32ub,
    "created_s" / cs.Int32ub,
    "issuer" / cs.Bytes(ISSUER_SIZE),
)
"""Batch-file header, docs/formats.md §4 (shared by card and Chip ID batches)."""
BATCH_HEADER_SIZE: int = BATCH_HEADER.sizeof()


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchHeader:
    """Header of a personalisation batch or a chipset vendor's Chip ID file."""

    magic: bytes
    record_version: int
    record_size: int
    count: int
    created_s: int
    issuer: str


def parse_batch_header(
    data: Any, *, magic: bytes, record_version: int, record_size: int, root: str
) -> BatchHeader:
    """Parse and check a batch header plus the overall length and the SHA-256 trailer."""
    if len(data) < BATCH_HEADER_SIZE + BATCH_DIGEST_SIZE:
        raise FormatError(f"too short for a batch file ({len(data)} bytes)", path=root).with_id(
            "formats.too_short_batch_file", field=root, n=len(data))
    c = parse_struct(BATCH_HEADER, bytes(data[:BATCH_HEADER_SIZE]), f"{root}.header")
    if c.magic != magic:
        raise FormatError(f"expected magic {magic!r}, got {c.magic!r}", path=f"{root}.header.magic").with_id(
            "formats.expected_magic", field=f"{root}.header.magic", magic=f"{magic!r}",
            magic2=f"{c.magic!r}")
    if c.record_version != record_version or c.record_size != record_size:
        raise FormatError(
            f"record format {c.record_version}/{c.record_size} bytes not supported "
            f"(expected {record_version}/{record_size})",
            path=f"{root}.header.record_size",
        ).with_id(
            "formats.record_format_bytes_not", field=f"{root}.header.record_size",
            record_version=c.record_version, record_size=c.record_size,
            record_version2=record_version, record_size2=record_size)
    issuer = decode_padded_ascii(c.issuer, f"{root}.header.issuer")
    expected = BATCH_HEADER_SIZE + c.count * record_size + BATCH_DIGEST_SIZE
    if len(data) != expected:
        raise FormatError(
            f"header says {c.count} records = {expected} bytes, file has {len(data)}",
            path=f"{root}.header.count",
        ).with_id(
            "formats.header_says_records_bytes", field=f"{root}.header.count", count=c.count,
            expected=expected, n=len(data))
    body = memoryview(data)[: expected - BATCH_DIGEST_SIZE]
    if hashlib.sha256(body).digest() != bytes(data[expected - BATCH_DIGEST_SIZE : expected]):
        raise ChecksumError("SHA-256 does not match", path=f"{root}.sha256").with_id(
            "formats.sha_does_not_match", field=f"{root}.sha256")
    return BatchHeader(
        magic=c.magic,
        record_version=c.record_version,
        record_size=c.record_size,
        count=c.count,
        created_s=c.created_s,
        issuer=issuer,
    )


def build_batch(
    *, magic: bytes, record_version: int, record_size: int, created_s: int, issuer: str,
    records: list[bytes], root: str, count: int | None = None,
) -> bytes:  # fmt: skip
    """Assemble header + records + SHA-256.  With ``count``, ``records`` are runs of
    records already joined (``count`` records in all), e.g. one ``bytes`` per chunk."""
    if count is None:
        count = len(records)
    elif sum(len(r) for r in records) != count * record_size:
        raise ValueError(f"{root}: {count} records of {record_size} bytes expected")
    head = build_batch_header(magic=magic, record_version=record_version,
                              record_size=record_size, created_s=created_s, issuer=issuer,
                              count=count, root=root)
    h = hashlib.sha256(head)
    for rec in records:
        h.update(rec)
    return b"".join([head, *records, h.digest()])


def build_batch_header(
    *, magic: bytes, record_version: int, record_size: int, created_s: int, issuer: str,
    count: int, root: str,
) -> bytes:  # fmt: skip
    """The header of a batch of ``count`` records (:func:`build_batch` without the records
    and the SHA-256, for a writer that streams them)."""
    check_range(created_s, 32, f"{root}.created_s")
    check_range(count, 32, f"{root}.count")
    return build_struct(
        BATCH_HEADER,
        dict(
            magic=magic,
            record_version=record_version,
            record_size=record_size,
            count=count,
            created_s=created_s,
            issuer=encode_padded_ascii(issuer, ISSUER_SIZE, f"{root}.issuer"),
        ),
        f"{root}.header",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchKind:
    """One kind of batch file: its magic, the record format it carries and the root of its
    error paths.  The card and Chip ID modules each declare one and call it, instead of
    passing the same four arguments to every helper."""

    magic: bytes
    record_version: int
    record_size: int
    root: str

    def read_header(self, data: Any) -> BatchHeader:
        """Check header, overall length and SHA-256 trailer; return the header."""
        return parse_batch_header(
            data,
            magic=self.magic,
            record_version=self.record_version,
            record_size=self.record_size,
            root=self.root,
        )

    def header(self, *, created_s: int, issuer: str, count: int) -> bytes:
        """The header of a batch of ``count`` records (:func:`build_batch_header`)."""
        return build_batch_header(magic=self.magic, record_version=self.record_version,
                                  record_size=self.record_size, created_s=created_s,
                                  issuer=issuer, count=count, root=self.root)

    def build(self, *, created_s: int, issuer: str, records: list[bytes],
              count: int | None = None) -> bytes:
        """Header + already built records + SHA-256 (``count``: see :func:`build_batch`)."""
        return build_batch(
            magic=self.magic,
            record_version=self.record_version,
            record_size=self.record_size,
            created_s=created_s,
            issuer=issuer,
            records=records,
            root=self.root,
            count=count,
        )
