"""Other CA systems' ECMs: the channel_status timing (which CWs go in a CW_provision, when the
ECM of a period is on air and how often), and the multiplex side that never airs an ECM after
its window opened without it.  No clock and no sleeping: times are arguments."""

from __future__ import annotations

import re

import pytest

from cas.errors import StreamError
from cas.headend.simulcrypt.ecmgscs import ChannelStatus
from cas.live.config_simulcrypt import CaSystemConfig
from cas.live.ecmgs import CaSystemEcmg, EcmInserter, EcmStream, EcmTiming, insertions
from cas.live.metrics import LiveMetrics
from tests.unit.headend.helpers import sections_on

P = 1.0


def _status(**over: int) -> ChannelStatus:
    fields = dict(ecm_channel_id=1, section_tspkt_flag=0, delay_start_ms=0, delay_stop_ms=0,
                  ecm_rep_period_ms=100, max_streams=0, min_cp_duration_100ms=1, lead_cw=1,
                  cw_per_msg=2, max_comp_time_ms=100)
    fields.update(over)
    return ChannelStatus(**fields)  # type: ignore[arg-type]


def test_timing_from_channel_status() -> None:
    t = EcmTiming.from_status(_status(delay_start_ms=-200, delay_stop_ms=300,
                                      ecm_rep_period_ms=250, lead_cw=2, cw_per_msg=3,
                                      max_comp_time_ms=40, ac_delay_start_ms=500),
                              default_repetition_s=0.1)
    assert (t.delay_start_s, t.delay_stop_s, t.repetition_s) == (-0.2, 0.3, 0.25)
    assert (t.lead_cw, t.cw_per_msg, t.max_comp_time_s) == (2, 3, 0.04)
    assert t.ac_delay_start_s == 0.5 and t.ac_delay_stop_s is None
    # an ECMG that names no repetition period gets the head-end's own
    assert EcmTiming.from_status(_status(ecm_rep_period_ms=0),
                                 default_repetition_s=0.3).repetition_s == 0.3


@pytest.mark.parametrize("lead,per_msg,cps", [
    (1, 2, (10, 11)),      # ours: CW(n), CW(n+1)
    (0, 1, (10,)),         # the current CW only
    (1, 1, (11,)),         # the next CW only
    (2, 3, (10, 11, 12)),  # two ahead
    (1, 3, (9, 10, 11)),   # the previous one as well
])
def test_cws_in_a_cw_provision(lead: int, per_msg: int, cps: tuple[int, ...]) -> None:
    assert EcmTiming(lead_cw=lead, cw_per_msg=per_msg).provision_cps(10) == cps


def test_no_cw_before_period_zero() -> None:
    assert EcmTiming(lead_cw=0, cw_per_msg=3).provision_cps(1) == (0, 1)


def _instants(t: EcmTiming, a: float, b: float, first_cp: int = 100) -> list[tuple[float, int]]:
    return [(round(i.t_s, 6), i.cp) for i in insertions(t, a_s=a, b_s=b, crypto_period_s=P,
                                                        first_cp=first_cp)]


def test_no_delays_the_grid_restarts_at_each_boundary() -> None:
    t = EcmTiming(repetition_s=0.3)
    assert _instants(t, 0.0, 2.1) == [(0.0, 100), (0.3, 100), (0.6, 100), (0.9, 100),
                                      (1.0, 101), (1.3, 101), (1.6, 101), (1.9, 101),
                                      (2.0, 102)]


def test_delay_start_positive_shifts_the_new_ecm_after_the_boundary() -> None:
    t = EcmTiming(repetition_s=0.25, delay_start_s=0.2, delay_stop_s=0.2)
    got = _instants(t, 0.9, 1.8)
    # ECM(100) is on air until 1.2 (its window is [0.2, 1.2)), ECM(101) from 1.2
    assert got == [(0.95, 100), (1.2, 101), (1.45, 101), (1.7, 101)]


def test_delay_start_negative_airs_the_next_ecm_before_the_switch() -> None:
    t = EcmTiming(repetition_s=0.1, delay_start_s=-0.3, delay_stop_s=-0.3)
    got = _instants(t, 0.5, 1.0)
    assert got == [(0.5, 100), (0.6, 100), (0.7, 101), (0.8, 101), (0.9, 101)]


def test_a_gap_between_delay_stop_and_the_next_delay_start_airs_nothing() -> None:
    t = EcmTiming(repetition_s=0.1, delay_start_s=0.2, delay_stop_s=-0.2)
    got = _instants(t, 0.0, 1.5)
    # ECM(100) in [0.2, 0.8), nothing in [0.8, 1.2), ECM(101) from 1.2
    assert [c for _, c in got] == [100] * 6 + [101] * 3
    assert got[5][0] == 0.7 and got[6][0] == 1.2


def test_the_windows_give_the_same_instants_however_the_time_is_cut() -> None:
    t = EcmTiming(repetition_s=0.07, delay_start_s=-0.13, delay_stop_s=0.05)
    whole = _instants(t, 0.0, 5.0)
    cut: list[tuple[float, int]] = []
    a = 0.0
    while a < 5.0 - 1e-9:
        cut += _instants(t, a, round(a + 0.02, 6))
        a = round(a + 0.02, 6)
    assert cut == whole
    first = [i for i in insertions(t, a_s=0.0, b_s=5.0, crypto_period_s=P, first_cp=7)
             if i.first]
    # ECM(7)'s window opened before the multiplex: it starts with it, at 0
    assert [(round(i.t_s, 6), i.cp) for i in first] == [(0.0, 7), (0.87, 8), (1.87, 9),
                                                        (2.87, 10), (3.87, 11), (4.87, 12)]


@pytest.mark.parametrize("timing,message", [
    (EcmTiming(delay_start_s=1.0), "delay_start 1000 ms is not shorter"),
    (EcmTiming(delay_start_s=0.5, delay_stop_s=-0.6), "leave ECM(n) no time on air"),
    (EcmTiming(cw_per_msg=0), "CW_per_msg 0"),
    (EcmTiming(lead_cw=5, cw_per_msg=1), "lead_CW 5"),
])
def test_timings_the_head_end_cannot_keep(timing: EcmTiming, message: str) -> None:
    with pytest.raises(StreamError, match=re.escape(message)):
        timing.check(P)


def _ecmg(metrics: LiveMetrics) -> CaSystemEcmg:
    cfg = CaSystemConfig(index=1, ca_system_id=0x4AD0, ecmg_host="127.0.0.1", ecmg_port=1)
    streams = [EcmStream(service_id=1001, stream_id=1, ecm_id=1, ecm_pid=0x0D00,
                         access_criteria=None)]
    return CaSystemEcmg(cfg, streams, cw_of=lambda sid, cp: bytes(8), crypto_period_s=P,
                        default_repetition_s=0.25, metrics=metrics)


def _section(cp: int) -> bytes:
    return bytes([0x80 | (cp & 1), 0x70, 3, cp & 0xFF, 0, 0])


def test_the_inserter_airs_ready_ecms_and_never_a_late_one() -> None:
    """ECM(cp) ready in time is aired at every repetition on the CA system's PID; one that
    was not there when its window opened is not aired for that period even if it arrives
    later (the PID stays silent rather than carry a late or a stale ECM)."""
    metrics = LiveMetrics()
    ecmg = _ecmg(metrics)
    ecmg.timing = EcmTiming(repetition_s=0.25)
    ins = EcmInserter(ecmg, crypto_period_s=P, first_cp=100, metrics=metrics)
    ecmg._ready[(1001, 100)] = _section(100)  # what the worker would have stored
    out = ins.window(0.0, 1.0)
    assert [sec[3] for _, sec in sections_on(bytes(out.data), 0x0D00)] == [100] * 4
    assert out.times[0] == 0.0 and ecmg._wanted == 101
    # ECM(101) is not there at 1.0: missed; it comes at 1.3, still not aired in period 101
    out = ins.window(1.0, 1.3)
    assert len(out) == 0 and ins.missed == 1
    ecmg._ready[(1001, 101)] = _section(101)
    assert len(ins.window(1.3, 2.0)) == 0
    ecmg._ready[(1001, 102)] = _section(102)
    out = ins.window(2.0, 2.5)
    assert [sec[3] for _, sec in sections_on(bytes(out.data), 0x0D00)] == [102, 102]
    text = metrics.render_prometheus()
    assert 'cas_live_ecmg_missed_ecms_total{ca_system_id="0x4AD0"} 1' in text
    assert 'cas_live_ecmg_ecm_sections_total{ca_system_id="0x4AD0"} 6' in text
    assert 'cas_live_ecmg_up{ca_system_id="0x4AD0"} 0' in text


def test_the_worker_is_down_until_it_connects() -> None:
    metrics = LiveMetrics()
    ecmg = _ecmg(metrics)
    assert not ecmg.up and ecmg.ready(1001, 100) is None
    ecmg.want(5)
    ecmg.want(3)  # the on-air period only moves forward
    assert ecmg._wanted == 5
