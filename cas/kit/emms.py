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

from sqlalchemy.orm import Session

from cas.billing.state import iter_card_states
from cas.crypto import OperatorKeys
from cas.headend.emmgen import build_batch, ecm_key_rotation_emm
from cas.headend.emmrun import card_targets
from cas.store.repo import to_s


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
