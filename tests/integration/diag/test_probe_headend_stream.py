"""The probe on what the head-end really sends: an ffmpeg stream scrambled by
:mod:`cas.headend.scrambler` with ECMs from :mod:`cas.headend.ecmgen` and a real EMM
carousel.  Everything the probe counts is checked against the scrambler's own report."""

from __future__ import annotations

import io
import random

import pytest

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys
from cas.diag.probe import probe_bytes
from cas.formats.emm import EmmHeader, SetStatus, UniqueAddress
from cas.headend.ecmgen import EcmSettings, channel_ecms_for
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.messages import seal_emm

START_S = 1_790_000_000


@pytest.mark.parametrize("algorithm", [Algorithm.CSA2, Algorithm.CISSA])
def test_probe_agrees_with_the_scrambler(tmp_path_factory: pytest.TempPathFactory,
                                         algorithm: Algorithm) -> None:
    clear = tmp_path_factory.mktemp("clear") / "clear.ts"
    make_test_stream([TestService(service_id=101, name="News", provider="Op"),
                      TestService(service_id=102, name="Sport", provider="Op")], clear,
                     TestStreamOptions(duration_s=5.0))
    r = random.Random(5)

    def rng(n: int) -> bytes:
        return r.randbytes(n)

    keys = OperatorKeys.generate(rng, now_s=START_S)
    criteria = {sid: AccessCriteria(channel_id=sid, package_ids=(1,)) for sid in (101, 102)}
    settings = EcmSettings(crypto_period_ms=1000, cw_length=algorithm.cw_length)
    services = channel_ecms_for(keys, criteria, settings=settings, start_s=START_S, rng=rng)
    emms = [seal_emm(keys.cuk(serial), EmmHeader(address=UniqueAddress(serial=serial), seq=1,
                                                 not_after_s=START_S + 86400),
                     [SetStatus(status=1)], rng(12))
            for serial in (2_000_000_001, 2_000_000_002, 2_000_000_003)]
    config = ScrambleConfig(algorithm=algorithm, crypto_period_ms=1000, emm_pid=0x0BFF,
                            emm_repeat=True)
    out = io.BytesIO()
    report = Scrambler(config, services, payload_cipher(algorithm),
                       emm_sections=emms).run(clear.open("rb"), out)
    probe = probe_bytes(out.getvalue())

    assert probe.alarms == ()
    assert probe.packets == report.packets_out
    pids = {p.pid: p for p in probe.pids}
    assert sum(p.scrambled for p in probe.pids) == report.scrambled_packets
    assert pids[0x0BFF].packets == report.emm_packets
    for svc in report.services:
        mine = probe.service(svc.service_id)
        assert mine is not None and mine.state == "scrambled"
        assert mine.pmt_pid == svc.pmt_pid and mine.pcr_pid == svc.pcr_pid
        assert set(mine.es_pids) == set(svc.es_pids)
        assert mine.ecm_pids == (svc.ecm_pid,)
        assert mine.name == {101: "News", 102: "Sport"}[svc.service_id]
        assert mine.scrambling_mode == (0x10 if algorithm is Algorithm.CISSA else None)
    assert sum(pids[s.ecm_pid].packets for s in report.services) == report.ecm_packets
    # A file made by ffmpeg is not a constant-rate multiplex: its PCRs and its packet
    # positions drift apart by up to ~0.1 s, and each program is timed by its own PCR.
    assert probe.crypto_period_s == pytest.approx(1.0, abs=0.05)
    for s in probe.scrambling:
        assert s.crypto_period_s == pytest.approx(1.0, abs=0.15)
        assert s.parity_changes == report.crypto_periods - 1
    for ecm in probe.ecms:
        assert ecm.mean_interval_ms == pytest.approx(100, abs=10)
        assert ecm.parity_changes == report.crypto_periods - 1
        assert ecm.channel_ids == ecm.service_ids
    (emm,) = probe.emms
    assert emm.by_address == {"unique": emm.sections} and len(emm.unique) == 3
    assert probe.emms_for_card(2_000_000_002).unique >= 1
