"""cas.formats._layout: struct layouts derived from construct declarations."""

from __future__ import annotations

import struct

import construct as cs
import pytest

from cas.formats import chipid, emm, records
from cas.formats._layout import check_order, struct_layout


def _same(fmt_a: str, fmt_b: str) -> bool:
    """Equal struct formats up to spelling (I/L, spaces): same size, same items."""
    a, b = struct.Struct(fmt_a), struct.Struct(fmt_b)
    return a.size == b.size and a.format.replace("L", "I").replace(" ", "") == b.format.replace(
        "L", "I"
    ).replace(" ", "")


def test_card_record_layout_is_the_documented_one() -> None:
    # docs/formats.md §2 as the fast path used to spell it out by hand
    head = ">4sBII HHH II 24s24s24s" + "BB24s" * 2 + "BHB16sBB IIII BI24s24s 64s B"
    whole = struct_layout(records.CARD_RECORD)
    assert _same(whole.format, head + "HII" * 32 + "I")
    assert whole.size == records.CARD_RECORD_SIZE
    assert whole.names[3] == "body.shared_address+member_position"
    assert whole.offset("crc32") == records.CARD_RECORD_SIZE - 4
    body = struct_layout(records.CARD_RECORD_BODY)
    assert _same(body.before("entitlements").format, head)
    assert body.offset("entitlements") == 307
    assert body.under("entitlements[1]").names == ("package_id", "start_s", "end_s")


def test_chip_id_layout_and_joined_fields() -> None:
    layout = struct_layout(chipid.CHIP_ID_RECORD)
    assert _same(layout.format, ">4sBI16s16s24sIII")
    joined = layout.joined("body.vendor", "body.model")
    assert joined.names[3] == "body.vendor..body.model"
    assert _same(joined.format, ">4sBI32s24sIII")
    assert joined.size == layout.size


def test_emm_layouts() -> None:
    shared = struct_layout(emm.EMM_HEADERS[emm.EmmAddressType.SHARED])
    # a u24 not followed by a u8 stays three raw bytes
    assert _same(shared.format, ">3s32sII12s")
    assert _same(struct_layout(emm.COMMAND_VALUES[emm.EmmTag.PAIR]).format, ">I16s24s")


def test_unsupported_declarations_are_refused() -> None:
    with pytest.raises(TypeError, match="GreedyBytes"):
        struct_layout(cs.Struct("x" / cs.GreedyBytes))
    with pytest.raises(TypeError, match="big-endian"):
        struct_layout(cs.Struct("x" / cs.Int16ul))
    with pytest.raises(TypeError, match="Prefixed"):
        struct_layout(cs.Struct("x" / cs.Prefixed(cs.Int8ub, cs.GreedyBytes)))


def test_check_order_catches_a_reordered_declaration() -> None:
    declared = struct_layout(cs.Struct("a" / cs.Int16ub, "b" / cs.Int16ub))
    check_order(declared, ("a", "b"), "t")
    with pytest.raises(TypeError, match="field 0"):
        check_order(declared, ("b", "a"), "t")
    with pytest.raises(TypeError, match="2 fields declared, 3 unpacked"):
        check_order(declared, ("a", "b", "c"), "t")
