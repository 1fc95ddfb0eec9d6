"""EMM sections: the clear header (unique / shared with member bitmap / global) and the
plaintext command TLV list that ``cas.messages`` seals with AES-GCM.

Byte layout in ``docs/formats.md`` §5.  An EMM is a short MPEG-2 private section (no CRC,
≤ 256 bytes)::

    table_id            u8     0x82 unique, 0x83 shared, 0x84 global
    flags|section_length u16   0 1 11 + 12-bit length
    address                    unique: serial u32 | shared: shared_address u24 + members[32]
                               | global: nothing
    seq                 u32    per address kind, newer = ahead by 1..SEQ_WINDOW modulo 2^32
    not_after_s         u32    the card ignores the EMM after this time
    nonce               12     AES-GCM nonce
    sealed body                AES-GCM(commands) || tag16; the AAD is every byte before it

Table ids 0x85–0x8F are EMMs too (ETSI TR 101 211 CA_message_section range) but are not used
by this CAS: :func:`parse_emm_section` returns them as :class:`ForeignEmm` (raw bytes kept).

The plaintext commands are ``tag u8 | length u8 | value``; unknown tags are kept as
:class:`UnknownCommand`, never dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import construct as cs

from cas.access import CardStatus
from cas.errors import FormatError
from cas.formats._common import (
    MAX_CA_SECTION_LENGTH,
    build_struct,
    ca_section_clear,
    check_len,
    check_range,
    key_summary,
    parse_ca_section,
    parse_struct,
)
from cas.sharing import SharingPolicy

NONCE_SIZE = 12
TAG_SIZE = 16
MEMBER_BITMAP_SIZE = 32  # 256 member positions, one bit each
EMM_TABLE_IDS = range(0x82, 0x90)

# --- sequence numbers (docs/card.md §4 "Sequence numbers") -----------------------------------
#: ``seq`` is a u32 on the wire and compared in serial-number arithmetic (RFC 1982 style), so
#: the space has no end: after 2^32 - 1 the head-end goes on with 0, 1, ...
SEQ_MODULUS = 1 << 32
#: The card applies an EMM only if its ``seq`` is ahead of the last applied one (same address
#: kind) by 1 to SEQ_WINDOW.  Further ahead is refused like a replay (9811): one authentic EMM
#: with a far-off number (a head-end fault, 2^32 - 1 on a new card) cannot make the card refuse
#: every later EMM.  2^24 EMMs of one kind missed in a row is far beyond what a card can miss
#: while its EMMs are still valid (``not_after_s``), and far below half the space.
SEQ_WINDOW = 1 << 24


def seq_ahead(seq: int, last: int) -> int:
    """How far ``seq`` is ahead of ``last`` in the u32 sequence space (0 .. 2^32 - 1)."""
    return (seq - last) % SEQ_MODULUS


def seq_is_newer(seq: int, last: int) -> bool:
    """The card's rule: ``seq`` follows ``last`` by 1 to :data:`SEQ_WINDOW` (modulo 2^32)."""
    return 1 <= seq_ahead(seq, last) <= SEQ_WINDOW


def wire_seq(counter: int) -> int:
    """The u32 ``seq`` to send for the head-end's (unbounded) counter value: it wraps."""
    return counter % SEQ_MODULUS


class EmmAddressType(IntEnum):
    """Address kind = table_id of the section."""

    UNIQUE = 0x82
    SHARED = 0x83
    GLOBAL = 0x84


# --- addresses -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class UniqueAddress:
    """One card, by serial (= unique address)."""

    serial: int

    @property
    def address_type(self) -> EmmAddressType:
        return EmmAddressType.UNIQUE


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedAddress:
    """Members of one group: bit ``p`` of ``members`` (byte ``p // 8``, MSB first) set means
    the card at position ``p`` of group ``shared_address`` is addressed."""

    shared_address: int
    members: bytes = bytes(MEMBER_BITMAP_SIZE)

    @property
    def address_type(self) -> EmmAddressType:
        return EmmAddressType.SHARED

    @classmethod
    def of(cls, shared_address: int, positions: Any) -> SharedAddress:
        """Address the given member positions (0..255) of a group."""
        bitmap = bytearray(MEMBER_BITMAP_SIZE)
        for p in positions:
            check_range(p, 8, "shared_address.members")
            bitmap[p >> 3] |= 0x80 >> (p & 7)
        return cls(shared_address=shared_address, members=bytes(bitmap))

    def includes(self, position: int) -> bool:
        """Is member ``position`` addressed?"""
        return 0 <= position < 256 and bool(self.members[position >> 3] & (0x80 >> (position & 7)))

    def positions(self) -> list[int]:
        return [p for p in range(256) if self.includes(p)]


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalAddress:
    """Every card of the operator."""

    @property
    def address_type(self) -> EmmAddressType:
        return EmmAddressType.GLOBAL


EmmAddress = UniqueAddress | SharedAddress | GlobalAddress


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmHeader:
    """The clear (authenticated, not encrypted) part of an EMM."""

    address: EmmAddress
    seq: int
    not_after_s: int
    nonce: bytes = bytes(NONCE_SIZE)

    @property
    def table_id(self) -> int:
        return int(self.address.address_type)


@dataclass(frozen=True, slots=True, kw_only=True)
class Emm:
    """A parsed EMM section: header + sealed body (ciphertext || 16-byte tag)."""

    header: EmmHeader
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignEmm:
    """An EMM section with a table id (0x85–0x8F) this CAS does not use; kept raw."""

    table_id: int
    section: bytes = field(repr=False)


# --- commands --------------------------------------------------------------------------------
class EmmTag(IntEnum):
    """Tags of the plaintext command TLVs (docs/formats.md §5.3)."""

    ADD_ENTITLEMENT = 0x01
    REMOVE_ENTITLEMENT = 0x02
    CLEAR_ENTITLEMENTS = 0x03
    SET_STATUS = 0x04
    SET_REGION = 0x05
    SET_MATURITY = 0x06
    RESET_PIN = 0x07
    PAIR = 0x08
    ECM_KEY_UPDATE = 0x09
    OSD_MESSAGE = 0x0A
    # pay-per-view (docs/ppv.md)
    PPV_EVENT_RIGHT = 0x10
    PURSE_CREDIT = 0x11
    PPV_REPORT_ACK = 0x12
    # on-screen messages and fingerprints (docs/osd.md)
    OSD_MAIL = 0x20
    FINGERPRINT = 0x21
    # card-sharing detection on the card (docs/sharing.md)
    SET_SHARING = 0x30
    CLEAR_SHARING = 0x31


class FingerprintKind(IntEnum):
    """Overt: the card serial as text; covert: the block pattern of
    :mod:`cas.formats.fingerprint` (docs/osd.md §3)."""

    OVERT = 1
    COVERT = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class AddEntitlement:
    package_id: int
    start_s: int
    end_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveEntitlement:
    package_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearEntitlements:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SetStatus:
    status: CardStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRegion:
    region: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMaturity:
    maturity_limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetPin:
    pin_hash: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    """Pair the card with a chip: the CWPK in clear (inside the sealed body) and the blob
    Enc(CSK, CWPK) the card hands to the STB."""

    chip_id: int
    cwpk: bytes = field(repr=False)
    chip_blob: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmKeyUpdate:
    index: int
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class OsdMessage:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PpvEventRight:
    """A pre-booked pay-per-view event: the card may open ``event_id`` on ``channel_id``
    from ``start_s`` to ``end_s`` without buying it."""

    event_id: int
    channel_id: int
    start_s: int
    end_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PurseCredit:
    """Load ``tokens`` into the card's IPPV purse and set its credit limit (tokens the purse
    may go below zero)."""

    tokens: int
    credit_limit_tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PpvReportAck:
    """The head-end has billed every purchase up to ``up_to_purchase_seq``: the card may
    forget those records."""

    up_to_purchase_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OsdMail:
    """An on-screen message for the box's mailbox (docs/osd.md §1): shown once, highest
    ``priority`` first, from ``start_s`` (0: at once) for ``duration_s`` seconds, then
    acknowledged on the card by ``message_id``."""

    message_id: int
    priority: int
    start_s: int
    duration_s: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    """Show the card serial on screen (docs/osd.md §2): overt at ``x_pct``/``y_pct`` of the
    picture, covert in the corner nearest to it; from ``start_s`` (0: at once) for
    ``duration_s`` seconds."""

    kind: FingerprintKind
    start_s: int
    duration_s: int
    x_pct: int
    y_pct: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSharing:
    """The card's sharing check (docs/sharing.md): what it does when it sees more than one
    box (``policy``), and the box it serves (``tuners``, ``rate_tolerance`` extra requests
    per tuner, in windows of ``window_s`` seconds)."""

    policy: SharingPolicy
    tuners: int
    rate_tolerance: int
    window_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearSharing:
    """Forget the sharing flag and the ECM record (the operator has cleared the card)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownCommand:
    """A TLV with a tag this version does not know; kept so it can be shown and re-built."""

    tag: int
    value: bytes = field(repr=False)


EmmCommand = (
    AddEntitlement | RemoveEntitlement | ClearEntitlements | SetStatus | SetRegion | SetMaturity
    | ResetPin | Pair | EcmKeyUpdate | OsdMessage | PpvEventRight | PurseCredit | PpvReportAck
    | OsdMail | Fingerprint | SetSharing | ClearSharing | UnknownCommand
)  # fmt: skip

_VALID_STATUS = frozenset(int(s) for s in CardStatus)
_VALID_FP_KIND = frozenset(int(k) for k in FingerprintKind)
_VALID_SHARING_POLICY = frozenset(int(p) for p in SharingPolicy)

# value layouts, one per tag; Terminated makes a TLV whose length disagrees an error
COMMAND_VALUES: dict[int, cs.Construct] = {
    EmmTag.ADD_ENTITLEMENT: cs.Struct(
        "package_id" / cs.Int16ub, "start_s" / cs.Int32ub, "end_s" / cs.Int32ub, cs.Terminated
    ),
    EmmTag.REMOVE_ENTITLEMENT: cs.Struct("package_id" / cs.Int16ub, cs.Terminated),
    EmmTag.CLEAR_ENTITLEMENTS: cs.Struct(cs.Terminated),
    EmmTag.SET_STATUS: cs.Struct(
        "status" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj in _VALID_STATUS),
        cs.Terminated,
    ),
    EmmTag.SET_REGION: cs.Struct("region" / cs.Int16ub, cs.Terminated),
    EmmTag.SET_MATURITY: cs.Struct("maturity_limit" / cs.Int8ub, cs.Terminated),
    EmmTag.RESET_PIN: cs.Struct("pin_hash" / cs.Bytes(16), cs.Terminated),
    EmmTag.PAIR: cs.Struct(
        "chip_id" / cs.Int32ub, "cwpk" / cs.Bytes(16), "chip_blob" / cs.Bytes(24), cs.Terminated
    ),
    EmmTag.ECM_KEY_UPDATE: cs.Struct("index" / cs.Int8ub, "key" / cs.Bytes(16), cs.Terminated),
    EmmTag.OSD_MESSAGE: cs.Struct("text" / cs.GreedyString("utf8")),
    EmmTag.PPV_EVENT_RIGHT: cs.Struct(
        "event_id" / cs.Int32ub, "channel_id" / cs.Int16ub, "start_s" / cs.Int32ub,
        "end_s" / cs.Int32ub, cs.Terminated,
    ),
    EmmTag.PURSE_CREDIT: cs.Struct(
        "tokens" / cs.Int32ub, "credit_limit_tokens" / cs.Int32ub, cs.Terminated
    ),
    EmmTag.PPV_REPORT_ACK: cs.Struct("up_to_purchase_seq" / cs.Int32ub, cs.Terminated),
    EmmTag.OSD_MAIL: cs.Struct(
        "message_id" / cs.Int16ub, "priority" / cs.Int8ub, "start_s" / cs.Int32ub,
        "duration_s" / cs.Int16ub, "text" / cs.GreedyString("utf8"),
    ),
    EmmTag.FINGERPRINT: cs.Struct(
        "kind" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj in _VALID_FP_KIND),
        "start_s" / cs.Int32ub, "duration_s" / cs.Int16ub,
        "x_pct" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj <= 100),
        "y_pct" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj <= 100),
        cs.Terminated,
    ),
    EmmTag.SET_SHARING: cs.Struct(
        "policy" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj in _VALID_SHARING_POLICY),
        "tuners" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj >= 1),
        "rate_tolerance" / cs.Int8ub,
        "window_s" / cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj >= 1),
        cs.Terminated,
    ),
    EmmTag.CLEAR_SHARING: cs.Struct(cs.Terminated),
}

_CLASSES: dict[int, type] = {
    EmmTag.ADD_ENTITLEMENT: AddEntitlement,
    EmmTag.REMOVE_ENTITLEMENT: RemoveEntitlement,
    EmmTag.CLEAR_ENTITLEMENTS: ClearEntitlements,
    EmmTag.SET_STATUS: SetStatus,
    EmmTag.SET_REGION: SetRegion,
    EmmTag.SET_MATURITY: SetMaturity,
    EmmTag.RESET_PIN: ResetPin,
    EmmTag.PAIR: Pair,
    EmmTag.ECM_KEY_UPDATE: EcmKeyUpdate,
    EmmTag.OSD_MESSAGE: OsdMessage,
    EmmTag.PPV_EVENT_RIGHT: PpvEventRight,
    EmmTag.PURSE_CREDIT: PurseCredit,
    EmmTag.PPV_REPORT_ACK: PpvReportAck,
    EmmTag.OSD_MAIL: OsdMail,
    EmmTag.FINGERPRINT: Fingerprint,
    EmmTag.SET_SHARING: SetSharing,
    EmmTag.CLEAR_SHARING: ClearSharing,
}
_TAGS: dict[type, int] = {cls: tag for tag, cls in _CLASSES.items()}
_FIELDS: dict[int, tuple[str, ...]] = {
    tag: tuple(f.name for f in dataclasses.fields(cls)) for tag, cls in _CLASSES.items()
}


def parse_emm_commands(data: bytes) -> list[EmmCommand]:
    """Parse the plaintext TLV list (docs/formats.md §5.3)."""
    data = bytes(data)
    out: list[EmmCommand] = []
    pos = 0
    while pos < len(data):
        path = f"emm.commands[{len(out)}]"
        if pos + 2 > len(data):
            raise FormatError("truncated TLV header", path=path).with_id(
                "formats.truncated_tlv_header", field=path)
        tag, length = data[pos], data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise FormatError(f"length {length} but {len(value)} bytes left", path=f"{path}.length").with_id(
                "formats.length_but_bytes_left", field=f"{path}.length", length=length,
                n=len(value))
        pos += 2 + length
        schema = COMMAND_VALUES.get(tag)
        if schema is None:
            out.append(UnknownCommand(tag=tag, value=value))
            continue
        c = parse_struct(schema, value, f"{path}.{EmmTag(tag).name.lower()}")
        kwargs = {name: c[name] for name in _FIELDS[tag]}
        if tag == EmmTag.SET_STATUS:
            kwargs["status"] = CardStatus(kwargs["status"])
        elif tag == EmmTag.FINGERPRINT:
            kwargs["kind"] = FingerprintKind(kwargs["kind"])
        elif tag == EmmTag.SET_SHARING:
            kwargs["policy"] = SharingPolicy(kwargs["policy"])
        out.append(_CLASSES[tag](**kwargs))
    return out


def _command_value(cmd: EmmCommand, path: str) -> tuple[int, bytes]:
    if isinstance(cmd, UnknownCommand):
        check_range(cmd.tag, 8, f"{path}.tag")
        if cmd.tag in _CLASSES:
            raise FormatError(f"tag {cmd.tag:#04x} is a known command", path=f"{path}.tag").with_id(
                "formats.tag_known_command", field=f"{path}.tag", tag=f"{cmd.tag:#04x}")
        if not isinstance(cmd.value, bytes | bytearray):
            raise FormatError("value must be bytes", path=f"{path}.value").with_id(
                "formats.value_bytes", field=f"{path}.value")
        return cmd.tag, bytes(cmd.value)
    tag = _TAGS.get(type(cmd))
    if tag is None:
        raise FormatError(f"not an EMM command: {type(cmd).__name__}", path=path).with_id(
            "formats.not_emm_command", field=path, name__=type(cmd).__name__)
    values = {name: getattr(cmd, name) for name in _FIELDS[tag]}
    if tag == EmmTag.SET_STATUS and values["status"] not in _VALID_STATUS:
        raise FormatError(f"unknown card status {values['status']!r}", path=f"{path}.status").with_id(
            "formats.unknown_card_status", field=f"{path}.status", values=f"{values['status']!r}")
    for name in ("pin_hash", "cwpk", "key", "chip_blob"):
        if name in values:  # Bytes(n) would pad/complain less clearly
            check_len(values[name], 24 if name == "chip_blob" else 16, f"{path}.{name}")
    if tag in (EmmTag.OSD_MESSAGE, EmmTag.OSD_MAIL) and not isinstance(values["text"], str):
        raise FormatError("text must be str", path=f"{path}.text").with_id(
            "formats.text_str", field=f"{path}.text")
    if tag == EmmTag.SET_STATUS:
        values["status"] = int(values["status"])
    if tag == EmmTag.FINGERPRINT:
        if values["kind"] not in _VALID_FP_KIND:
            raise FormatError(f"unknown fingerprint kind {values['kind']!r}", path=f"{path}.kind").with_id(
                "formats.unknown_fingerprint_kind", field=f"{path}.kind",
                values=f"{values['kind']!r}")
        values["kind"] = int(values["kind"])
        for name in ("x_pct", "y_pct"):
            if not 0 <= values[name] <= 100:
                raise FormatError(f"{values[name]} is not 0..100", path=f"{path}.{name}").with_id(
                    "formats.not", field=f"{path}.{name}", values=values[name])
    if tag == EmmTag.SET_SHARING:
        if values["policy"] not in _VALID_SHARING_POLICY:
            raise FormatError(f"unknown sharing policy {values['policy']!r}",
                              path=f"{path}.policy").with_id(
                "formats.unknown_sharing_policy", field=f"{path}.policy",
                values=f"{values['policy']!r}")
        values["policy"] = int(values["policy"])
        for name, low in (("tuners", 1), ("rate_tolerance", 0), ("window_s", 1)):
            if not low <= values[name] <= 0xFF:
                raise FormatError(f"{values[name]} is not {low}..255",
                                  path=f"{path}.{name}").with_id(
                    "formats.not_u8_from", field=f"{path}.{name}", value=values[name], low=low)
    return tag, build_struct(COMMAND_VALUES[tag], values, f"{path}.{EmmTag(tag).name.lower()}")


def build_emm_commands(commands: Any) -> bytes:
    """Encode commands as the plaintext TLV list."""
    out = bytearray()
    for i, cmd in enumerate(commands):
        tag, value = _command_value(cmd, f"emm.commands[{i}]")
        if len(value) > 255:
            raise FormatError(
                f"value of {len(value)} bytes > 255", path=f"emm.commands[{i}].length"
            ).with_id("formats.value_bytes_2", field=f"emm.commands[{i}].length", n=len(value))
        out += bytes((tag, len(value))) + value
    return bytes(out)


# --- header / section ------------------------------------------------------------------------
_TAIL = (
    "seq" / cs.Int32ub,
    "not_after_s" / cs.Int32ub,
    "nonce" / cs.Bytes(NONCE_SIZE),
)
EMM_HEADERS: dict[int, cs.Struct] = {
    EmmAddressType.UNIQUE: cs.Struct("serial" / cs.Int32ub, *_TAIL),
    EmmAddressType.SHARED: cs.Struct(
        "shared_address" / cs.Int24ub, "members" / cs.Bytes(MEMBER_BITMAP_SIZE), *_TAIL
    ),
    EmmAddressType.GLOBAL: cs.Struct(*_TAIL),
}
"""Clear header after the 3-byte section header, per address type (docs/formats.md §5.1)."""


def emm_header_size(address_type: EmmAddressType) -> int:
    """Bytes of the clear header after the 3-byte section header."""
    return int(EMM_HEADERS[address_type].sizeof())


def max_emm_plaintext(address_type: EmmAddressType) -> int:
    """Largest command TLV list that still fits a 256-byte section."""
    return MAX_CA_SECTION_LENGTH - emm_header_size(address_type) - TAG_SIZE


def _header_fields(header: EmmHeader) -> dict[str, Any]:
    a = header.address
    out: dict[str, Any] = dict(seq=header.seq, not_after_s=header.not_after_s, nonce=header.nonce)
    if isinstance(a, UniqueAddress):
        check_range(a.serial, 32, "emm.serial")
        out["serial"] = a.serial
    elif isinstance(a, SharedAddress):
        check_range(a.shared_address, 24, "emm.shared_address")
        check_len(a.members, MEMBER_BITMAP_SIZE, "emm.members")
        out.update(shared_address=a.shared_address, members=a.members)
    elif not isinstance(a, GlobalAddress):
        raise FormatError(f"not an EMM address: {type(a).__name__}", path="emm.address").with_id(
            "formats.emm_address_not_emm", name__=type(a).__name__)
    return out


def emm_clear_bytes(header: EmmHeader, body_length: int) -> bytes:
    """Section header + clear header for a body of ``body_length`` bytes: the AEAD's AAD."""
    if not isinstance(header, EmmHeader):
        raise FormatError(f"expected EmmHeader, got {type(header).__name__}", path="emm.header").with_id(
            "formats.emm_header_expected_emmheader", name__=type(header).__name__)
    check_range(header.seq, 32, "emm.seq")
    check_range(header.not_after_s, 32, "emm.not_after_s")
    check_len(header.nonce, NONCE_SIZE, "emm.nonce")
    fields = _header_fields(header)
    clear = build_struct(EMM_HEADERS[header.address.address_type], fields, "emm")
    if body_length < TAG_SIZE:
        raise FormatError(f"sealed body shorter than the {TAG_SIZE}-byte tag", path="emm.body").with_id(
            "formats.emm_body_sealed_body", tag_size=TAG_SIZE)
    return ca_section_clear(header.table_id, clear, body_length, "emm",
                            f"{max_emm_plaintext(header.address.address_type)} bytes of commands")


def build_emm(emm: Emm) -> bytes:
    """Section bytes of an EMM (header + already sealed body)."""
    if not isinstance(emm.body, bytes | bytearray):
        raise FormatError("body must be bytes", path="emm.body").with_id(
            "formats.emm_body_body_bytes")
    return emm_clear_bytes(emm.header, len(emm.body)) + bytes(emm.body)


def build_foreign_emm(emm: ForeignEmm) -> bytes:
    """A foreign EMM is rebuilt from its raw bytes."""
    return bytes(emm.section)


def parse_emm_section(data: bytes) -> Emm | ForeignEmm:
    """Parse any EMM section (table id 0x82–0x8F).  Other table ids: FormatError."""
    data = bytes(data)
    if not data:
        raise FormatError("empty section", path="emm").with_id("formats.emm_empty_section")
    table_id = data[0]
    if table_id not in EMM_TABLE_IDS:
        raise FormatError(f"table_id {table_id:#04x} is not an EMM (0x82-0x8F)", path="emm.table_id").with_id(
            "formats.emm_table_id_table", table_id=f"{table_id:#04x}")
    if table_id not in EmmAddressType._value2member_map_:
        parse_ca_section(data, "emm", strict_flags=False)
        return ForeignEmm(table_id=table_id, section=data)
    _, payload = parse_ca_section(data, "emm")
    address_type = EmmAddressType(table_id)
    schema = EMM_HEADERS[address_type]
    size = int(schema.sizeof())
    if len(payload) < size + TAG_SIZE:
        raise FormatError(
            f"{len(payload)} bytes after the section header, need at least {size + TAG_SIZE}",
            path="emm.body",
        ).with_id("formats.emm_body_bytes_after", n=len(payload), value=size + TAG_SIZE)
    c = parse_struct(schema, payload[:size], "emm")
    address: EmmAddress
    if address_type is EmmAddressType.UNIQUE:
        address = UniqueAddress(serial=c.serial)
    elif address_type is EmmAddressType.SHARED:
        address = SharedAddress(shared_address=c.shared_address, members=c.members)
    else:
        address = GlobalAddress()
    header = EmmHeader(address=address, seq=c.seq, not_after_s=c.not_after_s, nonce=c.nonce)
    return Emm(header=header, body=payload[size:])


def parse_emm(data: bytes) -> Emm:
    """Parse an EMM of this CAS (table id 0x82–0x84); foreign EMM table ids are a FormatError."""
    emm = parse_emm_section(data)
    if isinstance(emm, ForeignEmm):
        raise FormatError(
            f"EMM table_id {emm.table_id:#04x} is not used by this CAS", path="emm.table_id"
        ).with_id("formats.emm_table_id_emm", table_id=f"{emm.table_id:#04x}")
    return emm


def emm_aad(section: bytes, emm: Emm) -> bytes:
    """The AAD of a parsed EMM: every section byte before the sealed body."""
    return bytes(section[: len(section) - len(emm.body)])


# --- describe ---------------------------------------------------------------------------------
def _describe_address(a: EmmAddress) -> dict[str, Any]:
    if isinstance(a, UniqueAddress):
        return {"type": "UNIQUE", "serial": f"{a.serial:010d}"}
    if isinstance(a, SharedAddress):
        return {
            "type": "SHARED",
            "shared_address": a.shared_address,
            "members": a.positions(),
        }
    return {"type": "GLOBAL"}


def describe_command(cmd: EmmCommand) -> dict[str, Any]:
    """One command as a JSON-able dict; CWPK / ECM keys / PIN hash as length + fingerprint."""
    if isinstance(cmd, UnknownCommand):
        return {"command": "UNKNOWN", "tag": f"0x{cmd.tag:02X}", "value": cmd.value.hex()}
    out: dict[str, Any] = {"command": EmmTag(_TAGS[type(cmd)]).name}
    for name in _FIELDS[_TAGS[type(cmd)]]:
        v = getattr(cmd, name)
        if isinstance(v, CardStatus | FingerprintKind | SharingPolicy):
            out[name] = v.name
        elif isinstance(v, bytes):
            out[name] = key_summary(v)
        elif name == "chip_id":
            out[name] = f"{v:08X}"
        else:
            out[name] = v
    return out


def describe(obj: Any) -> dict[str, Any]:
    """JSON-able tree for ``cas decode``: an :class:`Emm`, :class:`ForeignEmm`,
    :class:`EmmHeader`, a command, or a list of commands."""
    if isinstance(obj, Emm):
        return {**describe(obj.header), "sealed_length": len(obj.body)}
    if isinstance(obj, EmmHeader):
        return {
            "type": "emm",
            "table_id": f"0x{obj.table_id:02X}",
            "address": _describe_address(obj.address),
            "seq": obj.seq,
            "not_after_s": obj.not_after_s,
            "nonce": obj.nonce.hex(),
        }
    if isinstance(obj, ForeignEmm):
        return {"type": "foreign_emm", "table_id": f"0x{obj.table_id:02X}", "length": len(obj.section)}
    if isinstance(obj, list | tuple):
        return {"type": "emm_commands", "commands": [describe_command(c) for c in obj]}
    if type(obj) in _TAGS or isinstance(obj, UnknownCommand):
        return describe_command(obj)
    raise TypeError(f"cannot describe {type(obj).__name__}")
