"""Chip ID record (one STB chipset, as delivered by the chipset vendor) and the vendor's batch
file.

Layout byte by byte in ``docs/formats.md`` §3; batch file in §4.  Big-endian; the record ends
in a CRC-32 (ISO-HDLC, ``zlib.crc32``) over every byte before it.  As for card records there is
a declarative construct form (:data:`CHIP_ID_RECORD`, the reference) and a ``struct`` fast
path (:func:`parse_chip_id_record`); a hypothesis test checks that they agree.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import construct as cs

from cas.errors import ChecksumError, FormatError
from cas.formats._common import (
    CRC_CHUNK_RECORDS,
    as_sliceable,
    build_struct,
    bulk_crc_ok,
    check_len,
    check_range,
    encode_padded_ascii,
    field_error,
    key_summary,
    parse_struct,
    slots_builder,
)
from cas.formats.batch import (
    BATCH_HEADER_SIZE,
    CHIP_BATCH_MAGIC,
    BatchHeader,
    BatchKind,
)
from cas.formats.layout import check_order, struct_layout
from cas.formats.records.model import WRAPPED_KEY_SIZE

CHIP_ID_MAGIC = b"CHIP"
CHIP_ID_VERSION = 1
VENDOR_SIZE = 16
MODEL_SIZE = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipIdRecord:
    """One chipset: its id (printed as 8 hex digits), who made it, and its chipset secret key
    (CSK) wrapped under the operator's transport key (RFC 3394, 24 bytes)."""

    chip_id: int
    vendor: str
    model: str
    wrapped_csk: bytes = field(repr=False)
    #: Four version bytes, printed ``major.minor.patch.build``.
    firmware_version: int = 0x01000000
    manufactured_s: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipBatch:
    """A chipset vendor's Chip ID file."""

    created_s: int
    issuer: str
    records: tuple[ChipIdRecord, ...]


def _printable(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


CHIP_ID_BODY = cs.Struct(
    "magic" / cs.Const(CHIP_ID_MAGIC),
    "format_version" / cs.Const(CHIP_ID_VERSION, cs.Int8ub),
    "chip_id" / cs.Int32ub,
    "vendor" / cs.PaddedString(VENDOR_SIZE, "ascii"),
    cs.Check(lambda ctx: _printable(ctx.vendor)),
    "model" / cs.PaddedString(MODEL_SIZE, "ascii"),
    cs.Check(lambda ctx: _printable(ctx.model)),
    "wrapped_csk" / cs.Bytes(WRAPPED_KEY_SIZE),
    "firmware_version" / cs.Int32ub,
    "manufactured_s" / cs.Int32ub,
)

CHIP_ID_RECORD = cs.Struct(
    "body" / cs.RawCopy(CHIP_ID_BODY),
    "crc32" / cs.Checksum(cs.Int32ub, lambda data: zlib.crc32(data), cs.this.body.data),
    cs.Terminated,
)
"""Chip ID record, docs/formats.md §3: RawCopy(body) + CRC-32 over the body."""

CHIP_ID_RECORD_SIZE: int = CHIP_ID_BODY.sizeof() + 4

# The fast path's struct layouts, derived from the declaration (cas.formats.layout).
_LAYOUT = struct_layout(CHIP_ID_RECORD)
check_order(
    _LAYOUT,
    (*(f"body.{n}" for n in ("magic", "format_version", "chip_id", "vendor", "model",
                             "wrapped_csk", "firmware_version", "manufactured_s")), "crc32"),
    "Chip ID record",
)  # fmt: skip
_FAST = _LAYOUT.struct()
_BODY_SIZE = _LAYOUT.offset("crc32")
_CRC = _LAYOUT.under("crc32").struct()
_crc32 = zlib.crc32
_new = object.__new__


def parse_chip_id_record_declarative(data: bytes) -> ChipIdRecord:
    """Reference parser (construct); same behaviour as :func:`parse_chip_id_record`."""
    b = parse_struct(CHIP_ID_RECORD, bytes(data), "chip_id_record").body.value
    return ChipIdRecord(
        chip_id=b.chip_id,
        vendor=b.vendor,
        model=b.model,
        wrapped_csk=b.wrapped_csk,
        firmware_version=b.firmware_version,
        manufactured_s=b.manufactured_s,
    )


def _fail(name: str, message: str) -> FormatError:
    return field_error(message, f"chip_id_record.body.{name}")


def _text(raw: bytes, name: str) -> str:
    """Same rule as PaddedString + Check: strip trailing NULs, then printable ASCII only."""
    text = raw.rstrip(b"\x00")
    if not text.isascii():
        raise _fail(name, "not valid text in its encoding")
    s = text.decode("ascii")
    if not s.isprintable():
        raise _fail(name, "object failed validation")
    return s


# Accepted (vendor, model) texts by their raw 32 bytes: a vendor's file repeats a handful.
_NAMES: dict[bytes, tuple[str, str]] = {}
_NAMES_MAX = 4096
# Parse layout: magic+version and vendor+model read as one field each, so each pair costs one
# comparison / one dictionary lookup.  Same bytes as _FAST.
_PARSE = _LAYOUT.joined("body.magic", "body.format_version").joined("body.vendor", "body.model")
_PARSE_STRUCT = _PARSE.struct()
_HEAD_OK = CHIP_ID_MAGIC + bytes((CHIP_ID_VERSION,))
_BUILDER = slots_builder(ChipIdRecord)


def _record_error(b: bytes) -> FormatError | None:
    """Check one record field by field, in the construct form's order.  Returns the error, or
    None if the record is fine (its vendor/model texts are then cached)."""
    magic, version, _chip, vendor, model, _csk, _fw, _made, crc = _FAST.unpack(b)
    try:
        if magic != CHIP_ID_MAGIC:
            raise _fail("magic", f"expected {CHIP_ID_MAGIC!r}")
        if version != CHIP_ID_VERSION:
            raise _fail("format_version", f"unsupported version {version}")
        text = (_text(vendor, "vendor"), _text(model, "model"))
        if _crc32(b[:_BODY_SIZE]) != crc:
            raise ChecksumError("integrity check failed", path="chip_id_record.crc32").with_id(
                "formats.chip_id_record_crc32")
    except FormatError as exc:
        return exc
    if len(_NAMES) >= _NAMES_MAX:
        _NAMES.clear()
    _NAMES[vendor + model] = text
    return None


def _iter_records(buf: Any, offset: int, count: int, root: str) -> Iterator[ChipIdRecord]:
    """Fast path: parse ``count`` records of ``buf`` (bytes or mmap) starting at ``offset``.

    One generator for single records and whole batches, so that the per-record work runs
    without a function call.  In batches the CRC-32s are checked a chunk at a time with
    :func:`~cas.formats._common.bulk_crc_ok`.  The common case costs one comparison and one
    dictionary lookup; anything else goes to :func:`_record_error`, which checks field by
    field (and per-record CRC) to accept the record or name the failing field.
    ``tests/unit/formats/test_chipid.py`` checks this against the construct form.
    """
    iter_unpack = _PARSE_STRUCT.iter_unpack
    crc32 = _crc32
    names = _NAMES
    head_ok = _HEAD_OK
    size, body = CHIP_ID_RECORD_SIZE, _BODY_SIZE
    new, cls, builder = _new, ChipIdRecord, _BUILDER
    done = 0
    while done < count:
        n = min(CRC_CHUNK_RECORDS, count - done)
        crc_checked = n >= 8 and bulk_crc_ok(buf, offset, n, size)
        # iter_unpack walks the chunk at C speed, one tuple per record
        for i, (head, chip_id, vendor_model, csk, firmware, made, crc) in enumerate(
            iter_unpack(buf[offset : offset + n * size]), done
        ):
            text = names.get(vendor_model)
            if head != head_ok or text is None or not crc_checked:
                at = offset + (i - done) * size
                record = buf[at : at + size]
                # per-record CRC when the chunk check failed (or was not done)
                exc = (
                    _record_error(record)
                    if head != head_ok or text is None or crc32(record[:body]) != crc
                    else None
                )
                if exc is not None:
                    if root != "chip_id_record":
                        path = (exc.path or "").replace("chip_id_record", f"{root}[{i}]", 1)
                        exc = type(exc)(str(exc).split(": ", 1)[-1], path=path)
                    raise exc
                text = names[vendor_model]
            # see slots_builder: fill a layout twin, then make it the frozen record
            rec = new(builder)
            rec.chip_id = chip_id
            rec.vendor, rec.model = text
            rec.wrapped_csk = csk
            rec.firmware_version = firmware
            rec.manufactured_s = made
            rec.__class__ = cls
            yield rec
        offset += n * size
        done += n


def parse_chip_id_record(data: bytes) -> ChipIdRecord:
    """Parse one Chip ID record (docs/formats.md §3).  FormatError / ChecksumError."""
    if len(data) != CHIP_ID_RECORD_SIZE:
        raise FormatError(
            f"a Chip ID record is {CHIP_ID_RECORD_SIZE} bytes, got {len(data)}",
            path="chip_id_record",
        ).with_id(
            "formats.chip_id_record_chip", chip_id_record_size=CHIP_ID_RECORD_SIZE, n=len(data))
    return next(_iter_records(bytes(data), 0, 1, "chip_id_record"))


def _validate(r: ChipIdRecord) -> tuple[bytes, bytes]:
    if not isinstance(r, ChipIdRecord):
        raise FormatError(f"expected ChipIdRecord, got {type(r).__name__}", path="chip_id_record").with_id(
            "formats.chip_id_record_expected", name__=type(r).__name__)
    p = "chip_id_record"
    check_range(r.chip_id, 32, f"{p}.chip_id")
    check_range(r.firmware_version, 32, f"{p}.firmware_version")
    check_range(r.manufactured_s, 32, f"{p}.manufactured_s")
    check_len(r.wrapped_csk, WRAPPED_KEY_SIZE, f"{p}.wrapped_csk")
    return (
        encode_padded_ascii(r.vendor, VENDOR_SIZE, f"{p}.vendor"),
        encode_padded_ascii(r.model, MODEL_SIZE, f"{p}.model"),
    )


def build_chip_id_record(record: ChipIdRecord) -> bytes:
    """Build one Chip ID record (fast path; same bytes as the construct form)."""
    vendor, model = _validate(record)
    r = record
    raw = bytearray(
        _FAST.pack(
            CHIP_ID_MAGIC, CHIP_ID_VERSION, r.chip_id, vendor, model, r.wrapped_csk,
            r.firmware_version, r.manufactured_s, 0,
        )
    )  # fmt: skip
    _CRC.pack_into(raw, _BODY_SIZE, zlib.crc32(raw[:_BODY_SIZE]))
    return bytes(raw)


def build_chip_id_record_declarative(record: ChipIdRecord) -> bytes:
    """Reference builder (construct)."""
    _validate(record)
    r = record
    return build_struct(
        CHIP_ID_RECORD,
        dict(
            body=dict(
                value=dict(
                    chip_id=r.chip_id,
                    vendor=r.vendor,
                    model=r.model,
                    wrapped_csk=r.wrapped_csk,
                    firmware_version=r.firmware_version,
                    manufactured_s=r.manufactured_s,
                )
            ),
            crc32=None,
        ),
        "chip_id_record",
    )


# --- batch -----------------------------------------------------------------------------------
CHIP_BATCH = BatchKind(
    magic=CHIP_BATCH_MAGIC,
    record_version=CHIP_ID_VERSION,
    record_size=CHIP_ID_RECORD_SIZE,
    root="chip_batch",
)


def read_chip_batch_header(data: Any) -> BatchHeader:
    """Check a Chip ID batch (header, length, SHA-256) and return its header."""
    return CHIP_BATCH.read_header(data)


def iter_chip_id_records(data: Any) -> Iterator[ChipIdRecord]:
    """Yield the records of a vendor's Chip ID file (``bytes``, ``memoryview`` or ``mmap``).

    Header, length and SHA-256 are checked first; each record's CRC as it is parsed.
    """
    header = read_chip_batch_header(data)
    return _iter_records(as_sliceable(data), BATCH_HEADER_SIZE, header.count, "chip_batch.records")


def parse_chip_batch(data: bytes) -> ChipBatch:
    """Parse a whole Chip ID batch file (docs/formats.md §4)."""
    header = read_chip_batch_header(data)
    return ChipBatch(
        created_s=header.created_s, issuer=header.issuer, records=tuple(iter_chip_id_records(data))
    )


def build_chip_batch(batch: ChipBatch) -> bytes:
    """Build a Chip ID batch file: header + records + SHA-256."""
    return CHIP_BATCH.build(
        created_s=batch.created_s,
        issuer=batch.issuer,
        records=[build_chip_id_record(r) for r in batch.records],
    )


def describe_chip_id_record(r: ChipIdRecord) -> dict[str, Any]:
    """JSON-able tree; the wrapped CSK as length + fingerprint only."""
    fw = r.firmware_version
    return {
        "type": "chip_id_record",
        "chip_id": f"{r.chip_id:08X}",
        "vendor": r.vendor,
        "model": r.model,
        "wrapped_csk": key_summary(r.wrapped_csk),
        "firmware_version": f"{fw >> 24}.{(fw >> 16) & 0xFF}.{(fw >> 8) & 0xFF}.{fw & 0xFF}",
        "manufactured_s": r.manufactured_s,
    }


def describe(obj: ChipIdRecord | ChipBatch) -> dict[str, Any]:
    """JSON-able tree for ``cas decode`` (no key bytes)."""
    if isinstance(obj, ChipIdRecord):
        return describe_chip_id_record(obj)
    if isinstance(obj, ChipBatch):
        return {
            "type": "chip_batch",
            "created_s": obj.created_s,
            "issuer": obj.issuer,
            "count": len(obj.records),
            "records": [describe_chip_id_record(r) for r in obj.records],
        }
    raise TypeError(f"cannot describe {type(obj).__name__}")
