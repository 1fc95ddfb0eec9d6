"""A small subscriber base in a real SQLite store, and in-process cards personalised for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cas.billing.accounts import create_account, link_card
from cas.billing.service import pay, subscribe
from cas.billing.setup import use_profile
from cas.card.client import CardClient
from cas.card.personalise import CardSlot
from cas.crypto import OperatorKeys
from cas.errors import StatusWordError
from cas.store.engine import open_store
from tests.fixtures.cards import Base, in_process_card, register_cards
from tests.fixtures.seeded import seeded_keys

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIRST_SERIAL = 2_000_000_001


def make_base(tmp_path: Path, keys: OperatorKeys, *, cards: int, subscribe_every: int = 1,
              ) -> Base:
    """``cards`` cards; every ``subscribe_every``-th has an account with the base package,
    every 3rd of those the VIP Premiere add-on too; card 2 is left without an account."""
    store = open_store(data_dir=tmp_path / "store")
    serials = list(range(FIRST_SERIAL, FIRST_SERIAL + cards))
    accounts: dict[int, str] = {}
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=T0)
        slots = register_cards(s, serials, T0)
        for i, serial in enumerate(serials):
            if i == 2 or i % subscribe_every:
                continue
            acc = create_account(s, surname="Test", name=f"N{i}", at=T0)
            accounts[serial] = acc.account_number
            link_card(s, serial=serial, account_number=acc.account_number, at=T0)
            pay(s, by="account", ref=acc.account_number, amount_minor=10_000_000,
                payment_id=f"p{i}", at=T0)
            subscribe(s, account_number=acc.account_number, package="start", at=T0)
            if i % 3 == 0:
                subscribe(s, account_number=acc.account_number, package="vip-premiere",
                          at=T0 + timedelta(minutes=1))
    return Base(store=store, keys=keys, serials=serials, slots=slots, accounts=accounts)


def make_card(keys: OperatorKeys, slot: CardSlot) -> CardClient:
    return in_process_card(keys, slot, T0)


def feed(card: CardClient, sections: list[bytes]) -> int:
    """Offer every section to the card the way a box's EMM filter would not bother to:
    all of them; the card refuses what is not addressed to it.  Returns how many it took."""
    taken = 0
    for sec in sections:
        try:
            card.process_emm(sec)
            taken += 1
        except StatusWordError as exc:
            assert exc.sw in (0x9812, 0x9811), hex(exc.sw)
    return taken


@pytest.fixture(scope="module")
def keys() -> OperatorKeys:
    return seeded_keys(7)


@pytest.fixture
def base_factory(tmp_path: Path, keys: OperatorKeys) -> Callable[..., Base]:
    def make(**kw: int) -> Base:
        return make_base(tmp_path, keys, **kw)

    return make
