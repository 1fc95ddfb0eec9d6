"""Sources: the seamless file loop (CC, PCR, PTS/DTS across loop boundaries), the PCR-driven
timing of live input, the UDP source on a real socket, RTP stripping."""

from __future__ import annotations

import itertools
import socket
import struct
import time
from pathlib import Path

import pytest

from cas.errors import StreamError
from cas.live import sources as src
from tests.fixtures.net import free_udp_port
from tests.unit.live.tsgen import (
    AUDIO_PID,
    PACKET,
    VIDEO_PID,
    cc_errors,
    make_spts,
    packets,
    payload_start,
    pcr_of,
    pid_of,
)

PTS_MOD = 1 << 33


def _write(tmp_path: Path, data: bytes, name: str = "clear.ts") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _pes_times(pkt: bytes) -> list[int]:
    out = []
    for pos in src.pes_timestamp_offsets(pkt, 0):
        out.append(src.read_timestamp(pkt, pos))
    return out


def test_probe_finds_the_program_and_drops_psi(tmp_path: Path) -> None:
    spts = make_spts(seconds=0.5, program_number=9)
    loop = src.FileLoop(_write(tmp_path, spts.data))
    assert loop.program.program_number == 9
    assert loop.program.pcr_pid == VIDEO_PID
    assert loop.program.pids == (VIDEO_PID, AUDIO_PID)
    block = loop.read(0.3)
    assert {pid_of(p) for p in packets(bytes(block.data))} == {VIDEO_PID, AUDIO_PID}


def test_pid_map_renumbers_and_keeps_flags(tmp_path: Path) -> None:
    spts = make_spts(seconds=0.5)
    loop = src.FileLoop(_write(tmp_path, spts.data))
    loop.set_pid_map({VIDEO_PID: 0x210, AUDIO_PID: 0x211})
    pkts = packets(bytes(loop.read(0.4).data))
    assert {pid_of(p) for p in pkts} == {0x210, 0x211}
    first_video = next(p for p in pkts if pid_of(p) == 0x210)
    assert first_video[1] & 0x40  # PUSI kept
    assert first_video[4:] == spts.es_packets[VIDEO_PID][0][4:]


def test_loop_is_continuous_cc_pcr_pts(tmp_path: Path) -> None:
    """Three and a half loops: no CC error, PCR strictly increasing by about one packet
    interval at each loop boundary, PTS/DTS moved by exactly D/300 per loop."""
    spts = make_spts(seconds=0.6, cc0=5)
    loop = src.FileLoop(_write(tmp_path, spts.data))
    d_s = loop.loop_duration_s
    block = loop.read(3.5 * d_s)
    pkts = packets(bytes(block.data))
    assert loop.loops == 3
    assert cc_errors(pkts) == 0
    pcrs = [v for p in pkts if pid_of(p) == VIDEO_PID and (v := pcr_of(p)) is not None]
    steps = [b - a for a, b in itertools.pairwise(pcrs)]
    assert all(s > 0 for s in steps)
    # every step (boundaries included) is within 2x of the typical step: no time jump
    typical = sorted(steps)[len(steps) // 2]
    assert max(steps) < 2 * typical
    # PTS of the first video PES of loop k = loop 0's + k*D/300
    d_ticks = round(d_s * src.PCR_HZ)
    assert d_ticks % 300 == 0
    per_loop = len(packets(bytes(src.FileLoop(_write(tmp_path, spts.data, "b.ts")).read(
        d_s - 1e-6).data)))
    first = [_pes_times(pkts[k * per_loop]) for k in range(3)]
    for k in range(3):
        assert first[k][0] == (first[0][0] + k * d_ticks // 300) % PTS_MOD
        assert first[k][1] == (first[0][1] + k * d_ticks // 300) % PTS_MOD  # DTS


def test_loop_times_follow_pcr(tmp_path: Path) -> None:
    """A packet's due time is its PCR's distance from the first, in seconds (on loop 1 too)."""
    spts = make_spts(seconds=0.5)
    loop = src.FileLoop(_write(tmp_path, spts.data), start_s=2.0)
    d_s = loop.loop_duration_s
    block = loop.read(2.0 + 1.5 * d_s)
    pkts = packets(bytes(block.data))
    pcr_times = [(v, block.times[i]) for i, p in enumerate(pkts)
                 if pid_of(p) == VIDEO_PID and (v := pcr_of(p)) is not None]
    p0, t0 = pcr_times[0]
    assert t0 == pytest.approx(2.0, abs=1e-3)
    for pcr, t in pcr_times:
        assert t - t0 == pytest.approx((pcr - p0) / src.PCR_HZ, abs=2e-6)
    assert list(block.times) == sorted(block.times)


def test_payloads_are_unchanged_except_timestamps(tmp_path: Path) -> None:
    spts = make_spts(seconds=0.4)
    loop = src.FileLoop(_write(tmp_path, spts.data))
    d_s = loop.loop_duration_s
    pkts = packets(bytes(loop.read(2.5 * d_s).data))
    video = [p for p in pkts if pid_of(p) == VIDEO_PID and p[3] & 0x10]  # not PCR-only
    orig = spts.es_packets[VIDEO_PID]
    for i, p in enumerate(video):
        o = orig[i % len(orig)]
        if p[1] & 0x40:
            continue  # PES header: PTS/DTS moved
        assert p[payload_start(p):] == o[payload_start(o):]


def test_pcr_gaps_are_filled_to_35_ms_across_loops(tmp_path: Path) -> None:
    """The file's PCRs are 80 ms apart: PCR-only packets (no payload, so no CC step) make the
    gaps at most 35 ms, at the loop boundary too, with every PCR on its packet's time."""
    spts = make_spts(seconds=0.5, pcr_every=40)
    loop = src.FileLoop(_write(tmp_path, spts.data))
    block = loop.read(3 * loop.loop_duration_s)
    pkts = packets(bytes(block.data))
    marks = [(v, block.times[i]) for i, p in enumerate(pkts)
             if pid_of(p) == VIDEO_PID and (v := pcr_of(p)) is not None]
    gaps = [(b[0] - a[0]) / src.PCR_HZ for a, b in itertools.pairwise(marks)]
    assert max(gaps) <= src.PCR_MAX_INTERVAL_S + 1e-6 and min(gaps) > 0
    inserted = [p for p in pkts if pid_of(p) == VIDEO_PID and not p[3] & 0x10]
    assert inserted and all(pcr_of(p) is not None for p in inserted)
    for pcr, t in marks:
        assert t - marks[0][1] == pytest.approx((pcr - marks[0][0]) / src.PCR_HZ, abs=2e-6)
    assert cc_errors(pkts) == 0


def test_incremental_reads_equal_one_read(tmp_path: Path) -> None:
    data = make_spts(seconds=0.3).data
    a = src.FileLoop(_write(tmp_path, data, "a.ts"))
    b = src.FileLoop(_write(tmp_path, data, "b.ts"))
    whole = a.read(1.0)
    parts = bytearray()
    t = 0.0
    while t < 1.0:
        t = min(1.0, t + 0.013)
        parts += b.read(t).data
    assert bytes(parts) == bytes(whole.data)


def test_file_without_pcr_is_refused(tmp_path: Path) -> None:
    spts = make_spts(seconds=0.3, pcr_every=10_000)
    loop = src.FileLoop(_write(tmp_path, spts.data))
    with pytest.raises(StreamError, match="PCR"):
        loop.read(0.1)


def test_not_a_ts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StreamError, match="sync"):
        src.FileLoop(_write(tmp_path, b"\x00" * 188 * 4))


def test_timestamp_field_round_trip() -> None:
    buf = bytearray(b"\x31\x00\x01\x00\x01")
    for value in (0, 1, 12345678, PTS_MOD - 1):
        src.write_timestamp(buf, 0, value)
        assert src.read_timestamp(buf, 0) == value
        assert buf[0] >> 4 == 3 and buf[0] & 1 and buf[2] & 1 and buf[4] & 1


def test_live_timer_interpolates_between_pcrs() -> None:
    spts = make_spts(seconds=0.5)
    timer = src.PcrTimer(VIDEO_PID, latency_s=0.25)
    es = [p for p in packets(spts.data) if pid_of(p) in (VIDEO_PID, AUDIO_PID)]
    for p in es:
        timer.feed(p, now_s=1.0)
    block = timer.take(100.0)
    pkts = packets(bytes(block.data))
    assert block.times[0] > 1.25 - 0.01  # first PCR anchored at now + latency
    pcr_t = [(v, block.times[i]) for i, p in enumerate(pkts) if (v := pcr_of(p)) is not None]
    p0, t0 = pcr_t[0]
    for pcr, t in pcr_t:
        assert t - t0 == pytest.approx((pcr - p0) / src.PCR_HZ, abs=1e-9)
    assert list(block.times) == sorted(block.times)
    # packets after the last PCR wait for the next one
    assert len(pkts) < len(es)


def test_live_timer_reanchors_on_a_pcr_jump() -> None:
    spts = make_spts(seconds=0.3)
    timer = src.PcrTimer(VIDEO_PID, latency_s=0.1)
    es = [p for p in packets(spts.data) if pid_of(p) == VIDEO_PID]
    for p in es:
        timer.feed(p, now_s=0.0)
    later = make_spts(seconds=0.3, pcr0=27_000_000 * 600)  # the source restarted elsewhere
    for p in packets(later.data):
        if pid_of(p) == VIDEO_PID:
            timer.feed(p, now_s=0.5)
    assert timer.reanchors == 1
    block = timer.take(100.0)
    assert list(block.times) == sorted(block.times)
    assert block.times[-1] < 2.0  # not 600 s in the future


def test_strip_rtp() -> None:
    ts = make_spts(seconds=0.1).data[: 7 * PACKET]
    rtp = struct.pack("!BBHII", 0x80, 33, 1, 2, 3) + ts
    assert src.strip_rtp(rtp) == ts
    assert src.strip_rtp(ts) == ts


def test_udp_source_on_a_real_socket() -> None:
    spts = make_spts(seconds=0.5)
    port = free_udp_port()
    source = src.UdpSource("127.0.0.1", port, latency_s=0.05)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            data = spts.data
            for pos in range(0, len(data), 7 * PACKET):
                chunk = data[pos : pos + 7 * PACKET]
                if pos // (7 * PACKET) % 2:  # every other datagram behind an RTP header
                    chunk = struct.pack("!BBHII", 0x80, 33, pos, 0, 1) + chunk
                tx.sendto(chunk, ("127.0.0.1", port))
                time.sleep(0.0005)
            assert source.wait_program().program_number == 7
            source.set_pid_map({VIDEO_PID: 0x300, AUDIO_PID: 0x301})
            got = bytearray()
            deadline = time.monotonic() + 10
            while len(got) < 100 * PACKET and time.monotonic() < deadline:
                got += source.read(1e9, 0.0).data
                time.sleep(0.01)
        pkts = packets(bytes(got))
        assert {pid_of(p) for p in pkts} <= {0x300, 0x301}
        assert cc_errors(pkts) == 0
        assert len(pkts) >= 100
    finally:
        source.close()


def test_udp_source_port_in_use_is_a_config_error() -> None:
    from cas.errors import ConfigError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"udp://127.0.0.1:{port}"):
            src.UdpSource("127.0.0.1", port).close()


def test_ffmpeg_lavfi_source_with_clock_overlay() -> None:
    """A real ffmpeg encodes the test pattern (drawtext clock, tone) in real time; the source
    finds its program, renumbers it and times it by its PCR."""
    source = src.FfmpegSource("testsrc=size=160x90:rate=25", service_id=77, name="Live",
                              latency_s=0.2, video_bitrate_kbps=300)
    try:
        assert "drawtext" in " ".join(source.argv) and "-re" in source.argv
        program = source.wait_program()
        assert program.program_number == 77
        video = next(s.elementary_pid for s in program.streams if s.stream_type == 0x02)
        audio = next(s.elementary_pid for s in program.streams if s.stream_type != 0x02)
        source.set_pid_map({video: 0x500, audio: 0x501})
        got = src.Block()
        deadline = time.monotonic() + 20
        while len(got) < 200 and time.monotonic() < deadline:
            got.extend(source.read(1e9, 0.0))
            time.sleep(0.05)
    finally:
        source.close()
    pkts = packets(bytes(got.data))
    assert len(pkts) >= 200
    assert {pid_of(p) for p in pkts} <= {0x500, 0x501}
    assert cc_errors(pkts) == 0
    assert list(got.times) == sorted(got.times)


def test_ffmpeg_is_started_again_when_it_exits() -> None:
    source = src.FfmpegSource("testsrc=size=160x90:rate=25", service_id=78, latency_s=0.1,
                              video_bitrate_kbps=200)
    source.restart_delay_s = 0.1
    try:
        source.wait_program()
        first = source._proc
        first.kill()
        deadline = time.monotonic() + 20
        while source.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.restarts == 1 and source._proc is not first
        assert source._proc.poll() is None
    finally:
        source.close()
    assert source._proc.poll() is not None  # close() stopped it


def test_udp_source_counts_what_was_lost_on_the_way_in() -> None:
    spts = make_spts(seconds=0.5)
    port = free_udp_port()
    source = src.UdpSource("127.0.0.1", port, latency_s=0.05)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            size = 7 * PACKET
            for n, pos in enumerate(range(0, len(spts.data), size)):
                if n == 20:
                    continue  # this datagram is lost
                tx.sendto(spts.data[pos : pos + size], ("127.0.0.1", port))
                time.sleep(0.0005)
            source.wait_program()
            source.set_pid_map({VIDEO_PID: VIDEO_PID, AUDIO_PID: AUDIO_PID})
            deadline = time.monotonic() + 10
            while source.cc_errors == 0 and time.monotonic() < deadline:
                source.read(1e9, 0.0)
                time.sleep(0.01)
    finally:
        source.close()
    assert source.cc_errors >= 1
