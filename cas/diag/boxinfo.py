"""``cas diag box``: what a set-top box knows about itself (DESIGN §1, §5; docs/stb.md §6).

Read from the box's own files, never changed: its Chip ID record (chip id, vendor, model,
firmware, manufacturing date) and its NVRAM (boots, last channel, the outcome of the last EMM
and ECM the card handled, running counters, and the pairing it learnt from its card).

With the chipset vendor key the check goes one rung further down the key ladder: does the
record's CSK open (the chip is genuine for this vendor key), and does the chip blob kept in
NVRAM open on this chip (the stored pairing really is this chip's)?  Neither result shows
any key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cas.crypto import Key
from cas.errors import CasError
from cas.formats.chipid import ChipIdRecord
from cas.i18n import Msg, Translator
from cas.reasons import Reason, info
from firmware_stub.chipset import Chipset, load_chip_record
from firmware_stub.errors import PairingError
from firmware_stub.nvram import Nvram, load_nvram

#: NVRAM counters that mean something went wrong (names from firmware_stub).
_TROUBLE_WORDS = ("error", "failed", "garbage", "rejected", "denied", "loss", "truncated",
                  "bad", "replayed", "malformed", "dropped", "expired")


def fw_text(version: int) -> str:
    return f"{version >> 24}.{(version >> 16) & 0xFF}.{(version >> 8) & 0xFF}.{version & 0xFF}"


def date_text(ts: int | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def trouble_counters(counters: Mapping[str, int]) -> dict[str, int]:
    """The counters that count defects, where non-zero."""
    return {k: v for k, v in counters.items() if v and any(w in k for w in _TROUBLE_WORDS)}


@dataclass(frozen=True, slots=True, kw_only=True)
class BoxReport:
    chip: ChipIdRecord
    nvram_path: str | None
    nvram_found: bool
    nvram: Nvram
    chip_ok: bool | None = None  # the CSK opens with the vendor key (None: not checked)
    pairing_ok: bool | None = None  # the NVRAM chip blob opens on this chip
    notes: tuple[str, ...] = field(default=())
    #: ``notes`` as catalogue messages, for a reader in another language.
    note_msgs: tuple[Msg, ...] = field(default=())

    @property
    def chip_id(self) -> int:
        return self.chip.chip_id

    @property
    def paired_card(self) -> int | None:
        p = self.nvram.pairing
        return p.card_serial if p is not None and p.chip_id == self.chip.chip_id else None

    def last_ecm_reason(self) -> Reason | None:
        e = self.nvram.last_ecm
        if e is None:
            return None
        try:
            return Reason(e.reason)
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        c = self.chip
        nv = self.nvram
        last_ecm: dict[str, Any] | None = None
        if nv.last_ecm is not None:
            reason = self.last_ecm_reason()
            last_ecm = {**nv.last_ecm.to_json(), "at": date_text(nv.last_ecm.at_s),
                        "screen_code": info(reason).screen_code if reason else None,
                        "message": info(reason).en if reason else None}
        last_emm: dict[str, Any] | None = None
        if nv.last_emm is not None:
            last_emm = {**nv.last_emm.to_json(), "at": date_text(nv.last_emm.at_s)}
        return {
            "kind": "box",
            "chip_id": f"{c.chip_id:08X}",
            "vendor": c.vendor,
            "model": c.model,
            "device_type": "set-top box",
            "firmware_version": fw_text(c.firmware_version),
            "manufactured": date_text(c.manufactured_s),
            "chip_ok": self.chip_ok,
            "nvram": self.nvram_path,
            "nvram_found": self.nvram_found,
            "boot_count": nv.boot_count,
            "last_channel": nv.last_channel,
            "pairing": (None if nv.pairing is None else {
                "card_serial": f"{nv.pairing.card_serial:010d}",
                "chip_id": f"{nv.pairing.chip_id:08X}",
                "blob_opens_on_this_chip": self.pairing_ok}),
            "last_emm": last_emm,
            "last_ecm": last_ecm,
            "counters": dict(nv.counters),
            "trouble": trouble_counters(nv.counters),
            "notes": list(self.notes),
            "note_messages": [m.to_json() for m in self.note_msgs],
        }


def read_box(chip_record: Path, *, chip_id: int | None = None, nvram: Path | None = None,
             vendor_key: Key | None = None) -> BoxReport:
    """Read (never write) the box's Chip ID record and NVRAM; check keys if ``vendor_key``."""
    record = load_chip_record(chip_record, chip_id)
    found = nvram is not None and nvram.is_file()
    nv = load_nvram(nvram, chip_id=record.chip_id) if nvram is not None and found else Nvram(
        chip_id=record.chip_id)
    notes: list[Msg] = []
    if nvram is not None and not found:
        notes.append(Msg("diag_box.note.no_nvram", {"path": str(nvram)}))
    chip_ok: bool | None = None
    pairing_ok: bool | None = None
    if vendor_key is not None:
        try:
            chipset = Chipset.from_record(record, vendor_key)
            chip_ok = True
        except CasError:
            chip_ok = False
            notes.append(Msg("diag_box.note.not_genuine"))
        else:
            if nv.pairing is not None:
                try:
                    chipset.load_pairing(nv.pairing.chip_blob)
                    pairing_ok = True
                except PairingError:
                    pairing_ok = False
                    notes.append(Msg("diag_box.note.pairing_not_for_chip"))
    if nv.pairing is None:
        notes.append(Msg("diag_box.note.no_pairing"))
    elif nv.pairing.chip_id != record.chip_id:
        notes.append(Msg("diag_box.note.other_chip", {"chip": f"{nv.pairing.chip_id:08X}",
                                                      "this": f"{record.chip_id:08X}"}))
    trouble = trouble_counters(nv.counters)
    if trouble.get("cw_unwrap_failed"):
        notes.append(Msg("diag_box.note.unwrap_failed", {"n": trouble["cw_unwrap_failed"]}))
    reason = None if nv.last_ecm is None else nv.last_ecm.reason
    if reason is not None and reason != Reason.OPEN.value:
        notes.append(Msg("diag_box.note.last_ecm_refused",
                         {"channel": nv.last_ecm.channel,  # type: ignore[union-attr]
                          "reason": reason}))
    return BoxReport(chip=record, nvram_path=None if nvram is None else str(nvram),
                     nvram_found=found, nvram=nv, chip_ok=chip_ok, pairing_ok=pairing_ok,
                     notes=tuple(_EN(m) for m in notes), note_msgs=tuple(notes))


_EN = Translator("en")
