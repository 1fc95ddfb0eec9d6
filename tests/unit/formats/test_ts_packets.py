"""TS packets: round trip, golden bytes, fast helpers, the construct header cross-check, and
hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from construct import ConstructError
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import FormatError
from cas.formats import ts
from cas.formats.ts import (
    TS_HEADER,
    AdaptationField,
    Pcr,
    TsPacket,
    build_packet,
    iter_packets,
    null_packet,
    parse_packet,
)
from tests.unit.formats import ts_psi_samples as samples
from tests.unit.formats.ts_psi_strategies import only_format_errors, ts_packets

GOLDEN = json.loads(
    (Path(__file__).parents[2] / "vectors" / "transport" / "golden.json").read_text()
)


@given(ts_packets())
def test_round_trip(packet: TsPacket) -> None:
    data = build_packet(packet)
    assert len(data) == 188
    assert parse_packet(data) == packet
    assert build_packet(parse_packet(data)) == data
    json.dumps(ts.describe(packet))


@given(ts_packets())
def test_fast_helpers_agree_with_parse(packet: TsPacket) -> None:
    data = build_packet(packet)
    assert ts.pid_of(data) == packet.pid
    assert ts.pusi_of(data) == packet.payload_unit_start_indicator
    assert ts.cc_of(data) == packet.continuity_counter
    assert ts.scrambling_of(data) == packet.transport_scrambling_control
    assert ts.has_payload(data) == bool(packet.payload)
    assert ts.payload_of(data) == packet.payload
    assert ts.is_null(data) == (packet.pid == 0x1FFF)


@given(ts_packets())
def test_construct_header_declaration_agrees(packet: TsPacket) -> None:
    data = build_packet(packet)
    header = TS_HEADER.parse(data[:4])
    assert packet.pid == header.PID
    assert header.payload_unit_start_indicator == packet.payload_unit_start_indicator
    assert header.transport_error_indicator == packet.transport_error_indicator
    assert header.transport_priority == packet.transport_priority
    assert header.transport_scrambling_control == packet.transport_scrambling_control
    assert header.adaptation_field_control == packet.adaptation_field_control
    assert header.continuity_counter == packet.continuity_counter
    assert TS_HEADER.build(header) == data[:4]


def test_golden_pcr_packet() -> None:
    data = build_packet(samples.PCR_PACKET)
    assert data.hex() == GOLDEN["pcr_packet"]
    # PUSI, PID 0x100, AF + payload, cc 9; AF length 183 - 24 = 159, flags RAI|PCR.
    assert data[:6] == bytes.fromhex("474100399f50")
    # PCR base 0x123456789 (33 bits), 6 reserved ones, extension 299 (9 bits).
    base, ext = 0x1_2345_6789, 299
    expected = (base << 15) | (0x3F << 9) | ext
    assert data[6:12] == expected.to_bytes(6, "big")
    assert data[12 : 12 + 148] == b"\xff" * 148
    assert parse_packet(data).adaptation_field.pcr.ticks_27mhz == base * 300 + ext  # type: ignore[union-attr]


def test_pcr_from_ticks() -> None:
    pcr = Pcr.from_ticks(27_000_000 * 10 + 7)
    assert (pcr.base, pcr.extension) == (900_000, 7)
    assert pcr.ticks_27mhz == 270_000_007


def test_adaptation_field_edge_lengths() -> None:
    one = TsPacket(pid=1, payload=bytes(183), adaptation_field=AdaptationField())
    data = build_packet(one)
    assert data[3] & 0x30 == 0x30 and data[4] == 0  # adaptation_field_length 0
    assert parse_packet(data) == one
    only_af = TsPacket(pid=1, adaptation_field=AdaptationField(discontinuity_indicator=True))
    data = build_packet(only_af)
    assert data[3] & 0x30 == 0x20 and data[4] == 183 and data[5] == 0x80
    assert parse_packet(data) == only_af
    with pytest.raises(FormatError, match="exceed"):
        TsPacket(
            pid=1,
            payload=bytes(183),
            adaptation_field=AdaptationField(random_access_indicator=True),
        )
    with pytest.raises(FormatError, match="184"):
        TsPacket(pid=1, payload=bytes(100))


def test_null_packet() -> None:
    pkt = parse_packet(null_packet())
    assert pkt.pid == ts.NULL_PID and pkt.payload == b"\xff" * 184


def test_set_scrambling_in_place() -> None:
    buf = bytearray(null_packet() * 2)
    ts.set_scrambling(buf, 188, 3)
    assert ts.scrambling_of(buf[188:]) == 3 and ts.scrambling_of(buf) == 0


def test_parse_errors() -> None:
    good = build_packet(samples.PCR_PACKET)
    with pytest.raises(FormatError, match="188"):
        parse_packet(good[:-1])
    with pytest.raises(FormatError, match="sync_byte"):
        parse_packet(b"\x48" + good[1:])
    reserved = bytearray(good)
    reserved[3] &= 0xCF
    with pytest.raises(FormatError, match="reserved"):
        parse_packet(bytes(reserved))
    too_long = bytearray(good)
    too_long[4] = 183  # AF + payload with an adaptation_field_length of 183
    with pytest.raises(FormatError, match="adaptation_field_length"):
        parse_packet(bytes(too_long))
    pcr_cut = bytearray(
        build_packet(TsPacket(pid=1, payload=bytes(181), adaptation_field=AdaptationField()))
    )
    pcr_cut[5] = 0x10  # claims a PCR in a 1-byte adaptation field
    with pytest.raises(FormatError, match="PCR"):
        parse_packet(bytes(pcr_cut))


@given(st.binary(min_size=187, max_size=187))
def test_fuzz_random_packets(body: bytes) -> None:
    only_format_errors(parse_packet, b"\x47" + body)


@given(st.binary(max_size=400))
def test_fuzz_random_lengths(data: bytes) -> None:
    only_format_errors(parse_packet, data)


@given(
    st.lists(ts_packets(), min_size=1, max_size=5), st.binary(max_size=300), st.binary(max_size=100)
)
def test_iter_packets_resyncs(packets: list[TsPacket], junk: bytes, tail: bytes) -> None:
    built = [build_packet(p) for p in packets]
    stream = b"".join(built)
    assert list(iter_packets(stream, strict=True)) == built
    junk = junk.replace(b"\x47", b"\x00")
    got = list(iter_packets(junk + stream + tail[:100]))
    # The real packets come out intact and in order; extra "packets" may only appear after
    # them (the tail may happen to start with 0x47 at a plausible place).
    assert got[: len(built)] == built
    for pkt in got:
        assert len(pkt) == 188 and pkt[0] == 0x47


def test_iter_packets_strict_errors() -> None:
    with pytest.raises(FormatError, match="sync"):
        list(iter_packets(b"\x00" + null_packet(), strict=True))
    with pytest.raises(FormatError, match="left"):
        list(iter_packets(null_packet() + b"\x47\x00", strict=True))


def test_construct_header_rejects_bad_sync() -> None:
    with pytest.raises(ConstructError):
        TS_HEADER.parse(b"\x00\x00\x00\x10")
