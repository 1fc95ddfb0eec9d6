"""``cas diag fingerprint CLIP``: read the card serial back from a captured clip.

The clip is decoded with ffmpeg to raw grey frames at a fixed analysis size (so a clip
scaled down after capture reads the same), and each corner is tried for the covert pattern
of :mod:`cas.formats.fingerprint` (docs/osd.md §3):

1. per frame, the mean of the centre of every cell;
2. each cell's value less the mean of its values a flicker half-period before and after:
   the static picture and slow changes go, the flicker stays (doubled);
3. the dominant common pattern of those residuals (power iteration on the cells'
   covariance): its signs are the cell bits, up to one global sign (the flicker's phase);
4. both signs decoded (Hamming(7,4) corrects one bit per column, CRC-8 checks the rest);
   a pattern must also stand out of the noise (:data:`MIN_SHARE`) to count.

No pattern in any corner is :class:`FingerprintNotFoundError` (exit 12).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cas.console import Exit
from cas.errors import CasError, ConfigError, StreamError
from cas.formats.fingerprint import CELLS, FLICKER_FRAMES, Corner, cell_boxes, decode_bits

#: Every clip is read at this size (fractions of the frame do not care about the source's).
ANALYSIS_W = 384
ANALYSIS_H = 216
#: The dominant pattern must carry at least this share of the cells' residual energy.
MIN_SHARE = 0.25
#: Frames read at most (a few seconds are enough; a long capture is cut here).
MAX_FRAMES = 1500
_POWER_ITERATIONS = 60


class FingerprintNotFoundError(CasError):
    """No covert fingerprint could be read from the clip."""

    exit_code = int(Exit.NOT_FOUND)


@dataclass(frozen=True, slots=True, kw_only=True)
class FingerprintReading:
    """What ``cas diag fingerprint`` found."""

    serial: int
    corner: Corner
    frames: int
    share: float
    corrected_bits: int

    def to_json(self) -> dict[str, object]:
        return {"serial": f"{self.serial:010d}", "corner": self.corner.name.lower(),
                "frames": self.frames, "pattern_share": round(self.share, 3),
                "corrected_bits": self.corrected_bits}


def read_frames(clip: Path, *, ffmpeg: str = "ffmpeg") -> list[bytes]:
    """The clip's video as grey ``ANALYSIS_W`` x ``ANALYSIS_H`` frames."""
    exe = shutil.which(ffmpeg)
    if exe is None:
        raise ConfigError(f"{ffmpeg} not found: install Debian's ffmpeg (scripts/setup.sh does)").with_id(
            "diag.not_found_install_debian", ffmpeg=ffmpeg)
    if not clip.is_file():
        raise StreamError(f"{clip}: no such file").with_id("diag.no_such_file", clip=clip)
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(clip),
           "-map", "0:v:0", "-an", "-frames:v", str(MAX_FRAMES),
           "-vf", f"scale={ANALYSIS_W}:{ANALYSIS_H}:flags=area,format=gray",
           "-f", "rawvideo", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StreamError(f"cannot run {ffmpeg}: {exc}").with_id(
            "diag.cannot_run", ffmpeg=ffmpeg, exc=exc) from exc
    if proc.returncode != 0:
        last = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1]
        raise StreamError(f"{clip}: ffmpeg cannot decode its video: {last}").with_id(
            "diag.ffmpeg_cannot_decode_video", clip=clip, last=last)
    size = ANALYSIS_W * ANALYSIS_H
    data = proc.stdout
    return [data[i:i + size] for i in range(0, len(data) - size + 1, size)]


def _cell_means(frames: list[bytes], corner: Corner) -> list[list[float]]:
    boxes = cell_boxes(ANALYSIS_W, ANALYSIS_H, corner, inset=0.25)
    out = []
    for frame in frames:
        row = []
        for b in boxes:
            total = 0
            for y in range(b.y, b.y + b.h):
                start = y * ANALYSIS_W + b.x
                total += sum(frame[start:start + b.w])
            row.append(total / (b.w * b.h))
        out.append(row)
    return out


def _dominant_pattern(means: list[list[float]]) -> tuple[list[float], float]:
    """The cells' dominant common pattern of change and its share of the energy."""
    h = FLICKER_FRAMES
    # x(t) - (x(t-h) + x(t+h)) / 2: a half-period away the flicker has the other sign, so
    # it doubles; the static picture, slow changes and the window's edges cancel.
    resid = [[means[t][c] - (means[t - h][c] + means[t + h][c]) / 2 for c in range(CELLS)]
             for t in range(h, len(means) - h)]
    cov = [[0.0] * CELLS for _ in range(CELLS)]
    for r in resid:
        for i in range(CELLS):
            ri = r[i]
            if ri:
                row = cov[i]
                for j in range(CELLS):
                    row[j] += ri * r[j]
    trace = sum(cov[i][i] for i in range(CELLS))
    if trace <= 0:
        return [0.0] * CELLS, 0.0
    v = [1.0] * CELLS
    eig = 0.0
    for _ in range(_POWER_ITERATIONS):
        w = [sum(cov[i][j] * v[j] for j in range(CELLS)) for i in range(CELLS)]
        norm = sum(x * x for x in w) ** 0.5
        if norm == 0:
            return [0.0] * CELLS, 0.0
        v = [x / norm for x in w]
        eig = norm
    return v, eig / trace


def read_fingerprint(clip: Path, *, ffmpeg: str = "ffmpeg") -> FingerprintReading:
    """The card serial of the covert fingerprint in ``clip``, or FingerprintNotFoundError."""
    frames = read_frames(clip, ffmpeg=ffmpeg)
    if len(frames) < 4 * FLICKER_FRAMES:
        raise FingerprintNotFoundError(f"{clip}: {len(frames)} video frames, too few to read "
                                       "a fingerprint").with_id(
            "diag.video_frames_too_few", clip=clip, n=len(frames))
    best: FingerprintReading | None = None
    for corner in Corner:
        pattern, share = _dominant_pattern(_cell_means(frames, corner))
        if share < MIN_SHARE:
            continue
        bits = [1 if x > 0 else 0 for x in pattern]
        for candidate in (bits, [1 - b for b in bits]):
            decoded = decode_bits(candidate)
            if decoded is None:
                continue
            reading = FingerprintReading(serial=decoded.serial, corner=corner,
                                         frames=len(frames), share=share,
                                         corrected_bits=decoded.corrected_bits)
            if best is None or reading.share > best.share:
                best = reading
    if best is None:
        raise FingerprintNotFoundError(f"{clip}: no fingerprint found in {len(frames)} frames").with_id(
            "diag.no_fingerprint_found_frames", clip=clip, n=len(frames))
    return best
