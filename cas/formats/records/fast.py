"""Smart-card record, the fast path: ``struct`` layouts derived from the declaration.

:func:`parse_card_record` / :func:`build_card_record` and the batch iterator read and write
records with :class:`struct.Struct` objects computed from :data:`CARD_RECORD` by
:func:`cas.formats.layout.struct_layout` — the layout is declared once.  The unpacking order
below is checked against the declaration at import, and
``tests/unit/formats/test_records.py`` checks with hypothesis that this path and the
declarative one accept and reject exactly the same bytes and give equal records.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from cas.access import CardStatus, Entitlement
from cas.errors import ChecksumError, FormatError
from cas.formats._common import CRC_CHUNK_RECORDS, bulk_crc_ok, field_error, slots_builder
from cas.formats.layout import check_order, struct_layout
from cas.formats.records.declaration import (
    CARD_RECORD,
    CARD_RECORD_BODY,
    CARD_RECORD_SIZE,
    ENTITLEMENT,
    validate,
)
from cas.formats.records.model import (
    CARD_RECORD_MAGIC,
    CARD_RECORD_VERSION,
    ECM_KEY_SLOTS,
    ENTITLEMENT_SLOTS,
    OSD_MAX_BYTES,
    VALID_STATUS,
    WRAPPED_KEY_SIZE,
    CardRecord,
    EcmKeySlot,
    Pairing,
)

# --- layouts, from the declaration ---------------------------------------------------------------
# The parser reads the head (everything before the entitlement slots) with one struct and takes
# the slots it needs as raw slices; the builder packs the whole record.  shared_address (u24)
# and member_position (u8) come as one u32 (see cas.formats.layout).
_HEAD_FIELDS = (
    "magic", "format_version", "serial", "shared_address+member_position", "ca_system_id",
    "operator_id", "card_os_version", "personalised_s", "expiry_s", "wrapped_cuk",
    "wrapped_group_key", "wrapped_global_key",
    "ecm_key_slots[0].valid", "ecm_key_slots[0].index", "ecm_key_slots[0].wrapped_key",
    "ecm_key_slots[1].valid", "ecm_key_slots[1].index", "ecm_key_slots[1].wrapped_key",
    "status", "region", "maturity_limit", "pin_hash", "pin_retries_left", "pin_retries_max",
    "emm_seq_unique", "emm_seq_shared", "emm_seq_global", "last_ecm_s", "pairing.paired",
    "pairing.chip_id", "pairing.wrapped_cwpk", "pairing.chip_blob", "last_osd_message",
    "entitlement_count",
)  # fmt: skip
_ENT_FIELDS = ("package_id", "start_s", "end_s")
_BODY_LAYOUT = struct_layout(CARD_RECORD_BODY)
_HEAD_LAYOUT = _BODY_LAYOUT.before("entitlements")
_ENT_LAYOUT = struct_layout(ENTITLEMENT)
_RECORD_LAYOUT = struct_layout(CARD_RECORD)
check_order(_HEAD_LAYOUT, _HEAD_FIELDS, "card record head")
check_order(_ENT_LAYOUT, _ENT_FIELDS, "entitlement slot")
check_order(
    _RECORD_LAYOUT,
    (*(f"body.{n}" for n in _BODY_LAYOUT.names), "crc32"),
    "card record",
)
if _BODY_LAYOUT.under("entitlements").names != tuple(
    f"[{i}].{n}" for i in range(ENTITLEMENT_SLOTS) for n in _ENT_FIELDS
):
    raise TypeError("card record: entitlements are not the last field")

_HEAD = _HEAD_LAYOUT.struct()
_ENT = _ENT_LAYOUT.struct()
_RECORD = _RECORD_LAYOUT.struct()
_CRC_OFFSET = _RECORD_LAYOUT.offset("crc32")
_CRC = _RECORD_LAYOUT.under("crc32").struct()
_ENT_OFFSET = _BODY_LAYOUT.offset("entitlements")  # byte offset of entitlement slot 0
assert _RECORD.size == CARD_RECORD_SIZE
assert _CRC_OFFSET + _CRC.size == CARD_RECORD_SIZE

_ZERO_KEY = bytes(WRAPPED_KEY_SIZE)
_ZERO_OSD = bytes(OSD_MAX_BYTES)
_ZERO_ENTS = bytes(_ENT.size * ENTITLEMENT_SLOTS)
_MAX_STATUS = max(VALID_STATUS)
_STATUS = tuple(CardStatus(v) for v in range(_MAX_STATUS + 1))
_crc32 = zlib.crc32
_new = object.__new__
_ENT_B = slots_builder(Entitlement)
_SLOT_B = slots_builder(EcmKeySlot)
_PAIRING_B = slots_builder(Pairing)
_RECORD_B = slots_builder(CardRecord)


def _fail(field_name: str, message: str) -> FormatError:
    return field_error(message, f"card_record.body.{field_name}")


# Entitlements are immutable and cards share them (same package, same billing period), so the
# parser reuses one object per distinct slot.  Bounded: cleared when it grows too big.
_ENT_CACHE: dict[bytes, Entitlement] = {}
_ENT_CACHE_MAX = 1 << 16


def _record_error(t: tuple[Any, ...], b: Any) -> FormatError:
    """Name the first failing check of a record the fast path rejected (docs/formats.md §2)."""
    (magic, version, _serial, _shared, _ca, _op, _osv, _pers, _exp, _cuk, _gk, _glk,
     v0, i0, k0, v1, i1, k1, status, _region, _maturity, _pin, left, most, _su, _ss, _sg,
     _le, paired, chip_id, cwpk, blob, osd, count) = t  # fmt: skip
    osd_len = osd[0]
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
        osd[1 : 1 + osd_len].decode("utf-8")
    except UnicodeDecodeError:
        return _fail("last_osd_message.text", "not valid text in its encoding")
    if osd[1 + osd_len :] != _ZERO_OSD[osd_len:]:
        return _fail("last_osd_message.padding", "object failed validation")
    if count > ENTITLEMENT_SLOTS:
        return _fail("entitlement_count", "object failed validation")
    if b[_ENT_OFFSET + _ENT.size * count : _CRC_OFFSET] != _ZERO_ENTS[_ENT.size * count :]:
        return _fail("entitlements", "object failed validation")
    return ChecksumError("integrity check failed", path="card_record.crc32").with_id(
        "formats.integrity_failed", field="card_record.crc32")


def _at_index(exc: FormatError, root: str, i: int) -> FormatError:
    """The error of record ``i`` of a batch, its path rooted there instead of card_record."""
    if root == "card_record":
        return exc
    path = (exc.path or "").replace("card_record", f"{root}[{i}]", 1)
    return type(exc)(str(exc).split(": ", 1)[-1], path=path)


def iter_records(buf: Any, offset: int, count: int, root: str) -> Iterator[CardRecord]:
    """Fast path: parse ``count`` records of ``buf`` (bytes or mmap) from ``offset``.

    One generator serves single records and whole batches, so the per-record work runs
    without a function call.  The common case is tested with as few operations as possible;
    anything unusual goes to :func:`_record_error`, which names the failing field exactly as
    the construct form would.  Records are filled as layout twins and then given their frozen
    class (:func:`cas.formats._common.slots_builder`).
    """
    unpack = _HEAD.unpack_from
    crc_at = _CRC.unpack_from
    crc32 = _crc32
    size, body, ent0, ent_size = CARD_RECORD_SIZE, _CRC_OFFSET, _ENT_OFFSET, _ENT.size
    zero_key, zero_osd, zero_ents = _ZERO_KEY, _ZERO_OSD, _ZERO_ENTS
    max_status, max_osd, max_ents = _MAX_STATUS, OSD_MAX_BYTES, ENTITLEMENT_SLOTS
    magic_ok, version_ok = CARD_RECORD_MAGIC, CARD_RECORD_VERSION
    statuses = _STATUS
    ent_cache, ent_cache_max, ent_unpack = _ENT_CACHE, _ENT_CACHE_MAX, _ENT.unpack
    cached = ent_cache.get
    new, record_cls, pairing_cls, slot_cls, ent_cls = (
        _new, CardRecord, Pairing, EcmKeySlot, Entitlement
    )
    slot_builder, pairing_builder, record_builder, ent_builder = (
        _SLOT_B, _PAIRING_B, _RECORD_B, _ENT_B
    )
    done = 0
    while done < count:
        n = min(CRC_CHUNK_RECORDS, count - done)
        crc_checked = n >= 8 and bulk_crc_ok(buf, offset, n, size)
        for i in range(done, done + n):
            t = unpack(buf, offset)
            (magic, version, serial, shared, ca_system_id, operator_id, card_os_version,
             personalised_s, expiry_s, cuk, group_key, global_key, v0, i0, k0, v1, i1, k1,
             status, region, maturity, pin_hash, left, most, seq_u, seq_s, seq_g, last_ecm,
             paired, chip_id, cwpk, blob, osd_area, n_ents) = t  # fmt: skip
            osd_len = osd_area[0]
            used_end = offset + ent0 + ent_size * n_ents
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
                and osd_area[1 + osd_len :] == zero_osd[osd_len:]
                and buf[used_end : offset + body] == zero_ents[ent_size * n_ents :]
                and (crc_checked
                     or crc32(buf[offset : offset + body]) == crc_at(buf, offset + body)[0])
            ):  # fmt: skip
                raise _at_index(_record_error(t, buf[offset : offset + size]), root, i)
            if osd_len:
                try:
                    osd = osd_area[1 : 1 + osd_len].decode("utf-8")
                except UnicodeDecodeError:
                    exc = _fail("last_osd_message.text", "not valid text in its encoding")
                    raise _at_index(exc, root, i) from None
            else:
                osd = ""
            # (plain loops, not comprehensions: in 3.11 each comprehension is a function call)
            if n_ents:
                ents = []
                for o in range(offset + ent0, used_end, ent_size):
                    raw = buf[o : o + ent_size]
                    e = cached(raw)
                    if e is None:
                        package_id, start_s, end_s = ent_unpack(raw)
                        e = new(ent_builder)
                        e.package_id, e.start_s, e.end_s = package_id, start_s, end_s
                        e.__class__ = ent_cls
                        if len(ent_cache) >= ent_cache_max:
                            ent_cache.clear()
                        ent_cache[raw] = e
                    ents.append(e)
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
        ).with_id("formats.card_record_card_record", card_record_size=CARD_RECORD_SIZE, n=len(data))
    return next(iter_records(bytes(data), 0, 1, "card_record"))


def build_card_record(record: CardRecord) -> bytes:
    """Build one smart-card record (fast path; same bytes as the construct form)."""
    validate(record)
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
    ents += [0] * (len(_ENT_FIELDS) * (ENTITLEMENT_SLOTS - len(r.entitlements)))
    # in _HEAD_FIELDS order, then the entitlement slots, then a placeholder for the CRC
    fields = [
        CARD_RECORD_MAGIC, CARD_RECORD_VERSION, r.serial,
        (r.shared_address << 8) | r.member_position, r.ca_system_id, r.operator_id,
        r.card_os_version, r.personalised_s, r.expiry_s, r.wrapped_cuk, r.wrapped_group_key,
        r.wrapped_global_key, *slots, int(r.status), r.region, r.maturity_limit, r.pin_hash,
        r.pin_retries_left, r.pin_retries_max, r.emm_seq_unique, r.emm_seq_shared,
        r.emm_seq_global, r.last_ecm_s, 1 if p else 0, p.chip_id if p else 0,
        p.wrapped_cwpk if p else _ZERO_KEY, p.chip_blob if p else _ZERO_KEY,
        bytes((len(osd),)) + osd, len(r.entitlements), *ents, 0,
    ]  # fmt: skip
    raw = bytearray(_RECORD.pack(*fields))
    _CRC.pack_into(raw, _CRC_OFFSET, zlib.crc32(raw[:_CRC_OFFSET]))
    return bytes(raw)
