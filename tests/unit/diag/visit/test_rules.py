"""The visit's rules on facts built by hand: no card, no box, no store, only the decision."""

from __future__ import annotations

import pytest

from cas.diag.probe import ProbeReport, probe_bytes
from cas.diag.synth import SynthOptions, make_stream
from cas.diag.visit import Cause, VisitFacts, diagnose
from cas.reasons import Reason, info
from firmware_stub.report import ChannelStatus

AT_S = 1_780_000_000


@pytest.fixture(scope="module")
def probe() -> ProbeReport:
    return probe_bytes(make_stream(options=SynthOptions(duration_s=2.0, bitrate_bps=4_000_000,
                                                        crypto_period_s=1.0)))


def status(probe: ProbeReport, index: int, reason: Reason, detail: str = "") -> ChannelStatus:
    svc = probe.services[index]
    return ChannelStatus(channel=svc.service_id, service_id=svc.service_id,
                         name=svc.name or "", reason=reason, scrambled=True, detail=detail)


def facts(probe: ProbeReport, *statuses: ChannelStatus) -> VisitFacts:
    return VisitFacts(at_s=AT_S, probe=probe, statuses=statuses, card=None, card_seq=None,
                      box=None, lock=None, headend=None, chip_id=None)


def test_clean_stream_has_findings_only_where_the_box_locked(probe: ProbeReport) -> None:
    verdicts, roots = diagnose(facts(probe, status(probe, 0, Reason.OPEN),
                                     status(probe, 1, Reason.REGION_BLACKOUT)))
    assert verdicts[0].state == "OPEN" and verdicts[0].findings == ()
    # rule 6 without head-end or card: the on-screen reason's own words
    (only,) = verdicts[1].findings
    assert only.cause is Cause.REGION_BLACKOUT and only.summary == info(Reason.REGION_BLACKOUT).en
    assert [r.finding.cause for r in roots] == [Cause.REGION_BLACKOUT]


def test_malfunctions_rank_before_the_commercial_state(probe: ProbeReport) -> None:
    verdicts, roots = diagnose(facts(probe, status(probe, 0, Reason.ENTITLEMENT_EXPIRED),
                                     status(probe, 1, Reason.NO_ECM, "no ECM answered"),
                                     status(probe, 2, Reason.NO_CARD)))
    # rule 3: NO_ECM with no stream alarm to explain it; rule 1: the card itself
    assert verdicts[1].findings[0].cause is Cause.NO_USABLE_ECM
    assert verdicts[2].findings[0].cause is Cause.NO_CARD
    # rule 10: tiers 0-3 first, the most basic first; the expired right last
    assert [r.finding.cause for r in roots] == [Cause.NO_CARD, Cause.NO_USABLE_ECM,
                                                 Cause.ENTITLEMENT_EXPIRED]


def test_the_same_facts_give_the_same_verdicts(probe: ProbeReport) -> None:
    f = facts(probe, status(probe, 0, Reason.PAIRING_MISMATCH, "paired with chip 00000001"))
    first = diagnose(f)
    assert first == diagnose(f)
    assert first[0][0].findings[0].cause is Cause.PAIRING_MISMATCH
