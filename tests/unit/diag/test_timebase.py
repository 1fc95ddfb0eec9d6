"""PCR time base: interpolation, wrap of the 33-bit base, discontinuities, no PCR."""

from __future__ import annotations

import pytest

from cas.diag.timebase import PCR_HZ, PCR_MODULUS, TimeBase


def ticks(seconds: float) -> int:
    return round(seconds * PCR_HZ)


def test_interpolates_between_pcrs_and_starts_at_packet_zero() -> None:
    # a PCR every 100 packets, 10 ms apart, first one at packet 50 (t = 5 ms after packet 0)
    idx = [50 + 100 * k for k in range(11)]
    tb = TimeBase(idx, [ticks(1000 + 0.01 * k) for k in range(11)], nominal_bitrate_bps=1,
                  source="test")
    assert tb.at(0) == 0.0
    assert tb.at(50) == pytest.approx(0.005)
    assert tb.at(100) == pytest.approx(0.010)
    assert tb.at(1050) == pytest.approx(0.105)  # after the last PCR: last rate
    assert tb.seconds_per_packet() == pytest.approx(0.0001)


def test_pcr_wrap_is_elapsed_time_not_a_jump() -> None:
    start = PCR_MODULUS - ticks(0.015)
    values = [(start + ticks(0.01) * k) % PCR_MODULUS for k in range(4)]
    assert values[2] < values[1]  # wrapped
    tb = TimeBase([0, 100, 200, 300], values, nominal_bitrate_bps=1, source="t")
    assert tb.at(300) == pytest.approx(0.03)
    assert tb.discontinuities == 0


def test_backwards_or_huge_pcr_step_is_a_discontinuity() -> None:
    values = [ticks(10), ticks(10.01), ticks(3), ticks(3.01), ticks(500)]
    tb = TimeBase([0, 100, 200, 300, 400], values, nominal_bitrate_bps=1, source="t")
    assert tb.discontinuities == 2
    # time goes on at the last rate through both discontinuities
    assert tb.at(400) == pytest.approx(0.04)


def test_no_pcr_uses_the_nominal_bitrate() -> None:
    tb = TimeBase.nominal(188 * 8 * 1000)  # 1000 packets per second
    assert tb.at(2500) == pytest.approx(2.5)
    assert "no PCR" in tb.source
