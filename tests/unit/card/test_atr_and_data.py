"""ATR building/decoding and the byte layouts of the card's answers."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.access import CardStatus, Entitlement
from cas.card.atr import build_atr, decode_atr, is_our_card
from cas.card.data import (
    CardInfo,
    Counters,
    DataTag,
    build_card_info,
    build_counters,
    build_entitlements,
    parse_card_info,
    parse_counters,
    parse_entitlements,
    parse_pairing,
    parse_status,
)
from cas.errors import FormatError

from .helpers import make_applet, make_client


def test_our_atr_bytes() -> None:
    assert build_atr(0x0100).hex(" ").upper() == \
        "3B 9B 13 81 31 FE 45 80 56 43 41 53 53 49 4D 62 01 00 30"


@given(st.integers(0, 0xFFFF))
def test_atr_roundtrip(version: int) -> None:
    d = decode_atr(build_atr(version))
    assert d.card_os_version == version and d.card_name == "CASSIM"
    assert d.tck_ok and d.protocols == (1,) and d.ifsc == 254 and (d.fi, d.di) == (372, 4)


def test_decode_other_atrs() -> None:
    # a real CA card, T=0 only: no TCK (WIRE-FACTS §5.2)
    d = decode_atr(bytes.fromhex("3BDE18004011902843294C6F676977617973AA55"))
    assert d.convention == "direct" and d.protocols == (0,) and d.tck_ok is None
    assert not is_our_card(bytes.fromhex("3B00"))
    bad_tck = bytearray(build_atr())
    bad_tck[-1] ^= 1
    assert decode_atr(bytes(bad_tck)).tck_ok is False
    assert not is_our_card(b"\x00\x01")


@pytest.mark.parametrize("raw", ["", "3B", "5A00", "3B9B13", "3B0F0102", "3B8001", "3B00FF"])
def test_malformed_atrs(raw: str) -> None:
    with pytest.raises(FormatError):
        decode_atr(bytes.fromhex(raw))


@given(st.binary(max_size=40))
def test_decode_atr_raises_only_format_error(raw: bytes) -> None:
    with contextlib.suppress(FormatError):
        decode_atr(raw)


u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 255)


@given(st.builds(
    CardInfo, serial=u32, shared_address=st.integers(0, 0xFFFFFF), member_position=u8,
    ca_system_id=u16, operator_id=u16, card_os_version=u16, personalised_s=u32, expiry_s=u32,
    status=st.sampled_from(CardStatus), region=u16, maturity_limit=u8, pin_retries_left=u8,
    pin_retries_max=u8, paired=st.booleans(), chip_id=u32, emm_seq_unique=u32,
    emm_seq_shared=u32, emm_seq_global=u32, last_ecm_s=u32, entitlement_count=u8,
    ecm_key_indexes=st.lists(u8, max_size=2).map(tuple)))
def test_card_info_roundtrip(info: CardInfo) -> None:
    assert parse_card_info(build_card_info(info)) == info


@given(st.lists(st.builds(Entitlement, package_id=u16, start_s=u32, end_s=u32), max_size=32))
def test_entitlements_roundtrip(ents: list[Entitlement]) -> None:
    assert parse_entitlements(build_entitlements(tuple(ents))) == tuple(ents)


@given(st.builds(Counters, emm_seq_unique=u32, emm_seq_shared=u32, emm_seq_global=u32,
                 last_ecm_s=u32, pin_retries_left=u8, pin_retries_max=u8))
def test_counters_roundtrip(c: Counters) -> None:
    assert parse_counters(build_counters(c)) == c


@given(st.binary(max_size=80))
def test_answer_parsers_raise_only_format_error(raw: bytes) -> None:
    for parse in (parse_card_info, parse_entitlements, parse_counters, parse_pairing,
                  parse_status):
        with contextlib.suppress(FormatError):
            parse(raw)


# --- docs/card.md §3 pins the card-info answer ------------------------------------------------

_CARD_MD = Path(__file__).resolve().parents[3] / "docs" / "card.md"


def _card_info_doc() -> tuple[int, int]:
    """(the size the heading of the tag 02 table announces, the sum of its bytes column),
    both without the ``n`` ECM key indexes."""
    text = _CARD_MD.read_text(encoding="utf-8")
    head = re.search(r"GET DATA tag `02` card info \((\d+) \+ n bytes\):\n\n(.*?)\n\n", text,
                     re.S)
    assert head is not None, "docs/card.md lost the tag 02 card-info table"
    total = 0
    for row in head.group(2).splitlines()[2:]:
        cell = row.strip().strip("|").rsplit("|", 1)[1]
        terms = [t.strip() for t in cell.split("+")]
        assert terms.count("n") <= 1 and all(t == "n" or t.isdigit() for t in terms), row
        total += sum(int(t) for t in terms if t != "n")
    return int(head.group(1)), total


@pytest.mark.parametrize("n_keys", [0, 1, 2])
def test_card_info_length_matches_docs(n_keys: int) -> None:
    announced, table = _card_info_doc()
    assert announced == table == 51  # the heading says what the field table adds up to
    info = dataclasses.replace(make_applet().card_info(), ecm_key_indexes=tuple(range(n_keys)))
    assert len(build_card_info(info)) == table + n_keys


def test_card_answers_get_data_card_info_with_the_documented_length() -> None:
    applet, client = make_client()
    raw = client.get_data(DataTag.CARD_INFO)
    _, table = _card_info_doc()
    assert len(raw) == table + len(applet.record.ecm_keys)
