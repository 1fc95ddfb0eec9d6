"""Burning fingerprints into ``stb watch``'s clear output with ffmpeg (docs/osd.md §3).

A real box draws the fingerprint with its graphics plane; the stub re-encodes the clear
video once the pass is over, with one ffmpeg filter graph: ``drawtext`` for the overt
fingerprint (the card serial, where the head-end said), ``drawbox`` cells for the covert
pattern of :mod:`cas.formats.fingerprint`.  Each is enabled only for its window of the
clip (``between(t, start, end)``, the clip's time from its first frame).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cas.errors import ConfigError, StreamError
from cas.formats.emm import FingerprintKind
from cas.formats.fingerprint import ALPHA, FLICKER_FRAMES, Corner, cell_boxes, encode_serial


@dataclass(frozen=True, slots=True, kw_only=True)
class FingerprintShow:
    """One fingerprint to draw: which, whose serial, when in the clip and where."""

    kind: FingerprintKind
    serial: int
    start_s: float
    end_s: float
    x_pct: int
    y_pct: int


def _window(show: FingerprintShow) -> str:
    return f"between(t,{show.start_s:.3f},{show.end_s:.3f})"


def filter_graph(shows: list[FingerprintShow], width: int, height: int) -> str:
    """The ``-vf`` chain that draws ``shows`` on a ``width`` x ``height`` video."""
    parts = ["setpts=PTS-STARTPTS"]
    for show in shows:
        win = _window(show)
        if show.kind is FingerprintKind.OVERT:
            x = round(width * show.x_pct / 100)
            y = round(height * show.y_pct / 100)
            size = max(8, height // 12)
            # kept inside the picture however near the edge the head-end put it
            parts.append(f"drawtext=text='{show.serial:010d}':x='min({x},w-tw)':"
                         f"y='min({y},h-th)':fontsize={size}:"
                         f"fontcolor=white:box=1:boxcolor=black@0.6:enable='{win}'")
            continue
        corner = Corner.nearest(show.x_pct, show.y_pct)
        phase = f"mod(floor(n/{FLICKER_FRAMES}),2)"
        for cell in cell_boxes(width, height, corner, encode_serial(show.serial)):
            box = f"drawbox=x={cell.x}:y={cell.y}:w={cell.w}:h={cell.h}:t=fill"
            light, dark = (0, 1) if cell.bit else (1, 0)
            parts.append(f"{box}:color=white@{ALPHA}:enable='{win}*eq({phase},{light})'")
            parts.append(f"{box}:color=black@{ALPHA}:enable='{win}*eq({phase},{dark})'")
    return ",".join(parts)


def _exe(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise ConfigError(f"{name} not found: install Debian's ffmpeg (scripts/setup.sh does)").with_id(
            "box.not_found_install_debian", name=name)
    return exe


def _run(cmd: list[str]) -> bytes:
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StreamError(f"cannot run {cmd[0]}: {exc}").with_id(
            "box.cannot_run", cmd=cmd[0], exc=exc) from exc
    if proc.returncode != 0:
        last = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1]
        raise StreamError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {last}").with_id(
            "box.failed_exit", name=Path(cmd[0]).name, returncode=proc.returncode, last=last)
    return proc.stdout


def video_size(path: Path) -> tuple[int, int]:
    """Width and height of the first video stream of ``path`` (ffprobe)."""
    out = _run([_exe("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries",
                "stream=width,height", "-of", "csv=p=0:s=x", str(path)])
    try:
        w, h = out.decode().strip().splitlines()[0].split("x")[:2]
        return int(w), int(h)
    except (ValueError, IndexError):
        raise StreamError(f"{path}: no video stream to draw a fingerprint on").with_id(
            "box.no_video_stream_draw", path=path) from None


def burn_in(path: Path, shows: list[FingerprintShow]) -> None:
    """Re-encode the clear clip at ``path`` in place with ``shows`` drawn on its video."""
    if not shows:
        return
    width, height = video_size(path)
    tmp = path.with_name(f".{path.name}.fp.ts")
    cmd = [_exe("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-i", str(path), "-map", "0:v:0", "-map", "0:a?",
           "-vf", filter_graph(shows, width, height), "-af", "asetpts=PTS-STARTPTS",
           "-c:v", "mpeg2video", "-q:v", "2", "-c:a", "mp2", "-f", "mpegts", str(tmp)]
    try:
        _run(cmd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
