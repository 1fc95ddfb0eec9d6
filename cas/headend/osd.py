"""On-screen messages and fingerprint orders, as sealed EMMs (docs/osd.md).

Pure: the caller gives the keys, the sequence number (from the store's ``emm_sequences``,
so an OSD EMM takes its place among the carousel's EMMs of the same address) and the time.
``cas osd send`` / ``cas osd fingerprint`` write them to a file or queue a global one for
the live head-end; ``cas emm generate --osd-id … / --fingerprint …`` adds them to a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cas.crypto import Key, OperatorKeys
from cas.crypto.keys import Rng
from cas.errors import UsageError
from cas.formats.emm import (
    NONCE_SIZE,
    ClearSharing,
    EmmAddress,
    EmmCommand,
    EmmHeader,
    Fingerprint,
    FingerprintKind,
    GlobalAddress,
    OsdMail,
    SetSharing,
    SharedAddress,
    UniqueAddress,
    build_emm_commands,
)
from cas.messages import seal_emm
from cas.sharing import DEFAULT_RATE_TOLERANCE, DEFAULT_TUNERS, DEFAULT_WINDOW_S, SharingPolicy
from cas.wiretime import wire_end_s, wire_time_s

#: Text of one mailbox message: the TLV value is at most 255 bytes, 9 of them the header.
OSD_MAIL_MAX_TEXT_BYTES = 255 - 9
#: Highest priority (u8); 0 is the lowest.
MAX_PRIORITY = 255
#: Longest display time (u16 seconds, about 18 hours).
MAX_DISPLAY_S = 0xFFFF


def osd_mail(message_id: int, text: str, *, priority: int = 0, duration_s: int = 10,
             start: datetime | None = None) -> OsdMail:
    """A mailbox message, its limits checked (UsageError): id 1..65535, priority 0..255,
    duration 1..65535 s, at most 246 bytes of UTF-8."""
    if not 1 <= message_id <= 0xFFFF:
        raise UsageError(f"message id {message_id} outside 1..65535").with_id(
            "headend.message_id_outside", message_id=message_id)
    if not 0 <= priority <= MAX_PRIORITY:
        raise UsageError(f"priority {priority} outside 0..{MAX_PRIORITY}").with_id(
            "headend.priority_outside", priority=priority, max_priority=MAX_PRIORITY)
    if not 1 <= duration_s <= MAX_DISPLAY_S:
        raise UsageError(f"display time {duration_s} s outside 1..{MAX_DISPLAY_S}").with_id(
            "headend.display_time_outside", duration_s=duration_s, max_display_s=MAX_DISPLAY_S)
    if not text:
        raise UsageError("an on-screen message needs a text").with_id(
            "headend.screen_message_needs_text")
    if len(text.encode("utf-8")) > OSD_MAIL_MAX_TEXT_BYTES:
        raise UsageError(f"an on-screen message is at most {OSD_MAIL_MAX_TEXT_BYTES} bytes of "
                         "UTF-8").with_id(
            "headend.screen_message_most_bytes_2", osd_mail_max_text_bytes=OSD_MAIL_MAX_TEXT_BYTES)
    start_s = wire_time_s(start, "message start") if start is not None else 0
    return OsdMail(message_id=message_id, priority=priority, start_s=start_s,
                   duration_s=duration_s, text=text)


def fingerprint_order(kind: FingerprintKind, *, duration_s: int = 10, x_pct: int = 90,
                      y_pct: int = 90, start: datetime | None = None) -> Fingerprint:
    """A fingerprint order, its limits checked (UsageError)."""
    if not 1 <= duration_s <= MAX_DISPLAY_S:
        raise UsageError(f"display time {duration_s} s outside 1..{MAX_DISPLAY_S}").with_id(
            "headend.display_time_outside", duration_s=duration_s, max_display_s=MAX_DISPLAY_S)
    for name, v in (("x", x_pct), ("y", y_pct)):
        if not 0 <= v <= 100:
            raise UsageError(f"fingerprint {name} position {v} % outside 0..100").with_id(
                "headend.fingerprint_position_outside", name=name, v=v)
    start_s = wire_time_s(start, "fingerprint start") if start is not None else 0
    return Fingerprint(kind=kind, start_s=start_s, duration_s=duration_s, x_pct=x_pct,
                       y_pct=y_pct)


def sharing_commands(policy: SharingPolicy, *, tuners: int = DEFAULT_TUNERS,
                     rate_tolerance: int = DEFAULT_RATE_TOLERANCE,
                     window_s: int = int(DEFAULT_WINDOW_S),
                     clear: bool = False) -> list[EmmCommand]:
    """The commands of ``cas card sharing-policy`` (docs/sharing.md, "On the card"):
    ``SET_SHARING``, then ``CLEAR_SHARING`` when ``clear``; the limits checked (UsageError)
    against their u8 fields: tuners 1..255, rate tolerance 0..255, window 1..255 s."""
    if not 1 <= tuners <= 0xFF:
        raise UsageError(f"sharing tuners {tuners} outside 1..255").with_id(
            "headend.sharing_tuners_outside", value=tuners)
    if not 0 <= rate_tolerance <= 0xFF:
        raise UsageError(f"sharing rate tolerance {rate_tolerance} outside 0..255").with_id(
            "headend.sharing_rate_tolerance_outside", value=rate_tolerance)
    if not 1 <= window_s <= 0xFF:
        raise UsageError(f"sharing window {window_s} outside 1..255").with_id(
            "headend.sharing_window_outside", value=window_s)
    commands: list[EmmCommand] = [SetSharing(policy=policy, tuners=tuners,
                                             rate_tolerance=rate_tolerance, window_s=window_s)]
    if clear:
        commands.append(ClearSharing())
    return commands


@dataclass(frozen=True, slots=True, kw_only=True)
class OsdTarget:
    """Who gets the EMM: one card, members of a group (all 256 when ``positions`` is
    empty), or every card."""

    serial: int | None = None
    shared_address: int | None = None
    positions: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        if self.serial is not None:
            return "unique"
        return "shared" if self.shared_address is not None else "global"

    @property
    def address(self) -> int:
        """The ``emm_sequences`` address of the target (serial, group, 0 for global)."""
        return self.serial if self.serial is not None else (self.shared_address or 0)

    def emm_address(self) -> EmmAddress:
        if self.serial is not None:
            return UniqueAddress(serial=self.serial)
        if self.shared_address is not None:
            return SharedAddress.of(self.shared_address, self.positions or range(256))
        return GlobalAddress()

    def key(self, keys: OperatorKeys) -> Key:
        if self.serial is not None:
            return keys.cuk(self.serial)
        if self.shared_address is not None:
            return keys.group_key(self.shared_address)
        return keys.global_key()


def command_bytes(commands: Sequence[EmmCommand]) -> bytes:
    """The commands as the plaintext TLV list (e.g. for a global EMM of ``cas emm
    generate`` or the live outbox)."""
    return build_emm_commands(commands)


def osd_emm(keys: OperatorKeys, target: OsdTarget, commands: Sequence[EmmCommand], *,
            seq: int, at: datetime, validity_s: int, rng: Rng = os.urandom) -> bytes:
    """One sealed EMM section carrying ``commands`` to ``target``."""
    if not commands:
        raise UsageError("an OSD EMM needs at least one command").with_id(
            "headend.osd_emm_needs_least")
    header = EmmHeader(address=target.emm_address(), seq=seq,
                       not_after_s=wire_end_s(at, validity_s, "EMM expiry (time + validity)"))
    return seal_emm(target.key(keys), header, list(commands), rng(NONCE_SIZE))
