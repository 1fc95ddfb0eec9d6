"""The card's state area: what the card OS keeps in its EEPROM beyond the card record.

docs/formats.md §2.2.  The EEPROM image is the 631-byte card record (§2), optionally followed
by this area; an image without it (every image written before format 1 of this area, and
every factory image) is a card with the default state: sharing check ``FLAG`` for a 2-tuner
box, no ECM record, an empty mailbox.  The card record itself keeps its layout, so the card
factory's batch files (§4) are unchanged::

    magic "CAST" | version u8 (2; 1 is read too)
    sharing_policy u8 | tuners u8 | rate_tolerance u8 | window_s u8     (cas.sharing)
    flagged u8 | flag_rules u8 (bit 0 services, bit 1 rate) | flag_window_s u32
    flag_services u8 | flag_requests u8 | flag_trips u16                (the evidence)
    ecm_count u8 (<= 32), ecm x count        (channel_id u16, time_s u32), oldest first
    mail_count u8 (<= 8), mail x count       (length u8, OSD_MAIL command value)
    acked_count u8 (<= 64), message_id u16 x count, oldest first
    fingerprint length u8 (0 = none), FINGERPRINT command value
    window_count u8 (<= 3), window x count   (version 2 only: the late-EMM windows)
        kind u8 (EMM table id 82/83/84) | top_seq u32 | mark_count u8 (<= 33) | mark u8 x count
    crc32 u32                                over every byte of the area before it

A version 1 area (written before the windows) reads as one with no window: the card then
knows nothing below its sequence counters and refuses every late EMM until its next applied
one (docs/card.md, "Late command EMMs").  A version this card OS does not know is refused with a :class:`~cas.errors.FormatError`
naming it (``card_state.version``), never read as something else.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Any

import construct as cs

from cas.errors import FormatError
from cas.formats._common import build_struct, check_range, parse_struct
from cas.formats.emm import (
    EmmAddressType,
    EmmTag,
    Fingerprint,
    OsdMail,
    build_emm_commands,
    parse_emm_commands,
)
from cas.sharing import (
    DEFAULT_RATE_TOLERANCE,
    DEFAULT_TUNERS,
    DEFAULT_WINDOW_S,
    SharingPolicy,
    SharingRule,
)

CARD_STATE_MAGIC = b"CAST"
CARD_STATE_VERSION = 2
#: Versions this card OS reads (1: before the late-EMM windows).
CARD_STATE_VERSIONS = (1, 2)
#: ECMs the card remembers for its sharing check (the evidence counts saturate at this).
ECM_RECORD_SLOTS = 32
#: Messages the mailbox holds; a new one beyond this pushes out the lowest priority one.
MAILBOX_SLOTS = 8
#: Acknowledged message ids remembered (a repeated EMM of an older id is ignored).
ACKED_MEMORY = 64

#: Sequence numbers below its newest applied one (per address type) the card remembers as
#: applied or not, so a command EMM that arrives late is still applied once (docs/card.md).
EMM_LATE_WINDOW = 32

_RULE_BITS = {SharingRule.SERVICES: 1, SharingRule.RATE: 2}


class EmmMark(IntFlag):
    """What the card remembers of one sequence number in its late-EMM window: applied or
    not, and which settings that EMM set, so an older EMM applied late does not undo them
    (docs/card.md, "Late command EMMs")."""

    APPLIED = 0x01
    #: SET_SHARING: the sharing policy and the box's tuners
    SHARING = 0x02
    #: PURSE_CREDIT: the purse's credit limit
    CREDIT_LIMIT = 0x04
    #: OSD_MESSAGE, OSD_MAIL: the record's last on-screen text
    OSD_TEXT = 0x08
    #: FINGERPRINT: the one fingerprint order the card holds
    FINGERPRINT = 0x10


#: A sequence number the card knows it has passed without knowing what it carried (its old
#: counter when the window starts): applied, and every setting taken as set by it.
MARK_UNKNOWN = (EmmMark.APPLIED | EmmMark.SHARING | EmmMark.CREDIT_LIMIT | EmmMark.OSD_TEXT
                | EmmMark.FINGERPRINT)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmWindow:
    """The late-EMM window of one address type.  ``marks[i]`` is what the card knows of
    sequence number ``top_seq - i`` (modulo 2^32): ``marks[0]`` the newest applied EMM, an
    empty mark a number not applied; numbers past the end of ``marks`` are unknown (refused
    as old).  At most ``EMM_LATE_WINDOW + 1`` marks."""

    kind: EmmAddressType
    top_seq: int
    marks: tuple[EmmMark, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SharingSettings:
    """What the card does about sharing, and the box it serves (set by EMM ``SET_SHARING``
    or at personalisation)."""

    policy: SharingPolicy = SharingPolicy.FLAG
    tuners: int = DEFAULT_TUNERS
    rate_tolerance: int = DEFAULT_RATE_TOLERANCE
    window_s: int = int(DEFAULT_WINDOW_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class SharingFlag:
    """The card saw more than one box: the first window that broke a rule, and how many
    windows did since the flag was raised."""

    rules: tuple[SharingRule, ...]
    window_s: int
    services: int
    requests: int
    trips: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmSeen:
    """One ECM the card answered: its channel and its own timestamp."""

    channel_id: int
    time_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CardState:
    """The state area (all defaults: an image without one)."""

    sharing: SharingSettings = field(default_factory=SharingSettings)
    flag: SharingFlag | None = None
    ecms: tuple[EcmSeen, ...] = ()
    mails: tuple[OsdMail, ...] = ()
    acked: tuple[int, ...] = ()
    fingerprint: Fingerprint | None = None
    #: one late-EMM window per address type the card has applied an EMM of (any order)
    emm_windows: tuple[EmmWindow, ...] = ()

    def emm_window(self, kind: EmmAddressType) -> EmmWindow | None:
        """The late-EMM window of ``kind``, if the card keeps one."""
        for w in self.emm_windows:
            if w.kind == kind:
                return w
        return None


DEFAULT_CARD_STATE = CardState()

_ECM = cs.Struct("channel_id" / cs.Int16ub, "time_s" / cs.Int32ub)
_KINDS = frozenset(int(k) for k in EmmAddressType)
_WINDOW = cs.Struct(
    "kind" / cs.ExprValidator(cs.Int8ub, lambda o, c: o in _KINDS),
    "top_seq" / cs.Int32ub,
    "marks" / cs.ExprValidator(
        cs.PrefixedArray(cs.Int8ub, cs.ExprValidator(cs.Int8ub, lambda o, c: o <= MARK_UNKNOWN)),
        lambda o, c: len(o) <= EMM_LATE_WINDOW + 1),
)

CARD_STATE_BODY = cs.Struct(
    "magic" / cs.Const(CARD_STATE_MAGIC),
    "version" / cs.ExprValidator(cs.Int8ub, lambda o, c: o in CARD_STATE_VERSIONS),
    "sharing_policy" / cs.ExprValidator(cs.Int8ub, lambda o, c: o in set(SharingPolicy)),
    "tuners" / cs.ExprValidator(cs.Int8ub, lambda o, c: o >= 1),
    "rate_tolerance" / cs.Int8ub,
    "window_s" / cs.ExprValidator(cs.Int8ub, lambda o, c: o >= 1),
    "flagged" / cs.ExprValidator(cs.Int8ub, lambda o, c: o in (0, 1)),
    "flag_rules" / cs.ExprValidator(cs.Int8ub, lambda o, c: o <= 3),
    "flag_window_s" / cs.Int32ub,
    "flag_services" / cs.Int8ub,
    "flag_requests" / cs.Int8ub,
    "flag_trips" / cs.Int16ub,
    "ecms" / cs.ExprValidator(cs.PrefixedArray(cs.Int8ub, _ECM),
                              lambda o, c: len(o) <= ECM_RECORD_SLOTS),
    "mails" / cs.ExprValidator(cs.PrefixedArray(cs.Int8ub, cs.Prefixed(cs.Int8ub,
                                                                       cs.GreedyBytes)),
                               lambda o, c: len(o) <= MAILBOX_SLOTS),
    "acked" / cs.ExprValidator(cs.PrefixedArray(cs.Int8ub, cs.Int16ub),
                               lambda o, c: len(o) <= ACKED_MEMORY),
    "fingerprint" / cs.Prefixed(cs.Int8ub, cs.GreedyBytes),
    "windows" / cs.If(cs.this.version >= 2, cs.ExprValidator(
        cs.PrefixedArray(cs.Int8ub, _WINDOW),
        lambda o, c: len({w["kind"] for w in o}) == len(o))),
)
CARD_STATE = cs.Struct(
    "body" / cs.RawCopy(CARD_STATE_BODY),
    "crc32" / cs.Checksum(cs.Int32ub, lambda data: zlib.crc32(data), cs.this.body.data),
    cs.Terminated,
)
"""The card's state area, docs/formats.md §2.2: RawCopy(body) + CRC-32 over the body."""


def _value(command: OsdMail | Fingerprint, path: str) -> bytes:
    try:
        return build_emm_commands([command])[2:]
    except FormatError as exc:
        raise FormatError(str(exc), path=path).with_id(
            "formats.within", field=path, inner=exc) from exc


def _command(tag: EmmTag, value: bytes, path: str) -> OsdMail | Fingerprint:
    try:
        cmd = parse_emm_commands(bytes((tag, len(value))) + value)[0]
    except FormatError as exc:
        raise FormatError("not a valid command value", path=path).with_id(
            "formats.not_valid_command_value", field=path) from exc
    assert isinstance(cmd, OsdMail | Fingerprint)
    return cmd


def build_card_state(state: CardState) -> bytes:
    """The state area's bytes (``FormatError`` naming the field that does not fit).  The
    card writes it with every applied EMM, so the bytes come from the ``struct`` fast path
    below; a state it cannot vouch for goes through the declaration, which raises exactly
    as before (``tests/unit/formats/test_cardstate.py`` proves the two equal)."""
    body = _checked_body(state)
    fast = _build_fast(body)
    return fast if fast is not None else _build_declared(body)


def build_card_state_declared(state: CardState) -> bytes:
    """:func:`build_card_state` through the construct declaration alone (for the tests)."""
    return _build_declared(_checked_body(state))


def _build_declared(body: dict[str, Any]) -> bytes:
    return build_struct(CARD_STATE, dict(body=dict(value=body), crc32=None), "card_state")


_HEAD = struct.Struct(">4sBBBBBBBIBBH")
_ECM_FAST = struct.Struct(">HI")
_WINDOW_HEAD = struct.Struct(">BIB")
_POLICIES = frozenset(int(p) for p in SharingPolicy)


def _build_fast(b: dict[str, Any]) -> bytes | None:
    """The bytes of a checked body with ``struct``, or None when a validator of
    :data:`CARD_STATE_BODY` would refuse it (then the declaration raises)."""
    mails: list[bytes] = b["mails"]
    fingerprint: bytes = b["fingerprint"]
    windows: list[dict[str, Any]] = b["windows"]
    if (b["sharing_policy"] not in _POLICIES or b["tuners"] < 1 or b["window_s"] < 1
            or any(len(v) > 0xFF for v in mails) or len(fingerprint) > 0xFF
            or any(w["kind"] not in _KINDS or not all(0 <= m <= MARK_UNKNOWN for m in w["marks"])
                   for w in windows)):
        return None
    ecms: list[dict[str, int]] = b["ecms"]
    acked: list[int] = b["acked"]
    parts = [
        _HEAD.pack(CARD_STATE_MAGIC, b["version"], b["sharing_policy"], b["tuners"],
                   b["rate_tolerance"], b["window_s"], b["flagged"], b["flag_rules"],
                   b["flag_window_s"], b["flag_services"], b["flag_requests"], b["flag_trips"]),
        bytes((len(ecms),)),
        *(_ECM_FAST.pack(e["channel_id"], e["time_s"]) for e in ecms),
        bytes((len(mails),)),
        *(bytes((len(v),)) + v for v in mails),
        bytes((len(acked),)), struct.pack(f">{len(acked)}H", *acked),
        bytes((len(fingerprint),)), fingerprint,
        bytes((len(windows),)),
        *(_WINDOW_HEAD.pack(w["kind"], w["top_seq"], len(w["marks"])) + bytes(w["marks"])
          for w in windows),
    ]
    data = b"".join(parts)
    return data + zlib.crc32(data).to_bytes(4, "big")


def _checked_body(state: CardState) -> dict[str, Any]:
    """The checks the declaration cannot word (each naming its field), then the body as
    :data:`CARD_STATE_BODY` takes it."""
    p = "card_state"
    s, flag = state.sharing, state.flag
    for name in ("tuners", "rate_tolerance", "window_s"):
        check_range(getattr(s, name), 8, f"{p}.{name}")
    if len(state.ecms) > ECM_RECORD_SLOTS:
        raise FormatError(f"at most {ECM_RECORD_SLOTS} ECMs", path=f"{p}.ecms").with_id(
            "formats.most_ecm_records", field=f"{p}.ecms", ecm_record_slots=ECM_RECORD_SLOTS)
    if len(state.mails) > MAILBOX_SLOTS:
        raise FormatError(f"at most {MAILBOX_SLOTS} messages", path=f"{p}.mails").with_id(
            "formats.most_mails", field=f"{p}.mails", mailbox_slots=MAILBOX_SLOTS)
    if len(state.acked) > ACKED_MEMORY:
        raise FormatError(f"at most {ACKED_MEMORY} acknowledged ids", path=f"{p}.acked").with_id(
            "formats.most_acked", field=f"{p}.acked", acked_memory=ACKED_MEMORY)
    if flag is not None:
        check_range(flag.window_s, 32, f"{p}.flag_window_s")
        check_range(flag.services, 8, f"{p}.flag_services")
        check_range(flag.requests, 8, f"{p}.flag_requests")
        check_range(flag.trips, 16, f"{p}.flag_trips")
    for i, e in enumerate(state.ecms):
        check_range(e.channel_id, 16, f"{p}.ecms[{i}].channel_id")
        check_range(e.time_s, 32, f"{p}.ecms[{i}].time_s")
    for i, m in enumerate(state.acked):
        check_range(m, 16, f"{p}.acked[{i}]")
    if len({w.kind for w in state.emm_windows}) != len(state.emm_windows):
        raise FormatError("one window per address type", path=f"{p}.windows").with_id(
            "formats.one_window_per_kind", field=f"{p}.windows")
    for i, w in enumerate(state.emm_windows):
        check_range(w.top_seq, 32, f"{p}.windows[{i}].top_seq")
        if len(w.marks) > EMM_LATE_WINDOW + 1:
            raise FormatError(f"at most {EMM_LATE_WINDOW + 1} marks",
                              path=f"{p}.windows[{i}].marks").with_id(
                "formats.most_window_marks", field=f"{p}.windows[{i}].marks",
                count=EMM_LATE_WINDOW + 1)
    body = dict(
        version=CARD_STATE_VERSION,
        sharing_policy=int(s.policy), tuners=s.tuners, rate_tolerance=s.rate_tolerance,
        window_s=s.window_s, flagged=int(flag is not None),
        flag_rules=sum(_RULE_BITS[r] for r in flag.rules) if flag else 0,
        flag_window_s=flag.window_s if flag else 0,
        flag_services=flag.services if flag else 0,
        flag_requests=flag.requests if flag else 0,
        flag_trips=flag.trips if flag else 0,
        ecms=[dict(channel_id=e.channel_id, time_s=e.time_s) for e in state.ecms],
        mails=[_value(m, f"{p}.mails[{i}]") for i, m in enumerate(state.mails)],
        acked=list(state.acked),
        fingerprint=(_value(state.fingerprint, f"{p}.fingerprint")
                     if state.fingerprint is not None else b""),
        windows=[dict(kind=int(w.kind), top_seq=w.top_seq, marks=[int(m) for m in w.marks])
                 for w in state.emm_windows],
    )
    return body


def parse_card_state(data: bytes) -> CardState:
    """The state area (``FormatError``/``ChecksumError`` naming the field when it is not
    one this card OS wrote)."""
    data = bytes(data)
    if data[:4] == CARD_STATE_MAGIC and len(data) > 4 and data[4] not in CARD_STATE_VERSIONS:
        raise FormatError(f"version {data[4]} is not supported (this card OS reads version "
                          f"{CARD_STATE_VERSION})", path="card_state.version").with_id(
            "formats.card_state_version", field="card_state.version", version=data[4],
            supported=CARD_STATE_VERSION)
    c = parse_struct(CARD_STATE, data, "card_state").body.value
    flag = None
    if c.flagged:
        flag = SharingFlag(rules=tuple(r for r, bit in _RULE_BITS.items() if c.flag_rules & bit),
                           window_s=c.flag_window_s, services=c.flag_services,
                           requests=c.flag_requests, trips=c.flag_trips)
    mails = []
    for i, v in enumerate(c.mails):
        mail = _command(EmmTag.OSD_MAIL, v, f"card_state.mails[{i}]")
        assert isinstance(mail, OsdMail)
        mails.append(mail)
    fingerprint = None
    if c.fingerprint:
        fp = _command(EmmTag.FINGERPRINT, c.fingerprint, "card_state.fingerprint")
        assert isinstance(fp, Fingerprint)
        fingerprint = fp
    return CardState(
        sharing=SharingSettings(policy=SharingPolicy(c.sharing_policy), tuners=c.tuners,
                                rate_tolerance=c.rate_tolerance, window_s=c.window_s),
        flag=flag,
        ecms=tuple(EcmSeen(channel_id=e.channel_id, time_s=e.time_s) for e in c.ecms),
        mails=tuple(mails), acked=tuple(c.acked), fingerprint=fingerprint,
        emm_windows=tuple(EmmWindow(kind=EmmAddressType(w.kind), top_seq=w.top_seq,
                                    marks=tuple(EmmMark(m) for m in w.marks))
                          for w in (c.windows or ())))


def describe_card_state(state: CardState) -> dict[str, object]:
    """JSON-able tree for ``cas decode`` of a card image with a state area."""
    s, flag = state.sharing, state.flag
    return {
        "sharing": {"policy": s.policy.name, "tuners": s.tuners,
                    "rate_tolerance": s.rate_tolerance, "window_s": s.window_s},
        "sharing_flag": None if flag is None else {
            "rules": [r.value for r in flag.rules], "window_s": flag.window_s,
            "services": flag.services, "requests": flag.requests, "trips": flag.trips},
        "ecms": [{"channel_id": e.channel_id, "time_s": e.time_s} for e in state.ecms],
        "mails": [{"message_id": m.message_id, "priority": m.priority, "start_s": m.start_s,
                   "duration_s": m.duration_s, "text": m.text} for m in state.mails],
        "acked": list(state.acked),
        "fingerprint": None if state.fingerprint is None else {
            "kind": state.fingerprint.kind.name, "start_s": state.fingerprint.start_s,
            "duration_s": state.fingerprint.duration_s, "x_pct": state.fingerprint.x_pct,
            "y_pct": state.fingerprint.y_pct},
        "emm_windows": [{"kind": w.kind.name, "top_seq": w.top_seq,
                         "marks": [int(m) for m in w.marks]} for w in state.emm_windows],
    }
