"""The access decision: may this card open this channel now?

One pure function, shared by the card applet (which answers an ECM) and the head-end
(``cas why``, diagnostics), so that the box's reason and the head-end's reason cannot drift
apart.  Times are integer UTC seconds since the Unix epoch, as carried on the wire.

Order of checks (first failing check wins):
1. card status: KILLED, FINANCIAL_BLOCK, SUSPENDED, not ACTIVE;
2. region: the channel's region list (empty = everywhere) must contain the card's region;
3. entitlement: some entitlement for one of the channel's packages must cover ``now``;
   otherwise a matching one that ended -> ENTITLEMENT_EXPIRED, one that starts later ->
   NOT_YET_VALID; otherwise the card has some valid package -> CHANNEL_NOT_IN_PACKAGE,
   or none at all -> NOT_SUBSCRIBED;
4. maturity: rating above the card's limit needs a verified PIN -> MATURITY_LOCKED.

Pay-per-view (docs/ppv.md) slots into step 3: when no package entitlement covers ``now``
and the ECM carries a PPV event, the card opens it only with a right to that event id
(pre-booked by EMM or bought on the card, IPPV) while the event is on air; a right but the
event over -> PPV_EVENT_ENDED, no right -> PPV_NOT_PURCHASED.  When the ECM carries no event
but the card holds a right to an event of this channel that has ended, the lock is
PPV_EVENT_ENDED rather than NOT_SUBSCRIBED / CHANNEL_NOT_IN_PACKAGE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from cas.reasons import Reason


class CardStatus(IntEnum):
    INACTIVE = 0
    ACTIVE = 1
    SUSPENDED = 2
    FINANCIAL_BLOCK = 3
    KILLED = 4


#: Maturity limit meaning "no limit" (adult profile).
NO_MATURITY_LIMIT = 0xFF


@dataclass(frozen=True, slots=True, kw_only=True)
class Entitlement:
    """Right to a package from ``start_s`` (inclusive) to ``end_s`` (exclusive)."""

    package_id: int
    start_s: int
    end_s: int

    def covers(self, now_s: int) -> bool:
        return self.start_s <= now_s < self.end_s


@dataclass(frozen=True, slots=True, kw_only=True)
class PpvEvent:
    """A pay-per-view event on air, as an ECM carries it (docs/ppv.md)."""

    event_id: int
    start_s: int
    end_s: int
    price_tokens: int = 0
    #: may be bought on the card from the sofa (IPPV); otherwise pre-booked only
    impulse: bool = True

    def on_air(self, now_s: int) -> bool:
        return self.start_s <= now_s < self.end_s


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRight:
    """A card's right to one PPV event: pre-booked (by EMM) or bought (IPPV)."""

    event_id: int
    channel_id: int
    start_s: int
    end_s: int
    impulse: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CardRights:
    """What a card holds (or, at the head-end, should hold) at some time."""

    status: CardStatus
    region: int
    maturity_limit: int = NO_MATURITY_LIMIT
    entitlements: tuple[Entitlement, ...] = ()
    events: tuple[EventRight, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessCriteria:
    """What an ECM demands for its channel (DESIGN §3)."""

    channel_id: int
    package_ids: tuple[int, ...]
    regions: tuple[int, ...] = field(default=())  # empty: everywhere
    maturity_rating: int = 0
    ppv_event: PpvEvent | None = None


_STATUS_REASON = {
    CardStatus.KILLED: Reason.CARD_KILLED,
    CardStatus.FINANCIAL_BLOCK: Reason.FINANCIAL_BLOCK,
    CardStatus.SUSPENDED: Reason.CARD_SUSPENDED,
    CardStatus.INACTIVE: Reason.CARD_NOT_ACTIVE,
}


def decide(rights: CardRights, criteria: AccessCriteria, now_s: int, *, pin_ok: bool = False) -> Reason:
    """Return ``Reason.OPEN`` or the first reason the channel is locked (see module doc)."""
    if rights.status != CardStatus.ACTIVE:
        return _STATUS_REASON.get(rights.status, Reason.CARD_NOT_ACTIVE)
    if criteria.regions and rights.region not in criteria.regions:
        return Reason.REGION_BLACKOUT
    wanted = set(criteria.package_ids)
    matching = [e for e in rights.entitlements if e.package_id in wanted]
    if not any(e.covers(now_s) for e in matching):
        ppv = _ppv_decision(rights, criteria, now_s)
        if ppv is not None:
            if ppv is not Reason.OPEN:
                return ppv
            if criteria.maturity_rating > rights.maturity_limit and not pin_ok:
                return Reason.MATURITY_LOCKED
            return Reason.OPEN
        if any(e.end_s <= now_s for e in matching):
            return Reason.ENTITLEMENT_EXPIRED
        if any(e.start_s > now_s for e in matching):
            return Reason.NOT_YET_VALID
        if any(e.covers(now_s) for e in rights.entitlements):
            return Reason.CHANNEL_NOT_IN_PACKAGE
        return Reason.NOT_SUBSCRIBED
    if criteria.maturity_rating > rights.maturity_limit and not pin_ok:
        return Reason.MATURITY_LOCKED
    return Reason.OPEN


def _ppv_decision(rights: CardRights, criteria: AccessCriteria, now_s: int) -> Reason | None:
    """Step 3 for pay-per-view (module doc); ``None`` when PPV has nothing to say."""
    event = criteria.ppv_event
    if event is not None:
        held = any(r.event_id == event.event_id for r in rights.events)
        if now_s >= event.end_s:
            return Reason.PPV_EVENT_ENDED if held else Reason.PPV_NOT_PURCHASED
        if not held:
            return Reason.PPV_NOT_PURCHASED
        if now_s < event.start_s:
            return Reason.NOT_YET_VALID
        return Reason.OPEN
    if any(r.channel_id == criteria.channel_id and r.end_s <= now_s for r in rights.events):
        return Reason.PPV_EVENT_ENDED
    return None
