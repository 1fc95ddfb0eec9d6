"""PSI/SI of the live multiplex: PAT, PMT with CA_descriptor, CAT with the EMM PID, SDT with
LCN and free_CA_mode; repetition and continuity counters."""

from __future__ import annotations

from cas.formats import psi
from cas.headend.scrambler import SCRAMBLING_MODE_CISSA, Algorithm
from cas.live.psi import (
    CAT_PID,
    PAT_PID,
    SDT_PID,
    MuxSettings,
    PsiSchedule,
    ServiceLayout,
    build_tables,
)
from tests.unit.live.tsgen import cc_errors, packets, pid_of


def _services() -> list[ServiceLayout]:
    return [
        ServiceLayout(service_id=1001, channel_number=1, name="Qazaqstan", pmt_pid=0x1000,
                      pcr_pid=0x100, streams=(psi.PmtStream(stream_type=2, elementary_pid=0x100),
                                              psi.PmtStream(stream_type=3, elementary_pid=0x101)),
                      scrambled=True, ecm_pid=0x0C10),
        ServiceLayout(service_id=1002, channel_number=2, name="Khabar", pmt_pid=0x1001,
                      pcr_pid=0x110, streams=(psi.PmtStream(stream_type=2,
                                                            elementary_pid=0x110),),
                      scrambled=False),
    ]


def _settings(algorithm: Algorithm = Algorithm.CSA2) -> MuxSettings:
    return MuxSettings(ca_system_id=0xDEAD, emm_pid=0x0C00, algorithm=algorithm,
                       transport_stream_id=5, original_network_id=6, provider="op")


def test_pat_lists_every_pmt() -> None:
    tables = build_tables(_services(), _settings())
    pat = psi.parse_pat(tables[PAT_PID][0])
    assert pat.transport_stream_id == 5
    assert {(p.program_number, p.pid) for p in pat.programs} == {(1001, 0x1000), (1002, 0x1001)}


def test_pmt_of_a_scrambled_service_has_our_ca_descriptor() -> None:
    tables = build_tables(_services(), _settings())
    pmt = psi.parse_pmt(tables[0x1000][0])
    cas_ = [d for d in pmt.descriptors if isinstance(d, psi.CaDescriptor)]
    assert [(d.ca_system_id, d.ca_pid) for d in cas_] == [(0xDEAD, 0x0C10)]
    assert not any(isinstance(d, psi.ScramblingDescriptor) for d in pmt.descriptors)
    assert [s.elementary_pid for s in pmt.streams] == [0x100, 0x101]
    clear = psi.parse_pmt(tables[0x1001][0])
    assert not clear.descriptors


def test_cissa_adds_the_scrambling_descriptor() -> None:
    tables = build_tables(_services(), _settings(Algorithm.CISSA))
    pmt = psi.parse_pmt(tables[0x1000][0])
    modes = [d.scrambling_mode for d in pmt.descriptors
             if isinstance(d, psi.ScramblingDescriptor)]
    assert modes == [SCRAMBLING_MODE_CISSA]


def test_cat_names_the_emm_pid() -> None:
    cat = psi.parse_cat(build_tables(_services(), _settings())[CAT_PID][0])
    assert [(d.ca_system_id, d.ca_pid) for d in cat.descriptors
            if isinstance(d, psi.CaDescriptor)] == [(0xDEAD, 0x0C00)]


def test_sdt_names_lcns_and_free_ca_mode() -> None:
    sdt = psi.parse_sdt(build_tables(_services(), _settings())[SDT_PID][0])
    assert sdt.actual and sdt.original_network_id == 6
    by_id = {s.service_id: s for s in sdt.services}
    assert by_id[1001].free_ca_mode is True
    assert by_id[1002].free_ca_mode is False
    names = {sid: next(d for d in s.descriptors if isinstance(d, psi.ServiceDescriptor))
             for sid, s in by_id.items()}
    assert names[1001].name_text == "Qazaqstan" and names[1001].provider_text == "op"
    lcns: dict[int, int] = {}
    for s in sdt.services:
        for d in s.descriptors:
            lcns.update(psi.logical_channel_numbers(d))
    assert lcns == {1001: 1, 1002: 2}


def test_schedule_repeats_pat_every_100ms_and_sdt_every_second() -> None:
    sched = PsiSchedule(build_tables(_services(), _settings()))
    out = sched.due(2.0 - 1e-9)
    pkts = packets(b"".join(p for _, p in out))
    count = {pid: sum(1 for p in pkts if pid_of(p) == pid)
             for pid in (PAT_PID, CAT_PID, 0x1000, 0x1001, SDT_PID)}
    assert count == {PAT_PID: 20, CAT_PID: 20, 0x1000: 20, 0x1001: 20, SDT_PID: 2}
    times = [t for t, _ in out]
    assert times == sorted(times)
    assert {round(t, 6) for t, p in out if pid_of(p[:188]) == PAT_PID} == {
        round(i * 0.1, 6) for i in range(20)}
    more = packets(b"".join(p for _, p in sched.due(3.0)))
    assert cc_errors(pkts + more) == 0
