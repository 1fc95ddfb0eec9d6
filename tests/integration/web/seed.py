"""Seed data for the web tests: one store per seed operator with the accounts each seed flow
needs, built through the billing layer's own functions (no rows written by hand).

* ``atvplus`` ``a1``: card, balance 1 AZN, no package yet (seed 002: 1 + 10 + 10 on the
  12 manat "+Sport").  ``a2``: someone else's card on the same operator.
* ``tvplus`` ``t1``: "TV+ Start" active with auto-renewal; promo ``TVPLUS30`` in the lineup.
* ``ntvplus`` ``n1``: "Bazovy" active, balance 0 (so a promised payment is needed).
* ``mts`` ``m1``: card paired with box ``4D54530A``, phone login; ``m2``: another person's
  card and box.
* ``uzonline`` ``u1``: "ivi" active (confirmed by SMS code), money for an extension; no
  password (logs in by SMS code).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.setup import use_profile
from cas.formats.chipid import ChipIdRecord
from cas.store.engine import Store
from cas.store.models import Notification
from cas.store.repo import register_card
from cas.web.domain import create_api_key, set_portal_password

#: The simulation clock of every seeded store.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OPERATORS = ("atvplus", "tvplus", "ntvplus", "mts", "uzonline")


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedAccount:
    operator: str
    account_number: str
    phone: str
    password: str | None
    card: int
    chip_id: int | None = None


@dataclass(slots=True, kw_only=True)
class SeededStore:
    operator: str
    store: Store
    api_key: str
    accounts: dict[str, SeedAccount] = field(default_factory=dict)


def _box(session: Session, chip_id: int) -> None:
    acc_mod.import_boxes(session, [ChipIdRecord(chip_id=chip_id, vendor="TestChip", model="T1",
                                                wrapped_csk=os.urandom(24),
                                                manufactured_s=1_700_000_000)], at=T0)


def _account(session: Session, operator: str, *, surname: str, name: str, phone: str,
             card: int, password: str | None, balance_minor: int = 0,
             chip_id: int | None = None) -> SeedAccount:
    view = acc_mod.create_account(session, surname=surname, name=name, phone=phone, at=T0)
    register_card(session, card, at=T0)
    acc_mod.link_card(session, serial=card, account_number=view.account_number, at=T0)
    if chip_id is not None:
        _box(session, chip_id)
        acc_mod.pair_card(session, serial=card, chip_id=chip_id, at=T0)
    if balance_minor:
        service.adjust_balance(session, account_number=view.account_number,
                               amount_minor=balance_minor, reason="opening balance", at=T0)
    if password is not None:
        set_portal_password(session, account_number=view.account_number, password=password,
                            wall_s=int(time.time()))
    return SeedAccount(operator=operator, account_number=view.account_number, phone=phone,
                       password=password, card=card, chip_id=chip_id)


def last_sms_code(session: Session, account_number: str) -> str:
    """The code of the latest simulated SMS sent to an account (the notification outbox)."""
    from cas.billing.txn import account_by_number

    acc = account_by_number(session, account_number)
    text = session.execute(
        select(Notification.text).where(Notification.account_id == acc.id,
                                        Notification.kind == "verification_code")
        .order_by(Notification.id.desc()).limit(1)).scalar_one()
    return str(text).split()[1]


def seed_operator(store: Store, operator: str) -> SeededStore:
    """Install ``operator``'s profile and lineup and its seed accounts (see module doc)."""
    with store.transaction() as s:
        use_profile(s, operator, clock_start=T0)
        key = create_api_key(s, operator=operator, label="tests", wall_s=int(time.time()))
        out = SeededStore(operator=operator, store=store, api_key=key.full)
        a = out.accounts
        if operator == "atvplus":
            a["a1"] = _account(s, operator, surname="Aliyev", name="Elvin",
                               phone="+994501112233", card=1_000_000_001,
                               password="atv-secret-1", balance_minor=100)
            a["a2"] = _account(s, operator, surname="Mammadova", name="Leyla",
                               phone="+994502223344", card=1_000_000_002,
                               password="atv-secret-2", chip_id=0x41545602)
        elif operator == "tvplus":
            a["t1"] = _account(s, operator, surname="Abenov", name="Nurlan",
                               phone="+77011112233", card=2_000_000_001,
                               password="tv-secret-1", balance_minor=249_000)
            service.subscribe(s, account_number=a["t1"].account_number, package="start", at=T0)
        elif operator == "ntvplus":
            a["n1"] = _account(s, operator, surname="Ivanov", name="Pyotr",
                               phone="+79031112233", card=3_000_000_001,
                               password="ntv-secret-1", balance_minor=59_900)
            service.subscribe(s, account_number=a["n1"].account_number, package="basic", at=T0)
        elif operator == "mts":
            a["m1"] = _account(s, operator, surname="Smirnova", name="Olga",
                               phone="+79161112233", card=4_000_000_001,
                               password="mts-secret-1", balance_minor=19_000,
                               chip_id=0x4D54530A)
            service.subscribe(s, account_number=a["m1"].account_number, package="basic", at=T0)
            a["m2"] = _account(s, operator, surname="Petrov", name="Ivan",
                               phone="+79162223344", card=4_000_000_002,
                               password="mts-secret-2", chip_id=0x4D54530B)
        elif operator == "uzonline":
            a["u1"] = _account(s, operator, surname="Karimov", name="Aziz",
                               phone="+998901112233", card=4_100_000_001, password=None,
                               balance_minor=3_000_000)
            challenge = acc_mod.start_verification(
                s, account_number=a["u1"].account_number, phone="+998901112233", at=T0)
            acc_mod.confirm_verification(s, token=challenge.token, code=challenge.code, at=T0)
            service.subscribe(s, account_number=a["u1"].account_number, package="ivi", at=T0,
                              verification=challenge.token)
            acc_mod.end_verification(s, token=challenge.token, at=T0)
        else:
            raise ValueError(f"no seed for {operator}")
    return out
