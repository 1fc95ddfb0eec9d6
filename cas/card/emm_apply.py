"""The EMM commands applied to the card's record: a pure function, no I/O.

:meth:`cas.card.applet.Applet._process_emm` checks an EMM (addressed, authentic, newer,
not expired: the order stated in its docstring), then hands its commands here and writes
the record this returns in one EEPROM commit, so an EMM is applied whole or not at all.
Command layouts: :mod:`cas.formats.emm`; record layout: :mod:`cas.formats.records`.
"""

from __future__ import annotations

import dataclasses

from cas.access import Entitlement
from cas.card.command import Refusal
from cas.card.data import PairingInfo
from cas.card.sw import SW, SW_NOT_ENOUGH_MEMORY
from cas.crypto import Key, wrap_key
from cas.formats.emm import (
    AddEntitlement,
    ClearEntitlements,
    ClearSharing,
    EcmKeyUpdate,
    EmmCommand,
    Fingerprint,
    OsdMail,
    OsdMessage,
    Pair,
    RemoveEntitlement,
    ResetPin,
    SetMaturity,
    SetRegion,
    SetSharing,
    SetStatus,
)
from cas.formats.records import (
    ECM_KEY_SLOTS,
    ENTITLEMENT_SLOTS,
    OSD_MAX_BYTES,
    CardRecord,
    EcmKeySlot,
    Pairing,
)


def apply_emm_commands(rec: CardRecord, commands: list[EmmCommand], now_s: int,
                   cuk: Key) -> tuple[CardRecord, PairingInfo | None]:
    """The record after all ``commands`` of one authentic, fresh EMM (nothing is written
    here), and the pairing to answer with when a PAIR command was among them.  ``now_s`` is
    the card's clock (it decides which entitlements may make room); ``cuk`` wraps the keys
    the commands bring.  A command that cannot be applied refuses the whole EMM."""
    changes: dict[str, object] = {}
    entitlements = list(rec.entitlements)
    ecm_keys = list(rec.ecm_keys)
    pairing_out: PairingInfo | None = None
    for c in commands:
        if isinstance(c, AddEntitlement):
            ent = Entitlement(package_id=c.package_id, start_s=c.start_s, end_s=c.end_s)
            same = [i for i, e in enumerate(entitlements) if e.package_id == c.package_id]
            if same:
                entitlements[same[0]] = ent
                for i in reversed(same[1:]):
                    del entitlements[i]
                continue
            if len(entitlements) >= ENTITLEMENT_SLOTS:
                # make room by forgetting what has ended by the card's clock
                entitlements = [e for e in entitlements if e.end_s > now_s]
                if len(entitlements) >= ENTITLEMENT_SLOTS:
                    raise Refusal(SW_NOT_ENOUGH_MEMORY)
            entitlements.append(ent)
        elif isinstance(c, RemoveEntitlement):
            entitlements = [e for e in entitlements if e.package_id != c.package_id]
        elif isinstance(c, ClearEntitlements):
            entitlements = []
        elif isinstance(c, SetStatus):
            changes["status"] = c.status
        elif isinstance(c, SetRegion):
            changes["region"] = c.region
        elif isinstance(c, SetMaturity):
            changes["maturity_limit"] = c.maturity_limit
        elif isinstance(c, ResetPin):
            changes["pin_hash"] = c.pin_hash
            changes["pin_retries_left"] = rec.pin_retries_max
        elif isinstance(c, Pair):
            cwpk = Key(c.cwpk, label="cwpk")
            changes["pairing"] = Pairing(chip_id=c.chip_id, wrapped_cwpk=wrap_key(cuk, cwpk),
                                         chip_blob=c.chip_blob)
            pairing_out = PairingInfo(chip_id=c.chip_id, chip_blob=c.chip_blob)
        elif isinstance(c, EcmKeyUpdate):
            slot = EcmKeySlot(index=c.index,
                              wrapped_key=wrap_key(cuk, Key(c.key, label="ecm key")))
            ecm_keys = [s for s in ecm_keys if s.index != c.index]
            ecm_keys.append(slot)  # newest last; the oldest drops out of a full table
            ecm_keys = ecm_keys[-ECM_KEY_SLOTS:]
        elif isinstance(c, OsdMessage):
            changes["last_osd_message"] = _fit_utf8(c.text, OSD_MAX_BYTES)
        elif isinstance(c, OsdMail):
            # the mailbox (the EEPROM state area, cas.card.osd) keeps it; the record's OSD
            # area keeps the text for a box that only reads GET DATA 06
            changes["last_osd_message"] = _fit_utf8(c.text, OSD_MAX_BYTES)
        elif isinstance(c, Fingerprint | SetSharing | ClearSharing):
            pass  # the state area keeps these (cas.card.osd, cas.card.sharing), not the record
        else:  # a command this card OS does not know: apply all or nothing
            raise Refusal(SW.WRONG_DATA)
    return dataclasses.replace(rec, entitlements=tuple(entitlements),
                               ecm_keys=tuple(ecm_keys), **changes), pairing_out  # type: ignore[arg-type]


def _fit_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")
