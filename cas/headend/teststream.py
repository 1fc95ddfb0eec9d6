"""Clear multi-service MPEG-TS test streams, made with Debian's ``ffmpeg``.

One service per lineup channel: a synthetic picture (``testsrc``/``smptebars``/... from the
lavfi device, cycling per channel so two channels never look alike) and a sine tone at a
frequency of its own, muxed by ffmpeg's ``mpegts`` muxer with one ``-program`` per service.
The muxer writes PAT, one PMT per program (ISO/IEC 13818-1 §2.4.4) and an SDT with the
service and provider names (EN 300 468 §5.2.3), so the result is a stream any demux reads.

Small picture and low bitrates keep the files small and the tests fast; ``bitexact`` flags
keep the output identical from run to run on one ffmpeg build.

ffmpeg's muxer writes its SDT as one section and refuses to start when the services' names do
not fit one (1024 bytes: about 50 services with short names).  A larger lineup is made in
groups that each fit, one ffmpeg run per group with PIDs of its own (``-mpegts_start_pid``,
``-mpegts_pmt_start_pid``); the group files are then interleaved packet by packet into one
stream with one PAT for every program and a multi-section SDT (EN 300 468 §5.1.4), both sent
where the first group's were.
"""

from __future__ import annotations

import heapq
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cas.errors import ConfigError, FormatError, StreamError, UsageError
from cas.formats import psi, ts
from cas.formats.sections import section_total_length

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
            raise UsageError(f"service id {self.service_id} outside 1..65535").with_id(
                "headend.service_id_outside_2", service_id=self.service_id)
        if not self.name:
            raise UsageError("a service needs a name").with_id("headend.service_needs_name")


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


#: ffmpeg's first elementary-stream and PMT PIDs (its defaults).
FFMPEG_START_PID = 0x0100
FFMPEG_PMT_START_PID = 0x1000
#: DVB service_type of the test services: digital television (EN 300 468 table 87).
SERVICE_TYPE_TV = 0x01
_PACKET = 188


def ffmpeg_command(services: Sequence[TestService], out: Path, options: TestStreamOptions,
                   *, ffmpeg: str = "ffmpeg", start_pid: int = FFMPEG_START_PID,
                   pmt_start_pid: int = FFMPEG_PMT_START_PID) -> list[str]:
    """The ffmpeg argument vector that writes the test stream for ``services`` to ``out``.

    ``start_pid`` / ``pmt_start_pid``: the first PIDs ffmpeg gives the elementary streams (two
    per service) and the PMTs (one per service)."""
    if not services:
        raise UsageError("a test stream needs at least one service").with_id(
            "headend.test_stream_needs_least")
    ids = [s.service_id for s in services]
    if len(set(ids)) != len(ids):
        raise UsageError("service ids must be unique").with_id("headend.service_ids_unique")
    if options.duration_s <= 0:
        raise UsageError("duration must be positive").with_id("headend.duration_positive")
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
    if start_pid != FFMPEG_START_PID or pmt_start_pid != FFMPEG_PMT_START_PID:
        cmd += ["-mpegts_start_pid", str(start_pid), "-mpegts_pmt_start_pid", str(pmt_start_pid)]
    if options.muxrate_kbps is not None:
        cmd += ["-muxrate", f"{options.muxrate_kbps}k"]
    cmd.append(str(out))
    return cmd


def _sdt_entry_size(svc: TestService) -> int:
    """Bytes of one service in an SDT with a service_descriptor (what ffmpeg writes)."""
    return 5 + 2 + 1 + 1 + len(psi.encode_dvb_text(svc.provider)) + 1 + len(
        psi.encode_dvb_text(svc.name))


#: Room for services in one SDT section (1024 bytes less header, network id and CRC), with a
#: margin for what a muxer version may add.
_SDT_ROOM = 1024 - 15 - 16


def sdt_groups(services: Sequence[TestService]) -> list[list[TestService]]:
    """``services`` in order, cut into groups whose SDT fits one section each."""
    groups: list[list[TestService]] = [[]]
    used = 0
    for svc in services:
        size = _sdt_entry_size(svc)
        if size > _SDT_ROOM:
            raise UsageError(f"the name of service {svc.service_id} is too long for an SDT").with_id(
                "headend.name_service_too_long", service_id=svc.service_id)
        if used + size > _SDT_ROOM:
            groups.append([])
            used = 0
        groups[-1].append(svc)
        used += size
    return groups


def make_test_stream(services: Sequence[TestService], out: Path,
                     options: TestStreamOptions | None = None, *, ffmpeg: str = "ffmpeg") -> Path:
    """Write a clear multi-service TS to ``out`` (atomically: a temp file renamed at the end)."""
    options = options or TestStreamOptions()
    exe = shutil.which(ffmpeg)
    if exe is None:
        raise ConfigError(f"{ffmpeg} not found: install Debian's ffmpeg (scripts/setup.sh does)").with_id(
            "headend.not_found_install_debian", ffmpeg=ffmpeg)
    ffmpeg_command(services, out, options, ffmpeg=exe)  # the argument checks, before any run
    groups = sdt_groups(services)
    tmp = out.with_name(out.name + ".part")
    if len(groups) == 1:
        _run_ffmpeg(ffmpeg_command(services, tmp, options, ffmpeg=exe), tmp, ffmpeg)
        tmp.replace(out)
        return out
    parts: list[Path] = []
    try:
        first = 0
        for n, group in enumerate(groups):
            part = out.with_name(f"{out.name}.part{n}")
            parts.append(part)
            share = options
            if options.muxrate_kbps is not None:  # the merged stream keeps the asked rate
                share = _with_muxrate(options, max(1, options.muxrate_kbps * len(group)
                                                   // len(services)))
            _run_ffmpeg(ffmpeg_command(group, part, share, ffmpeg=exe,
                                       start_pid=FFMPEG_START_PID + 2 * first,
                                       pmt_start_pid=FFMPEG_PMT_START_PID + first), part, ffmpeg)
            first += len(group)
        with tmp.open("wb") as fh:
            fh.write(_merge([p.read_bytes() for p in parts], services, options))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        for part in parts:
            part.unlink(missing_ok=True)
    return out


def _with_muxrate(options: TestStreamOptions, muxrate_kbps: int) -> TestStreamOptions:
    return replace(options, muxrate_kbps=muxrate_kbps)


def _run_ffmpeg(cmd: list[str], tmp: Path, ffmpeg: str) -> None:
    # The muxer is chosen with -f, so the ".part" suffix does not matter.
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StreamError(f"cannot run {ffmpeg}: {exc}").with_id(
            "headend.cannot_run", ffmpeg=ffmpeg, exc=exc) from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise StreamError(f"ffmpeg failed (exit {proc.returncode}): {last}").with_id(
            "headend.ffmpeg_failed_exit", returncode=proc.returncode, last=last)


def _pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def _first_section(data: bytes, pid: int) -> bytes:
    """The first section starting in a packet of ``pid`` (a PAT of a group fits one packet)."""
    for pos in range(0, len(data) - _PACKET + 1, _PACKET):
        pkt = data[pos : pos + _PACKET]
        if _pid(pkt) != pid or not pkt[1] & 0x40:
            continue
        afc = (pkt[3] >> 4) & 3
        start = 4 + (1 + pkt[4] if afc == 3 else 0)
        payload = pkt[start + 1 + pkt[start]:]
        if len(payload) >= 3 and len(payload) >= section_total_length(payload):
            return payload[: section_total_length(payload)]
    raise StreamError(f"ffmpeg wrote no section on PID {pid:#06x}").with_id(
        "headend.ffmpeg_wrote_no_section", pid=f"{pid:#06x}")


def _merge(parts: list[bytes], services: Sequence[TestService],
           options: TestStreamOptions) -> bytes:
    """The group files interleaved by position, with one PAT and one SDT for all of them."""
    try:
        programs = [prog for part in parts
                    for prog in psi.parse_pat(_first_section(part, psi.PAT_PID)).programs]
        pat = psi.build_pat(psi.Pat(transport_stream_id=options.transport_stream_id,
                                    programs=tuple(programs)))
        sdt = psi.split_sdt(psi.Sdt(
            transport_stream_id=options.transport_stream_id,
            original_network_id=options.original_network_id,
            services=tuple(psi.SdtService(service_id=s.service_id, descriptors=(
                psi.ServiceDescriptor.of(SERVICE_TYPE_TV, s.provider, s.name),))
                for s in services)))
        sdt_sections = [psi.build_sdt(section) for section in sdt]
    except FormatError as exc:
        raise StreamError(f"cannot merge the test stream's groups: {exc}").with_id(
            "headend.cannot_merge_test_stream", exc=exc) from exc
    pat_pk, sdt_pk = ts.Packetizer(psi.PAT_PID), ts.Packetizer(psi.SDT_PID)

    def packets(n: int, data: bytes) -> Iterator[tuple[float, int, bytes]]:
        count = len(data) // _PACKET
        for i in range(count):
            yield i / count, n, data[i * _PACKET : (i + 1) * _PACKET]

    out: list[bytes] = []
    for _, n, pkt in heapq.merge(*(packets(n, d) for n, d in enumerate(parts))):
        pid = _pid(pkt)
        if pid == psi.PAT_PID:
            if n == 0 and pkt[1] & 0x40:
                out += pat_pk.packetize(pat)
        elif pid == psi.SDT_PID:
            if n == 0 and pkt[1] & 0x40:
                out += sdt_pk.packetize_many(sdt_sections)
        else:
            out.append(pkt)
    return b"".join(out)
