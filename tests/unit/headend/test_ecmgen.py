"""ECM generation: CWs per crypto-period, current + next, criteria, sealing."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.access import AccessCriteria
from cas.billing.catalog import load_lineup
from cas.crypto import OperatorKeys, is_reduced_cw
from cas.errors import AuthenticationError, UsageError
from cas.formats.ecm import parse_ecm
from cas.headend.ecmgen import (
    ChannelEcms,
    CwSchedule,
    EcmGenerator,
    EcmSettings,
    channel_ecms_for,
    criteria_from_lineup,
    current_cw,
    cw_slots,
    generate_ecms,
)
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
from cas.messages import open_ecm
from tests.fixtures.seeded import seeded_keys, seeded_rng

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CRIT = AccessCriteria(channel_id=1001, package_ids=(1, 7), regions=(398,), maturity_rating=16)


@pytest.fixture(scope="module")
def keys() -> OperatorKeys:
    return seeded_keys(99)


def test_ecm_opens_with_the_ecm_key_and_carries_criteria_and_both_cws(keys: OperatorKeys) -> None:
    gen = EcmGenerator(keys, ecm_key_index=3, rng=seeded_rng())
    sched = CwSchedule(rng=seeded_rng(2))
    for cp in (0, 1, 2, 7):
        even, odd = sched.pair(cp)
        section = gen.ecm(CRIT, cp=cp, cw_even=even, cw_odd=odd, timestamp_s=1_770_000_000 + cp)
        assert len(section) <= 256
        header, body = open_ecm(keys.ecm_key(3), section)
        assert header.table_id == 0x80 | (cp & 1)
        assert header.channel_id == 1001 and header.ecm_key_index == 3
        assert header.timestamp_s == 1_770_000_000 + cp
        assert body.crypto_period == cp
        assert body.criteria(1001) == CRIT
        assert current_cw(cp, body.cw_even, body.cw_odd) == sched.cw(cp)
        assert current_cw(cp + 1, body.cw_even, body.cw_odd) == sched.cw(cp + 1)
        with pytest.raises(AuthenticationError):
            open_ecm(keys.ecm_key(4), section)


def test_cws_are_fresh_per_period_and_checksummed() -> None:
    sched = CwSchedule(rng=seeded_rng())
    cws = [sched.cw(cp) for cp in range(50)]
    assert len(set(cws)) == 50
    assert all(is_reduced_cw(cw) for cw in cws)
    assert sched.cw(49) == cws[49]  # stable while in use
    cissa = CwSchedule(cw_length=16, rng=seeded_rng())
    assert len(cissa.cw(0)) == 16 and cissa.cw(0) != cissa.cw(1)


@given(st.integers(0, 2**31), st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8))
def test_cw_slots_put_current_in_its_parity(cp: int, cur: bytes, nxt: bytes) -> None:
    even, odd = cw_slots(cp, cur, nxt)
    assert current_cw(cp, even, odd) == cur
    assert current_cw(cp + 1, even, odd) == nxt


def test_generate_ecms_is_deterministic_and_ordered(keys: OperatorKeys) -> None:
    crit2 = AccessCriteria(channel_id=1002, package_ids=(1,))
    runs = [list(generate_ecms(keys, [CRIT, crit2], periods=4, clock=lambda: T0,
                               rng=seeded_rng(5))) for _ in range(2)]
    assert runs[0] == runs[1]
    ecms = runs[0]
    assert [(e.channel_id, e.cp) for e in ecms] == [(c, p) for p in range(4) for c in (1001, 1002)]
    t0 = int(T0.timestamp())
    assert [e.timestamp_s for e in ecms[::2]] == [t0, t0 + 10, t0 + 20, t0 + 30]
    # ECM(n) carries CW(n+1) which is ECM(n+1)'s current CW.
    a = [e for e in ecms if e.channel_id == 1001]
    for prev, nxt in itertools.pairwise(a):
        assert current_cw(prev.cp + 1, prev.cw_even, prev.cw_odd) == nxt.current_cw
        assert parse_ecm(nxt.section).header.table_id == 0x80 | (nxt.cp & 1)
    assert a[0].log_json()["cw"] == a[0].current_cw.hex()


def test_settings_validation() -> None:
    with pytest.raises(UsageError):
        EcmSettings(crypto_period_ms=150)
    with pytest.raises(UsageError):
        EcmSettings(repetition_ms=0)
    with pytest.raises(UsageError):
        EcmSettings(cw_length=10)
    with pytest.raises(UsageError):
        EcmSettings(ecm_key_index=256)
    assert EcmSettings().crypto_period_ms == 10_000 and EcmSettings().repetition_ms == 100


def test_criteria_from_a_shipped_lineup() -> None:
    lineup = load_lineup("tvplus.toml", minor_per_major=100)
    crit = criteria_from_lineup(lineup)
    assert set(crit) == {ch.service_id for ch in lineup.channels}
    for ch in lineup.channels:
        c = crit[ch.service_id]
        assert c.channel_id == ch.service_id
        assert c.regions == tuple(sorted(ch.regions))
        assert c.maturity_rating == ch.maturity_rating
        expected = sorted(p.id for p in lineup.packages if ch.number in p.channel_numbers)
        assert list(c.package_ids) == expected


def test_scrambler_with_real_ecms_uses_the_cw_the_ecm_carries(keys: OperatorKeys,
                                                              tmp_path: object) -> None:
    from pathlib import Path

    from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
    from tests.unit.headend.helpers import sections_on

    assert isinstance(tmp_path, Path)
    clear = make_test_stream([TestService(service_id=1001, name="Q")], tmp_path / "c.ts",
                             TestStreamOptions(duration_s=2.5)).read_bytes()
    settings = EcmSettings(crypto_period_ms=1000)
    services = channel_ecms_for(keys, {1001: CRIT}, settings=settings, start_s=1_770_000_000,
                                rng=seeded_rng(3))
    log: list[object] = []
    scr = Scrambler(ScrambleConfig(crypto_period_ms=1000), services,
                    payload_cipher(Algorithm.CSA2), cw_log=log.append)
    out = io.BytesIO()
    report = scr.run(io.BytesIO(clear), out)
    logged = {e.cp: e.cw for e in log}  # type: ignore[attr-defined]
    seen = set()
    for _, section in sections_on(out.getvalue(), report.services[0].ecm_pid):
        header, body = open_ecm(keys.ecm_key(0), section)
        cp = body.crypto_period
        seen.add(cp)
        assert header.timestamp_s == 1_770_000_000 + cp
        assert current_cw(cp, body.cw_even, body.cw_odd) == logged[cp]
        if cp + 1 in logged:
            assert current_cw(cp + 1, body.cw_even, body.cw_odd) == logged[cp + 1]
    assert seen == set(logged) and len(seen) >= 3
    assert isinstance(services[1001], ChannelEcms)
