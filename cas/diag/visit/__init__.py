"""``cas diag visit``: card + box + stream (+ the head-end's records) -> one verdict per channel.

Facts in, decisions out, I/O at the edge:

* :mod:`.gather` — the edge: reads the stream, the card, the box's files (and runs the STB
  stub on a copy of its NVRAM), the head-end's store, into frozen :class:`VisitFacts`;
* :mod:`.facts` — :class:`VisitFacts`, everything the verdict depends on;
* :mod:`.rules` — the decision, pure and numbered: :func:`diagnose` turns the facts into a
  verdict per channel and the root causes across channels, most likely first;
* :mod:`.verdict` — what it concludes: :class:`Cause` and its tiers, :class:`Finding`,
  :class:`ChannelVerdict`, :class:`RootCause`, :class:`VisitReport`.

:func:`run_visit` is gather then diagnose.  The names here are those the module had before it
became a package.
"""

from __future__ import annotations

from cas.diag.visit.facts import VisitFacts
from cas.diag.visit.gather import Gathered, VisitInput, gather, run_visit
from cas.diag.visit.rules import DAY_S, diagnose, diagnose_channel, stream_wide_findings
from cas.diag.visit.verdict import (
    RIGHTS_REASONS,
    TIER,
    Cause,
    ChannelVerdict,
    Finding,
    RootCause,
    VisitMode,
    VisitReport,
)

__all__ = [
    "DAY_S", "RIGHTS_REASONS", "TIER", "Cause", "ChannelVerdict", "Finding", "Gathered",
    "RootCause", "VisitFacts", "VisitInput", "VisitMode", "VisitReport", "diagnose",
    "diagnose_channel", "gather", "run_visit", "stream_wide_findings",
]
