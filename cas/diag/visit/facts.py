"""The facts a visit gathered, frozen: what :func:`cas.diag.visit.rules.diagnose` decides on.

:mod:`.gather` reads them from the card, the box's files, the stream and the head-end's store;
nothing here does I/O, so the rules can be run (and tested) on facts built by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cas.card.diag import CardReport
from cas.diag.boxinfo import BoxReport
from cas.diag.headend import HeadendFacts
from cas.diag.probe import ProbeReport
from firmware_stub.report import ChannelStatus, LockReport


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitFacts:
    """Everything the verdict depends on, as read at the visit."""

    #: the moment of the visit (Unix seconds, UTC)
    at_s: int
    #: the stream probe's report
    probe: ProbeReport
    #: what the box (or the card alone, or nobody) showed on each channel
    statuses: tuple[ChannelStatus, ...]
    #: the card as it answered the ECMs (after the stream's EMMs), None when not read
    card: CardReport | None
    #: the card's unique EMM sequence after the stream's EMMs
    card_seq: int | None
    #: the box's Chip ID record and NVRAM, when given
    box: BoxReport | None
    #: the box's own scan, when it ran
    lock: LockReport | None
    #: the head-end's records for this card (``--db``)
    headend: HeadendFacts | None
    #: the Chip ID of the box being visited, when known
    chip_id: int | None
    #: service id -> the head-end's channel number, when known without a card
    numbers: Mapping[int, int] = field(default_factory=dict)
