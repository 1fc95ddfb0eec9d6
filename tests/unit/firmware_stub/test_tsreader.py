"""The box's TS front end: packet sync, truncation, continuity, section reassembly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware_stub.tsreader import PacketSplitter, SectionFilter, StreamStats, payload_offset
from tests.unit.firmware_stub.tsutil import Mux


def _split(data: bytes, chunk: int = 1000) -> tuple[list[bytes], StreamStats]:
    stats = StreamStats()
    sp = PacketSplitter(stats)
    out: list[bytes] = []
    for i in range(0, len(data), chunk):
        out += sp.split(data[i:i + chunk])
    out += sp.finish()
    return out, stats


def _packets(n: int, pid: int = 0x100) -> list[bytes]:
    mux = Mux()
    return [mux.packet(pid, bytes([i % 256]) * 184) for i in range(n)]


@given(st.integers(min_value=1, max_value=5000))
def test_clean_stream_splits_exactly_whatever_the_chunk_size(chunk: int) -> None:
    pkts = _packets(20)
    out, stats = _split(b"".join(pkts), chunk)
    assert out == pkts
    assert stats.sync_losses == 0 and stats.truncated_packets == 0


def test_truncated_packet_is_dropped_and_counted() -> None:
    pkts = _packets(6)
    data = b"".join(pkts[:2]) + pkts[2][:100] + b"".join(pkts[3:])
    out, stats = _split(data)
    assert out == pkts[:2] + pkts[3:]
    assert stats.truncated_packets == 1


def test_garbage_between_packets_is_skipped_once() -> None:
    pkts = _packets(6)
    data = b"".join(pkts[:3]) + b"\x00\x47\x12" * 50 + b"".join(pkts[3:])
    out, stats = _split(data, 64)
    assert out == pkts
    assert stats.sync_losses == 1
    assert stats.skipped_bytes == 150


def test_short_tail_at_eof_is_a_truncated_packet() -> None:
    pkts = _packets(3)
    out, stats = _split(b"".join(pkts) + pkts[0][:50])
    assert out == pkts
    assert stats.truncated_packets == 1


def test_payload_offset_follows_adaptation_field_control() -> None:
    mux = Mux()
    assert payload_offset(mux.packet(1, b"x" * 184)) == 4
    assert payload_offset(mux.packet(1, b"x" * 10)) == 188 - 10
    only_af = bytearray(mux.packet(1, b"x" * 184))
    only_af[3] = (only_af[3] & 0xCF) | 0x20
    assert payload_offset(bytes(only_af)) == -1


def _payloads(data: bytes) -> list[tuple[bool, bytes]]:
    out = []
    for i in range(0, len(data), 188):
        p = data[i:i + 188]
        out.append((bool(p[1] & 0x40), p[payload_offset(p):]))
    return out


def test_sections_spanning_packets_are_reassembled() -> None:
    mux = Mux()
    big = bytes([0x80, 0x70 | ((297 >> 8) & 0x0F), 297 & 0xFF]) + bytes(i % 251 for i in range(297))
    small = bytes([0x81, 0x70, 0x05]) + b"abcde"
    stats = StreamStats()
    flt = SectionFilter(0x200, stats)
    got: list[bytes] = []
    for i, (pusi, payload) in enumerate(_payloads(mux.sections(0x200, [big, small]))):
        got += flt.push(i, pusi, payload)
    assert got == [big, small]
    assert stats.sections_dropped == 0


def test_discontinuity_drops_the_section_in_progress() -> None:
    mux = Mux()
    big = bytes([0x80, 0x71, 0x2C]) + bytes(300)
    stats = StreamStats()
    flt = SectionFilter(0x200, stats)
    pieces = _payloads(mux.sections(0x200, [big]))
    got = flt.push(0, *pieces[0])
    flt.discontinuity(1)
    for pusi, payload in pieces[1:]:
        got += flt.push(2, pusi, payload)
    assert got == []
    assert stats.sections_dropped == 1
    # the next section on the PID comes through again
    again = _payloads(mux.sections(0x200, [big]))
    for pusi, payload in again:
        got += flt.push(3, pusi, payload)
    assert got == [big]


def test_bad_pointer_field_is_reported_not_raised() -> None:
    stats = StreamStats()
    flt = SectionFilter(0x200, stats)
    assert flt.push(0, True, bytes([200]) + bytes(50)) == []
    assert stats.sections_dropped == 1
    assert stats.issues[0].kind == "bad_pointer_field"


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=184)), max_size=40))
def test_section_filter_never_raises(pieces: list[tuple[bool, bytes]]) -> None:
    flt = SectionFilter(0x200, StreamStats())
    for i, (pusi, payload) in enumerate(pieces):
        for section in flt.push(i, pusi, payload):
            assert 3 <= len(section) <= 4096


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=700))
def test_splitter_never_raises_and_yields_only_packets(data: bytes, chunk: int) -> None:
    out, _ = _split(data, chunk)
    assert all(len(p) == 188 and p[0] == 0x47 for p in out)
