"""Smart-card record and personalisation batch: round trips, fast path == construct form,
fuzzing (only FormatError/ChecksumError may come out), batch integrity."""

from __future__ import annotations

import dataclasses
import json
import mmap
import struct
import zlib
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cas.access import CardStatus, Entitlement
from cas.errors import ChecksumError, FormatError
from cas.formats import records as R
from cas.formats._common import key_summary
from cas.formats.records import (
    CARD_RECORD_SIZE,
    CardBatch,
    CardRecord,
    EcmKeySlot,
    Pairing,
    build_card_batch,
    build_card_record,
    build_card_record_declarative,
    describe,
    iter_card_records,
    parse_card_batch,
    parse_card_record,
    parse_card_record_declarative,
    read_card_batch_header,
)
from cas.formats.records import fast as records_fast
from tests.unit.formats.record_strategies import card_records

SAMPLE = CardRecord(
    serial=2256884759,
    shared_address=0x012345,
    member_position=17,
    wrapped_cuk=bytes(range(24)),
    wrapped_group_key=bytes(range(24, 48)),
    wrapped_global_key=bytes(range(48, 72)),
    ecm_keys=(EcmKeySlot(index=3, wrapped_key=b"\xee" * 24),),
    status=CardStatus.ACTIVE,
    region=7,
    pin_hash=b"\x11" * 16,
    pairing=Pairing(chip_id=0x1A2B3C4D, wrapped_cwpk=b"\x22" * 24, chip_blob=b"\x33" * 24),
    last_osd_message="Оплатите до 01.05",
    entitlements=(Entitlement(package_id=1, start_s=1_700_000_000, end_s=1_702_592_000),),
)


def _fix_crc(raw: bytearray) -> bytes:
    struct.pack_into(">I", raw, CARD_RECORD_SIZE - 4, zlib.crc32(raw[: CARD_RECORD_SIZE - 4]))
    return bytes(raw)


def _outcome(fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(data)
    except ChecksumError:
        return "checksum", None
    except FormatError:
        return "format", None


# --- round trips ------------------------------------------------------------------------------
@given(card_records())
def test_build_parse_round_trip(record: CardRecord) -> None:
    raw = build_card_record(record)
    assert len(raw) == CARD_RECORD_SIZE
    assert raw == build_card_record_declarative(record)
    assert parse_card_record(raw) == record
    assert parse_card_record_declarative(raw) == record


def test_sample_record_fields_survive() -> None:
    back = parse_card_record(build_card_record(SAMPLE))
    assert back.serial == 2256884759
    assert back.pairing is not None and back.pairing.chip_id == 0x1A2B3C4D
    assert back.last_osd_message == "Оплатите до 01.05"
    assert back.entitlements[0].covers(1_700_000_001)
    assert isinstance(back.status, CardStatus)


# --- fast path == declarative form -------------------------------------------------------------
@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    """A valid record with a few bytes changed, CRC recomputed most of the time, so that the
    structural checks (not just the CRC) are exercised."""
    raw = bytearray(build_card_record(draw(card_records())))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, CARD_RECORD_SIZE - 5))
        raw[pos] = draw(st.integers(0, 255))
    return _fix_crc(raw) if draw(st.integers(0, 9)) else bytes(raw)


# hand-picked bytes for every check (offsets: docs/formats.md §2)
_BASE = bytearray(build_card_record(SAMPLE))


def _poke(offset: int, value: bytes) -> bytes:
    raw = bytearray(_BASE)
    raw[offset : offset + len(value)] = value
    return _fix_crc(raw)


@given(mutated_records() | st.binary(min_size=CARD_RECORD_SIZE, max_size=CARD_RECORD_SIZE))
@example(_poke(4, b"\x02"))  # format_version
@example(_poke(99, b"\x02"))  # ecm slot 0 valid = 2
@example(_poke(125, b"\x01"))  # ecm slot 1 valid but empty key: allowed
@example(_poke(99, b"\x00"))  # slot 0 invalid but index/key set
@example(_poke(151, b"\x05"))  # status 5
@example(_poke(171, b"\x09"))  # retries left > max
@example(_poke(189, b"\x00"))  # unpaired with chip data
@example(_poke(189, b"\x02"))  # paired = 2
@example(_poke(242, b"\x40"))  # OSD length 64
@example(_poke(242, b"\x01\xff" + bytes(62)))  # OSD invalid UTF-8
@example(_poke(300, b"\x01"))  # OSD padding not zero
@example(_poke(306, b"\x21"))  # 33 entitlements
@example(_poke(306, b"\x00"))  # count 0 but slot 0 used
@example(_poke(626, b"\x01"))  # last entitlement slot not zero
def test_fast_path_matches_declarative(raw: bytes) -> None:
    fast = _outcome(parse_card_record, raw)
    slow = _outcome(parse_card_record_declarative, raw)
    assert fast == slow
    if fast[0] == "ok":
        assert build_card_record(fast[1]) == raw  # canonical: accepted bytes rebuild exactly


# --- fuzz: only our errors ---------------------------------------------------------------------
@given(st.binary(max_size=2 * CARD_RECORD_SIZE))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    for parse in (parse_card_record, parse_card_record_declarative):
        with pytest.raises(FormatError):
            parse(data)


@given(card_records(), st.integers(0, CARD_RECORD_SIZE - 1))
def test_truncated_record_is_format_error(record: CardRecord, cut: int) -> None:
    raw = build_card_record(record)
    for parse in (parse_card_record, parse_card_record_declarative):
        with pytest.raises(FormatError):
            parse(raw[:cut])
        with pytest.raises(FormatError):
            parse(raw + b"\x00")


@given(card_records(), st.integers(0, CARD_RECORD_SIZE - 1), st.integers(1, 255))
def test_any_flipped_byte_is_detected(record: CardRecord, pos: int, xor: int) -> None:
    raw = bytearray(build_card_record(record))
    raw[pos] ^= xor
    for parse in (parse_card_record, parse_card_record_declarative):
        with pytest.raises(FormatError):  # ChecksumError or a structural check
            parse(bytes(raw))


def test_bad_crc_is_checksum_error_with_path() -> None:
    raw = bytearray(build_card_record(SAMPLE))
    raw[-1] ^= 1
    for parse in (parse_card_record, parse_card_record_declarative):
        with pytest.raises(ChecksumError) as err:
            parse(bytes(raw))
        assert err.value.path == "card_record.crc32"


def test_bad_magic_names_the_field() -> None:
    raw = b"XXXX" + build_card_record(SAMPLE)[4:]
    with pytest.raises(FormatError) as err:
        parse_card_record(raw)
    assert err.value.path == "card_record.body.magic"
    with pytest.raises(FormatError) as err2:
        parse_card_record_declarative(raw)
    assert err2.value.path == "card_record.body.magic"


# --- builder validation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "path"),
    [
        (dict(serial=1 << 32), "card_record.serial"),
        (dict(shared_address=1 << 24), "card_record.shared_address"),
        (dict(serial=-1), "card_record.serial"),
        (dict(wrapped_cuk=b"\x00" * 23), "card_record.wrapped_cuk"),
        (dict(pin_hash=b"\x00" * 17), "card_record.pin_hash"),
        (dict(pin_retries_left=4, pin_retries_max=3), "card_record.pin_retries_left"),
        (dict(last_osd_message="я" * 32), "card_record.last_osd_message"),
        (dict(entitlements=(SAMPLE.entitlements[0],) * 33), "card_record.entitlements"),
        (
            dict(ecm_keys=(EcmKeySlot(index=1, wrapped_key=b"k" * 24),) * 3),
            "card_record.ecm_keys",
        ),
        (
            dict(entitlements=(Entitlement(package_id=70000, start_s=0, end_s=1),)),
            "card_record.entitlements[0].package_id",
        ),
    ],
)
def test_builder_rejects_out_of_range(change: dict[str, Any], path: str) -> None:
    bad = CardRecord(**{**{f: getattr(SAMPLE, f) for f in SAMPLE.__dataclass_fields__}, **change})
    for build in (build_card_record, build_card_record_declarative):
        with pytest.raises(FormatError) as err:
            build(bad)
        assert err.value.path == path


# --- batch file --------------------------------------------------------------------------------
@given(st.lists(card_records(), max_size=5), st.integers(0, 0xFFFFFFFF))
def test_batch_round_trip(records: list[CardRecord], created: int) -> None:
    batch = CardBatch(created_s=created, issuer="Card factory #1", records=tuple(records))
    raw = build_card_batch(batch)
    assert parse_card_batch(raw) == batch
    assert list(iter_card_records(memoryview(raw))) == records
    assert read_card_batch_header(raw).count == len(records)


def test_batch_from_mmap(tmp_path: Any) -> None:
    batch = CardBatch(created_s=1, issuer="F", records=(SAMPLE, SAMPLE))
    path = tmp_path / "batch.bin"
    path.write_bytes(build_card_batch(batch))
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert list(iter_card_records(mm)) == [SAMPLE, SAMPLE]


def test_batch_integrity() -> None:
    raw = build_card_batch(CardBatch(created_s=1, issuer="F", records=(SAMPLE, SAMPLE)))
    flipped = bytearray(raw)
    flipped[R.BATCH_HEADER_SIZE + 10] ^= 1
    with pytest.raises(ChecksumError) as err:
        parse_card_batch(bytes(flipped))
    assert err.value.path == "card_batch.sha256"
    with pytest.raises(FormatError) as err2:
        parse_card_batch(raw[:-1])
    assert err2.value.path == "card_batch.header.count"
    with pytest.raises(FormatError):
        parse_card_batch(b"CHPB" + raw[4:])


def test_bad_record_in_batch_names_its_index() -> None:
    # a record with a bad CRC inside a batch whose SHA-256 is right
    good = build_card_record(SAMPLE)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    raw = R.build_batch(
        magic=R.CARD_BATCH_MAGIC, record_version=1, record_size=CARD_RECORD_SIZE,
        created_s=0, issuer="F", records=[good, bad], root="card_batch",
    )
    it = iter_card_records(raw)
    assert next(it) == SAMPLE
    with pytest.raises(ChecksumError) as err:
        next(it)
    assert err.value.path == "card_batch.records[1].crc32"


@given(st.binary(max_size=200))
def test_batch_fuzz(data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_card_batch(data)
    with pytest.raises(FormatError):
        parse_card_batch(R.CARD_BATCH_MAGIC + b"\x01\x01" + data)


# --- describe / repr: no key bytes -------------------------------------------------------------
def test_describe_is_json_and_hides_keys() -> None:
    tree = describe(parse_card_record(build_card_record(SAMPLE)))
    text = json.dumps(tree, ensure_ascii=False)
    assert tree["serial"] == "2256884759"
    assert tree["pairing"]["chip_id"] == "1A2B3C4D"
    assert tree["wrapped_cuk"] == {"length": 24, "fingerprint": key_summary(SAMPLE.wrapped_cuk)["fingerprint"]}
    for secret in (SAMPLE.wrapped_cuk, SAMPLE.wrapped_group_key, b"\x22" * 24, b"\xee" * 24):
        assert secret.hex() not in text
    assert "wrapped_cuk" not in repr(SAMPLE) and "22222222" not in repr(SAMPLE)
    batch = CardBatch(created_s=5, issuer="F", records=(SAMPLE,))
    assert describe(batch)["count"] == 1
    json.dumps(describe(read_card_batch_header(build_card_batch(batch))))


@pytest.mark.parametrize(
    ("offset", "value", "path"),
    [
        (4, b"\x02", "card_record.body.format_version"),
        (99, b"\x02", "card_record.body.ecm_key_slots"),
        (99, b"\x00", "card_record.body.ecm_key_slots"),
        (151, b"\x05", "card_record.body.status"),
        (171, b"\x09", "card_record.body.pin_retries_max"),
        (189, b"\x00", "card_record.body.pairing"),
        (242, b"\x40", "card_record.body.last_osd_message.text"),
        (300, b"\x01", "card_record.body.last_osd_message.padding"),
        (306, b"\x21", "card_record.body.entitlement_count"),
        (626, b"\x01", "card_record.body.entitlements"),
    ],
)
def test_structural_errors_name_the_field_and_hide_values(
    offset: int, value: bytes, path: str
) -> None:
    raw = _poke(offset, value)
    for parse in (parse_card_record, parse_card_record_declarative):
        with pytest.raises(FormatError) as err:
            parse(raw)
        assert not isinstance(err.value, ChecksumError)
        assert err.value.path == path
        assert "\\x" not in str(err.value) and "ee" * 4 not in str(err.value)


# --- bulk CRC path of batches ----------------------------------------------------------------
def _raw_batch(recs: list[bytes]) -> bytes:
    return R.build_batch(
        magic=R.CARD_BATCH_MAGIC, record_version=1, record_size=CARD_RECORD_SIZE,
        created_s=0, issuer="F", records=recs, root="card_batch",
    )


@given(st.integers(0, 19), st.integers(0, CARD_RECORD_SIZE - 1), st.integers(1, 255),
       st.booleans())
def test_bad_record_in_a_large_batch_is_named(bad: int, pos: int, xor: int, fix: bool) -> None:
    """Batches of ≥ 8 records check CRCs in bulk; a bad record must still be found and named,
    with the same error the single-record parser gives."""
    good = [build_card_record(dataclasses.replace(SAMPLE, serial=i)) for i in range(20)]
    broken = bytearray(good[bad])
    broken[pos] ^= xor
    if fix and pos < CARD_RECORD_SIZE - 4:
        _fix_crc(broken)
    recs = [*good[:bad], bytes(broken), *good[bad + 1 :]]
    single = _outcome(parse_card_record, bytes(broken))
    if single[0] == "ok":  # e.g. a flip inside a wrapped key with the CRC fixed
        assert list(iter_card_records(_raw_batch(recs)))[bad] == single[1]
        return
    with pytest.raises(FormatError) as err:
        list(iter_card_records(_raw_batch(recs)))
    assert (single[0] == "checksum") == isinstance(err.value, ChecksumError)
    assert err.value.path is not None and err.value.path.startswith(f"card_batch.records[{bad}]")


def test_bulk_crc_over_mmap_chunks(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # small chunks so that several full chunks and a partial one are checked
    monkeypatch.setattr(records_fast, "CRC_CHUNK_RECORDS", 8)
    recs = [dataclasses.replace(SAMPLE, serial=i, emm_seq_unique=i) for i in range(29)]
    path = tmp_path / "b.bin"
    path.write_bytes(build_card_batch(CardBatch(created_s=1, issuer="F", records=tuple(recs))))
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert list(iter_card_records(mm)) == recs


@given(st.lists(st.binary(min_size=12, max_size=12), min_size=1, max_size=30), st.data())
def test_bulk_crc_detects_any_single_bad_record(bodies: list[bytes], data: st.DataObject) -> None:
    from cas.formats._common import bulk_crc_ok

    recs = [b + zlib.crc32(b).to_bytes(4, "big") for b in bodies]
    raw = b"pad" + b"".join(recs)
    assert bulk_crc_ok(raw, 3, len(recs), 16)
    pos = data.draw(st.integers(3, len(raw) - 1))
    bad = bytearray(raw)
    bad[pos] ^= data.draw(st.integers(1, 255))
    assert not bulk_crc_ok(bytes(bad), 3, len(recs), 16)


def test_fast_path_objects_are_genuine_frozen_records() -> None:
    """The fast path builds objects through layout twins (slots_builder); they must be real,
    frozen, hashable instances indistinguishable from constructed ones."""
    raw = build_card_batch(CardBatch(created_s=0, issuer="F", records=(SAMPLE,) * 9))
    for rec in iter_card_records(raw):
        assert type(rec) is CardRecord and rec == SAMPLE and hash(rec) == hash(SAMPLE)
        assert type(rec.entitlements[0]) is Entitlement and type(rec.ecm_keys[0]) is EcmKeySlot
        assert type(rec.pairing) is Pairing
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.serial = 1  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.entitlements[0].end_s = 1  # type: ignore[misc]
        assert dataclasses.replace(rec, serial=5).serial == 5
        assert repr(rec) == repr(SAMPLE)
