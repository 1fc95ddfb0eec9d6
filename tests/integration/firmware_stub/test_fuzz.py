"""Malformed streams never crash the box: it reports and goes on (hypothesis).

A real scrambled stream with the card's EMMs is damaged in the ways a broadcast chain
damages streams — bytes flipped, packets cut short, dropped or repeated, continuity
counters wrong, PSI CRCs broken, garbage sections on the ECM and EMM PIDs, runs of random
bytes — and the box must still return a lock report for it.
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cas.access import AccessCriteria
from cas.formats.chipid import ChipIdRecord
from cas.formats.ts import Packetizer
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.reasons import Reason
from firmware_stub.box import Box
from firmware_stub.errors import TuneError
from tests.integration.firmware_stub.headend import (
    Card,
    HeadEnd,
    emm_packets,
    insert_after,
)

EMM_PID = 0x0BFF
ECM_PIDS = (0x0C00, 0x0C01)


@functools.cache
def _bench() -> tuple[HeadEnd, bytes, Card, ChipIdRecord]:
    he = HeadEnd(seed=21)
    with tempfile.TemporaryDirectory() as tmp:
        clear = Path(tmp) / "clear.ts"
        make_test_stream([TestService(service_id=301, name="One"),
                          TestService(service_id=302, name="Two")], clear,
                         TestStreamOptions(duration_s=1.0))
        data = clear.read_bytes()
    chip = he.chip(0x77000001)
    card = he.card(4_000_000_001)
    scrambled, report = he.scramble(data, {
        301: AccessCriteria(channel_id=301, package_ids=(1,)),
        302: AccessCriteria(channel_id=302, package_ids=(1,), maturity_rating=18),
    }, emm_pid=EMM_PID, crypto_period_ms=500)
    assert tuple(s.ecm_pid for s in report.services) == ECM_PIDS
    stream = insert_after(scrambled, emm_packets(EMM_PID, [
        he.pair_emm(card, chip), he.activate_emm(card, [1], maturity=12)]), pid=1)
    return he, stream, card, chip


def _box() -> Box:
    he, _, card, chip = _bench()
    return he.boot(chip, None, card)


def test_the_undamaged_stream_opens() -> None:
    _, stream, _, _ = _bench()
    report = _box().scan(stream)
    assert report.reasons() == {301: Reason.OPEN, 302: Reason.MATURITY_LOCKED}
    assert report.stream["issue_count"] == 0


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.floats(0, 1), st.integers(1, 187)),
    st.tuples(st.just("drop"), st.floats(0, 1), st.integers(1, 50)),
    st.tuples(st.just("repeat"), st.floats(0, 1), st.integers(1, 3)),
    st.tuples(st.just("cc"), st.floats(0, 1), st.integers(0, 15)),
    st.tuples(st.just("crc"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("junk"), st.floats(0, 1), st.binary(min_size=1, max_size=400)),
    st.tuples(st.just("ecm"), st.floats(0, 1), st.binary(max_size=300)),
    st.tuples(st.just("emm"), st.floats(0, 1), st.binary(max_size=300)),
)


def _packet_at(data: bytearray, where: float) -> int:
    n = len(data) // 188
    return min(int(where * n), max(n - 1, 0)) * 188


def _apply(data: bytearray, mutation: tuple[object, ...]) -> bytearray:
    kind, where = mutation[0], float(mutation[1])  # type: ignore[arg-type]
    arg = mutation[2]
    if not data:
        return data
    pos = _packet_at(data, where)
    if kind == "flip":
        i = min(int(where * len(data)), len(data) - 1)
        data[i] ^= int(arg)  # type: ignore[call-overload]
    elif kind == "cut":
        del data[pos + int(arg):pos + 188]  # type: ignore[call-overload]
    elif kind == "drop":
        del data[pos:pos + 188 * int(arg)]  # type: ignore[call-overload]
    elif kind == "repeat":
        data[pos:pos] = bytes(data[pos:pos + 188]) * int(arg)  # type: ignore[call-overload]
    elif kind == "cc":
        if pos + 3 < len(data):
            data[pos + 3] = (data[pos + 3] & 0xF0) | int(arg)  # type: ignore[call-overload]
    elif kind == "crc":
        # break the CRC of the next PSI packet (PAT/CAT/PMT) after this point
        for p in range(pos, len(data) - 187, 188):
            pid = ((data[p + 1] & 0x1F) << 8) | data[p + 2]
            if pid in (0, 1) or 0x1000 <= pid < 0x1010:
                data[p + 10] ^= int(arg)  # type: ignore[call-overload]
                break
    elif kind == "junk":
        data[pos:pos] = bytes(arg)  # type: ignore[call-overload]
    elif kind in ("ecm", "emm"):
        pid = ECM_PIDS[0] if kind == "ecm" else EMM_PID
        table = b"\x80" if kind == "ecm" else b"\x82"
        body = bytes(arg)[:250]  # type: ignore[call-overload]
        section = table + bytes((0x70 | (len(body) >> 8), len(body) & 0xFF)) + body
        data[pos:pos] = b"".join(Packetizer(pid).packetize(section))
    return data


@settings(deadline=None)
@given(st.lists(_mutation, min_size=1, max_size=12))
def test_damaged_streams_never_crash_the_box(mutations: list[tuple[object, ...]]) -> None:
    _, stream, _, _ = _bench()
    data = bytearray(stream)
    for m in mutations:
        data = _apply(data, m)
    box = _box()
    report = box.scan(bytes(data))
    # the box still names what it found and why; defects are counted, not raised
    assert all(isinstance(c.reason, Reason) for c in report.channels)
    out = io.BytesIO()
    try:
        result = box.watch(bytes(data), 301, out)
    except TuneError:
        return  # the channel's PAT/PMT did not survive: a clean "not in lineup" error
    assert len(out.getvalue()) % 188 == 0
    assert result.packets_out * 188 == len(out.getvalue())


@settings(deadline=None)
@given(st.binary(max_size=6000))
def test_random_bytes_never_crash_the_box(data: bytes) -> None:
    report = _box().scan(data)
    assert report.channels == () or all(isinstance(c.reason, Reason) for c in report.channels)


@settings(deadline=None)
@given(st.binary(min_size=1, max_size=183), st.integers(0, 3))
def test_random_payloads_on_every_pid_role(payload: bytes, which: int) -> None:
    """Random bytes as the payload of PAT, CAT, PMT or ECM packets in a good stream."""
    _, stream, _, _ = _bench()
    pid = (0, 1, 0x1000, ECM_PIDS[0])[which]
    pkt = bytes((0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10)) + payload.ljust(184, b"\xff")
    data = insert_after(stream, pkt * 2, pid=1, occurrence=2)
    report = _box().scan(data)
    assert {c.channel for c in report.channels} >= {301, 302}
