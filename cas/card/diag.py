"""What ``cas diag card`` reports about a card: read over any transport, JSON-able.

Everything comes from the card's own answers (ATR, GET DATA, READ ENTITLEMENTS, the PIN
counter): the diagnosis shows what the card holds, which is what the box will act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cas.access import Entitlement
from cas.card.atr import DecodedAtr, decode_atr
from cas.card.client import CardClient
from cas.card.data import CardInfo, PairingInfo, SharingInfo
from cas.errors import FormatError


def iso(ts: int) -> str | None:
    """``2026-01-01T00:00:00Z`` for a wire time; None for 0 (never)."""
    if ts <= 0:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class CardReport:
    reader: str | None
    atr: DecodedAtr | None
    atr_raw: bytes
    info: CardInfo
    pairing: PairingInfo | None
    entitlements: tuple[Entitlement, ...]
    osd_message: str
    pin_tries_left: int | None
    now_s: int
    sharing: SharingInfo | None = None

    def entitlement_rows(self) -> list[dict[str, Any]]:
        rows = []
        for e in self.entitlements:
            if e.end_s <= self.now_s:
                state = "expired"
            elif e.start_s > self.now_s:
                state = "not yet valid"
            else:
                state = "valid"
            rows.append({
                "package_id": e.package_id,
                "start": iso(e.start_s) or "-",
                "end": iso(e.end_s) or "-",
                "start_s": e.start_s,
                "end_s": e.end_s,
                "state": state,
                "expired": state == "expired",
            })
        return rows

    def to_json(self) -> dict[str, Any]:
        i = self.info
        return {
            "reader": self.reader,
            "atr": self.atr.to_json() if self.atr else {"hex": self.atr_raw.hex(" ").upper()},
            "serial": f"{i.serial:010d}",
            "shared_address": i.shared_address,
            "member_position": i.member_position,
            "ca_system_id": f"0x{i.ca_system_id:04X}",
            "operator_id": f"0x{i.operator_id:04X}",
            "card_os_version": f"{i.card_os_version >> 8}.{i.card_os_version & 0xFF}",
            "personalised": iso(i.personalised_s),
            "card_expiry": iso(i.expiry_s),
            "status": i.status.name,
            "region": i.region,
            "maturity_limit": i.maturity_limit,
            "pin_tries_left": self.pin_tries_left,
            "pin_tries_max": i.pin_retries_max,
            "pin_verified": self.pin_tries_left is None,
            "pairing": (
                {"paired": True, "chip_id": f"{self.pairing.chip_id:08X}"}
                if self.pairing else {"paired": False, "chip_id": None}
            ),
            "emm_sequence": {
                "unique": i.emm_seq_unique, "shared": i.emm_seq_shared, "global": i.emm_seq_global,
            },
            "card_clock": iso(i.last_ecm_s),
            "ecm_key_indexes": list(i.ecm_key_indexes),
            "osd_message": self.osd_message,
            "sharing": sharing_json(self.sharing),
            "checked_at": iso(self.now_s),
            "entitlements": self.entitlement_rows(),
        }


def read_report(client: CardClient, *, reader: str | None, now_s: int) -> CardReport:
    """Read everything the report needs from the card behind ``client``."""
    raw = client.transport.atr()
    try:
        atr: DecodedAtr | None = decode_atr(raw)
    except FormatError:
        atr = None
    return CardReport(
        reader=reader, atr=atr, atr_raw=raw, info=client.info(), pairing=client.pairing(),
        entitlements=client.entitlements(), osd_message=client.osd_message(),
        pin_tries_left=client.pin_tries_left(), now_s=now_s, sharing=client.sharing(),
    )


def sharing_json(info: SharingInfo | None) -> dict[str, Any] | None:
    """GET DATA 30 as JSON (None: the card OS has no sharing check)."""
    if info is None:
        return None
    return {
        "policy": info.policy.name, "tuners": info.tuners,
        "rate_tolerance": info.rate_tolerance, "window_s": info.window_s,
        "max_requests": info.tuners * (1 + info.rate_tolerance),
        "flagged": info.flagged, "rules": [r.value for r in info.rules],
        "flag_window": iso(info.flag_window_s) if info.flagged else None,
        "flag_services": info.flag_services, "flag_requests": info.flag_requests,
        "flag_trips": info.flag_trips,
        "window_services": info.window_services, "window_requests": info.window_requests,
    }
