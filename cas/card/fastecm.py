"""Precomputed-layout ECM parsing for the card's hot path (PROCESS ECM).

Same results and same rejections as :func:`cas.formats.ecm.parse_ecm` and
:func:`cas.formats.ecm.parse_ecm_body` (docs/formats.md §6) — ``tests/unit/card/
test_fastecm.py`` checks that with hypothesis on valid and random input — but with
:mod:`struct` instead of construct, because the declarative parsers cost ~90 µs per ECM and
the card's budget for ECM→CW in-process is 100 µs.  Errors are reported with the
declarative parser's message: on any doubt this module calls it to raise.
"""

from __future__ import annotations

import struct

from cas.access import PpvEvent
from cas.errors import FormatError
from cas.formats.ecm import (
    ECM_HEADER_SIZE,
    ECM_TABLE_EVEN,
    ECM_TABLE_ODD,
    EXT_PPV_EVENT,
    PPV_FLAG_IMPULSE,
    TAG_SIZE,
    Ecm,
    EcmBody,
    EcmHeader,
    parse_ecm,
    parse_ecm_body,
)

_SECTION_HEADER = 3
_MAX_SECTION_LENGTH = 253
_HEADER = struct.Struct(">HBI12s")
assert _HEADER.size == ECM_HEADER_SIZE
_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_CW_LENGTHS = (8, 16)
_PPV = struct.Struct(">IIIHB")  # ECM extension 01, docs/formats.md §6.2.1
_PPV_TLV = 2 + _PPV.size


def parse_ecm_fast(section: bytes) -> Ecm:
    """:func:`cas.formats.ecm.parse_ecm`, fast."""
    n = len(section)
    if n < _SECTION_HEADER + ECM_HEADER_SIZE + TAG_SIZE:
        return parse_ecm(section)  # raises with the reference message
    table_id = section[0]
    b1 = section[1]
    length = ((b1 & 0x0F) << 8) | section[2]
    if (table_id not in (ECM_TABLE_EVEN, ECM_TABLE_ODD) or b1 >> 4 != 0x7
            or length > _MAX_SECTION_LENGTH or length != n - _SECTION_HEADER):
        return parse_ecm(section)  # raises
    channel_id, key_index, timestamp_s, nonce = _HEADER.unpack_from(section, _SECTION_HEADER)
    header = EcmHeader(table_id=table_id, channel_id=channel_id, ecm_key_index=key_index,
                       timestamp_s=timestamp_s, nonce=nonce)
    return Ecm(header=header, body=bytes(section[_SECTION_HEADER + ECM_HEADER_SIZE:]))


def parse_ecm_body_fast(data: bytes) -> EcmBody:
    """:func:`cas.formats.ecm.parse_ecm_body`, fast."""
    n = len(data)
    if n < 5:
        return parse_ecm_body(data)
    cw_len = data[4]
    if cw_len not in _CW_LENGTHS:
        return parse_ecm_body(data)
    pos = 5 + 2 * cw_len
    if n < pos + 2:
        return parse_ecm_body(data)
    maturity = data[pos]
    count = data[pos + 1]
    pkg_end = pos + 2 + 2 * count
    if n < pkg_end + 1:
        return parse_ecm_body(data)
    rcount = data[pkg_end]
    end = pkg_end + 1 + 2 * rcount
    ppv: PpvEvent | None = None
    if n == end + _PPV_TLV and data[end] == EXT_PPV_EVENT and data[end + 1] == _PPV.size:
        # the one extension a PPV channel's ECMs carry (docs/formats.md §6.2.1); any other
        # extension list takes the declarative parser
        event_id, start_s, end_s, price, flags = _PPV.unpack_from(data, end + 2)
        ppv = PpvEvent(event_id=event_id, start_s=start_s, end_s=end_s, price_tokens=price,
                       impulse=bool(flags & PPV_FLAG_IMPULSE))
    elif n != end:
        return parse_ecm_body(data)
    packages = struct.unpack_from(f">{count}H", data, pos + 2) if count else ()
    regions = struct.unpack_from(f">{rcount}H", data, pkg_end + 1) if rcount else ()
    return EcmBody(
        crypto_period=_u32.unpack_from(data, 0)[0],
        cw_even=bytes(data[5 : 5 + cw_len]),
        cw_odd=bytes(data[5 + cw_len : 5 + 2 * cw_len]),
        maturity_rating=maturity,
        package_ids=tuple(packages),
        regions=tuple(regions),
        ppv_event=ppv,
    )


def ecm_aad(section: bytes, ecm: Ecm) -> bytes:
    """Every section byte before the sealed body."""
    return bytes(section[: len(section) - len(ecm.body)])


__all__ = ["FormatError", "ecm_aad", "parse_ecm_body_fast", "parse_ecm_fast"]
