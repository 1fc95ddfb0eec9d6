"""ECM sections: the clear header and the plaintext body that ``cas.messages`` seals.

Byte layout in ``docs/formats.md`` §6.  An ECM is a short MPEG-2 private section (no CRC,
≤ 256 bytes)::

    table_id             u8    0x80 / 0x81: parity of the current crypto period (even / odd)
    flags|section_length u16   0 1 11 + 12-bit length
    channel_id           u16
    ecm_key_index        u8    which ECM key sealed the body
    timestamp_s          u32
    nonce                12    AES-GCM nonce
    sealed body                AES-GCM(body) || tag16; the AAD is every byte before it

Plaintext body::

    crypto_period        u32   crypto-period number
    cw_length            u8    8 (DVB-CSA2) or 16 (DVB-CISSA)
    cw_even, cw_odd      cw_length each
    maturity_rating      u8
    package_count u8, package_id u16 × count   (any of them opens the channel)
    region_count  u8, region u16 × count       (empty: everywhere)
    extensions                 tag u8 | length u8 | value, to the end (may be none)

Extensions (§6.2.1) came after the first release: an ECM without them is the original body
byte for byte, so old ECMs still parse.  Tag 0x01 is the pay-per-view event on air
(docs/ppv.md); an unknown tag is kept as :class:`EcmExtension`, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import construct as cs

from cas.access import AccessCriteria, PpvEvent
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

NONCE_SIZE = 12
TAG_SIZE = 16
ECM_TABLE_EVEN = 0x80
ECM_TABLE_ODD = 0x81
CW_LENGTHS = (8, 16)


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmHeader:
    """Clear (authenticated) part of an ECM."""

    channel_id: int
    ecm_key_index: int
    timestamp_s: int
    #: 0x80 when the current crypto period is even, 0x81 when odd.
    table_id: int = ECM_TABLE_EVEN
    nonce: bytes = bytes(NONCE_SIZE)

    @property
    def odd(self) -> bool:
        return self.table_id == ECM_TABLE_ODD


#: ECM body extension tag of the PPV event on air (docs/formats.md §6.2.1).
EXT_PPV_EVENT = 0x01
#: PPV event flags: bit 0 = may be bought on the card (impulse PPV).
PPV_FLAG_IMPULSE = 0x01


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmExtension:
    """An ECM body extension this version does not know; kept raw."""

    tag: int
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmBody:
    """Decrypted ECM body: control words and what a card must hold to get them."""

    crypto_period: int
    cw_even: bytes = field(repr=False)
    cw_odd: bytes = field(repr=False)
    package_ids: tuple[int, ...] = ()
    regions: tuple[int, ...] = ()
    maturity_rating: int = 0
    #: the pay-per-view event on air on this channel (extension 0x01), if any
    ppv_event: PpvEvent | None = None
    #: extensions with tags this version does not know
    extensions: tuple[EcmExtension, ...] = ()

    def criteria(self, channel_id: int) -> AccessCriteria:
        """The access criteria for ``cas.access.decide``."""
        return AccessCriteria(
            channel_id=channel_id,
            package_ids=self.package_ids,
            regions=self.regions,
            maturity_rating=self.maturity_rating,
            ppv_event=self.ppv_event,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ecm:
    """A parsed ECM section: header + sealed body (ciphertext || tag)."""

    header: EcmHeader
    body: bytes = field(repr=False)


ECM_HEADER = cs.Struct(
    "channel_id" / cs.Int16ub,
    "ecm_key_index" / cs.Int8ub,
    "timestamp_s" / cs.Int32ub,
    "nonce" / cs.Bytes(NONCE_SIZE),
)
"""Clear header after the 3-byte section header (docs/formats.md §6.1)."""
ECM_HEADER_SIZE: int = ECM_HEADER.sizeof()

ECM_BODY = cs.Struct(
    "crypto_period" / cs.Int32ub,
    "cw_length"
    / cs.Rebuild(
        cs.ExprValidator(cs.Int8ub, lambda obj, ctx: obj in CW_LENGTHS), cs.len_(cs.this.cw_even)
    ),
    "cw_even" / cs.Bytes(cs.this.cw_length),
    "cw_odd" / cs.Bytes(cs.this.cw_length),
    "maturity_rating" / cs.Int8ub,
    "package_ids" / cs.PrefixedArray(cs.Int8ub, cs.Int16ub),
    "regions" / cs.PrefixedArray(cs.Int8ub, cs.Int16ub),
    "extensions" / cs.GreedyRange(cs.Struct(
        "tag" / cs.Int8ub, "value" / cs.Prefixed(cs.Int8ub, cs.GreedyBytes))),
    cs.Terminated,
)
"""Plaintext ECM body (docs/formats.md §6.2, extensions §6.2.1)."""

PPV_EVENT_EXTENSION = cs.Struct(
    "event_id" / cs.Int32ub,
    "start_s" / cs.Int32ub,
    "end_s" / cs.Int32ub,
    "price_tokens" / cs.Int16ub,
    "flags" / cs.Int8ub,
    cs.Terminated,
)
"""Value of ECM extension 0x01: the PPV event on air (docs/formats.md §6.2.1)."""


def _ppv_from(value: bytes, path: str) -> PpvEvent:
    c = parse_struct(PPV_EVENT_EXTENSION, value, path)
    return PpvEvent(event_id=c.event_id, start_s=c.start_s, end_s=c.end_s,
                    price_tokens=c.price_tokens, impulse=bool(c.flags & PPV_FLAG_IMPULSE))


def _ppv_value(event: PpvEvent, path: str) -> bytes:
    if not isinstance(event, PpvEvent):
        raise FormatError(f"expected PpvEvent, got {type(event).__name__}", path=path).with_id(
            "formats.expected_ppvevent", field=path, name__=type(event).__name__)
    for name, bits in (("event_id", 32), ("start_s", 32), ("end_s", 32), ("price_tokens", 16)):
        check_range(getattr(event, name), bits, f"{path}.{name}")
    return build_struct(PPV_EVENT_EXTENSION, dict(
        event_id=event.event_id, start_s=event.start_s, end_s=event.end_s,
        price_tokens=event.price_tokens, flags=PPV_FLAG_IMPULSE if event.impulse else 0), path)

#: Largest plaintext body that fits a 256-byte section.
MAX_ECM_PLAINTEXT = MAX_CA_SECTION_LENGTH - ECM_HEADER_SIZE - TAG_SIZE


def parse_ecm_body(data: bytes) -> EcmBody:
    """Parse a decrypted ECM body."""
    c = parse_struct(ECM_BODY, bytes(data), "ecm.body")
    ppv: PpvEvent | None = None
    unknown: list[EcmExtension] = []
    for i, ext in enumerate(c.extensions):
        if ext.tag == EXT_PPV_EVENT and ppv is None:
            ppv = _ppv_from(ext.value, f"ecm.body.extensions[{i}].ppv_event")
        else:
            unknown.append(EcmExtension(tag=ext.tag, value=bytes(ext.value)))
    return EcmBody(
        ppv_event=ppv,
        extensions=tuple(unknown),
        crypto_period=c.crypto_period,
        cw_even=c.cw_even,
        cw_odd=c.cw_odd,
        package_ids=tuple(c.package_ids),
        regions=tuple(c.regions),
        maturity_rating=c.maturity_rating,
    )


def build_ecm_body(body: EcmBody) -> bytes:
    """Encode an ECM body (plaintext)."""
    p = "ecm.body"
    if not isinstance(body, EcmBody):
        raise FormatError(f"expected EcmBody, got {type(body).__name__}", path=p).with_id(
            "formats.expected_ecmbody", field=p, name__=type(body).__name__)
    if not isinstance(body.cw_even, bytes) or len(body.cw_even) not in CW_LENGTHS:
        raise FormatError("cw_even must be 8 or 16 bytes", path=f"{p}.cw_even").with_id(
            "formats.cw_even_bytes", field=f"{p}.cw_even")
    check_len(body.cw_odd, len(body.cw_even), f"{p}.cw_odd")
    for name in ("package_ids", "regions"):
        values = getattr(body, name)
        if len(values) > 255:
            raise FormatError("at most 255 entries", path=f"{p}.{name}").with_id(
                "formats.most_entries", field=f"{p}.{name}")
        for i, v in enumerate(values):
            check_range(v, 16, f"{p}.{name}[{i}]")
    check_range(body.crypto_period, 32, f"{p}.crypto_period")
    check_range(body.maturity_rating, 8, f"{p}.maturity_rating")
    extensions: list[dict[str, object]] = []
    if body.ppv_event is not None:
        extensions.append(dict(tag=EXT_PPV_EVENT,
                               value=_ppv_value(body.ppv_event, f"{p}.ppv_event")))
    for i, ext in enumerate(body.extensions):
        check_range(ext.tag, 8, f"{p}.extensions[{i}].tag")
        if ext.tag == EXT_PPV_EVENT:
            raise FormatError("tag 0x01 is the ppv_event field", path=f"{p}.extensions[{i}]").with_id(
                "formats.tag_x01_ppv_event", field=f"{p}.extensions[{i}]")
        if len(ext.value) > 255:
            raise FormatError("at most 255 bytes", path=f"{p}.extensions[{i}].value").with_id(
                "formats.most_bytes", field=f"{p}.extensions[{i}].value")
        extensions.append(dict(tag=ext.tag, value=bytes(ext.value)))
    return build_struct(
        ECM_BODY,
        dict(
            crypto_period=body.crypto_period,
            cw_even=body.cw_even,
            cw_odd=body.cw_odd,
            maturity_rating=body.maturity_rating,
            package_ids=list(body.package_ids),
            regions=list(body.regions),
            extensions=extensions,
        ),
        p,
    )


def ecm_clear_bytes(header: EcmHeader, body_length: int) -> bytes:
    """Section header + clear header for a body of ``body_length`` bytes: the AEAD's AAD."""
    if not isinstance(header, EcmHeader):
        raise FormatError(f"expected EcmHeader, got {type(header).__name__}", path="ecm.header").with_id(
            "formats.ecm_header_expected_ecmheader", name__=type(header).__name__)
    if header.table_id not in (ECM_TABLE_EVEN, ECM_TABLE_ODD):
        raise FormatError(f"table_id {header.table_id!r} is not 0x80/0x81", path="ecm.table_id").with_id(
            "formats.ecm_table_id_table", table_id=f"{header.table_id!r}")
    check_range(header.channel_id, 16, "ecm.channel_id")
    check_range(header.ecm_key_index, 8, "ecm.ecm_key_index")
    check_range(header.timestamp_s, 32, "ecm.timestamp_s")
    check_len(header.nonce, NONCE_SIZE, "ecm.nonce")
    if body_length < TAG_SIZE:
        raise FormatError(f"sealed body shorter than the {TAG_SIZE}-byte tag", path="ecm.body").with_id(
            "formats.ecm_body_sealed_body", tag_size=TAG_SIZE)
    clear = build_struct(
        ECM_HEADER,
        dict(
            channel_id=header.channel_id,
            ecm_key_index=header.ecm_key_index,
            timestamp_s=header.timestamp_s,
            nonce=header.nonce,
        ),
        "ecm",
    )
    return ca_section_clear(header.table_id, clear, body_length, "ecm",
                            f"{MAX_ECM_PLAINTEXT} bytes of body")


def build_ecm(ecm: Ecm) -> bytes:
    """Section bytes of an ECM (header + already sealed body)."""
    if not isinstance(ecm.body, bytes | bytearray):
        raise FormatError("body must be bytes", path="ecm.body").with_id(
            "formats.ecm_body_body_bytes")
    return ecm_clear_bytes(ecm.header, len(ecm.body)) + bytes(ecm.body)


def parse_ecm(data: bytes) -> Ecm:
    """Parse an ECM section (table id 0x80/0x81); anything else is a FormatError."""
    data = bytes(data)
    if not data:
        raise FormatError("empty section", path="ecm").with_id("formats.ecm_empty_section")
    if data[0] not in (ECM_TABLE_EVEN, ECM_TABLE_ODD):
        raise FormatError(f"table_id {data[0]:#04x} is not an ECM (0x80/0x81)", path="ecm.table_id").with_id(
            "formats.ecm_table_id_table_2", data=f"{data[0]:#04x}")
    table_id, payload = parse_ca_section(data, "ecm")
    if len(payload) < ECM_HEADER_SIZE + TAG_SIZE:
        raise FormatError(
            f"{len(payload)} bytes after the section header, need at least "
            f"{ECM_HEADER_SIZE + TAG_SIZE}",
            path="ecm.body",
        ).with_id("formats.ecm_body_bytes_after", n=len(payload), value=ECM_HEADER_SIZE + TAG_SIZE)
    c = parse_struct(ECM_HEADER, payload[:ECM_HEADER_SIZE], "ecm")
    header = EcmHeader(
        table_id=table_id,
        channel_id=c.channel_id,
        ecm_key_index=c.ecm_key_index,
        timestamp_s=c.timestamp_s,
        nonce=c.nonce,
    )
    return Ecm(header=header, body=payload[ECM_HEADER_SIZE:])


def ecm_aad(section: bytes, ecm: Ecm) -> bytes:
    """The AAD of a parsed ECM: every section byte before the sealed body."""
    return bytes(section[: len(section) - len(ecm.body)])


def describe(obj: Ecm | EcmHeader | EcmBody) -> dict[str, Any]:
    """JSON-able tree for ``cas decode``; control words as length + fingerprint only."""
    if isinstance(obj, Ecm):
        return {**describe(obj.header), "sealed_length": len(obj.body)}
    if isinstance(obj, EcmHeader):
        return {
            "type": "ecm",
            "table_id": f"0x{obj.table_id:02X}",
            "parity": "odd" if obj.odd else "even",
            "channel_id": obj.channel_id,
            "ecm_key_index": obj.ecm_key_index,
            "timestamp_s": obj.timestamp_s,
            "nonce": obj.nonce.hex(),
        }
    if isinstance(obj, EcmBody):
        return {
            "type": "ecm_body",
            "crypto_period": obj.crypto_period,
            "cw_even": key_summary(obj.cw_even),
            "cw_odd": key_summary(obj.cw_odd),
            "package_ids": list(obj.package_ids),
            "regions": list(obj.regions),
            "maturity_rating": obj.maturity_rating,
            **({"ppv_event": {"event_id": obj.ppv_event.event_id,
                              "start_s": obj.ppv_event.start_s,
                              "end_s": obj.ppv_event.end_s,
                              "price_tokens": obj.ppv_event.price_tokens,
                              "impulse": obj.ppv_event.impulse}}
               if obj.ppv_event is not None else {}),
            **({"extensions": [{"tag": f"0x{e.tag:02X}", "value": e.value.hex()}
                               for e in obj.extensions]} if obj.extensions else {}),
        }
    raise TypeError(f"cannot describe {type(obj).__name__}")
