"""End to end, in process: ffmpeg stream → head-end scrambler + ECMs + EMMs → card → box.

Every lock reason the box can give, each from the situation that causes it, and the open
channels descrambled back to the clear input's payloads byte for byte.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from cas.access import NO_MATURITY_LIMIT, AccessCriteria, CardStatus
from cas.formats.ts import Packetizer
from cas.headend.scrambler import Algorithm
from cas.headend.teststream import TestService
from cas.reasons import Reason
from firmware_stub.demux import Demux
from firmware_stub.nvram import load_nvram
from tests.fixtures.streams import clear_stream
from tests.integration.firmware_stub.headend import (
    DAY_S,
    START_S,
    HeadEnd,
    emm_packets,
    es_payloads,
    insert_after,
    insert_at_fraction,
)

NEWS, SPORT, MOVIES, REGIONAL = 101, 102, 103, 104
BASE, SPORT_PKG = 1, 2
CRITERIA = {
    NEWS: AccessCriteria(channel_id=NEWS, package_ids=(BASE,)),
    SPORT: AccessCriteria(channel_id=SPORT, package_ids=(SPORT_PKG,)),
    MOVIES: AccessCriteria(channel_id=MOVIES, package_ids=(BASE,), maturity_rating=18),
    REGIONAL: AccessCriteria(channel_id=REGIONAL, package_ids=(BASE,), regions=(2,)),
}
EMM_PID = 0x0BFF
CAT_PID = 1


@pytest.fixture(scope="module")
def clear_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return clear_stream(tmp_path_factory, [TestService(service_id=NEWS, name="News"),
                                           TestService(service_id=SPORT, name="Sport"),
                                           TestService(service_id=MOVIES, name="Movies"),
                                           TestService(service_id=REGIONAL, name="Regional")],
                        3.0)


@pytest.fixture(scope="module")
def he() -> HeadEnd:
    return HeadEnd(seed=7)


@pytest.fixture(scope="module")
def scrambled(he: HeadEnd, clear_ts: bytes) -> bytes:
    data, report = he.scramble(clear_ts, CRITERIA, emm_pid=EMM_PID)
    assert report.crypto_periods >= 3
    return data


def with_emms(stream: bytes, sections: list[bytes]) -> bytes:
    """The EMMs right after the first CAT, as the head-end's carousel would put them."""
    return insert_after(stream, emm_packets(EMM_PID, sections), pid=CAT_PID)


def test_subscriber_with_base_package_and_kids_profile(he: HeadEnd, scrambled: bytes,
                                                       tmp_path: Path) -> None:
    chip, card = he.chip(0x0A000001), he.card(2_000_000_001)
    stream = with_emms(scrambled, [he.pair_emm(card, chip),
                                   he.activate_emm(card, [BASE], region=1, maturity=12)])
    box = he.boot(chip, tmp_path / "nvram.json", card)
    report = box.scan(stream)
    assert report.reasons() == {NEWS: Reason.OPEN, SPORT: Reason.CHANNEL_NOT_IN_PACKAGE,
                                MOVIES: Reason.MATURITY_LOCKED,
                                REGIONAL: Reason.REGION_BLACKOUT}
    news = report.channel(NEWS)
    assert news.name == "News" and news.scrambling == "CSA2"
    assert "PES starts checked" in news.detail
    assert report.channel(MOVIES).screen_code == "E22"
    assert report.emm["passed_unique"] == 2 and report.emm["card_applied"] == 2
    # the NVRAM kept the pairing (as the blob, never the key) and the counters
    nv = load_nvram(tmp_path / "nvram.json", chip_id=chip.chip_id)
    assert nv.pairing is not None and nv.pairing.card_serial == card.serial
    assert nv.counters["ecm_cws"] >= 3 and nv.boot_count == 1
    assert nv.last_emm is not None and nv.last_emm.result == "applied"


def test_right_pin_opens_the_maturity_locked_channel(he: HeadEnd, scrambled: bytes) -> None:
    chip, card = he.chip(0x0A000002), he.card(2_000_000_002, pin="4321")
    stream = with_emms(scrambled, [he.pair_emm(card, chip),
                                   he.activate_emm(card, [BASE], region=2, maturity=12)])
    report = he.boot(chip, None, card).scan(stream, pin="4321")
    assert report.reasons() == {NEWS: Reason.OPEN, SPORT: Reason.CHANNEL_NOT_IN_PACKAGE,
                                MOVIES: Reason.OPEN, REGIONAL: Reason.OPEN}
    assert report.pin == "PIN accepted"


def test_wrong_pin_counts_down_and_then_blocks(he: HeadEnd, scrambled: bytes) -> None:
    chip, card = he.chip(0x0A000003), he.card(2_000_000_003, pin="1111")
    stream = with_emms(scrambled, [he.pair_emm(card, chip),
                                   he.activate_emm(card, [BASE], maturity=12)])
    box = he.boot(chip, None, card)
    tries = []
    for _ in range(3):
        report = box.scan(stream, pin="9999")
        tries.append((report.channel(MOVIES).reason, card.applet.record.pin_retries_left))
        if report.channel(MOVIES).reason is Reason.MATURITY_LOCKED:
            assert report.channel(MOVIES).detail.startswith("wrong PIN (")
    assert tries == [(Reason.MATURITY_LOCKED, 2), (Reason.MATURITY_LOCKED, 1),
                     (Reason.PIN_BLOCKED, 0)]
    # blocked: even the right PIN does not open it now
    assert box.scan(stream, pin="1111").channel(MOVIES).reason is Reason.PIN_BLOCKED
    assert box.scan(stream).channel(NEWS).reason is Reason.OPEN


@pytest.mark.parametrize(("status", "reason"), [
    (CardStatus.SUSPENDED, Reason.CARD_SUSPENDED),
    (CardStatus.FINANCIAL_BLOCK, Reason.FINANCIAL_BLOCK),
    (CardStatus.KILLED, Reason.CARD_KILLED),
    (CardStatus.INACTIVE, Reason.CARD_NOT_ACTIVE),
])
def test_card_status_locks_every_channel(he: HeadEnd, scrambled: bytes, status: CardStatus,
                                         reason: Reason) -> None:
    chip, card = he.chip(0x0B000000 | status), he.card(2_000_000_100 + status)
    stream = with_emms(scrambled, [he.pair_emm(card, chip),
                                   he.activate_emm(card, [BASE, SPORT_PKG], status=status)])
    report = he.boot(chip, None, card).scan(stream)
    assert set(report.reasons().values()) == {reason}


@pytest.mark.parametrize(("start", "end", "reason"), [
    (START_S - 60 * DAY_S, START_S - 30 * DAY_S, Reason.ENTITLEMENT_EXPIRED),
    (START_S + 5 * DAY_S, START_S + 35 * DAY_S, Reason.NOT_YET_VALID),
])
def test_entitlement_dates(he: HeadEnd, scrambled: bytes, start: int, end: int,
                           reason: Reason) -> None:
    chip, card = he.chip(0x0C000000 | (start & 0xFFF)), he.card(2_000_000_200 + (start & 0xFF))
    stream = with_emms(scrambled, [he.pair_emm(card, chip),
                                   he.activate_emm(card, [BASE], start_s=start, end_s=end)])
    report = he.boot(chip, None, card).scan(stream)
    assert report.channel(NEWS).reason is reason
    assert report.channel(SPORT).reason is Reason.NOT_SUBSCRIBED


def test_no_package_at_all(he: HeadEnd, scrambled: bytes) -> None:
    chip, card = he.chip(0x0D000001), he.card(2_000_000_301)
    stream = with_emms(scrambled, [he.pair_emm(card, chip), he.activate_emm(card, [])])
    report = he.boot(chip, None, card).scan(stream)
    assert report.reasons() == {NEWS: Reason.NOT_SUBSCRIBED, SPORT: Reason.NOT_SUBSCRIBED,
                                MOVIES: Reason.NOT_SUBSCRIBED,
                                REGIONAL: Reason.REGION_BLACKOUT}  # region comes first


def test_card_moved_to_another_box_gives_pairing_mismatch(he: HeadEnd, scrambled: bytes,
                                                           tmp_path: Path) -> None:
    home, other = he.chip(0x0E000001), he.chip(0x0E000002)
    card = he.card(2_000_000_401)
    stream = with_emms(scrambled, [he.pair_emm(card, home),
                                   he.activate_emm(card, [BASE, SPORT_PKG], region=2,
                                                   maturity=NO_MATURITY_LIMIT)])
    at_home = he.boot(home, tmp_path / "home.json", card).scan(stream)
    assert set(at_home.reasons().values()) == {Reason.OPEN}
    moved = he.boot(other, tmp_path / "other.json", card)
    report = moved.scan(stream)
    assert set(report.reasons().values()) == {Reason.PAIRING_MISMATCH}
    assert "0E000001" in report.channel(NEWS).detail
    assert report.card.paired_chip_id == home.chip_id


def test_card_never_paired(he: HeadEnd, scrambled: bytes) -> None:
    chip, card = he.chip(0x0E000003), he.card(2_000_000_402)
    stream = with_emms(scrambled, [he.activate_emm(card, [BASE])])
    report = he.boot(chip, None, card).scan(stream)
    assert report.channel(NEWS).reason is Reason.PAIRING_MISMATCH
    assert "not paired" in report.channel(NEWS).detail


def test_no_card(he: HeadEnd, scrambled: bytes) -> None:
    report = he.boot(he.chip(0x0F000001), None, None).scan(scrambled)
    assert set(report.reasons().values()) == {Reason.NO_CARD}
    assert report.channel(NEWS).screen_code == "E04"
    assert not report.card.present


def _drop_pid(stream: bytes, pid: int) -> bytes:
    return b"".join(stream[i:i + 188] for i in range(0, len(stream), 188)
                    if ((stream[i + 1] & 0x1F) << 8) | stream[i + 2] != pid)


class _Quiet:
    def on_lineup(self) -> None: ...
    def on_ecm(self, pid: int, section: bytes, packet_index: int) -> None: ...
    def on_emm(self, pid: int, section: bytes, packet_index: int) -> None: ...
    def on_es(self, pid: int, packet: bytes, packet_index: int) -> None: ...


def _ecm_pid(stream: bytes, service_id: int) -> int:
    dmx = Demux(_Quiet())
    dmx.feed(stream)
    dmx.finish()
    pid = dmx.service(service_id).program_ecm_pid
    assert pid is not None
    return pid


def test_missing_and_garbage_ecms_give_no_ecm(he: HeadEnd, scrambled: bytes) -> None:
    chip, card = he.chip(0x10000001), he.card(2_000_000_501)
    sport_ecm = _ecm_pid(scrambled, SPORT)
    news_ecm = _ecm_pid(scrambled, NEWS)
    stream = _drop_pid(_drop_pid(scrambled, sport_ecm), news_ecm)
    # News gets garbage on its ECM PID instead of ECMs: the card refuses them
    garbage = bytearray(b"\x80\x70\x40" + bytes(range(64)))
    forged = Packetizer(news_ecm).packetize(bytes(garbage))
    stream = insert_after(stream, b"".join(forged) * 3, pid=CAT_PID)
    stream = with_emms(stream, [he.pair_emm(card, chip),
                                he.activate_emm(card, [BASE, SPORT_PKG])])
    report = he.boot(chip, None, card).scan(stream)
    assert report.channel(SPORT).reason is Reason.NO_ECM
    assert report.channel(SPORT).detail == f"no ECM received on PID {sport_ecm}"
    assert report.channel(NEWS).reason is Reason.NO_ECM
    assert "ECM" in report.channel(NEWS).detail
    assert report.channel(MOVIES).reason is Reason.OPEN


def test_watch_gives_back_the_clear_payloads_byte_for_byte(he: HeadEnd, clear_ts: bytes,
                                                           scrambled: bytes,
                                                           tmp_path: Path) -> None:
    chip, card = he.chip(0x11000001), he.card(2_000_000_601)
    stream = with_emms(scrambled, [he.pair_emm(card, chip), he.activate_emm(card, [BASE])])
    out = io.BytesIO()
    result = he.boot(chip, None, card).watch(stream, NEWS, out)
    assert result.status is not None and result.status.open
    assert result.first_ecm_to_clear_s is not None and result.first_ecm_to_clear_s >= 0
    clear_out = out.getvalue()
    for pid in (0x100, 0x101):  # ffmpeg's video and audio PIDs of the first program
        got = es_payloads(clear_out, pid)
        want = es_payloads(clear_ts, pid)
        assert len(got) > 0.9 * len(want)
        assert got == want[len(want) - len(got):]
    # the output is a clear SPTS: no scrambled packet left, and a program we did not write
    # (ffprobe) finds the one programme with its video and audio
    assert all(clear_out[i + 3] >> 6 == 0 for i in range(0, len(clear_out), 188))
    out_file = tmp_path / "news.ts"
    out_file.write_bytes(clear_out)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_programs", "-of", "json",
                            str(out_file)], capture_output=True, text=True, check=True)
    programs = json.loads(probe.stdout)["programs"]
    assert [p["program_num"] for p in programs] == [NEWS]
    assert sorted(s["codec_type"] for s in programs[0]["streams"]) == ["audio", "video"]


def test_cissa_stream(he: HeadEnd, clear_ts: bytes) -> None:
    stream, _ = he.scramble(clear_ts, CRITERIA, algorithm=Algorithm.CISSA, emm_pid=EMM_PID)
    chip, card = he.chip(0x12000001), he.card(2_000_000_701)
    stream = with_emms(stream, [he.pair_emm(card, chip), he.activate_emm(card, [BASE])])
    box = he.boot(chip, None, card)
    report = box.scan(stream)
    assert report.channel(NEWS).reason is Reason.OPEN
    assert report.channel(NEWS).scrambling == "CISSA"
    out = io.BytesIO()
    box.watch(stream, NEWS, out)
    got = es_payloads(out.getvalue(), 0x100)
    want = es_payloads(clear_ts, 0x100)
    assert got and got == want[len(want) - len(got):]


def test_payment_then_emm_opens_and_expiry_closes_again(he: HeadEnd,
                                                        scrambled: bytes) -> None:
    chip, card = he.chip(0x13000001), he.card(2_000_000_801)
    # Not paid: the card is paired and active but has no package.
    start = with_emms(scrambled, [he.pair_emm(card, chip), he.activate_emm(card, [])])
    box = he.boot(chip, None, card)
    assert box.scan(start).channel(NEWS).reason is Reason.NOT_SUBSCRIBED
    # The payment's EMM arrives in the middle of the stream: the channel opens.
    paid = insert_at_fraction(scrambled, emm_packets(EMM_PID, [
        he.activate_emm(card, [BASE], end_s=START_S + 30 * DAY_S)]), 0.4)
    out = io.BytesIO()
    result = box.watch(paid, NEWS, out)
    assert result.status is not None and result.status.reason is Reason.OPEN
    assert result.packets_dropped > 0  # the first part stayed dark
    # The subscription then runs out one second into the next stream: locked again.
    ends = insert_at_fraction(scrambled, emm_packets(EMM_PID, [
        he.activate_emm(card, [BASE], end_s=START_S + 1)]), 0.1)
    assert box.scan(ends).channel(NEWS).reason is Reason.ENTITLEMENT_EXPIRED
