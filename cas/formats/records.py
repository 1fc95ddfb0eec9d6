"""Smart-card record (card EEPROM image / card-factory personalisation record) and the
personalisation batch file.

Layouts are byte-exact in ``docs/formats.md`` §2 (card record) and §4 (batch files).  All
integers are big-endian.  A record is fixed-size (:data:`CARD_RECORD_SIZE` bytes) and ends in
a CRC-32 (ISO-HDLC, as ``zlib.crc32``) over every byte before it.

Two parsers with one behaviour:

* :data:`CARD_RECORD` — the declarative construct form (``RawCopy`` + ``Checksum``), the
  reference;
* :func:`parse_card_record` — a precomputed :class:`struct.Struct` fast path used for single
  records and batch files.  ``tests/unit/formats/test_records.py`` checks with hypothesis that
  both accept and reject exactly the same inputs and give equal results.

Canonical form: flags are 0/1, unused ECM-key slots, pairing fields of an unpaired card,
unused entitlement slots and OSD padding are all zero; anything else is a FormatError, so
``build(parse(b)) == b`` for every accepted ``b``.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import construct as cs

from cas import DEFAULT_CA_SYSTEM_ID, DEFAULT_OPERATOR_ID
from cas.access import NO_MATURITY_LIMIT, CardStatus, Entitlement
from cas.errors import ChecksumError, FormatError
from cas.formats._common import (
    CRC_CHUNK_RECORDS,
    as_sliceable,
    build_struct,
    bulk_crc_ok,
    check_len,
    check_range,
    decode_padded_ascii,
    encode_padded_ascii,
    key_summary,
    parse_struct,
    slots_builder,
)

CARD_RECORD_MAGIC = b"CASC"
CARD_RECORD_VERSION = 1
#: Length of an RFC 3394 wrap of a 16-byte key (8-byte integrity block + 16).
WRAPPED_KEY_SIZE = 24
CHIP_BLOB_SIZE = 24
PIN_HASH_SIZE = 16
ECM_KEY_SLOTS = 2
ENTITLEMENT_SLOTS = 32
#: OSD text area: 1 length byte + 63 bytes of UTF-8, zero-padded.
OSD_AREA_SIZE = 64
OSD_MAX_BYTES = OSD_AREA_SIZE - 1

_VALID_STATUS = frozenset(int(s) for s in CardStatus)


# --- Python side -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class EcmKeySlot:
    """One ECM key the card holds: the key index carried in ECMs and the key wrapped under the
    card's CUK (RFC 3394)."""

    index: int
    wrapped_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pairing:
    """The box this card is paired with (DESIGN §2, CWPK)."""

    chip_id: int
    #: CWPK wrapped under the card's CUK (RFC 3394, 24 bytes).
    wrapped_cwpk: bytes = field(repr=False)
    #: Enc(CSK, CWPK) as handed to the chipset (24 bytes).
    chip_blob: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CardRecord:
    """One smart card: its identity, keys (wrapped), state and entitlement table.

    The personalisation record that leaves the card factory and the card's EEPROM image are the
    same format; the factory record simply has zero counters and no entitlements.
    """

    serial: int
    shared_address: int
    member_position: int
    ca_system_id: int = DEFAULT_CA_SYSTEM_ID
    operator_id: int = DEFAULT_OPERATOR_ID
    card_os_version: int = 0x0100
    personalised_s: int = 0
    expiry_s: int = 0
    #: CUK wrapped under the card-factory transport key (RFC 3394).
    wrapped_cuk: bytes = field(repr=False, default=bytes(WRAPPED_KEY_SIZE))
    #: Group key of ``shared_address``, wrapped under the CUK.
    wrapped_group_key: bytes = field(repr=False, default=bytes(WRAPPED_KEY_SIZE))
    #: Global EMM key, wrapped under the CUK.
    wrapped_global_key: bytes = field(repr=False, default=bytes(WRAPPED_KEY_SIZE))
    #: At most :data:`ECM_KEY_SLOTS` ECM keys (current and next during a rollover).
    ecm_keys: tuple[EcmKeySlot, ...] = ()
    status: CardStatus = CardStatus.INACTIVE
    region: int = 0
    maturity_limit: int = NO_MATURITY_LIMIT
    pin_hash: bytes = field(repr=False, default=bytes(PIN_HASH_SIZE))
    pin_retries_left: int = 3
    pin_retries_max: int = 3
    emm_seq_unique: int = 0
    emm_seq_shared: int = 0
    emm_seq_global: int = 0
    last_ecm_s: int = 0
    pairing: Pairing | None = None
    last_osd_message: str = ""
    #: At most :data:`ENTITLEMENT_SLOTS` entries.
    entitlements: tuple[Entitlement, ...] = ()


# --- declarative form ------------------------------------------------------------------------
def _slots_ok(slots: Any, ctx: Any) -> bool:
    """Valid slots first; a valid flag is 0/1; an unused slot is all zero."""
    seen_empty = False
    for slot in slots:  # Containers when parsing, dicts when building: use item access
        if slot["valid"] not in (0, 1):
            return False
        if slot["valid"]:
            if seen_empty:
                return False
        else:
            seen_empty = True
            if slot["index"] or any(slot["wrapped_key"]):
                return False
    return True


def _pairing_ok(ctx: Any) -> bool:
    if ctx.paired not in (0, 1):
        return False
    return bool(ctx.paired) or not (ctx.chip_id or any(ctx.wrapped_cwpk) or any(ctx.chip_blob))


def _entitlement_slots_ok(entitlements: Any, ctx: Any) -> bool:
    return all(
        e["package_id"] == 0 and e["start_s"] == 0 and e["end_s"] == 0
        for e in entitlements[ctx.entitlement_count :]
    )


ECM_KEY_SLOT = cs.Struct(
    "valid" / cs.Int8ub,
    "index" / cs.Int8ub,
    "wrapped_key" / cs.Bytes(WRAPPED_KEY_SIZE),
)

ENTITLEMENT = cs.Struct(
    "package_id" / cs.Int16ub,
    "start_s" / cs.Int32ub,
    "end_s" / cs.Int32ub,
)

CARD_RECORD_BODY = cs.Struct(
    "magic" / cs.Const(CARD_RECORD_MAGIC),
    "format_version" / cs.Const(CARD_RECORD_VERSION, cs.Int8ub),
    "serial" / cs.Int32ub,
    "shared_address" / cs.Int24ub,
    "member_position" / cs.Int8ub,
    "ca_system_id" / cs.Int16ub,
    "operator_id" / cs.Int16ub,
    "card_os_version" / cs.Int16ub,
    "personalised_s" / cs.Int32ub,
    "expiry_s" / cs.Int32ub,
    "wrapped_cuk" / cs.Bytes(WRAPPED_KEY_SIZE),
    "wrapped_group_key" / cs.Bytes(WRAPPED_KEY_SIZE),
    "wrapped_global_key" / cs.Bytes(WRAPPED_KEY_SIZE),
    "ecm_key_slots" / cs.ExprValidator(cs.Array(ECM_KEY_SLOTS, ECM_KEY_SLOT), _slots_ok),
    "status" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj in _VALID_STATUS),
    "region" / cs.Int16ub,
    "maturity_limit" / cs.Int8ub,
    "pin_hash" / cs.Bytes(PIN_HASH_SIZE),
    "pin_retries_left" / cs.Int8ub,
    "pin_retries_max"
    / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: ctx.pin_retries_left <= obj),
    "emm_seq_unique" / cs.Int32ub,
    "emm_seq_shared" / cs.Int32ub,
    "emm_seq_global" / cs.Int32ub,
    "last_ecm_s" / cs.Int32ub,
    "pairing"
    / cs.Struct(
        "paired" / cs.Int8ub,
        "chip_id" / cs.Int32ub,
        "wrapped_cwpk" / cs.Bytes(WRAPPED_KEY_SIZE),
        "chip_blob" / cs.Bytes(CHIP_BLOB_SIZE),
        cs.Check(_pairing_ok),
    ),
    "last_osd_message"
    / cs.FixedSized(
        OSD_AREA_SIZE,
        cs.Struct(
            "text" / cs.PascalString(cs.Int8ub, "utf8"),
            "padding" / cs.ExprValidator(cs.GreedyBytes, lambda obj, ctx: not any(obj)),
        ),
    ),
    "entitlement_count"
    / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj <= ENTITLEMENT_SLOTS),
    "entitlements"
    / cs.ExprValidator(cs.Array(ENTITLEMENT_SLOTS, ENTITLEMENT), _entitlement_slots_ok),
)

CARD_RECORD = cs.Struct(
    "body" / cs.RawCopy(CARD_RECORD_BODY),
    "crc32" / cs.Checksum(cs.Int32ub, lambda data: zlib.crc32(data), cs.this.body.data),
    cs.Terminated,
)
"""Smart-card record, docs/formats.md §2: RawCopy(body) + CRC-32 over the body."""

CARD_RECORD_SIZE: int = CARD_RECORD_BODY.sizeof() + 4  # + crc32


def _from_container(c: Any) -> CardRecord:
    b = c.body.value
    p = b.pairing
    return CardRecord(
        serial=b.serial,
        shared_address=b.shared_address,
        member_position=b.member_position,
        ca_system_id=b.ca_system_id,
        operator_id=b.operator_id,
        card_os_version=b.card_os_version,
        personalised_s=b.personalised_s,
        expiry_s=b.expiry_s,
        wrapped_cuk=b.wrapped_cuk,
        wrapped_group_key=b.wrapped_group_key,
        wrapped_global_key=b.wrapped_global_key,
        ecm_keys=tuple(
            EcmKeySlot(index=s.index, wrapped_key=s.wrapped_key) for s in b.ecm_key_slots if s.valid
        ),
        status=CardStatus(b.status),
        region=b.region,
        maturity_limit=b.maturity_limit,
        pin_hash=b.pin_hash,
        pin_retries_left=b.pin_retries_left,
        pin_retries_max=b.pin_retries_max,
        emm_seq_unique=b.emm_seq_unique,
        emm_seq_shared=b.emm_seq_shared,
        emm_seq_global=b.emm_seq_global,
        last_ecm_s=b.last_ecm_s,
        pairing=(
            Pairing(chip_id=p.chip_id, wrapped_cwpk=p.wrapped_cwpk, chip_blob=p.chip_blob)
            if p.paired
            else None
        ),
        last_osd_message=b.last_osd_message.text,
        entitlements=tuple(
            Entitlement(package_id=e.package_id, start_s=e.start_s, end_s=e.end_s)
            for e in b.entitlements[: b.entitlement_count]
        ),
    )


def _to_container(r: CardRecord) -> dict[str, Any]:
    slots = [dict(valid=1, index=s.index, wrapped_key=s.wrapped_key) for s in r.ecm_keys]
    slots += [dict(valid=0, index=0, wrapped_key=bytes(WRAPPED_KEY_SIZE))] * (
        ECM_KEY_SLOTS - len(r.ecm_keys)
    )
    p = r.pairing
    ents = [dict(package_id=e.package_id, start_s=e.start_s, end_s=e.end_s) for e in r.entitlements]
    ents += [dict(package_id=0, start_s=0, end_s=0)] * (ENTITLEMENT_SLOTS - len(r.entitlements))
    return dict(
        body=dict(
            value=dict(
                serial=r.serial,
                shared_address=r.shared_address,
                member_position=r.member_position,
                ca_system_id=r.ca_system_id,
                operator_id=r.operator_id,
                card_os_version=r.card_os_version,
                personalised_s=r.personalised_s,
                expiry_s=r.expiry_s,
                wrapped_cuk=r.wrapped_cuk,
                wrapped_group_key=r.wrapped_group_key,
                wrapped_global_key=r.wrapped_global_key,
                ecm_key_slots=slots,
                status=int(r.status),
                region=r.region,
                maturity_limit=r.maturity_limit,
                pin_hash=r.pin_hash,
                pin_retries_left=r.pin_retries_left,
                pin_retries_max=r.pin_retries_max,
                emm_seq_unique=r.emm_seq_unique,
                emm_seq_shared=r.emm_seq_shared,
                emm_seq_global=r.emm_seq_global,
                last_ecm_s=r.last_ecm_s,
                pairing=dict(
                    paired=1 if p else 0,
                    chip_id=p.chip_id if p else 0,
                    wrapped_cwpk=p.wrapped_cwpk if p else bytes(WRAPPED_KEY_SIZE),
                    chip_blob=p.chip_blob if p else bytes(CHIP_BLOB_SIZE),
                ),
                last_osd_message=dict(text=r.last_osd_message, padding=b""),
                entitlement_count=len(r.entitlements),
                entitlements=ents,
            )
        ),
        crc32=None,
    )


def parse_card_record_declarative(data: bytes) -> CardRecord:
    """Reference parser (construct).  Same result as :func:`parse_card_record`, ~50× slower."""
    return _from_container(parse_struct(CARD_RECORD, bytes(data), "card_record"))


def build_card_record_declarative(record: CardRecord) -> bytes:
    """Reference builder (construct)."""
    _validate(record)
    return build_struct(CARD_RECORD, _to_container(record), "card_record")


# --- fast path ---------------------------------------------------------------------------------
# Precomputed layouts.  _FAST is the whole record (used by the builder and as the benchmark
# baseline); the parser reads only _HEAD (everything up to entitlement_count) with struct and
# takes the entitlement slots it needs as raw 10-byte slices.  shared_address (u24) and
# member_position (u8) are read as one u32 and split, since struct has no 3-byte integer.
_HEAD_FORMAT = ">4sBII HHH II 24s24s24s" + "BB24s" * ECM_KEY_SLOTS + "BHB16sBB IIII BI24s24s B63s B"
_FAST = struct.Struct(_HEAD_FORMAT + "HII" * ENTITLEMENT_SLOTS + "I")
_HEAD = struct.Struct(_HEAD_FORMAT)
_ENT = struct.Struct(">HII")
_CRC = struct.Struct(">I")
assert _FAST.size == CARD_RECORD_SIZE
_BODY_SIZE = CARD_RECORD_SIZE - 4
_ZERO_KEY = bytes(WRAPPED_KEY_SIZE)
_ZERO_OSD = bytes(OSD_MAX_BYTES)
_ENT_OFFSET = _HEAD.size  # byte offset of entitlement slot 0
assert _ENT_OFFSET + _ENT.size * ENTITLEMENT_SLOTS == _BODY_SIZE
_ZERO_ENTS = bytes(_ENT.size * ENTITLEMENT_SLOTS)
_MAX_STATUS = max(_VALID_STATUS)
_crc32 = zlib.crc32


def _fail(field_name: str, message: str) -> FormatError:
    return FormatError(message, path=f"card_record.body.{field_name}")


_new = object.__new__
_ENT_B = slots_builder(Entitlement)
_SLOT_B = slots_builder(EcmKeySlot)
_PAIRING_B = slots_builder(Pairing)
_RECORD_B = slots_builder(CardRecord)
_STATUS = tuple(CardStatus(v) for v in range(max(_VALID_STATUS) + 1))


# Entitlements are immutable and cards share them (same package, same billing period), so the
# parser reuses one object per distinct 10-byte slot.  Bounded: cleared when it grows too big.
_ENT_CACHE: dict[bytes, Entitlement] = {}
_ENT_CACHE_MAX = 1 << 16


def _entitlement(raw: bytes) -> Entitlement:
    e = _new(_ENT_B)
    e.package_id, e.start_s, e.end_s = _ENT.unpack(raw)
    e.__class__ = Entitlement
    if len(_ENT_CACHE) >= _ENT_CACHE_MAX:
        _ENT_CACHE.clear()
    _ENT_CACHE[raw] = e
    return e  # type: ignore[no-any-return]


def _record_error(t: tuple[Any, ...], b: Any) -> FormatError:
    """Name the first failing check of a record the fast path rejected (docs/formats.md §2)."""
    (magic, version, _serial, _shared, _ca, _op, _osv, _pers, _exp, _cuk, _gk, _glk,
     v0, i0, k0, v1, i1, k1, status, _region, _maturity, _pin, left, most, _su, _ss, _sg,
     _le, paired, chip_id, cwpk, blob, osd_len, osd_raw, count) = t  # fmt: skip
    if magic != CARD_RECORD_MAGIC:
        return _fail("magic", f"expected {CARD_RECORD_MAGIC!r}")
    if version != CARD_RECORD_VERSION:
        return _fail("format_version", f"unsupported version {version}")
    if (
        v0 > 1
        or v1 > 1
        or (v1 and not v0)
        or (not v0 and (i0 or k0 != _ZERO_KEY))
        or (not v1 and (i1 or k1 != _ZERO_KEY))
    ):
        return _fail("ecm_key_slots", "object failed validation")
    if status > _MAX_STATUS:
        return _fail("status", "object failed validation")
    if left > most:
        return _fail("pin_retries_max", "object failed validation")
    if paired > 1 or (not paired and (chip_id or cwpk != _ZERO_KEY or blob != _ZERO_KEY)):
        return _fail("pairing", "check failed")
    if osd_len > OSD_MAX_BYTES:
        return _fail("last_osd_message.text", "stream read less than specified amount")
    try:
        osd_raw[:osd_len].decode("utf-8")
    except UnicodeDecodeError:
        return _fail("last_osd_message.text", "not valid text in its encoding")
    if osd_raw[osd_len:] != _ZERO_OSD[osd_len:]:
        return _fail("last_osd_message.padding", "object failed validation")
    if count > ENTITLEMENT_SLOTS:
        return _fail("entitlement_count", "object failed validation")
    if b[_ENT_OFFSET + 10 * count : _BODY_SIZE] != _ZERO_ENTS[10 * count :]:
        return _fail("entitlements", "object failed validation")
    return ChecksumError("integrity check failed", path="card_record.crc32")


def _iter_records(buf: Any, offset: int, count: int, root: str) -> Iterator[CardRecord]:
    """Fast path: parse ``count`` records of ``buf`` (bytes or mmap) from ``offset``.

    One generator serves single records and whole batches, so the per-record work runs
    without a function call.  The common case is tested with as few operations as possible;
    anything unusual goes to :func:`_record_error`, which names the failing field exactly as
    the construct form would.  ``tests/unit/formats/test_records.py`` checks with hypothesis
    that both forms accept and reject the same bytes and give equal records.
    """
    unpack = _HEAD.unpack_from
    crc_at = _CRC.unpack_from
    crc32 = _crc32
    size, body, ent0 = CARD_RECORD_SIZE, _BODY_SIZE, _ENT_OFFSET
    zero_key, zero_osd, zero_ents = _ZERO_KEY, _ZERO_OSD, _ZERO_ENTS
    max_status, max_osd, max_ents = _MAX_STATUS, OSD_MAX_BYTES, ENTITLEMENT_SLOTS
    magic_ok, version_ok = CARD_RECORD_MAGIC, CARD_RECORD_VERSION
    statuses = _STATUS
    cached = _ENT_CACHE.get
    make_ent = _entitlement
    slot_builder, pairing_builder, record_builder = _SLOT_B, _PAIRING_B, _RECORD_B
    new, record_cls, pairing_cls, slot_cls = _new, CardRecord, Pairing, EcmKeySlot
    done = 0
    while done < count:
        n = min(CRC_CHUNK_RECORDS, count - done)
        crc_checked = n >= 8 and bulk_crc_ok(buf, offset, n, size)
        for i in range(done, done + n):
            t = unpack(buf, offset)
            (magic, version, serial, shared, ca_system_id, operator_id, card_os_version,
             personalised_s, expiry_s, cuk, group_key, global_key, v0, i0, k0, v1, i1, k1,
             status, region, maturity, pin_hash, left, most, seq_u, seq_s, seq_g, last_ecm,
             paired, chip_id, cwpk, blob, osd_len, osd_raw, n_ents) = t  # fmt: skip
            used_end = offset + ent0 + 10 * n_ents
            if not (
                magic == magic_ok
                and version == version_ok
                and status <= max_status
                and left <= most
                and osd_len <= max_osd
                and n_ents <= max_ents
                and (v0 == 1 or (v0 == 0 and v1 == 0 and i0 == 0 and k0 == zero_key))
                and (v1 == 1 or (v1 == 0 and i1 == 0 and k1 == zero_key))
                and (paired == 1 or (paired == 0 and chip_id == 0 and cwpk == zero_key
                                     and blob == zero_key))
                and osd_raw[osd_len:] == zero_osd[osd_len:]
                and buf[used_end : offset + body] == zero_ents[10 * n_ents :]
                and (crc_checked
                     or crc32(buf[offset : offset + body]) == crc_at(buf, offset + body)[0])
            ):  # fmt: skip
                exc = _record_error(t, buf[offset : offset + size])
                if root != "card_record":
                    path = (exc.path or "").replace("card_record", f"{root}[{i}]", 1)
                    exc = type(exc)(str(exc).split(": ", 1)[-1], path=path)
                raise exc
            if osd_len:
                try:
                    osd = osd_raw[:osd_len].decode("utf-8")
                except UnicodeDecodeError:
                    exc = _fail("last_osd_message.text", "not valid text in its encoding")
                    if root != "card_record":
                        path = (exc.path or "").replace("card_record", f"{root}[{i}]", 1)
                        exc = FormatError(str(exc).split(": ", 1)[-1], path=path)
                    raise exc from None
            else:
                osd = ""
            # (plain loops, not comprehensions: in 3.11 each comprehension is a function call)
            if n_ents:
                ents = []
                for o in range(offset + ent0, used_end, 10):
                    raw = buf[o : o + 10]
                    ents.append(cached(raw) or make_ent(raw))
                entitlements: tuple[Entitlement, ...] = tuple(ents)
            else:
                entitlements = ()
            # objects are filled as layout twins and then turned into the frozen dataclasses
            # (see cas.formats._common.slots_builder)
            if v0:
                slot0 = new(slot_builder)
                slot0.index = i0
                slot0.wrapped_key = k0
                slot0.__class__ = slot_cls
                if v1:
                    slot1 = new(slot_builder)
                    slot1.index = i1
                    slot1.wrapped_key = k1
                    slot1.__class__ = slot_cls
                    ecm_keys: tuple[EcmKeySlot, ...] = (slot0, slot1)
                else:
                    ecm_keys = (slot0,)
            else:
                ecm_keys = ()
            if paired:
                pairing = new(pairing_builder)
                pairing.chip_id = chip_id
                pairing.wrapped_cwpk = cwpk
                pairing.chip_blob = blob
                pairing.__class__ = pairing_cls
            else:
                pairing = None
            rec = new(record_builder)
            rec.serial = serial
            rec.shared_address = shared >> 8
            rec.member_position = shared & 0xFF
            rec.ca_system_id = ca_system_id
            rec.operator_id = operator_id
            rec.card_os_version = card_os_version
            rec.personalised_s = personalised_s
            rec.expiry_s = expiry_s
            rec.wrapped_cuk = cuk
            rec.wrapped_group_key = group_key
            rec.wrapped_global_key = global_key
            rec.ecm_keys = ecm_keys
            rec.status = statuses[status]
            rec.region = region
            rec.maturity_limit = maturity
            rec.pin_hash = pin_hash
            rec.pin_retries_left = left
            rec.pin_retries_max = most
            rec.emm_seq_unique = seq_u
            rec.emm_seq_shared = seq_s
            rec.emm_seq_global = seq_g
            rec.last_ecm_s = last_ecm
            rec.pairing = pairing
            rec.last_osd_message = osd
            rec.entitlements = entitlements
            rec.__class__ = record_cls
            offset += size
            yield rec
        done += n


def parse_card_record(data: bytes) -> CardRecord:
    """Parse one smart-card record (docs/formats.md §2).  FormatError / ChecksumError."""
    if len(data) != CARD_RECORD_SIZE:
        raise FormatError(
            f"a card record is {CARD_RECORD_SIZE} bytes, got {len(data)}", path="card_record"
        )
    return next(_iter_records(bytes(data), 0, 1, "card_record"))


def _validate(r: CardRecord) -> None:
    """Range and length checks before building (struct would silently pad/truncate bytes)."""
    if not isinstance(r, CardRecord):
        raise FormatError(f"expected CardRecord, got {type(r).__name__}", path="card_record")
    p = "card_record"
    for name, bits in (
        ("serial", 32), ("shared_address", 24), ("member_position", 8), ("ca_system_id", 16),
        ("operator_id", 16), ("card_os_version", 16), ("personalised_s", 32), ("expiry_s", 32),
        ("region", 16), ("maturity_limit", 8), ("pin_retries_left", 8), ("pin_retries_max", 8),
        ("emm_seq_unique", 32), ("emm_seq_shared", 32), ("emm_seq_global", 32),
        ("last_ecm_s", 32),
    ):  # fmt: skip
        check_range(getattr(r, name), bits, f"{p}.{name}")
    for name in ("wrapped_cuk", "wrapped_group_key", "wrapped_global_key"):
        check_len(getattr(r, name), WRAPPED_KEY_SIZE, f"{p}.{name}")
    check_len(r.pin_hash, PIN_HASH_SIZE, f"{p}.pin_hash")
    if r.status not in _VALID_STATUS:
        raise FormatError(f"unknown card status {r.status!r}", path=f"{p}.status")
    if r.pin_retries_left > r.pin_retries_max:
        raise FormatError("pin_retries_left exceeds pin_retries_max", path=f"{p}.pin_retries_left")
    if len(r.ecm_keys) > ECM_KEY_SLOTS:
        raise FormatError(f"at most {ECM_KEY_SLOTS} ECM keys", path=f"{p}.ecm_keys")
    for i, s in enumerate(r.ecm_keys):
        check_range(s.index, 8, f"{p}.ecm_keys[{i}].index")
        check_len(s.wrapped_key, WRAPPED_KEY_SIZE, f"{p}.ecm_keys[{i}].wrapped_key")
    if r.pairing is not None:
        check_range(r.pairing.chip_id, 32, f"{p}.pairing.chip_id")
        check_len(r.pairing.wrapped_cwpk, WRAPPED_KEY_SIZE, f"{p}.pairing.wrapped_cwpk")
        check_len(r.pairing.chip_blob, CHIP_BLOB_SIZE, f"{p}.pairing.chip_blob")
    if not isinstance(r.last_osd_message, str):
        raise FormatError("must be text", path=f"{p}.last_osd_message")
    try:
        osd = r.last_osd_message.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise FormatError("not encodable as UTF-8", path=f"{p}.last_osd_message") from exc
    if len(osd) > OSD_MAX_BYTES:
        raise FormatError(
            f"at most {OSD_MAX_BYTES} bytes of UTF-8", path=f"{p}.last_osd_message"
        )
    if len(r.entitlements) > ENTITLEMENT_SLOTS:
        raise FormatError(f"at most {ENTITLEMENT_SLOTS} entitlements", path=f"{p}.entitlements")
    for i, e in enumerate(r.entitlements):
        check_range(e.package_id, 16, f"{p}.entitlements[{i}].package_id")
        check_range(e.start_s, 32, f"{p}.entitlements[{i}].start_s")
        check_range(e.end_s, 32, f"{p}.entitlements[{i}].end_s")


def build_card_record(record: CardRecord) -> bytes:
    """Build one smart-card record (fast path; same bytes as the construct form)."""
    _validate(record)
    r = record
    slots: list[Any] = []
    for s in r.ecm_keys:
        slots += [1, s.index, s.wrapped_key]
    slots += [0, 0, _ZERO_KEY] * (ECM_KEY_SLOTS - len(r.ecm_keys))
    p = r.pairing
    osd = r.last_osd_message.encode("utf-8")
    ents: list[int] = []
    for e in r.entitlements:
        ents += [e.package_id, e.start_s, e.end_s]
    ents += [0] * (3 * (ENTITLEMENT_SLOTS - len(r.entitlements)))
    fields = [
        CARD_RECORD_MAGIC, CARD_RECORD_VERSION, r.serial,
        (r.shared_address << 8) | r.member_position, r.ca_system_id, r.operator_id,
        r.card_os_version, r.personalised_s, r.expiry_s, r.wrapped_cuk, r.wrapped_group_key,
        r.wrapped_global_key, *slots, int(r.status), r.region, r.maturity_limit, r.pin_hash,
        r.pin_retries_left, r.pin_retries_max, r.emm_seq_unique, r.emm_seq_shared,
        r.emm_seq_global, r.last_ecm_s, 1 if p else 0, p.chip_id if p else 0,
        p.wrapped_cwpk if p else _ZERO_KEY, p.chip_blob if p else _ZERO_KEY, len(osd), osd,
        len(r.entitlements), *ents, 0,
    ]  # fmt: skip
    raw = bytearray(_FAST.pack(*fields))
    struct.pack_into(">I", raw, _BODY_SIZE, zlib.crc32(raw[:_BODY_SIZE]))
    return bytes(raw)


# --- batch files -------------------------------------------------------------------------------
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


@dataclass(frozen=True, slots=True, kw_only=True)
class CardBatch:
    """A personalisation batch file: the card factory's output, one record per card."""

    created_s: int
    issuer: str
    records: tuple[CardRecord, ...]


def parse_batch_header(
    data: Any, *, magic: bytes, record_version: int, record_size: int, root: str
) -> BatchHeader:
    """Parse and check a batch header plus the overall length and the SHA-256 trailer."""
    if len(data) < BATCH_HEADER_SIZE + BATCH_DIGEST_SIZE:
        raise FormatError(f"too short for a batch file ({len(data)} bytes)", path=root)
    c = parse_struct(BATCH_HEADER, bytes(data[:BATCH_HEADER_SIZE]), f"{root}.header")
    if c.magic != magic:
        raise FormatError(f"expected magic {magic!r}, got {c.magic!r}", path=f"{root}.header.magic")
    if c.record_version != record_version or c.record_size != record_size:
        raise FormatError(
            f"record format {c.record_version}/{c.record_size} bytes not supported "
            f"(expected {record_version}/{record_size})",
            path=f"{root}.header.record_size",
        )
    issuer = decode_padded_ascii(c.issuer, f"{root}.header.issuer")
    expected = BATCH_HEADER_SIZE + c.count * record_size + BATCH_DIGEST_SIZE
    if len(data) != expected:
        raise FormatError(
            f"header says {c.count} records = {expected} bytes, file has {len(data)}",
            path=f"{root}.header.count",
        )
    body = memoryview(data)[: expected - BATCH_DIGEST_SIZE]
    if hashlib.sha256(body).digest() != bytes(data[expected - BATCH_DIGEST_SIZE : expected]):
        raise ChecksumError("SHA-256 does not match", path=f"{root}.sha256")
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
    records: list[bytes], root: str,
) -> bytes:  # fmt: skip
    """Assemble header + records + SHA-256."""
    check_range(created_s, 32, f"{root}.created_s")
    check_range(len(records), 32, f"{root}.count")
    head = build_struct(
        BATCH_HEADER,
        dict(
            magic=magic,
            record_version=record_version,
            record_size=record_size,
            count=len(records),
            created_s=created_s,
            issuer=encode_padded_ascii(issuer, ISSUER_SIZE, f"{root}.issuer"),
        ),
        f"{root}.header",
    )
    h = hashlib.sha256(head)
    for rec in records:
        h.update(rec)
    return b"".join([head, *records, h.digest()])


def read_card_batch_header(data: bytes) -> BatchHeader:
    """Check a personalisation batch (header, length, SHA-256) and return its header."""
    return parse_batch_header(
        data,
        magic=CARD_BATCH_MAGIC,
        record_version=CARD_RECORD_VERSION,
        record_size=CARD_RECORD_SIZE,
        root="card_batch",
    )


def iter_card_records(data: Any) -> Iterator[CardRecord]:
    """Yield the records of a personalisation batch (``bytes``, ``memoryview`` or ``mmap``).

    The header and SHA-256 are checked before the first record is yielded; each record is then
    checked (CRC-32 and canonical form) as it is parsed.  Errors name the record index.
    """
    header = read_card_batch_header(data)
    return _iter_records(as_sliceable(data), BATCH_HEADER_SIZE, header.count, "card_batch.records")


def parse_card_batch(data: bytes) -> CardBatch:
    """Parse a whole personalisation batch file (docs/formats.md §4)."""
    header = read_card_batch_header(data)
    return CardBatch(
        created_s=header.created_s, issuer=header.issuer, records=tuple(iter_card_records(data))
    )


def build_card_batch(batch: CardBatch) -> bytes:
    """Build a personalisation batch file: header + records + SHA-256."""
    return build_batch(
        magic=CARD_BATCH_MAGIC,
        record_version=CARD_RECORD_VERSION,
        record_size=CARD_RECORD_SIZE,
        created_s=batch.created_s,
        issuer=batch.issuer,
        records=[build_card_record(r) for r in batch.records],
        root="card_batch",
    )


# --- describe --------------------------------------------------------------------------------
def describe_card_record(r: CardRecord) -> dict[str, Any]:
    """JSON-able tree of a card record for ``cas decode``; keys as length + fingerprint only."""
    return {
        "type": "card_record",
        "serial": f"{r.serial:010d}",
        "shared_address": r.shared_address,
        "member_position": r.member_position,
        "ca_system_id": f"0x{r.ca_system_id:04X}",
        "operator_id": f"0x{r.operator_id:04X}",
        "card_os_version": f"{r.card_os_version >> 8}.{r.card_os_version & 0xFF}",
        "personalised_s": r.personalised_s,
        "expiry_s": r.expiry_s,
        "wrapped_cuk": key_summary(r.wrapped_cuk),
        "wrapped_group_key": key_summary(r.wrapped_group_key),
        "wrapped_global_key": key_summary(r.wrapped_global_key),
        "ecm_keys": [
            {"index": s.index, "wrapped_key": key_summary(s.wrapped_key)} for s in r.ecm_keys
        ],
        "status": r.status.name,
        "region": r.region,
        "maturity_limit": r.maturity_limit,
        "pin_hash": key_summary(r.pin_hash),
        "pin_retries_left": r.pin_retries_left,
        "pin_retries_max": r.pin_retries_max,
        "emm_seq": {
            "unique": r.emm_seq_unique,
            "shared": r.emm_seq_shared,
            "global": r.emm_seq_global,
        },
        "last_ecm_s": r.last_ecm_s,
        "pairing": (
            None
            if r.pairing is None
            else {
                "chip_id": f"{r.pairing.chip_id:08X}",
                "wrapped_cwpk": key_summary(r.pairing.wrapped_cwpk),
                "chip_blob": key_summary(r.pairing.chip_blob),
            }
        ),
        "last_osd_message": r.last_osd_message,
        "entitlements": [
            {"package_id": e.package_id, "start_s": e.start_s, "end_s": e.end_s}
            for e in r.entitlements
        ],
    }


def describe(obj: CardRecord | CardBatch | BatchHeader) -> dict[str, Any]:
    """JSON-able tree for ``cas decode`` (no key bytes: wrapped keys as length + fingerprint)."""
    if isinstance(obj, CardRecord):
        return describe_card_record(obj)
    if isinstance(obj, CardBatch):
        return {
            "type": "card_batch",
            "created_s": obj.created_s,
            "issuer": obj.issuer,
            "count": len(obj.records),
            "records": [describe_card_record(r) for r in obj.records],
        }
    if isinstance(obj, BatchHeader):
        return {
            "type": "batch_header",
            "magic": obj.magic.decode("ascii", "replace"),
            "record_version": obj.record_version,
            "record_size": obj.record_size,
            "count": obj.count,
            "created_s": obj.created_s,
            "issuer": obj.issuer,
        }
    raise TypeError(f"cannot describe {type(obj).__name__}")
