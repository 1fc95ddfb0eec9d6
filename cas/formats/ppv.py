"""Pay-per-view on the card: its PPV file (purse, event rights, purchase records) and the
purchase report the box carries back to the head-end.

Byte layouts in ``docs/formats.md`` §8 and the rules in ``docs/ppv.md``.  All integers are
big-endian; times are u32 seconds since 1970-01-01 UTC.

The PPV file is an elementary file of its own beside the card record (a card's EEPROM holds
several files; the card record of §2 keeps its fixed layout)::

    magic "CPPV" | version u8 | purse_tokens i32 | credit_limit_tokens u32
    report_counter u32 | next_purchase_seq u32 | last_emm_kind u8 | last_emm_seq u32
    right_count u8, right × count            (event_id u32, channel_id u16, start_s u32,
                                              end_s u32, impulse u8)
    purchase_count u8, purchase × count      (purchase_seq u32, event_id u32, channel_id u16,
                                              price_tokens u16, bought_s u32)
    crc32 u32                                over every byte before it

The purchase report (the card's answer to PPV REPORT, ``80 52``)::

    magic "PPVR" | version u8 | serial u32 | report_counter u32 | purse_tokens i32
    credit_limit_tokens u32 | purchase_count u8 | purchase × count
    tag 16                                   AES-GCM tag, empty plaintext, AAD = every byte
                                             before it, nonce = report_counter (12 bytes)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import construct as cs

from cas.access import EventRight
from cas.errors import FormatError
from cas.formats._common import build_struct, check_range, parse_struct

PPV_FILE_MAGIC = b"CPPV"
PPV_FILE_VERSION = 1
REPORT_MAGIC = b"PPVR"
REPORT_VERSION = 1
REPORT_TAG_SIZE = 16
#: Event rights the card keeps (rights that ended make room for new ones).
PPV_RIGHT_SLOTS = 16
#: Purchase records the card keeps until the head-end acknowledges them (then a purchase
#: is refused with 6A84 until the box has reported and the acknowledgement EMM arrived).
PPV_PURCHASE_SLOTS = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Purchase:
    """One impulse purchase on the card, kept until the head-end acknowledges it."""

    purchase_seq: int
    event_id: int
    channel_id: int
    price_tokens: int
    bought_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PpvState:
    """The card's PPV file."""

    purse_tokens: int = 0
    credit_limit_tokens: int = 0
    report_counter: int = 0
    next_purchase_seq: int = 1
    #: the EMM (address kind = table id, seq) whose PPV commands were applied last, so an EMM
    #: whose record write was lost after the PPV file write is not applied twice
    last_emm_kind: int = 0
    last_emm_seq: int = 0
    rights: tuple[EventRight, ...] = ()
    purchases: tuple[Purchase, ...] = ()

    def spendable_tokens(self) -> int:
        """Tokens the card may still spend: the purse plus its credit limit."""
        return self.purse_tokens + self.credit_limit_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class PurchaseReport:
    """The clear part of a purchase report; ``tag`` authenticates it (:mod:`cas.card.ppv`)."""

    serial: int
    report_counter: int
    purse_tokens: int
    credit_limit_tokens: int
    purchases: tuple[Purchase, ...] = ()
    tag: bytes = field(default=bytes(REPORT_TAG_SIZE), repr=False)


_RIGHT = cs.Struct(
    "event_id" / cs.Int32ub, "channel_id" / cs.Int16ub, "start_s" / cs.Int32ub,
    "end_s" / cs.Int32ub, "impulse" / cs.ExprValidator(cs.Int8ub, lambda o, c: o in (0, 1)),
)
_PURCHASE = cs.Struct(
    "purchase_seq" / cs.Int32ub, "event_id" / cs.Int32ub, "channel_id" / cs.Int16ub,
    "price_tokens" / cs.Int16ub, "bought_s" / cs.Int32ub,
)

PPV_FILE_BODY = cs.Struct(
    "magic" / cs.Const(PPV_FILE_MAGIC),
    "version" / cs.Const(PPV_FILE_VERSION, cs.Int8ub),
    "purse_tokens" / cs.Int32sb,
    "credit_limit_tokens" / cs.Int32ub,
    "report_counter" / cs.Int32ub,
    "next_purchase_seq" / cs.Int32ub,
    "last_emm_kind" / cs.Int8ub,
    "last_emm_seq" / cs.Int32ub,
    "rights" / cs.ExprValidator(cs.PrefixedArray(cs.Int8ub, _RIGHT),
                                lambda o, c: len(o) <= PPV_RIGHT_SLOTS),
    "purchases" / cs.ExprValidator(cs.PrefixedArray(cs.Int8ub, _PURCHASE),
                                   lambda o, c: len(o) <= PPV_PURCHASE_SLOTS),
)
PPV_FILE = cs.Struct(
    "body" / cs.RawCopy(PPV_FILE_BODY),
    "crc32" / cs.Checksum(cs.Int32ub, lambda data: zlib.crc32(data), cs.this.body.data),
    cs.Terminated,
)
"""The card's PPV file, docs/formats.md §8: RawCopy(body) + CRC-32 over the body."""

REPORT_BODY = cs.Struct(
    "magic" / cs.Const(REPORT_MAGIC),
    "version" / cs.Const(REPORT_VERSION, cs.Int8ub),
    "serial" / cs.Int32ub,
    "report_counter" / cs.Int32ub,
    "purse_tokens" / cs.Int32sb,
    "credit_limit_tokens" / cs.Int32ub,
    "purchases" / cs.ExprValidator(cs.PrefixedArray(cs.Int8ub, _PURCHASE),
                                   lambda o, c: len(o) <= PPV_PURCHASE_SLOTS),
)
"""The purchase report before its tag, docs/formats.md §8."""


def _purchase(c: Any) -> Purchase:
    return Purchase(purchase_seq=c.purchase_seq, event_id=c.event_id, channel_id=c.channel_id,
                    price_tokens=c.price_tokens, bought_s=c.bought_s)


def _purchase_dict(p: Purchase, path: str) -> dict[str, int]:
    for name, bits in (("purchase_seq", 32), ("event_id", 32), ("channel_id", 16),
                       ("price_tokens", 16), ("bought_s", 32)):
        check_range(getattr(p, name), bits, f"{path}.{name}")
    return dict(purchase_seq=p.purchase_seq, event_id=p.event_id, channel_id=p.channel_id,
                price_tokens=p.price_tokens, bought_s=p.bought_s)


def _check_i32(value: int, path: str) -> None:
    if not isinstance(value, int) or not -(1 << 31) <= value < (1 << 31):
        raise FormatError("out of range for a signed 32-bit value", path=path).with_id(
            "formats.out_range_signed_bit", field=path)


def build_ppv_file(state: PpvState) -> bytes:
    p = "ppv_file"
    _check_i32(state.purse_tokens, f"{p}.purse_tokens")
    for name, bits in (("credit_limit_tokens", 32), ("report_counter", 32),
                       ("next_purchase_seq", 32), ("last_emm_kind", 8), ("last_emm_seq", 32)):
        check_range(getattr(state, name), bits, f"{p}.{name}")
    if len(state.rights) > PPV_RIGHT_SLOTS:
        raise FormatError(f"at most {PPV_RIGHT_SLOTS} event rights", path=f"{p}.rights").with_id(
            "formats.most_event_rights", field=f"{p}.rights", ppv_right_slots=PPV_RIGHT_SLOTS)
    if len(state.purchases) > PPV_PURCHASE_SLOTS:
        raise FormatError(f"at most {PPV_PURCHASE_SLOTS} purchases", path=f"{p}.purchases").with_id(
            "formats.most_purchases", field=f"{p}.purchases",
            ppv_purchase_slots=PPV_PURCHASE_SLOTS)
    rights = []
    for i, r in enumerate(state.rights):
        for name, bits in (("event_id", 32), ("channel_id", 16), ("start_s", 32), ("end_s", 32)):
            check_range(getattr(r, name), bits, f"{p}.rights[{i}].{name}")
        rights.append(dict(event_id=r.event_id, channel_id=r.channel_id, start_s=r.start_s,
                           end_s=r.end_s, impulse=int(r.impulse)))
    body = dict(
        purse_tokens=state.purse_tokens, credit_limit_tokens=state.credit_limit_tokens,
        report_counter=state.report_counter, next_purchase_seq=state.next_purchase_seq,
        last_emm_kind=state.last_emm_kind, last_emm_seq=state.last_emm_seq, rights=rights,
        purchases=[_purchase_dict(x, f"{p}.purchases[{i}]")
                   for i, x in enumerate(state.purchases)])
    return build_struct(PPV_FILE, dict(body=dict(value=body), crc32=None), p)


def parse_ppv_file(data: bytes) -> PpvState:
    c = parse_struct(PPV_FILE, bytes(data), "ppv_file").body.value
    return PpvState(
        purse_tokens=c.purse_tokens, credit_limit_tokens=c.credit_limit_tokens,
        report_counter=c.report_counter, next_purchase_seq=c.next_purchase_seq,
        last_emm_kind=c.last_emm_kind, last_emm_seq=c.last_emm_seq,
        rights=tuple(EventRight(event_id=r.event_id, channel_id=r.channel_id,
                                start_s=r.start_s, end_s=r.end_s, impulse=bool(r.impulse))
                     for r in c.rights),
        purchases=tuple(_purchase(x) for x in c.purchases))


def report_clear_bytes(report: PurchaseReport) -> bytes:
    """The report's bytes before its tag: what the tag authenticates."""
    p = "ppv_report"
    check_range(report.serial, 32, f"{p}.serial")
    check_range(report.report_counter, 32, f"{p}.report_counter")
    check_range(report.credit_limit_tokens, 32, f"{p}.credit_limit_tokens")
    _check_i32(report.purse_tokens, f"{p}.purse_tokens")
    if len(report.purchases) > PPV_PURCHASE_SLOTS:
        raise FormatError(f"at most {PPV_PURCHASE_SLOTS} purchases", path=f"{p}.purchases").with_id(
            "formats.most_purchases", field=f"{p}.purchases",
            ppv_purchase_slots=PPV_PURCHASE_SLOTS)
    return build_struct(REPORT_BODY, dict(
        serial=report.serial, report_counter=report.report_counter,
        purse_tokens=report.purse_tokens, credit_limit_tokens=report.credit_limit_tokens,
        purchases=[_purchase_dict(x, f"{p}.purchases[{i}]")
                   for i, x in enumerate(report.purchases)]), p)


def build_report(report: PurchaseReport) -> bytes:
    if len(report.tag) != REPORT_TAG_SIZE:
        raise FormatError(f"tag must be {REPORT_TAG_SIZE} bytes", path="ppv_report.tag").with_id(
            "formats.ppv_report_tag_tag", report_tag_size=REPORT_TAG_SIZE)
    return report_clear_bytes(report) + bytes(report.tag)


def parse_report(data: bytes) -> PurchaseReport:
    """Parse a purchase report (its tag is checked by :func:`cas.card.ppv.verify_report`)."""
    data = bytes(data)
    if len(data) < REPORT_TAG_SIZE:
        raise FormatError("shorter than its tag", path="ppv_report").with_id(
            "formats.ppv_report_shorter_tag")
    c = parse_struct(REPORT_BODY, data[:-REPORT_TAG_SIZE], "ppv_report")
    return PurchaseReport(serial=c.serial, report_counter=c.report_counter,
                          purse_tokens=c.purse_tokens, credit_limit_tokens=c.credit_limit_tokens,
                          purchases=tuple(_purchase(x) for x in c.purchases),
                          tag=data[-REPORT_TAG_SIZE:])


def report_nonce(report_counter: int) -> bytes:
    """The AES-GCM nonce of a report: its counter, which the card never repeats."""
    return report_counter.to_bytes(12, "big")


def describe_report(report: PurchaseReport) -> dict[str, Any]:
    return {
        "type": "ppv_report", "serial": f"{report.serial:010d}",
        "report_counter": report.report_counter, "purse_tokens": report.purse_tokens,
        "credit_limit_tokens": report.credit_limit_tokens,
        "purchases": [{"purchase_seq": x.purchase_seq, "event_id": x.event_id,
                       "channel_id": x.channel_id, "price_tokens": x.price_tokens,
                       "bought_s": x.bought_s} for x in report.purchases],
    }
