"""The multiplex, window by window, without a clock: ordering, scrambling per crypto-period
(checked by descrambling with an independent libdvbcsa / AES binding), ECM repetition, parity
switches at period boundaries, PSI, the EMM budget, continuity counters across loops."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys
from cas.formats import psi
from cas.headend.ecmgen import EcmGenerator
from cas.headend.scrambler import Algorithm
from cas.live.playout import LiveService, Multiplexer, merge
from cas.live.psi import MuxSettings, PsiSchedule, ServiceLayout, build_tables
from cas.live.scrambling import CryptoSchedule, HeadendCws, InternalEcms, new_cipher
from cas.live.sources import Block, FileLoop
from cas.messages import open_ecm
from tests.unit.headend.helpers import cissa_decrypt_payload, csa2_decrypt_payload, sections_on
from tests.unit.live.tsgen import (
    AUDIO_PID,
    PACKET,
    VIDEO_PID,
    cc_errors,
    make_spts,
    packets,
    payload_start,
    pid_of,
)

ECM_PID = 0x0C10
EMM_PID = 0x0C00
CP_S = 0.5
REP_S = 0.1
FIRST_CP = 1000


class ListFeed:
    """The carousel side of the interface: a list of sections handed out within budget."""

    def __init__(self, sections: list[bytes]) -> None:
        self.sections = list(sections)
        self.calls: list[tuple[float, int]] = []

    def take(self, now_s: float, budget_bytes: int) -> list[bytes]:
        self.calls.append((now_s, budget_bytes))
        out: list[bytes] = []
        while self.sections and sum(map(len, out)) + len(self.sections[0]) <= budget_bytes:
            out.append(self.sections.pop(0))
        return out


def _emm(n: int) -> bytes:
    body = bytes([n & 0xFF]) * 120
    return bytes((0x82, 0x70 | (len(body) >> 8), len(body) & 0xFF)) + body


def _rig(tmp_path: Path, algorithm: Algorithm = Algorithm.CSA2,
         emms: list[bytes] | None = None) -> tuple[Multiplexer, InternalEcms, OperatorKeys,
                                                   ListFeed, bytes]:
    spts = make_spts(seconds=0.7, bitrate_bps=2_000_000)
    path = tmp_path / "clear.ts"
    path.write_bytes(spts.data)
    source = FileLoop(path)
    source.set_pid_map({VIDEO_PID: 0x100, AUDIO_PID: 0x101})
    layout = ServiceLayout(service_id=1001, channel_number=1, name="One", pmt_pid=0x1000,
                           pcr_pid=0x100,
                           streams=(psi.PmtStream(stream_type=2, elementary_pid=0x100),
                                    psi.PmtStream(stream_type=3, elementary_pid=0x101)),
                           scrambled=True, ecm_pid=ECM_PID)
    r = random.Random(5)
    keys = OperatorKeys.generate(lambda n: r.randbytes(n), now_s=1_700_000_000)
    ecms = InternalEcms(EcmGenerator(keys, rng=lambda n: r.randbytes(n)),
                        AccessCriteria(channel_id=1001, package_ids=(1,)),
                        cw_length=algorithm.cw_length, timestamp_s=lambda: 1_800_000_000,
                        rng=lambda n: r.randbytes(n))
    crypto = CryptoSchedule({1001: ecms}, crypto_period_s=CP_S, first_cp=FIRST_CP)
    feed = ListFeed(emms or [])
    mux = Multiplexer([LiveService(layout=layout, source=source, cipher=new_cipher(algorithm))],
                      psi=PsiSchedule(build_tables([layout], MuxSettings(
                          ca_system_id=0xDEAD, emm_pid=EMM_PID, algorithm=algorithm))),
                      crypto=crypto, ecm_repetition_s=REP_S, emm_pid=EMM_PID, emm_feed=feed,
                      emm_max_bitrate_bps=64_000)
    return mux, ecms, keys, feed, spts.data


def _run(mux: Multiplexer, seconds: float, window_s: float = 0.02) -> Block:
    out = Block()
    a = 0.0
    while a < seconds - 1e-9:
        out.extend(mux.window(a, a + window_s, a))
        a += window_s
    return out


@pytest.mark.parametrize("algorithm", [Algorithm.CSA2, Algorithm.CISSA])
def test_scrambled_with_the_cw_of_each_packets_period(tmp_path: Path,
                                                      algorithm: Algorithm) -> None:
    mux, ecms, _, _, clear = _rig(tmp_path, algorithm)
    try:
        out = _run(mux, 2.2)  # several periods and three loop boundaries
    finally:
        assert mux.crypto is not None
        mux.crypto.close()
    pkts = packets(bytes(out.data))
    clear_video = [p for p in packets(clear) if pid_of(p) == VIDEO_PID]
    assert all(p[3] & 0x10 for p in clear_video)
    decrypt = csa2_decrypt_payload if algorithm is Algorithm.CSA2 else cissa_decrypt_payload
    k = 0
    checked = 0
    for i, p in enumerate(pkts):
        if pid_of(p) != 0x100 or not p[3] & 0x10:  # PCR-only packets carry no payload
            continue
        cp = FIRST_CP + int(out.times[i] // CP_S)
        assert p[3] >> 6 == 0b10 | (cp & 1), f"packet {i} at {out.times[i]:.4f} s"
        start = payload_start(p)
        plain = decrypt(ecms.cw(cp), p[start:])
        orig = clear_video[k % len(clear_video)]
        k += 1
        if p[1] & 0x40:
            continue  # its PES header's PTS/DTS moved on with the loop
        assert plain == orig[payload_start(orig):]
        checked += 1
    assert checked > 500


def test_ecm_within_every_repetition_period_and_parity_at_boundaries(tmp_path: Path) -> None:
    mux, _, keys, _, _ = _rig(tmp_path)
    try:
        out = _run(mux, 2.0)
    finally:
        assert mux.crypto is not None
        mux.crypto.close()
    data = bytes(out.data)
    ecm_times = []
    for index, section in sections_on(data, ECM_PID):
        header, body = open_ecm(keys.ecm_key(0), section)
        t = out.times[index]
        cp = FIRST_CP + int((t + 1e-9) // CP_S)
        assert body.crypto_period == cp and header.table_id == 0x80 | (cp & 1)
        ecm_times.append(t)
    gaps = [b - a for a, b in itertools.pairwise(ecm_times)]
    assert max(gaps) <= REP_S + 1e-9
    # a period's first ECM is exactly at its boundary
    for n in range(1, 4):
        assert any(abs(t - n * CP_S) < 1e-9 for t in ecm_times)
    # the parity of the elementary streams changes only at period boundaries
    pkts = packets(data)
    last = None
    for i, p in enumerate(pkts):
        if pid_of(p) != 0x100 or not p[3] & 0x10:
            continue
        parity = p[3] >> 6
        if last is not None and parity != last:
            boundary = round(out.times[i] / CP_S) * CP_S
            assert out.times[i] >= boundary - 1e-9
            prev = max(j for j in range(i) if pid_of(pkts[j]) == 0x100 and pkts[j][3] & 0x10)
            assert out.times[prev] < boundary
        last = parity


def test_output_ordered_by_time_without_cc_errors(tmp_path: Path) -> None:
    mux, _, _, _, _ = _rig(tmp_path, emms=[_emm(n) for n in range(40)])
    try:
        out = _run(mux, 2.5)
    finally:
        assert mux.crypto is not None
        mux.crypto.close()
    assert list(out.times) == sorted(out.times)
    pkts = packets(bytes(out.data))
    assert cc_errors(pkts) == 0
    pids = {pid_of(p) for p in pkts}
    assert {0x0000, 0x0001, 0x0011, 0x1000, 0x100, 0x101, ECM_PID, EMM_PID} <= pids


def test_emms_within_the_bitrate_ceiling_and_in_order(tmp_path: Path) -> None:
    emms = [_emm(n) for n in range(200)]
    mux, _, _, feed, _ = _rig(tmp_path, emms=emms)
    try:
        out = _run(mux, 2.0)
    finally:
        assert mux.crypto is not None
        mux.crypto.close()
    aired = [sec for _, sec in sections_on(bytes(out.data), EMM_PID)]
    assert aired == emms[: len(aired)]
    emm_packets = sum(1 for p in packets(bytes(out.data)) if pid_of(p) == EMM_PID)
    # 64 kbit/s over 2 s plus the one-second burst allowance
    assert emm_packets * PACKET * 8 <= 64_000 * 3
    assert 0 < len(aired) < 200
    assert all(budget >= 0 for _, budget in feed.calls)


def test_merge_is_stable_and_sorted() -> None:
    a = Block(data=bytearray(b"\x47" + bytes([1]) * 187) * 2)
    a.times.extend([0.1, 0.3])
    b = Block(data=bytearray(b"\x47" + bytes([2]) * 187) * 2)
    b.times.extend([0.1, 0.2])
    out = merge([a, b])
    assert list(out.times) == [0.1, 0.1, 0.2, 0.3]
    assert [p[1] for p in packets(bytes(out.data))] == [1, 2, 2, 1]


def test_real_time_loop_sends_the_multiplex_in_order_and_stops_between_datagrams(
        tmp_path: Path) -> None:
    """The producer/sender pair with a pacer that does not wait: everything the multiplex made
    leaves as whole datagrams, in order, and a stop ends it cleanly."""
    import threading

    from cas.live.pacer import Datagram, Pacer
    from cas.live.playout import RealTime

    mux, _, _, _, _ = _rig(tmp_path)
    sent: list[bytes] = []
    stop = threading.Event()

    def send(d: Datagram) -> None:
        sent.append(bytes(d))
        if len(sent) == 500:
            stop.set()

    pacer = Pacer(send, realtime=False)
    pacer.start()
    made: list[bytes] = []
    window = mux.window

    def recording_window(a: float, b: float, now: float) -> Block:
        block = window(a, b, now)
        made.append(bytes(block.data))
        return block

    mux.window = recording_window  # type: ignore[method-assign,assignment]
    rt = RealTime(mux, pacer, stop)
    threads = rt.threads()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        assert mux.crypto is not None
        mux.crypto.close()
    assert not any(t.is_alive() for t in threads)
    assert len(sent) >= 500
    assert all(len(d) % PACKET == 0 and len(d) <= 7 * PACKET for d in sent)
    out = b"".join(sent)
    assert b"".join(made).startswith(out)
    assert cc_errors(packets(out)) == 0


def test_headend_cws_scramble_without_ecms_of_the_playout(tmp_path: Path) -> None:
    """``ecm_source = "simulcrypt"``: the schedule holds the head-end's CWs only; the payload
    is scrambled with them, and the playout airs no ECM of its own on our ECM PID (our ECMG's
    worker does, cas.live.ecmgs), so an ECMG outage never leaves the service in clear."""
    mux, _, _, _, clear = _rig(tmp_path)
    assert mux.crypto is not None
    mux.crypto.close()
    r = random.Random(7)
    cws = HeadendCws(1001, cw_length=8, rng=lambda n: r.randbytes(n))
    assert cws.cw(FIRST_CP) == cws.cw(FIRST_CP) and cws.ecm_section(FIRST_CP) == b""
    assert cws.cw(FIRST_CP).hex() not in repr(cws)
    crypto = CryptoSchedule({1001: cws}, crypto_period_s=CP_S, first_cp=FIRST_CP)
    mux = Multiplexer(mux.services, psi=mux.psi, crypto=crypto, ecm_repetition_s=REP_S,
                      emm_pid=EMM_PID)
    try:
        out = _run(mux, 1.2)
    finally:
        crypto.close()
    pkts = packets(bytes(out.data))
    assert not [p for p in pkts if pid_of(p) == ECM_PID]
    video = [(i, p) for i, p in enumerate(pkts) if pid_of(p) == 0x100 and p[3] & 0x10]
    assert len(video) > 100
    clear_video = [p for p in packets(clear) if pid_of(p) == VIDEO_PID]
    checked = 0
    for k, (i, p) in enumerate(video):
        cp = FIRST_CP + int(out.times[i] // CP_S)
        assert p[3] >> 6 == 0b10 | (cp & 1)
        orig = clear_video[k % len(clear_video)]
        if not p[1] & 0x40:  # a PES start's PTS/DTS moved on with the loop
            assert csa2_decrypt_payload(cws.cw(cp), p[payload_start(p):]) == \
                orig[payload_start(orig):]
            checked += 1
    assert checked > 100
