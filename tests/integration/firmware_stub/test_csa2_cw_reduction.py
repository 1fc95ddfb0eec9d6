"""Issue 12, item 17: a head-end whose ECMs carry full 64-bit CSA2 control words and whose
scrambler uses their entropy-reduced form (TSDuck's scrambler in its default mode) — the box
must reduce the CW from the ECM, as every DVB-CSA2 receiver does, and open the channel.

Real layers throughout: ECMs sealed by ``cas.headend.ecmgen``, the card's applet, the box's
chipset and descrambler, libdvbcsa for scrambling and descrambling.
"""

from __future__ import annotations

import io
import os

import pytest

from cas.access import AccessCriteria
from cas.crypto.cw import is_reduced_cw, reduce_cw
from cas.headend.ecmgen import EcmGenerator, cw_slots
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler
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

NEWS = 101
BASE = 1
EMM_PID = 0x0BFF


class FullCwService:
    """A service as another vendor's head-end runs it: the ECM carries the full 64-bit CW
    (bytes 3 and 7 not the checksums), the payload is scrambled with its reduction."""

    def __init__(self, he: HeadEnd, criteria: AccessCriteria) -> None:
        self.generator = EcmGenerator(he.keys, rng=he.rng)
        self.criteria = criteria
        self.full: dict[int, bytes] = {}

    @property
    def channel_id(self) -> int:
        return self.criteria.channel_id

    def full_cw(self, cp: int) -> bytes:
        while cp not in self.full:
            cw = os.urandom(8)
            if not is_reduced_cw(cw):
                self.full[cp] = cw
        return self.full[cp]

    def cw(self, cp: int) -> bytes:
        """What the payload is scrambled with: the reduced CW (whatever our scrambler does)."""
        return reduce_cw(self.full_cw(cp))

    def ecm_section(self, cp: int) -> bytes:
        even, odd = cw_slots(cp, self.full_cw(cp), self.full_cw(cp + 1))
        return self.generator.ecm(self.criteria, cp=cp, cw_even=even, cw_odd=odd,
                                  timestamp_s=START_S + cp)


class _Csa2AsGiven:
    """A payload cipher keyed with exactly the CW it is given (libdvbcsa, no reduction)."""

    def __init__(self) -> None:
        from cas.crypto.csa2 import Csa2

        self._csa2 = Csa2()

    def scramble(self, view: memoryview, *, parity: int, pids: object, cw: bytes) -> int:
        self._csa2.set_cw(parity, cw)
        return self._csa2.scramble(view, parity, pids=pids)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clear_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return clear_stream(tmp_path_factory, [TestService(service_id=NEWS, name="News")], 3.0)


def test_ecms_with_full_cws_open_a_stream_scrambled_with_reduced_cws(clear_ts: bytes) -> None:
    he = HeadEnd(seed=17)
    service = FullCwService(he, AccessCriteria(channel_id=NEWS, package_ids=(BASE,)))
    config = ScrambleConfig(algorithm=Algorithm.CSA2, crypto_period_ms=1000, emm_pid=EMM_PID,
                            emm_repeat=True)
    out = io.BytesIO()
    report = Scrambler(config, {NEWS: service}, _Csa2AsGiven()).run(io.BytesIO(clear_ts), out)
    assert report.crypto_periods >= 3
    assert all(not is_reduced_cw(cw) for cw in service.full.values())
    chip, card = he.chip(0x17000001), he.card(2_000_001_701)
    stream = insert_after(out.getvalue(),
                          emm_packets(EMM_PID, [he.pair_emm(card, chip),
                                                he.activate_emm(card, [BASE])]), pid=1)
    box = he.boot(chip, None, card)
    scan = box.scan(stream)
    assert scan.channel(NEWS).reason is Reason.OPEN, scan.channel(NEWS).detail
    watched = io.BytesIO()
    box.watch(stream, NEWS, watched)
    got = es_payloads(watched.getvalue(), 0x100)
    want = es_payloads(clear_ts, 0x100)
    assert got and got == want[len(want) - len(got):]
