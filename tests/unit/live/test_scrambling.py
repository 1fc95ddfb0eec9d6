"""Live scrambling: CWs per crypto-period, ECMs carrying CW(cp) and CW(cp+1) with the store's
time, the per-period schedule fetched ahead, the CW log."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys
from cas.formats.ecm import ECM_TABLE_EVEN
from cas.headend.ecmgen import EcmGenerator
from cas.live.scrambling import CryptoSchedule, CwLog, InternalEcms, PeriodKeys
from cas.messages import open_ecm
from tests.fixtures.seeded import seeded_keys

CRITERIA = AccessCriteria(channel_id=1001, package_ids=(1, 2), regions=(398,),
                          maturity_rating=0)


def _rng(seed: int = 1) -> random.Random:
    return random.Random(seed)


def _keys() -> OperatorKeys:
    return seeded_keys(7, now_s=1_700_000_000)


def _ecms(cw_length: int = 8, clock: list[int] | None = None) -> tuple[InternalEcms, OperatorKeys]:
    keys = _keys()
    r = _rng(3)
    now = clock if clock is not None else [1_800_000_000]
    ecms = InternalEcms(EcmGenerator(keys, rng=lambda n: r.randbytes(n)), CRITERIA,
                        cw_length=cw_length, timestamp_s=lambda: now[0],
                        rng=lambda n: r.randbytes(n))
    return ecms, keys


@pytest.mark.parametrize("cw_length", [8, 16])
def test_ecm_carries_this_and_next_cw_in_parity_slots(cw_length: int) -> None:
    ecms, keys = _ecms(cw_length)
    for cp in (40, 41):
        header, body = open_ecm(keys.ecm_key(0), ecms.ecm_section(cp))
        assert header.table_id == ECM_TABLE_EVEN | (cp & 1)
        assert header.channel_id == 1001
        assert body.crypto_period == cp
        current, following = ecms.cw(cp), ecms.cw(cp + 1)
        assert len(current) == cw_length
        slots = (body.cw_even, body.cw_odd)
        assert slots[cp & 1] == current and slots[(cp + 1) & 1] == following
        assert tuple(body.package_ids) == (1, 2)


def test_ecm_carries_the_clock_at_which_it_is_aired() -> None:
    """Same second: the same bytes are repeated.  The store's clock moved on: ECM(cp) is sealed
    again with the new time and the same CWs (a payment opens at the next repetition)."""
    clock = [1_800_000_000]
    ecms, keys = _ecms(clock=clock)
    first = ecms.ecm_section(10)
    assert ecms.ecm_section(10) == first
    clock[0] += 3
    again = ecms.ecm_section(10)
    assert again != first
    h1, b1 = open_ecm(keys.ecm_key(0), first)
    h2, b2 = open_ecm(keys.ecm_key(0), again)
    assert (h1.timestamp_s, h2.timestamp_s) == (1_800_000_000, 1_800_000_003)
    assert (b1.cw_even, b1.cw_odd, b1.crypto_period) == (b2.cw_even, b2.cw_odd, 10)


def test_schedule_asks_a_restamping_generator_at_every_repetition() -> None:
    clock = [1_800_000_000]
    ecms, keys = _ecms(clock=clock)
    sched = CryptoSchedule({1001: ecms}, crypto_period_s=10.0, first_cp=10)
    try:
        prepared = sched.keys(10)[1001].ecm
        clock[0] += 5
        aired = sched.ecm(10, 1001)
    finally:
        sched.close()
    assert open_ecm(keys.ecm_key(0), prepared)[0].timestamp_s == 1_800_000_000
    assert open_ecm(keys.ecm_key(0), aired)[0].timestamp_s == 1_800_000_005


def test_new_cw_every_period() -> None:
    ecms, _ = _ecms()
    cws = [ecms.cw(cp) for cp in range(100, 110)]
    assert len(set(cws)) == 10


def test_schedule_numbers_periods_from_multiplex_time() -> None:
    ecms, _ = _ecms()
    sched = CryptoSchedule({1001: ecms}, crypto_period_s=2.0, first_cp=50)
    try:
        assert sched.cp_at(0.0) == 50 and sched.cp_at(1.999) == 50 and sched.cp_at(2.0) == 51
        assert sched.start_s(53) == 6.0
        keys = sched.keys(51)[1001]
        assert isinstance(keys, PeriodKeys)
        assert keys.cw == ecms.cw(51) and keys.ecm == ecms.ecm_section(51)
        assert "cw" not in repr(keys).replace("cp=", "")
    finally:
        sched.close()


class _CountingCrypto:
    """A ServiceCrypto that records which periods were asked for, on which thread."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []
        self.channel_id = 5

    def cw(self, cp: int) -> bytes:
        return bytes([cp & 0xFF]) * 8

    def ecm_section(self, cp: int) -> bytes:
        self.asked.append((cp, threading.current_thread().name))
        return bytes([0x80 | (cp & 1), 0, 0])


def test_schedule_fetches_the_next_period_ahead_on_a_worker() -> None:
    crypto = _CountingCrypto()
    seen: list[tuple[int, float]] = []
    sched = CryptoSchedule({5: crypto}, crypto_period_s=1.0, first_cp=0,
                           on_fetch=lambda sid, s: seen.append((sid, s)))
    try:
        sched.keys(0)
        sched.keys(1)  # already asked for when period 0 was
        sched.keys(0)
    finally:
        sched.close()
    assert sorted({cp for cp, _ in crypto.asked}) == [0, 1, 2]
    assert len(crypto.asked) == 3  # each period fetched once
    assert all(name.startswith("crypto") for _, name in crypto.asked)
    assert {sid for sid, _ in seen} == {5}


def test_cw_log_lines(tmp_path: Path) -> None:
    log = CwLog(tmp_path / "cw.jsonl")
    log.write(service_id=1, channel_id=1, cp=7, cw=b"\x01" * 8, start_s=14.0)
    log.write(service_id=1, channel_id=1, cp=8, cw=b"\x02" * 8, start_s=16.0)
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "cw.jsonl").read_text().splitlines()]
    assert [(x["cp"], x["parity"], x["cw"]) for x in lines] == [
        (7, "odd", "01" * 8), (8, "even", "02" * 8)]


def test_repr_never_shows_cws() -> None:
    ecms, _ = _ecms()
    cw = ecms.cw(1)
    assert cw.hex() not in repr(ecms) and cw.hex() not in repr(ecms.schedule)
