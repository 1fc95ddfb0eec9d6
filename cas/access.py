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
class CardRights:
    """What a card holds (or, at the head-end, should hold) at some time."""

    status: CardStatus
    region: int
    maturity_limit: int = NO_MATURITY_LIMIT
    entitlements: tuple[Entitlement, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessCriteria:
    """What an ECM demands for its channel (DESIGN §3)."""

    channel_id: int
    package_ids: tuple[int, ...]
    regions: tuple[int, ...] = field(default=())  # empty: everywhere
    maturity_rating: int = 0


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
