"""``cas decode`` views of card records and personalisation batches: JSON-able trees with
key material as length + fingerprint only."""

from __future__ import annotations

from typing import Any

from cas.formats._common import key_summary
from cas.formats.batch import BatchHeader
from cas.formats.records.card_batch import CardBatch
from cas.formats.records.model import CardRecord


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
