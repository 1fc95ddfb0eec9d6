"""The card-sharing rule: one window of ECM requests, judged against what one box can ask.

Shared by the card (which counts the ECMs it answers, :mod:`cas.card.sharing`) and the
head-end (which reads the card's ECM log, :mod:`cas.diag.sharing`), so both flag the same
windows (docs/sharing.md).  Pure: no I/O.

Per window of one crypto-period, windows aligned on multiples of it on the UTC clock:

1. **services** — more distinct channels than the box has tuners (one channel per tuner);
2. **rate** — more ECM requests than ``tuners × (1 + rate_tolerance)`` (a box asks once per
   tuned channel per crypto-period change, a little more after a zap or a retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from cas.errors import UsageError

#: Defaults: a 2-tuner box (watch one, record one), a 10 s crypto-period (DESIGN §4).
DEFAULT_TUNERS = 2
DEFAULT_WINDOW_S = 10
#: Extra ECM requests per tuner per window a single box may make (zaps, retries).
DEFAULT_RATE_TOLERANCE = 1


class SharingRule(StrEnum):
    """Why a card is flagged (the catalogue's ``sharing.rule.<value>``)."""

    SERVICES = "services"
    RATE = "rate"


class SharingPolicy(IntEnum):
    """What the card does about sharing (set by EMM or at personalisation)."""

    #: keeps no record, never flags
    OFF = 0
    #: records the flag and its evidence, still answers (the default)
    FLAG = 1
    #: once flagged, refuses every ECM (SHARING_DETECTED, E60) until the head-end clears it
    REFUSE = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class SharingLimits:
    tuners: int = DEFAULT_TUNERS
    window_s: float = DEFAULT_WINDOW_S
    rate_tolerance: int = DEFAULT_RATE_TOLERANCE

    def __post_init__(self) -> None:
        if self.tuners < 1:
            raise UsageError(f"tuners must be at least 1, not {self.tuners}").with_id(
                "diag.tuners_least_not", tuners=self.tuners)
        if not self.window_s > 0:
            raise UsageError(f"window must be positive, not {self.window_s}").with_id(
                "diag.window_positive_not", window_s=self.window_s)
        if self.rate_tolerance < 0:
            raise UsageError(f"rate tolerance must not be negative, not {self.rate_tolerance}"
                             ).with_id("diag.rate_tolerance_not_negative",
                                       rate_tolerance=self.rate_tolerance)

    @property
    def max_requests(self) -> int:
        """The most ECM requests one box makes in one window."""
        return self.tuners * (1 + self.rate_tolerance)

    def window_of(self, time_s: float) -> int:
        """The number of the window ``time_s`` falls in (windows start at multiples of it)."""
        return int(time_s // self.window_s)


def rules_broken(services: int, requests: int, limits: SharingLimits) -> tuple[SharingRule, ...]:
    """The rules one window with ``services`` distinct channels and ``requests`` ECM
    requests breaks (empty: a single box could have asked that)."""
    rules = []
    if services > limits.tuners:
        rules.append(SharingRule.SERVICES)
    if requests > limits.max_requests:
        rules.append(SharingRule.RATE)
    return tuple(rules)
