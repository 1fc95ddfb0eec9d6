"""A stream scrambled with the catalog's channel numbers: the box (and ``stb scan``) numbers
its channels by the SDT's logical_channel_descriptor, not by service_id."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cas.access import AccessCriteria
from cas.headend.ecmgen import EcmSettings, channel_ecms_for
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.reasons import Reason
from tests.integration.firmware_stub.headend import (
    START_S,
    HeadEnd,
    emm_packets,
    insert_after,
    stb_scan_json,
)

NEWS, SPORT = 1001, 1012
NUMBERS = {NEWS: 1, SPORT: 12}
EMM_PID = 0x0BFF
CRITERIA = {NEWS: AccessCriteria(channel_id=NEWS, package_ids=(1,)),
            SPORT: AccessCriteria(channel_id=SPORT, package_ids=(2,))}


@pytest.fixture(scope="module")
def he() -> HeadEnd:
    return HeadEnd(seed=5)


@pytest.fixture(scope="module")
def stream(he: HeadEnd, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    clear = tmp_path_factory.mktemp("lcn") / "clear.ts"
    make_test_stream([TestService(service_id=NEWS, name="News"),
                      TestService(service_id=SPORT, name="Sport")], clear,
                     TestStreamOptions(duration_s=2.5))
    services = channel_ecms_for(he.keys, CRITERIA, settings=EcmSettings(crypto_period_ms=1000),
                                start_s=START_S, rng=he.rng)
    config = ScrambleConfig(algorithm=Algorithm.CSA2, crypto_period_ms=1000, emm_pid=EMM_PID,
                            channel_numbers=NUMBERS)
    out = io.BytesIO()
    Scrambler(config, services, payload_cipher(Algorithm.CSA2)).run(
        io.BytesIO(clear.read_bytes()), out)
    return out.getvalue()


def test_box_scan_numbers_channels_by_lcn(he: HeadEnd, stream: bytes) -> None:
    chip, card = he.chip(0x0A100001), he.card(2_100_000_001)
    with_emms = insert_after(stream, emm_packets(EMM_PID, [he.pair_emm(card, chip),
                                                           he.activate_emm(card, [1])]), pid=1)
    report = he.boot(chip, None, card).scan(with_emms)
    assert report.reasons() == {1: Reason.OPEN, 12: Reason.CHANNEL_NOT_IN_PACKAGE}
    news = report.channel(1)
    assert (news.service_id, news.name) == (NEWS, "News")
    assert report.channel(12).service_id == SPORT
    # tuning is by the number the viewer sees, too
    watched = he.boot(chip, None, card).watch(with_emms, 1, io.BytesIO())
    assert watched.status is not None and watched.status.open


def test_stb_scan_json_shows_the_numbers(he: HeadEnd, stream: bytes, tmp_path: Path) -> None:
    channels = stb_scan_json(he, 0x0A100002, stream, tmp_path)
    assert {(c["channel"], c["service_id"], c["name"]) for c in channels} == {
        (1, NEWS, "News"), (12, SPORT, "Sport")}
