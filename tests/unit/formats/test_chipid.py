"""Chip ID record and vendor batch: round trips, fast path == construct form, fuzzing."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cas.errors import ChecksumError, FormatError
from cas.formats import records as R
from cas.formats.chipid import (
    CHIP_ID_RECORD_SIZE,
    ChipBatch,
    ChipIdRecord,
    build_chip_batch,
    build_chip_id_record,
    build_chip_id_record_declarative,
    describe,
    iter_chip_id_records,
    parse_chip_batch,
    parse_chip_id_record,
    parse_chip_id_record_declarative,
)
from cas.formats.records import BATCH_HEADER_SIZE
from tests.unit.formats.fastpath import outcome, with_crc
from tests.unit.formats.record_strategies import chip_id_records

SAMPLE = ChipIdRecord(
    chip_id=0x1A2B3C4D,
    vendor="Acme Silicon",
    model="AS-7100",
    wrapped_csk=bytes(range(100, 124)),
    firmware_version=0x02010003,
    manufactured_s=1_690_000_000,
)


@given(chip_id_records)
def test_round_trip(record: ChipIdRecord) -> None:
    raw = build_chip_id_record(record)
    assert len(raw) == CHIP_ID_RECORD_SIZE == 77
    assert raw == build_chip_id_record_declarative(record)
    assert parse_chip_id_record(raw) == record
    assert parse_chip_id_record_declarative(raw) == record


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(build_chip_id_record(draw(chip_id_records)))
    for _ in range(draw(st.integers(0, 3))):
        raw[draw(st.integers(0, CHIP_ID_RECORD_SIZE - 5))] = draw(
            st.sampled_from([0, 0x1F, 0x20, 0x41, 0x7E, 0x7F, 0x80, 0xFF]) | st.integers(0, 255)
        )
    return with_crc(raw) if draw(st.integers(0, 9)) else bytes(raw)


_BASE = build_chip_id_record(SAMPLE)


def _poke(offset: int, value: bytes) -> bytes:
    raw = bytearray(_BASE)
    raw[offset : offset + len(value)] = value
    return with_crc(raw)


@given(mutated() | st.binary(min_size=CHIP_ID_RECORD_SIZE, max_size=CHIP_ID_RECORD_SIZE))
@example(_poke(9, b"A\x00B"))  # NUL inside the vendor name
@example(_poke(9, b"\x7f"))  # DEL
@example(_poke(9, b"\xc3\xa9"))  # non-ASCII
@example(_poke(9, bytes(16)))  # empty vendor: allowed
@example(_poke(4, b"\x02"))  # version
def test_fast_path_matches_declarative(raw: bytes) -> None:
    fast = outcome(parse_chip_id_record, raw)
    assert fast == outcome(parse_chip_id_record_declarative, raw)
    if fast[0] == "ok":
        assert build_chip_id_record(fast[1]) == raw


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    for parse in (parse_chip_id_record, parse_chip_id_record_declarative):
        with pytest.raises(FormatError):
            parse(data)


@given(st.integers(0, CHIP_ID_RECORD_SIZE - 1), st.integers(1, 255))
def test_flipped_byte_or_truncation_detected(pos: int, xor: int) -> None:
    raw = bytearray(_BASE)
    raw[pos] ^= xor
    for parse in (parse_chip_id_record, parse_chip_id_record_declarative):
        with pytest.raises(FormatError):
            parse(bytes(raw))
        with pytest.raises(FormatError):
            parse(_BASE[:pos])


def test_bad_crc_path() -> None:
    raw = _BASE[:-1] + bytes([_BASE[-1] ^ 0x80])
    with pytest.raises(ChecksumError) as err:
        parse_chip_id_record(raw)
    assert err.value.path == "chip_id_record.crc32"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (dict(chip_id=1 << 32), "chip_id_record.chip_id"),
        (dict(vendor="x" * 17), "chip_id_record.vendor"),
        (dict(model="Модель"), "chip_id_record.model"),
        (dict(vendor="tab\there"), "chip_id_record.vendor"),
        (dict(wrapped_csk=b"k" * 16), "chip_id_record.wrapped_csk"),
    ],
)
def test_builder_rejects(change: dict[str, Any], path: str) -> None:
    fields = {f: getattr(SAMPLE, f) for f in SAMPLE.__dataclass_fields__}
    bad = ChipIdRecord(**{**fields, **change})
    for build in (build_chip_id_record, build_chip_id_record_declarative):
        with pytest.raises(FormatError) as err:
            build(bad)
        assert err.value.path == path


@given(st.lists(chip_id_records, max_size=6))
def test_batch_round_trip(records: list[ChipIdRecord]) -> None:
    batch = ChipBatch(created_s=1_700_000_000, issuer="Acme Silicon Ltd", records=tuple(records))
    raw = build_chip_batch(batch)
    assert parse_chip_batch(raw) == batch
    assert list(iter_chip_id_records(bytearray(raw))) == records


def test_batch_errors() -> None:
    raw = build_chip_batch(ChipBatch(created_s=0, issuer="A", records=(SAMPLE,)))
    bad = bytearray(raw)
    bad[BATCH_HEADER_SIZE] ^= 1
    with pytest.raises(ChecksumError):
        parse_chip_batch(bytes(bad))
    with pytest.raises(FormatError):
        parse_chip_batch(raw + b"\x00")
    with pytest.raises(FormatError):  # a card batch is not a chip batch
        parse_chip_batch(b"CASB" + raw[4:])


@given(st.binary(max_size=150))
def test_batch_fuzz(data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_chip_batch(data)


def test_describe_hides_the_wrapped_key() -> None:
    tree = describe(SAMPLE)
    text = json.dumps(tree)
    assert tree["chip_id"] == "1A2B3C4D"
    assert tree["firmware_version"] == "2.1.0.3"
    assert tree["wrapped_csk"]["length"] == 24
    assert SAMPLE.wrapped_csk.hex() not in text
    assert "wrapped_csk" not in repr(SAMPLE)
    assert describe(ChipBatch(created_s=0, issuer="A", records=(SAMPLE,)))["count"] == 1


@given(st.integers(0, 19), st.integers(0, CHIP_ID_RECORD_SIZE - 1), st.integers(1, 255),
       st.booleans())
def test_bad_record_in_a_large_batch_is_named(bad: int, pos: int, xor: int, fix: bool) -> None:
    good = [build_chip_id_record(dataclasses.replace(SAMPLE, chip_id=i)) for i in range(20)]
    broken = bytearray(good[bad])
    broken[pos] ^= xor
    if fix and pos < CHIP_ID_RECORD_SIZE - 4:
        with_crc(broken)
    recs = [*good[:bad], bytes(broken), *good[bad + 1 :]]
    raw = R.build_batch(
        magic=R.CHIP_BATCH_MAGIC, record_version=1, record_size=CHIP_ID_RECORD_SIZE,
        created_s=0, issuer="A", records=recs, root="chip_batch",
    )
    single = outcome(parse_chip_id_record, bytes(broken))
    if single[0] == "ok":
        assert list(iter_chip_id_records(raw))[bad] == single[1]
        return
    with pytest.raises(FormatError) as err:
        list(iter_chip_id_records(raw))
    assert (single[0] == "checksum") == isinstance(err.value, ChecksumError)
    assert err.value.path is not None and err.value.path.startswith(f"chip_batch.records[{bad}]")


def test_fast_path_objects_are_genuine_frozen_records() -> None:
    raw = build_chip_batch(ChipBatch(created_s=0, issuer="A", records=(SAMPLE,) * 9))
    for rec in iter_chip_id_records(raw):
        assert type(rec) is ChipIdRecord and rec == SAMPLE and hash(rec) == hash(SAMPLE)
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.chip_id = 1  # type: ignore[misc]
        assert repr(rec) == repr(SAMPLE)
