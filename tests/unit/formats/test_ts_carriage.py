"""Sections in TS packets: Packetizer and SectionReassembler (ISO/IEC 13818-1 §2.4.4.1-2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import FormatError
from cas.formats.psi import build_cat, build_pmt, parse_cat
from cas.formats.sections import LongSection, ShortSection, build_section
from cas.formats.ts import (
    Packetizer,
    SectionReassembler,
    null_packet,
    parse_packet,
    payload_of,
    pusi_of,
)
from tests.unit.formats import ts_psi_samples as samples
from tests.unit.formats.ts_psi_strategies import long_sections, short_sections

GOLDEN = json.loads(
    (Path(__file__).parents[2] / "vectors" / "transport" / "golden.json").read_text()
)
sections = st.one_of(
    short_sections.filter(lambda s: s.table_id != 0xFF),
    long_sections().filter(lambda s: s.table_id != 0xFF),
).map(build_section)


def test_golden_two_packet_cat() -> None:
    cat = build_cat(samples.BIG_CAT)
    packets = Packetizer(1, continuity_counter=14).packetize(cat)
    assert [p.hex() for p in packets] == GOLDEN["big_cat_packets_pid_0001_cc_14"]
    first, second = (parse_packet(p) for p in packets)
    assert first.payload_unit_start_indicator and not second.payload_unit_start_indicator
    assert (first.continuity_counter, second.continuity_counter) == (14, 15)
    assert first.payload[0] == 0  # pointer_field
    assert first.payload[1:] + second.payload[: len(cat) - 183] == cat
    assert second.payload[len(cat) - 183 :] == b"\xff" * (184 - (len(cat) - 183))
    assert parse_cat(SectionReassembler(1).feed_many(packets)[0]) == samples.BIG_CAT


def test_packed_sections_use_pointer_field() -> None:
    a = build_section(ShortSection(table_id=0x82, payload=bytes(200)))  # 203 bytes
    b = build_section(ShortSection(table_id=0x83, payload=bytes(10)))
    packets = Packetizer(0x500).packetize_many([a, b])
    assert len(packets) == 2
    assert pusi_of(packets[1])
    # 183 bytes of `a` in packet 1, so 20 remain; the pointer_field says so.
    assert payload_of(packets[1])[0] == 20
    assert SectionReassembler(0x500).feed_many(packets) == [a, b]


def test_a_section_due_on_a_packets_last_byte_starts_in_the_next_packet() -> None:
    # 550 bytes: 183 after the first pointer_field, 184 in the second packet, 183 in the third,
    # so the next section would start on the third packet's last byte, which no
    # pointer_field can reach.
    a = build_section(ShortSection(table_id=0x82, payload=bytes(547)))
    b = build_section(ShortSection(table_id=0x83, payload=bytes(10)))
    c = build_section(ShortSection(table_id=0x84, payload=bytes(20)))
    assert len(a) == 550
    packets = Packetizer(0x500).packetize_many([a, b, c])
    assert not pusi_of(packets[2]) and payload_of(packets[2])[-1] == 0xFF
    assert pusi_of(packets[3]) and payload_of(packets[3])[0] == 0
    r = SectionReassembler(0x500)
    assert r.feed_many(packets) == [a, b, c]
    assert not r.events


@given(st.lists(sections, min_size=1, max_size=8), st.integers(0, 15), st.booleans())
def test_round_trip(secs: list[bytes], cc: int, packed: bool) -> None:
    pz = Packetizer(0x0ABC, continuity_counter=cc)
    packets = pz.packetize_many(secs) if packed else [p for s in secs for p in pz.packetize(s)]
    assert all(len(p) == 188 for p in packets)
    assert [parse_packet(p).continuity_counter for p in packets] == [
        (cc + i) & 0x0F for i in range(len(packets))
    ]
    assert pz.continuity_counter == (cc + len(packets)) & 0x0F
    r = SectionReassembler(0x0ABC)
    assert r.feed_many(packets) == secs
    assert not r.events and r.sections == len(secs)


@given(st.lists(sections, min_size=2, max_size=8), st.data())
def test_lost_packet_never_yields_a_wrong_section(secs: list[bytes], data: st.DataObject) -> None:
    packets = Packetizer(0x100).packetize_many(secs)
    drop = data.draw(st.integers(0, len(packets) - 1))
    r = SectionReassembler(0x100)
    got = r.feed_many(packets[:drop] + packets[drop + 1 :])
    # Output is a subsequence of the input: sections are lost, never corrupted or invented.
    it = iter(secs)
    assert all(any(g == s for s in it) for g in got)
    if len(packets) > 1 and drop < len(packets) - 1:
        assert r.counts["continuity"] == 1


@given(st.lists(sections, min_size=1, max_size=4), st.data())
def test_other_pids_and_null_packets_are_ignored(secs: list[bytes], data: st.DataObject) -> None:
    packets = Packetizer(0x40).packetize_many(secs)
    noise = Packetizer(0x41).packetize_many(secs)
    mixed: list[bytes] = []
    for p, q in zip(packets, noise + [b""] * len(packets), strict=False):
        mixed.append(p)
        if q:
            mixed.append(q)
        if data.draw(st.booleans()):
            mixed.append(null_packet())
    r = SectionReassembler(0x40)
    assert r.feed_many(mixed) == secs
    assert not r.events


def test_duplicate_packet_is_discarded() -> None:
    sec = build_section(ShortSection(table_id=0x80, payload=bytes(300)))
    packets = Packetizer(0x10).packetize(sec)
    r = SectionReassembler(0x10)
    assert r.feed_many([packets[0], packets[0], packets[1]]) == [sec]
    assert r.counts["duplicate"] == 1


def test_bad_crc_section_dropped_and_reported() -> None:
    good = build_pmt(samples.pmt_for(0))
    bad = good[:-1] + bytes([good[-1] ^ 1])
    r = SectionReassembler(0x1000)
    assert r.feed_many(Packetizer(0x1000).packetize_many([bad, good])) == [good]
    assert r.counts["crc"] == 1
    lenient = SectionReassembler(0x1000, check_crc=False)
    assert lenient.feed_many(Packetizer(0x1000).packetize(bad)) == [bad]


def test_damaged_packets_are_reported() -> None:
    sec = build_section(LongSection(table_id=0x40, table_id_extension=1, payload=bytes(400)))
    packets = Packetizer(0x20).packetize(sec)
    r = SectionReassembler(0x20)
    tei = bytearray(packets[1])
    tei[1] |= 0x80
    scrambled = bytearray(packets[0])
    scrambled[3] |= 0x80
    assert r.feed(b"\x47\x00") == []
    assert r.feed(bytes(scrambled)) == []
    assert r.feed(packets[0]) == []
    assert r.feed(bytes(tei)) == []
    assert r.feed(packets[2]) == []
    # Fresh start from the next PUSI packet recovers.
    r.reset()
    assert r.feed_many(packets) == [sec]
    kinds = {e.kind for e in r.events}
    assert {"bad_packet", "scrambled", "transport_error"} <= kinds


def test_garbage_after_section_in_non_pusi_packet() -> None:
    sec = build_section(ShortSection(table_id=0x80, payload=bytes(190)))
    first, second = Packetizer(0x30).packetize(sec)
    junk = bytearray(second)
    junk[4 + 10] = 0x81  # where stuffing should begin
    r = SectionReassembler(0x30)
    assert r.feed_many([first, bytes(junk)]) == [sec]
    assert r.counts["garbage"] == 1


def test_section_cut_short_by_next_pusi() -> None:
    long_sec = build_section(ShortSection(table_id=0x80, payload=bytes(400)))
    short = build_section(ShortSection(table_id=0x81, payload=b"x"))
    first = Packetizer(0x31).packetize(long_sec)[0]
    # Consecutive continuity counters, so only the pointer_field reveals the cut.
    rest = Packetizer(0x31, continuity_counter=1).packetize(short)
    r = SectionReassembler(0x31)
    assert r.feed_many([first, *rest]) == [short]
    assert r.counts["truncated_section"] == 1
    assert r.counts["continuity"] == 0


@given(st.lists(st.binary(min_size=184, max_size=184), max_size=20))
def test_fuzz_random_payloads_never_raise(payloads: list[bytes]) -> None:
    r = SectionReassembler(0x77)
    for i, payload in enumerate(payloads):
        pkt = bytes((0x47, 0x40 if i % 3 == 0 else 0x00, 0x77, 0x10 | (i & 0x0F))) + payload
        for sec in r.feed(pkt):
            assert len(sec) >= 3


@given(st.lists(st.binary(min_size=188, max_size=188), max_size=20))
def test_fuzz_random_packets_never_raise(packets: list[bytes]) -> None:
    r = SectionReassembler(0x77)
    r.feed_many(b"\x47" + p[1:] for p in packets)
    r.feed_many(packets)


def test_packetizer_rejects_bad_sections() -> None:
    pz = Packetizer(1)
    with pytest.raises(FormatError):
        pz.packetize(b"\x80\x70")
    with pytest.raises(FormatError, match="implies"):
        pz.packetize(b"\x80\x70\x05ab")
    with pytest.raises(FormatError, match="stuffing"):
        pz.packetize(b"\xff\x70\x00")
    with pytest.raises(FormatError, match="PID"):
        Packetizer(0x2000)
