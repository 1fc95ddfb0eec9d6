"""Smart-card record, the declaration: docs/formats.md §2 as one construct ``Struct``.

:data:`CARD_RECORD` (``RawCopy`` + ``Checksum``) is the reference form of the layout; the
fast path in :mod:`cas.formats.records.fast` derives its ``struct`` layouts from it
(:func:`cas.formats.layout.struct_layout`).  Canonical form: flags are 0/1, unused ECM-key
slots, pairing fields of an unpaired card, unused entitlement slots and OSD padding are all
zero; anything else is a FormatError, so ``build(parse(b)) == b`` for every accepted ``b``.
"""

from __future__ import annotations

import zlib
from typing import Any

import construct as cs

from cas.access import CardStatus, Entitlement
from cas.errors import FormatError
from cas.formats._common import build_struct, check_len, check_range, parse_struct
from cas.formats.records.model import (
    CARD_RECORD_MAGIC,
    CARD_RECORD_VERSION,
    CHIP_BLOB_SIZE,
    ECM_KEY_SLOTS,
    ENTITLEMENT_SLOTS,
    OSD_AREA_SIZE,
    OSD_MAX_BYTES,
    PIN_HASH_SIZE,
    VALID_STATUS,
    WRAPPED_KEY_SIZE,
    CardRecord,
    EcmKeySlot,
    Pairing,
)


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
    "status" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj in VALID_STATUS),
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
    validate(record)
    return build_struct(CARD_RECORD, _to_container(record), "card_record")



def validate(r: CardRecord) -> None:
    """Range and length checks before building (struct would silently pad/truncate bytes)."""
    if not isinstance(r, CardRecord):
        raise FormatError(f"expected CardRecord, got {type(r).__name__}", path="card_record").with_id(
            "formats.card_record_expected_cardrecord", name__=type(r).__name__)
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
    if r.status not in VALID_STATUS:
        raise FormatError(f"unknown card status {r.status!r}", path=f"{p}.status").with_id(
            "formats.unknown_card_status_2", field=f"{p}.status", status=f"{r.status!r}")
    if r.pin_retries_left > r.pin_retries_max:
        raise FormatError("pin_retries_left exceeds pin_retries_max", path=f"{p}.pin_retries_left").with_id(
            "formats.pin_retries_left_exceeds", field=f"{p}.pin_retries_left")
    if len(r.ecm_keys) > ECM_KEY_SLOTS:
        raise FormatError(f"at most {ECM_KEY_SLOTS} ECM keys", path=f"{p}.ecm_keys").with_id(
            "formats.most_ecm_keys", field=f"{p}.ecm_keys", ecm_key_slots=ECM_KEY_SLOTS)
    for i, s in enumerate(r.ecm_keys):
        check_range(s.index, 8, f"{p}.ecm_keys[{i}].index")
        check_len(s.wrapped_key, WRAPPED_KEY_SIZE, f"{p}.ecm_keys[{i}].wrapped_key")
    if r.pairing is not None:
        check_range(r.pairing.chip_id, 32, f"{p}.pairing.chip_id")
        check_len(r.pairing.wrapped_cwpk, WRAPPED_KEY_SIZE, f"{p}.pairing.wrapped_cwpk")
        check_len(r.pairing.chip_blob, CHIP_BLOB_SIZE, f"{p}.pairing.chip_blob")
    if not isinstance(r.last_osd_message, str):
        raise FormatError("must be text", path=f"{p}.last_osd_message").with_id(
            "formats.text", field=f"{p}.last_osd_message")
    try:
        osd = r.last_osd_message.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise FormatError("not encodable as UTF-8", path=f"{p}.last_osd_message").with_id(
            "formats.not_encodable_utf", field=f"{p}.last_osd_message") from exc
    if len(osd) > OSD_MAX_BYTES:
        raise FormatError(
            f"at most {OSD_MAX_BYTES} bytes of UTF-8", path=f"{p}.last_osd_message"
        ).with_id(
            "formats.most_bytes_utf", field=f"{p}.last_osd_message", osd_max_bytes=OSD_MAX_BYTES)
    if len(r.entitlements) > ENTITLEMENT_SLOTS:
        raise FormatError(f"at most {ENTITLEMENT_SLOTS} entitlements", path=f"{p}.entitlements").with_id(
            "formats.most_entitlements", field=f"{p}.entitlements",
            entitlement_slots=ENTITLEMENT_SLOTS)
    for i, e in enumerate(r.entitlements):
        check_range(e.package_id, 16, f"{p}.entitlements[{i}].package_id")
        check_range(e.start_s, 32, f"{p}.entitlements[{i}].start_s")
        check_range(e.end_s, 32, f"{p}.entitlements[{i}].end_s")
