"""Clear multi-service MPEG-TS test streams, made with Debian's ``ffmpeg``.

One service per lineup channel: a synthetic picture (``testsrc``/``smptebars``/... from the
lavfi device, cycling per channel so two channels never look alike) and a sine tone at a
frequency of its own, muxed by ffmpeg's ``mpegts`` muxer with one ``-program`` per service.
The muxer writes PAT, one PMT per program (ISO/IEC 13818-1 §2.4.4) and an SDT with the
service and provider names (EN 300 468 §5.2.3), so the result is a stream any demux reads.

Small picture and low bitrates keep the files small and the tests fast; ``bitexact`` flags
keep the output identical from run to run on one ffmpeg build.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cas.errors import ConfigError, StreamError, UsageError

#: lavfi picture sources, used round-robin per service.
VIDEO_PATTERNS: tuple[str, ...] = ("testsrc", "smptebars", "testsrc2", "rgbtestsrc", "smptehdbars")


@dataclass(frozen=True, slots=True, kw_only=True)
class TestService:
    """One service (DVB program) of the test stream."""

    __test__ = False  # not a pytest class, despite the name

    service_id: int
    name: str
    provider: str = "cas-sim"

    def __post_init__(self) -> None:
        if not 1 <= self.service_id <= 0xFFFF:
            raise UsageError(f"service id {self.service_id} outside 1..65535")
        if not self.name:
            raise UsageError("a service needs a name")


@dataclass(frozen=True, slots=True, kw_only=True)
class TestStreamOptions:
    """Encoding parameters; the defaults make ~300 kbit/s per service."""

    __test__ = False

    duration_s: float = 10.0
    video_size: str = "160x90"
    frame_rate: int = 25
    gop_frames: int = 12
    video_bitrate_kbps: int = 200
    audio_bitrate_kbps: int = 64
    transport_stream_id: int = 1
    original_network_id: int = 1
    #: When set, ffmpeg pads to this constant mux rate with null packets (PID 0x1FFF).
    muxrate_kbps: int | None = None


def ffmpeg_command(services: Sequence[TestService], out: Path, options: TestStreamOptions,
                   *, ffmpeg: str = "ffmpeg") -> list[str]:
    """The ffmpeg argument vector that writes the test stream for ``services`` to ``out``."""
    if not services:
        raise UsageError("a test stream needs at least one service")
    ids = [s.service_id for s in services]
    if len(set(ids)) != len(ids):
        raise UsageError("service ids must be unique")
    if options.duration_s <= 0:
        raise UsageError("duration must be positive")
    dur = f"{options.duration_s:g}"
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    for i, _svc in enumerate(services):
        pattern = VIDEO_PATTERNS[i % len(VIDEO_PATTERNS)]
        cmd += ["-f", "lavfi", "-i",
                f"{pattern}=size={options.video_size}:rate={options.frame_rate}:duration={dur}"]
        # A distinct tone per service: 440 Hz, 550 Hz, ... (audible check of a channel change).
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={440 + 110 * i}:sample_rate=48000:duration={dur}"]
    for i in range(len(services)):
        cmd += ["-map", f"{2 * i}:v", "-map", f"{2 * i + 1}:a"]
    cmd += [
        "-c:v", "mpeg2video", "-b:v", f"{options.video_bitrate_kbps}k", "-g", str(options.gop_frames),
        "-c:a", "mp2", "-b:a", f"{options.audio_bitrate_kbps}k", "-ac", "1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
    ]
    for i, svc in enumerate(services):
        # ffmpeg's program key "title" becomes the SDT service_name; the provider is metadata.
        cmd += ["-program", f"program_num={svc.service_id}:title={svc.name}:st={2 * i}:st={2 * i + 1}"]
        cmd += ["-metadata:p:" + str(i), f"service_provider={svc.provider}"]
        cmd += ["-metadata:p:" + str(i), f"service_name={svc.name}"]
    cmd += ["-f", "mpegts",
            "-mpegts_transport_stream_id", str(options.transport_stream_id),
            "-mpegts_original_network_id", str(options.original_network_id)]
    if options.muxrate_kbps is not None:
        cmd += ["-muxrate", f"{options.muxrate_kbps}k"]
    cmd.append(str(out))
    return cmd


def make_test_stream(services: Sequence[TestService], out: Path,
                     options: TestStreamOptions | None = None, *, ffmpeg: str = "ffmpeg") -> Path:
    """Write a clear multi-service TS to ``out`` (atomically: a temp file renamed at the end)."""
    options = options or TestStreamOptions()
    exe = shutil.which(ffmpeg)
    if exe is None:
        raise ConfigError(f"{ffmpeg} not found: install Debian's ffmpeg (scripts/setup.sh does)")
    tmp = out.with_name(out.name + ".part")
    cmd = ffmpeg_command(services, tmp, options, ffmpeg=exe)
    # The muxer is chosen with -f, so the ".part" suffix does not matter.
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StreamError(f"cannot run {ffmpeg}: {exc}") from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise StreamError(f"ffmpeg failed (exit {proc.returncode}): {last}")
    tmp.replace(out)
    return out
