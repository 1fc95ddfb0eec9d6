"""The box's verdict is a pure function of what it saw: one test per rule of
:mod:`firmware_stub.verdict`, facts built by hand (no card, no stream)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cas.reasons import Reason
from firmware_stub.demux import SCRAMBLING_CISSA, EsInfo, ServiceInfo
from firmware_stub.observations import ChannelFacts, EcmFacts, EsFacts
from firmware_stub.verdict import verdict

ECM_PID = 0x0101
VIDEO, AUDIO = 0x0100, 0x0102


def _service(**changes: object) -> ServiceInfo:
    svc = ServiceInfo(service_id=7, pmt_pid=0x1000, name="News", lcn=3, in_pat=True,
                      has_pmt=True, streams=(EsInfo(pid=VIDEO, stream_type=0x1B,
                                                    ecm_pid=ECM_PID),
                                             EsInfo(pid=AUDIO, stream_type=0x03,
                                                    ecm_pid=ECM_PID)))
    return replace(svc, **changes)  # type: ignore[arg-type]


def _es(pid: int, *, clear: int = 0, scrambled: int = 100, checks_ok: int = 2,
        last_check: bool | None = True) -> EsFacts:
    return EsFacts(pid=pid, ecm_pid=ECM_PID, clear=clear, scrambled=scrambled,
                   checks_ok=checks_ok, last_check=last_check)


def _ecm(reason: Reason | None = Reason.OPEN, *, sections: int = 10, problem: str = "",
         detail: str = "") -> EcmFacts:
    return EcmFacts(pid=ECM_PID, sections=sections, problem=problem, reason=reason,
                    detail=detail)


def _facts(**changes: object) -> ChannelFacts:
    facts = ChannelFacts(service=_service(), streams=(_es(VIDEO), _es(AUDIO)),
                         ecm={ECM_PID: _ecm()}, ca_system_id=0x4AE1, card_present=True,
                         card_error=None)
    return replace(facts, **changes)  # type: ignore[arg-type]


def test_open_when_the_card_answered_and_the_words_descramble() -> None:
    status = verdict(_facts())
    assert (status.reason, status.scrambled, status.scrambling, status.ecm_pid) == (
        Reason.OPEN, True, "CSA2", ECM_PID)
    assert (status.channel, status.service_id, status.name) == (3, 7, "News")
    assert status.detail == "descrambled (CSA2), 4 PES starts checked"


def test_rule_1_not_in_the_pat() -> None:
    status = verdict(_facts(service=_service(in_pat=False)))
    assert (status.reason, status.scrambled, status.ecm_pid) == (
        Reason.UNKNOWN_CHANNEL, False, None)
    assert status.detail == "listed in the SDT but not in the PAT"


def test_rule_2_no_pmt() -> None:
    status = verdict(_facts(service=_service(has_pmt=False), card_present=False))
    assert (status.reason, status.detail) == (Reason.UNKNOWN_CHANNEL, "no valid PMT received")


@pytest.mark.parametrize(("streams", "detail"), [
    ((EsFacts(pid=VIDEO, ecm_pid=None, clear=5, scrambled=0, checks_ok=0, last_check=None),),
     "clear (free to air)"),
    ((), "clear; no packets seen"),
])
def test_rule_3_free_to_air(streams: tuple[EsFacts, ...], detail: str) -> None:
    svc = _service(streams=(EsInfo(pid=VIDEO, stream_type=0x1B, ecm_pid=None),))
    status = verdict(_facts(service=svc, streams=streams, card_present=False))
    assert (status.reason, status.scrambled, status.detail) == (Reason.OPEN, False, detail)


def test_rule_3_clear_packets_on_a_ca_signalled_service_are_open_without_a_card() -> None:
    streams = (_es(VIDEO, clear=5, scrambled=0), _es(AUDIO, clear=5, scrambled=0))
    status = verdict(_facts(streams=streams, card_present=False))
    assert (status.reason, status.scrambled) == (Reason.OPEN, False)


def test_rule_4_no_ca_descriptor_for_our_system() -> None:
    svc = _service(streams=(EsInfo(pid=VIDEO, stream_type=0x1B, ecm_pid=None),),
                   other_ca_systems=(0x0B00,))
    streams = (EsFacts(pid=VIDEO, ecm_pid=None, clear=0, scrambled=9, checks_ok=0,
                       last_check=None),)
    status = verdict(_facts(service=svc, streams=streams))
    assert status.reason is Reason.NO_ECM
    assert status.detail == "no CA_descriptor for CA system 0x4AE1 (only for 0x0B00)"


def test_rule_5_no_card_comes_before_the_card_error_and_the_ecms() -> None:
    status = verdict(_facts(card_present=False, card_error="mute", ecm={}))
    assert (status.reason, status.detail) == (Reason.NO_CARD, "no card in the slot")


def test_rule_6_card_error() -> None:
    status = verdict(_facts(card_error="card does not answer SELECT", ecm={}))
    assert (status.reason, status.detail) == (Reason.CARD_ERROR,
                                              "card does not answer SELECT")


@pytest.mark.parametrize(("ecm", "detail"), [
    ({}, f"no ECM received on PID {ECM_PID}"),
    ({ECM_PID: _ecm(None, sections=0)}, f"no ECM received on PID {ECM_PID}"),
    ({ECM_PID: _ecm(None)}, f"no usable ECM on PID {ECM_PID}"),
    ({ECM_PID: _ecm(None, problem="unreadable ECM: crc")}, "unreadable ECM: crc"),
])
def test_rule_7_no_usable_answer_is_no_ecm(ecm: dict[int, EcmFacts], detail: str) -> None:
    status = verdict(_facts(ecm=ecm))
    assert (status.reason, status.detail, status.ecm_pid) == (Reason.NO_ECM, detail, ECM_PID)


def test_rule_7_the_cards_refusal_is_the_verdict() -> None:
    status = verdict(_facts(ecm={ECM_PID: _ecm(Reason.NOT_SUBSCRIBED, detail="9802")}))
    assert (status.reason, status.detail) == (Reason.NOT_SUBSCRIBED, "9802")


def test_rule_7_the_first_ecm_pid_without_an_answer_wins() -> None:
    other = 0x0103
    svc = _service(streams=(EsInfo(pid=VIDEO, stream_type=0x1B, ecm_pid=ECM_PID),
                            EsInfo(pid=AUDIO, stream_type=0x03, ecm_pid=other)))
    streams = (_es(VIDEO), replace(_es(AUDIO), ecm_pid=other))
    ecm = {ECM_PID: _ecm(Reason.OPEN),
           other: EcmFacts(pid=other, sections=3, problem="", reason=Reason.REGION_BLACKOUT,
                           detail="")}
    status = verdict(_facts(service=svc, streams=streams, ecm=ecm))
    assert (status.reason, status.ecm_pid) == (Reason.REGION_BLACKOUT, other)


def test_rule_8_words_that_do_not_descramble() -> None:
    status = verdict(_facts(streams=(_es(VIDEO), _es(AUDIO, last_check=False))))
    assert status.reason is Reason.NO_ECM
    assert status.detail == (f"control words do not descramble PID {AUDIO} "
                             "(no PES start code after descrambling)")


def test_rule_9_words_received_nothing_to_check() -> None:
    streams = (_es(VIDEO, checks_ok=0, last_check=None),)
    status = verdict(_facts(service=_service(scrambling_mode=SCRAMBLING_CISSA),
                            streams=streams))
    assert (status.reason, status.scrambling) == (Reason.OPEN, "CISSA")
    assert status.detail == "control words received (CISSA); no PES start to check"
