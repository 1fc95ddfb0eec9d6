"""A live source from ffmpeg: its lavfi test pattern with a clock overlay and a tone,
encoded in real time (``-re``) and read from its stdout pipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

from cas.errors import ConfigError
from cas.live.sources.live import LiveSource


class FfmpegSource(LiveSource):
    """ffmpeg's lavfi test pattern (``lavfi:testsrc``) with a wall-clock overlay and a tone,
    encoded in real time and read from its stdout.  If ffmpeg exits, it is started again
    after ``restart_delay_s`` (the new PCR re-anchors the timing; the receiver sees one CC
    discontinuity, as with any restarted encoder)."""

    restart_delay_s = 1.0

    def __init__(self, graph: str, *, service_id: int, name: str = "live",
                 latency_s: float = 0.5, video_bitrate_kbps: int = 1000,
                 ffmpeg: str = "ffmpeg") -> None:
        super().__init__(f"lavfi:{graph}", latency_s=latency_s)
        exe = shutil.which(ffmpeg)
        if exe is None:
            raise ConfigError("lavfi sources need ffmpeg (Debian package ffmpeg)").with_id(
                "live.lavfi_sources_need_ffmpeg")
        self.argv = ffmpeg_argv(exe, graph, service_id=service_id, name=name,
                                video_bitrate_kbps=video_bitrate_kbps)
        self.restarts = 0
        self._proc_lock = threading.Lock()
        self._proc = self._spawn()
        self._thread = threading.Thread(target=self._pump, name=f"ffmpeg-{service_id}",
                                        daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)

    def _pump(self) -> None:
        while True:
            out = self._proc.stdout
            assert out is not None
            while not self._stop.is_set():
                try:
                    data = os.read(out.fileno(), 65536)
                except (OSError, ValueError):  # closed under us by close()
                    data = b""
                if not data:
                    break
                self._put(data)
            if self._stop.wait(self.restart_delay_s):
                return
            with self._proc_lock:
                if self._stop.is_set():
                    return
                self._reap(self._proc)
                self._proc = self._spawn()
                self.restarts += 1

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def close(self) -> None:
        super().close()
        with self._proc_lock:
            self._reap(self._proc)
        self._thread.join(timeout=5)


def ffmpeg_argv(exe: str, graph: str, *, service_id: int, name: str,
                video_bitrate_kbps: int = 1000) -> list[str]:
    """The ffmpeg command line of a lavfi source: ``graph`` (e.g. ``testsrc``, or a full
    ``testsrc=size=640x360:rate=25``) with the wall clock drawn on it, a 1 kHz tone, MPEG-2
    video + MP2 audio in an SPTS on stdout, in real time."""
    video = graph if "=" in graph else f"{graph}=size=320x180:rate=25"
    clock = ("drawtext=text='%{localtime\\:%H\\\\\\:%M\\\\\\:%S}':fontsize=28:fontcolor=white:"
             "box=1:boxcolor=black@0.6:x=8:y=8")
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
            "-vf", clock, "-c:v", "mpeg2video", "-b:v", f"{video_bitrate_kbps}k", "-g", "12",
            "-c:a", "mp2", "-b:a", "128k",
            "-f", "mpegts", "-mpegts_service_id", str(service_id),
            "-metadata", f"service_name={name}", "-pcr_period", "20", "pipe:1"]
