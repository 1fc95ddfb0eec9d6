"""A kit step's EMMs: a full refresh of every card's rights at one moment, made by the
head-end's own :func:`cas.headend.emmgen.build_batch` with the scenario's seeded randomness.

``cas emm generate`` (``emm_run``) draws its AEAD nonces from the OS; a kit must be
byte-identical from build to build, so the kit calls the batch builder itself with the seed's
``rng`` and keeps the sequence numbers of its own EMMs (the cards' replay counters only ever
see this kit's EMMs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.access import NO_MATURITY_LIMIT, CardRights, CardStatus, Entitlement
from cas.billing.state import iter_card_states
from cas.billing.txn import current_profile
from cas.crypto import OperatorKeys
from cas.formats.emm import EmmCommand
from cas.headend.emmgen import CardTarget, build_batch, ecm_key_rotation_emm
from cas.headend.emmrun import card_targets
from cas.headend.osd import OsdTarget, osd_emm
from cas.store.models import Package
from cas.store.repo import to_s

#: The card of the ``other-card-emm`` event: registered nowhere, in no box of any kit (the
#: kit's own cards are numbered from ``cas.kit.build.FIRST_SERIAL``, one per subscriber).
OTHER_CARD_SERIAL = 2_256_889_999
#: How long a kit's command EMM (a purse top-up, a message) stays valid: the timeline's days.
CARD_EMM_VALIDITY_S = 30 * 86400


def tamper(section: bytes) -> bytes:
    """One byte inside the sealed body changed: the card's AEAD check must refuse it."""
    return section[:-8] + bytes([section[-8] ^ 0x01]) + section[-7:]


class KitEmms:
    """The EMM sequence numbers used so far, and the EMMs of each step."""

    def __init__(self, keys: OperatorKeys, rng: Callable[[int], bytes]) -> None:
        self.keys = keys
        self.rng = rng
        self.unique_next: dict[int, int] = {}
        self.shared_next: dict[int, int] = {}
        self.global_next = 1

    def ecm_key(self, index: int, at: datetime) -> bytes:
        """The global EMM of an ECM-key rollover delivering key ``index``."""
        emm = ecm_key_rotation_emm(self.keys, index, seq=self.global_next, at=at, rng=self.rng)
        self.global_next += 1
        return emm

    def commands(self, target: OsdTarget, commands: list[EmmCommand], at: datetime) -> bytes:
        """One EMM carrying ``commands`` (pay-per-view, on-screen messages, fingerprints) to
        one card, a group or every card, numbered after this kit's EMMs to that address."""
        if target.serial is not None:
            seq = self.unique_next.get(target.serial, 1)
            self.unique_next[target.serial] = seq + 1
        elif target.shared_address is not None:
            seq = self.shared_next.get(target.shared_address, 1)
            self.shared_next[target.shared_address] = seq + 1
        else:
            seq = self.global_next
            self.global_next += 1
        return osd_emm(self.keys, target, commands, seq=seq, at=at, validity_s=CARD_EMM_VALIDITY_S,
                       rng=self.rng)

    def full_refresh(self, session: Session, at: datetime) -> list[bytes]:
        states = list(iter_card_states(session, at))
        if not states:
            return []
        cards = card_targets(session, self.keys, states)
        res = build_batch(self.keys, cards, at_s=to_s(at),
                          unique_seq=lambda serial: self.unique_next.get(serial, 1),
                          shared_seq=lambda group: self.shared_next.get(group, 1),
                          rng=self.rng)
        self.unique_next.update(res.unique_next)
        self.shared_next.update(res.shared_next)
        return list(res.sections)

    def for_other_card(self, session: Session, at: datetime) -> list[bytes]:
        """Unique EMMs addressed to :data:`OTHER_CARD_SERIAL`, sealed with that card's own
        key, granting every package for a year with no maturity limit: a box must leave it
        to its owner (and a card that took it anyway would open everything)."""
        now = to_s(at)
        packages = sorted(session.scalars(select(Package.id)))
        rights = CardRights(status=CardStatus.ACTIVE,
                            region=current_profile(session).home_region,
                            maturity_limit=NO_MATURITY_LIMIT,
                            entitlements=tuple(Entitlement(package_id=p, start_s=now - 86400,
                                                           end_s=now + 365 * 86400)
                                               for p in packages))
        serial = OTHER_CARD_SERIAL
        res = build_batch(self.keys, [CardTarget(serial=serial, rights=rights)], at_s=now,
                          unique_seq=lambda s: self.unique_next.get(s, 1),
                          shared_seq=lambda g: self.shared_next.get(g, 1), rng=self.rng)
        self.unique_next.update(res.unique_next)
        return list(res.sections)
