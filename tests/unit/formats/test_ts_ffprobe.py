"""An independent parser agrees with our TS output: Debian's ffprobe (libavformat's mpegts
demuxer) reads a stream we build from PAT/PMT/CAT/SDT sections and reports the programs,
PMT PIDs, elementary PIDs, stream types and service names we put in."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from cas.formats.psi import (
    CAT_PID,
    PAT_PID,
    SDT_PID,
    build_cat,
    build_pat,
    build_pmt,
    build_sdt,
    find_ca_descriptors,
)
from cas.formats.ts import Packetizer, SectionReassembler, iter_packets, null_packet
from tests.unit.formats import ts_psi_samples as samples

FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
CODEC_BY_STREAM_TYPE = {0x1B: "h264", 0x03: "mp3", 0x0F: "aac"}
SERVICE_NAMES = {1: "News 24", 2: "Спорт HD", 7: "Radio"}


def _write_stream(path: Path) -> bytes:
    tables = {
        PAT_PID: build_pat(samples.PAT),
        CAT_PID: build_cat(samples.CAT),
        SDT_PID: build_sdt(samples.SDT),
    }
    for i, program in enumerate(samples.PROGRAMS):
        tables[program[1]] = build_pmt(samples.pmt_for(i))
    packetizers = {pid: Packetizer(pid) for pid in tables}
    packets: list[bytes] = []
    for _ in range(4):  # PSI repeats, as on air, with null packets between
        for pid, section in tables.items():
            packets += packetizers[pid].packetize(section)
            packets.append(null_packet())
    data = b"".join(packets)
    path.write_bytes(data)
    return data


def _ffprobe(path: Path) -> dict[str, object]:
    result = subprocess.run(
        [FFPROBE, "-v", "error", "-show_programs", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def test_ffprobe_reports_what_we_built(tmp_path: Path) -> None:
    ts_file = tmp_path / "psi.ts"
    _write_stream(ts_file)
    report = _ffprobe(ts_file)
    programs = report["programs"]
    assert isinstance(programs, list)
    by_number = {p["program_num"]: p for p in programs}
    assert sorted(by_number) == sorted(p[0] for p in samples.PROGRAMS)
    for program, pmt_pid, video, audio, audio_type, _ecm in samples.PROGRAMS:
        got = by_number[program]
        assert got["pmt_pid"] == pmt_pid
        assert got["pcr_pid"] == video
        streams = {int(s["id"], 16): s for s in got["streams"]}
        assert sorted(streams) == sorted([video, audio])
        assert streams[video]["codec_name"] == CODEC_BY_STREAM_TYPE[0x1B]
        assert streams[audio]["codec_name"] == CODEC_BY_STREAM_TYPE[audio_type]
        assert int(streams[audio]["codec_tag"], 16) == audio_type
        tags = got.get("tags", {})
        assert tags.get("service_name") == SERVICE_NAMES[program]
        assert tags.get("service_provider") == "cas-sim"


def test_our_reassembler_reads_the_same_file(tmp_path: Path) -> None:
    ts_file = tmp_path / "psi.ts"
    data = _write_stream(ts_file)
    pmt_pid = samples.PROGRAMS[1][1]
    r = SectionReassembler(pmt_pid)
    sections = r.feed_many(iter_packets(data, strict=True))
    assert len(sections) == 4 and not r.events
    refs = find_ca_descriptors(sections[0], samples.CA_ID)
    assert [(c.ca_pid, c.elementary_pid) for c in refs] == [
        (0x0601, None),
        (0x0611, samples.PROGRAMS[1][3]),
    ]


def test_ffprobe_checks_our_crc(tmp_path: Path) -> None:
    # Negative control: ffprobe validates PSI CRCs, so a damaged CRC_32 on one PMT must make
    # that program lose its streams; the agreement above is therefore CRC-verified too.
    pat = build_pat(samples.PAT)
    pmts = [build_pmt(samples.pmt_for(i)) for i in range(len(samples.PROGRAMS))]
    pmts[1] = pmts[1][:-1] + bytes([pmts[1][-1] ^ 0x01])
    tables = [(PAT_PID, pat)] + [(p[1], s) for p, s in zip(samples.PROGRAMS, pmts, strict=True)]
    packetizers = {pid: Packetizer(pid) for pid, _ in tables}
    packets = [p for _ in range(4) for pid, s in tables for p in packetizers[pid].packetize(s)]
    ts_file = tmp_path / "bad_crc.ts"
    ts_file.write_bytes(b"".join(packets))
    programs = _ffprobe(ts_file)["programs"]
    assert isinstance(programs, list)
    streams = {p["program_num"]: p["nb_streams"] for p in programs}
    assert streams == {1: 2, 2: 0, 7: 2}
