"""The ffmpeg test-stream maker, checked with our PSI parsers and with ffprobe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cas.errors import ConfigError, UsageError
from cas.formats import psi
from cas.headend.teststream import TestService, TestStreamOptions, ffmpeg_command, make_test_stream
from tests.unit.headend.helpers import packets, sections_on

SERVICES = [TestService(service_id=11, name="Первый", provider="TV+"),
            TestService(service_id=12, name="Sport HD", provider="TV+"),
            TestService(service_id=13, name="Kids", provider="TV+")]


def test_stream_has_pat_pmt_sdt_for_every_service(tmp_path: Path) -> None:
    out = make_test_stream(SERVICES, tmp_path / "clear.ts", TestStreamOptions(duration_s=1.5))
    data = out.read_bytes()
    assert len(data) % 188 == 0 and len(packets(data)) > 100
    assert not (tmp_path / "clear.ts.part").exists()
    pat = psi.parse_pat(next(s for _, s in sections_on(data, 0)))
    programs = {p.program_number: p.pid for p in pat.programs if p.program_number}
    assert sorted(programs) == [11, 12, 13]
    for number, pmt_pid in programs.items():
        pmt = psi.parse_pmt(next(s for _, s in sections_on(data, pmt_pid)))
        assert pmt.program_number == number
        assert sorted(s.stream_type for s in pmt.streams) == [0x02, 0x03]  # MPEG-2 video, audio
        assert not [d for d in pmt.descriptors if isinstance(d, psi.CaDescriptor)]
    sdt = psi.parse_sdt(next(s for _, s in sections_on(data, 0x11) if s[0] == 0x42))
    names = {}
    for svc in sdt.services:
        desc = next(d for d in svc.descriptors if isinstance(d, psi.ServiceDescriptor))
        names[svc.service_id] = (desc.name_text, desc.provider_text)
    assert names == {11: ("Первый", "TV+"), 12: ("Sport HD", "TV+"), 13: ("Kids", "TV+")}
    # No packet is scrambled: it is the clear input of the scrambler.
    assert not any(p[3] >> 6 for p in packets(data))


def test_ffprobe_sees_the_programs_and_duration(tmp_path: Path) -> None:
    out = make_test_stream(SERVICES[:2], tmp_path / "c.ts", TestStreamOptions(duration_s=2))
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_programs", "-show_format", "-of",
                           "json", str(out)], capture_output=True, text=True, check=True)
    info = json.loads(proc.stdout)
    assert sorted(p["program_num"] for p in info["programs"]) == [11, 12]
    assert 1.8 <= float(info["format"]["duration"]) <= 2.3
    codecs = sorted(s["codec_name"] for p in info["programs"] for s in p["streams"])
    assert codecs == ["mp2", "mp2", "mpeg2video", "mpeg2video"]


def test_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    opts = TestStreamOptions(duration_s=0.5)
    a = make_test_stream(SERVICES[:1], tmp_path / "a.ts", opts).read_bytes()
    b = make_test_stream(SERVICES[:1], tmp_path / "b.ts", opts).read_bytes()
    assert a == b


def test_command_gives_each_service_its_own_picture_and_tone() -> None:
    cmd = ffmpeg_command(SERVICES, Path("x.ts"), TestStreamOptions(muxrate_kbps=900))
    inputs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-i"]
    assert len(inputs) == 6
    assert len({i.split("=")[0] for i in inputs[0::2]}) == 3  # three different patterns
    assert len({i for i in inputs[1::2]}) == 3  # three different tones
    assert "-muxrate" in cmd and "900k" in cmd


def test_bad_requests() -> None:
    with pytest.raises(UsageError):
        ffmpeg_command([], Path("x.ts"), TestStreamOptions())
    with pytest.raises(UsageError):
        ffmpeg_command([SERVICES[0], SERVICES[0]], Path("x.ts"), TestStreamOptions())
    with pytest.raises(UsageError):
        ffmpeg_command(SERVICES, Path("x.ts"), TestStreamOptions(duration_s=0))
    with pytest.raises(UsageError):
        TestService(service_id=0, name="x")
    with pytest.raises(ConfigError):
        make_test_stream(SERVICES, Path("x.ts"), ffmpeg="no-such-ffmpeg-binary")
