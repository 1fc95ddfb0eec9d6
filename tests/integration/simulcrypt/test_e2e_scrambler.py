"""End to end through SimulCrypt: our scrambler acts as SCS against our ECMG over TCP, and
the STB stub descrambles the result.

ffmpeg test stream → ``cas.headend.scrambler`` with :class:`EcmgServiceCrypto` (CWs drawn by
the scrambler, CW_provision over TCP, ECMs from ``cas ecmg``'s server) → EMMs for one card →
box: the subscribed channel plays back byte for byte, the other is refused for the reason the
ECM's access criteria (carried in SimulCrypt's access_criteria) give.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from cas.access import AccessCriteria
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
from cas.headend.simulcrypt import access_criteria as ac
from cas.headend.simulcrypt.ecmg import EcmgConfig, EcmgServer, sealed_ecm_builder
from cas.headend.simulcrypt.scs import BlockingScsClient, EcmgServiceCrypto
from cas.headend.teststream import TestService
from cas.reasons import Reason
from tests.fixtures.streams import clear_stream
from tests.integration.firmware_stub.headend import (
    START_S,
    HeadEnd,
    emm_packets,
    es_payloads,
    insert_after,
)

from .conftest import TIMEOUT_S, ThreadedServer

NEWS, SPORT = 201, 202
BASE, SPORT_PKG = 1, 2
CRITERIA = {NEWS: AccessCriteria(channel_id=NEWS, package_ids=(BASE,)),
            SPORT: AccessCriteria(channel_id=SPORT, package_ids=(SPORT_PKG,))}
EMM_PID = 0x0BFF
CAT_PID = 1


@pytest.fixture(scope="module")
def clear_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return clear_stream(tmp_path_factory, [TestService(service_id=NEWS, name="News"),
                                           TestService(service_id=SPORT, name="Sport")], 3.0)


@pytest.mark.parametrize(("algorithm", "ts_packets"), [(Algorithm.CSA2, False),
                                                       (Algorithm.CISSA, True)])
def test_stream_scrambled_with_ecmg_ecms_plays_in_the_box(clear_ts: bytes, algorithm: Algorithm,
                                                          ts_packets: bool) -> None:
    he = HeadEnd(seed=11)
    # The ECMG stamps ECMs with the head-end's (fixed) time, so the card judges them then.
    server = ThreadedServer(lambda: EcmgServer(
        sealed_ecm_builder(he.keys), EcmgConfig(ts_packets=ts_packets),
        clock=lambda: datetime.fromtimestamp(START_S, UTC)))
    try:
        with BlockingScsClient("127.0.0.1", server.port, channel_id=1,
                               super_cas_id=0xDEAD0000, timeout_s=TIMEOUT_S) as scs:
            services = {sid: EcmgServiceCrypto(scs, channel_id=sid, stream_id=i + 1,
                                               ecm_id=i + 1, cw_length=algorithm.cw_length,
                                               access_criteria=ac.encode_full(criteria),
                                               nominal_cp_duration_100ms=10)
                        for i, (sid, criteria) in enumerate(CRITERIA.items())}
            config = ScrambleConfig(algorithm=algorithm, crypto_period_ms=1000,
                                    emm_pid=EMM_PID)
            out = io.BytesIO()
            report = Scrambler(config, services, payload_cipher(algorithm)).run(
                io.BytesIO(clear_ts), out)
        ecms = server.call(lambda: server.server.registry.ecms_sent)
    finally:
        server.stop()
    assert report.crypto_periods >= 3 and report.scrambled_packets > 0
    assert ecms >= 2 * report.crypto_periods       # every service, every period, from the ECMG
    assert es_payloads(out.getvalue(), 0x100) != es_payloads(clear_ts, 0x100)

    chip, card = he.chip(0x0E000001), he.card(2_000_000_701)
    stream = insert_after(out.getvalue(), emm_packets(EMM_PID, [
        he.pair_emm(card, chip), he.activate_emm(card, [BASE])]), pid=CAT_PID)
    scan = he.boot(chip, None, card).scan(stream)
    assert scan.reasons() == {NEWS: Reason.OPEN, SPORT: Reason.CHANNEL_NOT_IN_PACKAGE}

    clear_out = io.BytesIO()
    result = he.boot(chip, None, card).watch(stream, NEWS, clear_out)
    assert result.status is not None and result.status.open
    for pid in (0x100, 0x101):   # ffmpeg's video and audio PIDs of the first programme
        got, want = es_payloads(clear_out.getvalue(), pid), es_payloads(clear_ts, pid)
        assert len(got) > 0.9 * len(want)
        assert got == want[len(want) - len(got):]
