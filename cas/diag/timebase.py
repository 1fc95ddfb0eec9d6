"""Stream time from the PCR (ISO/IEC 13818-1 §2.4.2.2, §2.4.3.5).

The transport rate between two consecutive PCRs of a program is constant (§2.4.2.2), so the
time of any packet is the linear interpolation, by packet position, between the PCR samples
around it.  :class:`TimeBase` turns the ``(packet index, 27 MHz ticks)`` samples of one PCR
PID into "seconds since the first packet":

* the 33-bit base wraps every 26.5 hours (``PCR_MODULUS`` ticks): deltas are taken modulo;
* a PCR that goes backwards or jumps ahead by more than ``MAX_PCR_STEP_S`` is a discontinuity
  (a splice, a looped file): time goes on at the last measured rate instead of jumping;
* before the first and after the last sample, time is extrapolated at the nearest rate.

Without PCR samples the time is the packet position at a nominal bitrate (what the head-end
scrambler also assumes for a PCR-less input).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

PACKET_BITS = 188 * 8
PCR_HZ = 27_000_000
PCR_MODULUS = (1 << 33) * 300
#: A PCR step larger than this (or negative) is a discontinuity, not elapsed time.
MAX_PCR_STEP_S = 10.0
#: The nominal bitrate used when a stream has no PCR and none was given (the scrambler's).
DEFAULT_NOMINAL_BITRATE_BPS = 2_000_000


class TimeBase:
    """Packet index -> seconds since packet 0."""

    __slots__ = ("_idx", "_sec", "_spp", "discontinuities", "samples", "source")

    def __init__(self, indexes: Sequence[int], ticks: Sequence[int], *, nominal_bitrate_bps: int,
                 source: str) -> None:
        if nominal_bitrate_bps <= 0:
            raise ValueError("nominal bitrate must be positive")
        self.source = source
        self.discontinuities = 0
        self.samples = len(indexes)
        fallback_spp = PACKET_BITS / nominal_bitrate_bps
        idx: list[int] = []
        sec: list[float] = []
        spp: list[float] = []  # seconds per packet of the segment ending at anchor k
        last_rate = fallback_spp
        prev_t = 0
        for i, t in zip(indexes, ticks, strict=True):
            if not idx:
                idx.append(i)
                sec.append(0.0)
                spp.append(fallback_spp)
                prev_t = t
                continue
            di = i - idx[-1]
            if di <= 0:
                continue  # two PCRs in one packet position cannot happen; ignore repeats
            dt = ((t - prev_t) % PCR_MODULUS) / PCR_HZ
            prev_t = t
            if dt <= 0 or dt > MAX_PCR_STEP_S:
                self.discontinuities += 1
                dt = di * last_rate
            else:
                last_rate = dt / di
            idx.append(i)
            sec.append(sec[-1] + dt)
            spp.append(dt / di)
        if len(spp) > 1:
            spp[0] = spp[1]  # extrapolate before the first PCR at the first measured rate
        self._idx = idx
        self._sec = sec
        self._spp = spp
        if not idx:
            self._idx = [0]
            self._sec = [0.0]
            self._spp = [fallback_spp]
        # Re-base so that packet 0 is at 0 s.
        zero = self._raw(0)
        self._sec = [s - zero for s in self._sec]

    @classmethod
    def nominal(cls, bitrate_bps: int) -> TimeBase:
        return cls((), (), nominal_bitrate_bps=bitrate_bps,
                   source=f"packet position at {bitrate_bps} bit/s (no PCR)")

    def _raw(self, index: int) -> float:
        idx, sec, spp = self._idx, self._sec, self._spp
        k = bisect_right(idx, index)
        if k == 0:
            return sec[0] - (idx[0] - index) * spp[0]
        if k == len(idx):
            return sec[-1] + (index - idx[-1]) * spp[-1]
        return sec[k - 1] + (index - idx[k - 1]) * spp[k]

    def at(self, index: int) -> float:
        """Seconds since packet 0 of the packet at ``index``."""
        return self._raw(index)

    def seconds_per_packet(self) -> float:
        """Mean packet duration over the measured span (for bitrates)."""
        if len(self._idx) < 2:
            return self._spp[0]
        return (self._sec[-1] - self._sec[0]) / (self._idx[-1] - self._idx[0])
