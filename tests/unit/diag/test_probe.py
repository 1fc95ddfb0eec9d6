"""The stream probe on synthetic streams: what it measures, and each alarm from its fault."""

from __future__ import annotations

import io
import random

import pytest

from cas.diag.alarms import AlarmCode, Thresholds
from cas.diag.probe import ProbeReport, StreamProbe, probe_bytes, probe_file, probe_stream
from cas.diag.synth import (
    SynthOptions,
    SynthService,
    default_emms,
    default_services,
    make_stream,
)
from cas.errors import StreamError
from cas.formats.emm import parse_emm_section

SHORT = SynthOptions(duration_s=3.0, bitrate_bps=4_000_000, crypto_period_s=1.0)


def codes(report: ProbeReport) -> list[AlarmCode]:
    return [a.code for a in report.alarms]


@pytest.fixture(scope="module")
def clean() -> ProbeReport:
    return probe_bytes(make_stream(options=SHORT))


def test_clean_stream_services_pids_and_no_alarms(clean: ProbeReport) -> None:
    assert clean.alarms == ()
    assert clean.time_base == "PCR on PID 256 (0x0100)"
    assert clean.duration_s == pytest.approx(3.0, abs=0.001)
    assert clean.bitrate_bps == pytest.approx(4_000_000, rel=0.001)
    assert clean.transport_stream_id == 1
    names = {s.service_id: s.name for s in clean.services}
    assert names == {101: "Channel 101", 102: "Channel 102", 103: "Channel 103",
                     104: "Channel 104"}
    svc = clean.service(102)
    assert svc is not None
    assert svc.state == "scrambled" and svc.ecm_pids == (0xC02,) and svc.pcr_pid == 0x110
    assert svc.es_pids == (0x110, 0x111)
    assert [c.level for c in svc.ca] == ["program"]
    assert [(c.ca_system_id, c.ca_pid) for c in clean.cat] == [(0xDEAD, 0x0BFF)]
    kinds = {p.pid: p.kind for p in clean.pids}
    assert kinds[0] == "PAT" and kinds[0x11] == "SDT" and kinds[0x1000] == "PMT"
    assert kinds[0x100] == "H.264 video" and kinds[0x101] == "AAC audio"
    assert kinds[0xC01] == "ECM (CA 0xDEAD)" and kinds[0x0BFF] == "EMM (CA 0xDEAD)"
    total = sum(p.packets for p in clean.pids)
    assert total == clean.packets == 3 * 4_000_000 // 1504
    video = next(p for p in clean.pids if p.pid == 0x100)
    assert video.clear == 0 and video.scrambled_even and video.scrambled_odd
    assert video.pcrs == 75  # 40 ms PCR interval over 3 s
    assert all(p.cc_errors == 0 for p in clean.pids)


def test_crypto_period_ecm_timing_and_emm_address_types(clean: ProbeReport) -> None:
    assert clean.crypto_period_s == pytest.approx(1.0, abs=0.01)
    ecm = next(e for e in clean.ecms if e.pid == 0xC01)
    assert ecm.service_ids == (101,)
    assert ecm.sections == 30 and ecm.distinct_sections == 3
    assert ecm.mean_interval_ms == pytest.approx(100, abs=1)
    assert ecm.max_gap_ms == pytest.approx(100, abs=1)
    assert ecm.parity_changes == 2 and ecm.table_ids == {0x80: 20, 0x81: 10}
    assert ecm.channel_ids == (101,) and ecm.ecm_key_indexes == (1,)
    for s in clean.scrambling:
        assert s.parity_changes == 2
        assert s.crypto_period_s == pytest.approx(1.0, abs=0.01)
    (emm,) = clean.emms
    assert emm.ours and emm.bitrate_bps == pytest.approx(32_000, rel=0.05)
    # the carousel cycles over default_emms(): 2 unique, 1 shared, 1 global in every 4
    assert emm.sections == sum(emm.by_address.values())
    assert emm.by_address["unique"] == pytest.approx(emm.sections / 2, abs=2)
    assert set(emm.table_ids) == {0x82, 0x83, 0x84}
    sections = default_emms()
    first = parse_emm_section(sections[0]).header.address
    assert clean.emms_for_card(first.serial).unique >= 1  # type: ignore[union-attr]
    assert clean.emms_for_card(1).unique == 0
    shared = parse_emm_section(sections[2]).header.address
    n = clean.emms_for_card(1, shared.shared_address, 1).shared  # type: ignore[union-attr]
    assert n >= 1
    assert clean.emms_for_card(1, shared.shared_address, 200).shared == 0  # type: ignore[union-attr]


def test_stopped_ecms_are_named_on_their_service_only() -> None:
    services = list(default_services(3))
    services[1] = SynthService(**{**_fields(services[1]), "ecm_stop_s": 1.5})
    report = probe_bytes(make_stream(services, SHORT))
    assert codes(report) == [AlarmCode.ECM_STOPPED]
    (alarm,) = report.alarms
    assert alarm.pid == services[1].ecm_pid and alarm.service_id == services[1].service_id
    assert alarm.at_s == pytest.approx(1.4, abs=0.01)
    assert alarm.worst == pytest.approx(1.6, abs=0.01)
    assert report.alarms_for_service(services[1].service_id) == [alarm]
    assert report.alarms_for_service(services[0].service_id) == []


def test_ecm_gap_over_500_ms() -> None:
    services = list(default_services(2))
    services[0] = SynthService(**{**_fields(services[0]), "ecm_gap_s": (1.0, 1.75)})
    report = probe_bytes(make_stream(services, SHORT))
    assert codes(report) == [AlarmCode.ECM_GAP]
    # ECMs every 100 ms: the last before the pause at 0.9 s, the next at 1.8 s
    assert report.alarms[0].worst == pytest.approx(0.9, abs=0.01)
    assert report.alarms[0].at_s == pytest.approx(0.9, abs=0.01)
    # a 400 ms gap (0.9 s -> 1.3 s) is under the limit
    services[0] = SynthService(**{**_fields(services[0]), "ecm_gap_s": (1.0, 1.25)})
    assert probe_bytes(make_stream(services, SHORT)).alarms == ()


def test_no_cw_change_for_25_s() -> None:
    services = list(default_services(2))
    services[1] = SynthService(**{**_fields(services[1]), "cw_frozen": True})
    opts = SynthOptions(duration_s=26.0, bitrate_bps=1_000_000, crypto_period_s=10.0)
    report = probe_bytes(make_stream(services, opts))
    frozen = [a for a in report.alarms if a.code is AlarmCode.CW_NOT_CHANGING]
    pids = {a.pid for a in frozen}
    assert pids == {services[1].video_pid, services[1].audio_pid, services[1].ecm_pid}
    assert all(a.service_id == services[1].service_id for a in frozen)
    assert all(a.worst is not None and a.worst > 25 for a in frozen)
    assert codes(report) == [AlarmCode.CW_NOT_CHANGING] * 3
    lower = probe_bytes(make_stream(services, opts), thresholds=Thresholds(cw_change_s=30))
    assert lower.alarms == ()


def test_emm_bitrate_and_missing_emm_pid() -> None:
    low = probe_bytes(make_stream(options=SynthOptions(
        duration_s=5.0, bitrate_bps=2_000_000, emm_bitrate_bps=600)))
    assert codes(low) == [AlarmCode.EMM_BITRATE_LOW]
    assert low.alarms[0].worst is not None and low.alarms[0].worst < 1000
    none = probe_bytes(make_stream(options=SynthOptions(
        duration_s=1.0, bitrate_bps=4_000_000, emm_pid=None)))
    assert codes(none) == [AlarmCode.EMM_MISSING]
    other = probe_bytes(make_stream(options=SHORT), ca_system_id=0x0B00)
    assert AlarmCode.EMM_MISSING in codes(other)


def test_continuity_errors_are_counted_and_placed() -> None:
    opts = SynthOptions(duration_s=3.0, bitrate_bps=4_000_000,
                        drop_packets=((0x101, 0.5), (0x101, 1.5), (0x110, 2.0)))
    report = probe_bytes(make_stream(options=opts))
    assert codes(report) == [AlarmCode.CC_ERROR, AlarmCode.CC_ERROR]
    errors = {p.pid: p.cc_errors for p in report.pids if p.cc_errors}
    assert errors == {0x101: 2, 0x110: 1}
    assert [e[0] for e in report.cc_events] == [0x101, 0x101, 0x110]
    first = report.alarms[0]
    assert first.pid == 0x101 and first.at_s == pytest.approx(0.5, abs=0.01)


def test_scrambled_service_without_ca_descriptor() -> None:
    services = list(default_services(2))
    services[0] = SynthService(**{**_fields(services[0]), "ecm_pid": None})
    report = probe_bytes(make_stream(services, SHORT))
    alarms = [a for a in report.alarms if a.code is AlarmCode.SCRAMBLED_NO_ECM]
    assert {a.pid for a in alarms} == {services[0].video_pid, services[0].audio_pid}
    assert codes(report) == [AlarmCode.SCRAMBLED_NO_ECM] * 2


def test_sync_loss_is_survived() -> None:
    opts = SynthOptions(duration_s=2.0, bitrate_bps=2_000_000, garbage=((1.0, 77),))
    data = make_stream(options=opts)
    report = probe_bytes(data)
    assert codes(report) == [AlarmCode.SYNC_LOSS]
    assert report.skipped_bytes == 77 and report.sync_losses == 1
    assert report.packets == (len(data) - 77) // 188
    assert report.alarms[0].at_s == pytest.approx(1.0, abs=0.01)


def test_no_pcr_falls_back_to_the_nominal_bitrate() -> None:
    data = make_stream(options=SynthOptions(duration_s=2.0, bitrate_bps=3_000_000, pcr=False))
    guessed = probe_bytes(data)
    assert "no PCR" in guessed.time_base and "2000000" in guessed.time_base
    assert guessed.duration_s == pytest.approx(3.0, abs=0.01)  # 2 s at 3 Mbit/s read at 2
    told = probe_bytes(data, nominal_bitrate_bps=3_000_000)
    assert told.duration_s == pytest.approx(2.0, abs=0.01)
    assert told.crypto_period_s is None  # 10 s periods in a 2 s stream: no change seen


def test_pcr_wrap_inside_the_stream() -> None:
    start = (1 << 33) * 300 - 27_000_000  # one second before the wrap
    report = probe_bytes(make_stream(options=SynthOptions(
        duration_s=3.0, bitrate_bps=4_000_000, crypto_period_s=1.0, pcr_start_ticks=start)))
    assert report.duration_s == pytest.approx(3.0, abs=0.001)
    assert report.pcr_discontinuities == 0 and report.alarms == ()


def test_many_pids_overflow_into_one_code() -> None:
    opts = SynthOptions(duration_s=1.0, bitrate_bps=8_000_000,
                        extra_pids=tuple(range(0x1200, 0x1200 + 300)))
    report = probe_bytes(make_stream(options=opts))
    assert len([p for p in report.pids if p.pid >= 0]) == 254
    assert report.pids[-1].pid == -1
    assert report.service(101) is not None and report.service(101).name == "Channel 101"


def test_chunking_does_not_change_the_report() -> None:
    opts = SynthOptions(duration_s=2.0, bitrate_bps=2_000_000, crypto_period_s=0.5,
                        drop_packets=((0x100, 0.3),), garbage=((1.2, 5),))
    data = make_stream(options=opts)
    whole = probe_bytes(data).to_json()
    rng = random.Random(3)
    probe = StreamProbe()
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 187, 188, 189, 5000, 70_000])
        probe.feed(data[pos:pos + n])
        pos += n
    pieces = probe.finish().to_json()
    assert pieces == whole


def test_files_and_handles(tmp_path: pytest.TempPathFactory) -> None:
    data = make_stream(options=SynthOptions(duration_s=0.5, bitrate_bps=2_000_000))
    path = tmp_path / "s.ts"  # type: ignore[operator]
    path.write_bytes(data)
    seen: list[int] = []
    report = probe_file(path, progress=seen.append)
    assert sum(seen) == len(data) and report.source == str(path)
    assert probe_stream(io.BytesIO(data)).to_json()["pids"] == report.to_json()["pids"]


def test_not_a_transport_stream() -> None:
    with pytest.raises(StreamError, match="not an MPEG transport stream"):
        probe_bytes(b"\x47" + bytes(range(256)) * 10)
    with pytest.raises(StreamError, match="empty"):
        probe_bytes(b"")
    with pytest.raises(StreamError, match="no such file"):
        probe_file("/nonexistent/x.ts")


def _fields(s: SynthService) -> dict[str, object]:
    return {name: getattr(s, name) for name in SynthService.__dataclass_fields__}
