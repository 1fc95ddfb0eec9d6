"""Byte layouts of the card's answers (GET DATA tags, READ ENTITLEMENTS, PROCESS EMM).

Documented byte by byte in ``docs/card.md`` ("Response layouts").  All integers big-endian,
times ``u32`` seconds since 1970-01-01 UTC.  Built by the applet, parsed by
:class:`~cas.card.client.CardClient`; a response that does not parse is a
:class:`~cas.errors.FormatError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cas.access import CardStatus, Entitlement
from cas.errors import FormatError
from cas.formats.apdu import GET_DATA_P1 as GET_DATA_P1
from cas.formats.apdu import GetDataTag
from cas.sharing import SharingPolicy, SharingRule

#: GET DATA P2 tags (``80 CA 01 tag 00``): the card's name for :class:`GetDataTag`.
DataTag = GetDataTag


@dataclass(frozen=True, slots=True, kw_only=True)
class CardInfo:
    """GET DATA tag 02: the public part of the card record (no key material)."""

    serial: int
    shared_address: int
    member_position: int
    ca_system_id: int
    operator_id: int
    card_os_version: int
    personalised_s: int
    expiry_s: int
    status: CardStatus
    region: int
    maturity_limit: int
    pin_retries_left: int
    pin_retries_max: int
    paired: bool
    chip_id: int
    emm_seq_unique: int
    emm_seq_shared: int
    emm_seq_global: int
    last_ecm_s: int
    entitlement_count: int
    ecm_key_indexes: tuple[int, ...]


_INFO = struct.Struct(">I I HHH II B H B BB B I IIII B B")
# serial, shared<<8|member, ca_system_id, operator_id, os_version, personalised, expiry,
# status, region, maturity, retries_left, retries_max, paired, chip_id, seq_u, seq_s, seq_g,
# last_ecm, entitlement_count, ecm_key_count  (+ ecm_key_count index bytes)


def build_card_info(info: CardInfo) -> bytes:
    return _INFO.pack(
        info.serial, (info.shared_address << 8) | info.member_position, info.ca_system_id,
        info.operator_id, info.card_os_version, info.personalised_s, info.expiry_s,
        int(info.status), info.region, info.maturity_limit, info.pin_retries_left,
        info.pin_retries_max, 1 if info.paired else 0, info.chip_id, info.emm_seq_unique,
        info.emm_seq_shared, info.emm_seq_global, info.last_ecm_s, info.entitlement_count,
        len(info.ecm_key_indexes),
    ) + bytes(info.ecm_key_indexes)


def parse_card_info(data: bytes) -> CardInfo:
    if len(data) < _INFO.size:
        raise FormatError(f"card info is at least {_INFO.size} bytes, got {len(data)}",
                          path="card_info").with_id(
            "card.card_info_card_info", size=_INFO.size, n=len(data))
    t = _INFO.unpack_from(data)
    n_keys = t[-1]
    if len(data) != _INFO.size + n_keys:
        raise FormatError(f"card info announces {n_keys} ECM key indexes, has "
                          f"{len(data) - _INFO.size}", path="card_info.ecm_key_indexes").with_id(
            "card.card_info_ecm_key", n_keys=n_keys, value=len(data) - _INFO.size)
    try:
        status = CardStatus(t[7])
    except ValueError:
        raise FormatError(f"unknown card status {t[7]}", path="card_info.status").with_id(
            "card.card_info_status_unknown", t=t[7]) from None
    return CardInfo(
        serial=t[0], shared_address=t[1] >> 8, member_position=t[1] & 0xFF,
        ca_system_id=t[2], operator_id=t[3], card_os_version=t[4], personalised_s=t[5],
        expiry_s=t[6], status=status, region=t[8], maturity_limit=t[9],
        pin_retries_left=t[10], pin_retries_max=t[11], paired=bool(t[12]), chip_id=t[13],
        emm_seq_unique=t[14], emm_seq_shared=t[15], emm_seq_global=t[16], last_ecm_s=t[17],
        entitlement_count=t[18], ecm_key_indexes=tuple(data[_INFO.size:]),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CardStatusInfo:
    """GET DATA tag 03."""

    status: CardStatus
    region: int
    maturity_limit: int
    paired: bool


_STATUS = struct.Struct(">B H B B")


def build_status(s: CardStatusInfo) -> bytes:
    return _STATUS.pack(int(s.status), s.region, s.maturity_limit, 1 if s.paired else 0)


def parse_status(data: bytes) -> CardStatusInfo:
    if len(data) != _STATUS.size:
        raise FormatError(f"status is {_STATUS.size} bytes, got {len(data)}", path="status").with_id(
            "card.status_status_bytes", size=_STATUS.size, n=len(data))
    st, region, maturity, paired = _STATUS.unpack(data)
    try:
        status = CardStatus(st)
    except ValueError:
        raise FormatError(f"unknown card status {st}", path="status.status").with_id(
            "card.status_status_unknown_card", st=st) from None
    return CardStatusInfo(status=status, region=region, maturity_limit=maturity,
                          paired=bool(paired))


@dataclass(frozen=True, slots=True, kw_only=True)
class Counters:
    """GET DATA tag 04: anti-replay counters, the card's clock and the PIN counter."""

    emm_seq_unique: int
    emm_seq_shared: int
    emm_seq_global: int
    last_ecm_s: int
    pin_retries_left: int
    pin_retries_max: int


_COUNTERS = struct.Struct(">IIII BB")


def build_counters(c: Counters) -> bytes:
    return _COUNTERS.pack(c.emm_seq_unique, c.emm_seq_shared, c.emm_seq_global, c.last_ecm_s,
                          c.pin_retries_left, c.pin_retries_max)


def parse_counters(data: bytes) -> Counters:
    if len(data) != _COUNTERS.size:
        raise FormatError(f"counters are {_COUNTERS.size} bytes, got {len(data)}",
                          path="counters").with_id(
            "card.counters_counters_bytes", size=_COUNTERS.size, n=len(data))
    t = _COUNTERS.unpack(data)
    return Counters(emm_seq_unique=t[0], emm_seq_shared=t[1], emm_seq_global=t[2],
                    last_ecm_s=t[3], pin_retries_left=t[4], pin_retries_max=t[5])


@dataclass(frozen=True, slots=True, kw_only=True)
class PairingInfo:
    """GET DATA tag 05 and the answer to a PAIR EMM: chip id + Enc(CSK, CWPK)."""

    chip_id: int
    chip_blob: bytes


_CHIP_BLOB_LEN = 24


def build_pairing(p: PairingInfo) -> bytes:
    return p.chip_id.to_bytes(4, "big") + p.chip_blob


def parse_pairing(data: bytes) -> PairingInfo:
    if len(data) != 4 + _CHIP_BLOB_LEN:
        raise FormatError(f"pairing info is {4 + _CHIP_BLOB_LEN} bytes, got {len(data)}",
                          path="pairing").with_id(
            "card.pairing_pairing_info_bytes", value=4 + _CHIP_BLOB_LEN, n=len(data))
    return PairingInfo(chip_id=int.from_bytes(data[:4], "big"), chip_blob=bytes(data[4:]))


_ENTITLEMENT = struct.Struct(">HII")


def build_entitlements(entitlements: tuple[Entitlement, ...]) -> bytes:
    """READ ENTITLEMENTS: count (u8) then count x (package u16, start u32, end u32)."""
    out = bytearray([len(entitlements)])
    for e in entitlements:
        out += _ENTITLEMENT.pack(e.package_id, e.start_s, e.end_s)
    return bytes(out)


def parse_entitlements(data: bytes) -> tuple[Entitlement, ...]:
    if not data:
        raise FormatError("empty entitlement table", path="entitlements").with_id(
            "card.entitlements_empty_entitlement_table")
    count = data[0]
    if len(data) != 1 + count * _ENTITLEMENT.size:
        raise FormatError(f"entitlement table announces {count} entries, has "
                          f"{len(data) - 1} bytes", path="entitlements").with_id(
            "card.entitlements_entitlement_table_announces", count=count, value=len(data) - 1)
    return tuple(
        Entitlement(package_id=p, start_s=s, end_s=e)
        for p, s, e in _ENTITLEMENT.iter_unpack(data[1:])
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SharingInfo:
    """GET DATA tag 30: the card's sharing check (docs/sharing.md, "On the card").

    The settings; the flag (``rules`` empty: not flagged) with the newest window that broke a
    rule (its start, distinct channels, ECM requests) and how many windows did; and the counts
    of the window of the newest ECM the card answered."""

    policy: SharingPolicy
    tuners: int
    rate_tolerance: int
    window_s: int
    rules: tuple[SharingRule, ...]
    flag_window_s: int
    flag_services: int
    flag_requests: int
    flag_trips: int
    window_services: int
    window_requests: int

    @property
    def flagged(self) -> bool:
        return bool(self.rules)


_SHARING = struct.Struct(">BBBB BB I BBH BB")
# policy, tuners, rate_tolerance, window_s, flagged, rule bits (1 services, 2 rate),
# flag window start, flag services, flag requests, flag trips, window services, window requests
_RULE_BITS = {SharingRule.SERVICES: 1, SharingRule.RATE: 2}


def build_sharing_info(i: SharingInfo) -> bytes:
    return _SHARING.pack(int(i.policy), i.tuners, i.rate_tolerance, i.window_s,
                         int(i.flagged), sum(_RULE_BITS[r] for r in i.rules), i.flag_window_s,
                         i.flag_services, i.flag_requests, i.flag_trips, i.window_services,
                         i.window_requests)


def parse_sharing_info(data: bytes) -> SharingInfo:
    if len(data) != _SHARING.size:
        raise FormatError(f"sharing info is {_SHARING.size} bytes, got {len(data)}",
                          path="sharing").with_id(
            "card.sharing_info_bytes", size=_SHARING.size, n=len(data))
    t = _SHARING.unpack(data)
    try:
        policy = SharingPolicy(t[0])
    except ValueError:
        raise FormatError(f"unknown sharing policy {t[0]}", path="sharing.policy").with_id(
            "card.sharing_policy_unknown", policy=t[0]) from None
    return SharingInfo(policy=policy, tuners=t[1], rate_tolerance=t[2], window_s=t[3],
                       rules=tuple(r for r, bit in _RULE_BITS.items() if t[5] & bit),
                       flag_window_s=t[6], flag_services=t[7], flag_requests=t[8],
                       flag_trips=t[9], window_services=t[10], window_requests=t[11])
