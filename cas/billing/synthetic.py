"""A synthetic subscriber base for benchmarks and load tests (EMM generation, entitlement
state): N cards in groups of 256, most on accounts with a base package and some add-ons, a
few unlinked, suspended, blocked, killed or in the kids profile.

Rows go in with bulk ``INSERT``s (not through the domain functions, and without rights-journal
rows), so a million-card base takes seconds to a minute, not hours.  The mix is deterministic
for a given ``seed``.  Run it on an empty store with a profile installed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from cas.access import NO_MATURITY_LIMIT
from cas.billing.identifiers import luhn_digit
from cas.billing.txn import DAY_S, current_profile
from cas.store.models import Account, Card, CardGroup, Package, Subscription
from cas.store.repo import GROUP_SIZE, to_s

FIRST_SYNTHETIC_SERIAL = 3_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticBase:
    cards: int
    accounts: int
    subscriptions: int
    first_serial: int
    first_shared_address: int


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _bulk(session: Session, table: str, rows: list[dict[str, object]]) -> None:
    """Insert plain rows fast: ``COPY`` on PostgreSQL, DBAPI ``executemany`` on SQLite."""
    if not rows:
        return
    cols = list(rows[0])
    conn = session.connection()
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(
                f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([r[c] for c in cols])
    elif conn.dialect.name == "sqlite":
        cur = raw.cursor()
        try:
            cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) "
                            f"VALUES ({', '.join('?' * len(cols))})",
                            [tuple(r[c] for c in cols) for r in rows])
        finally:
            cur.close()
    else:  # pragma: no cover - other databases
        session.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                             f"({', '.join(':' + c for c in cols)})"), rows)


def populate(session: Session, *, cards: int, at: datetime, seed: int = 1,
             first_serial: int = FIRST_SYNTHETIC_SERIAL, chunk: int = 20_000) -> SyntheticBase:
    """Insert ``cards`` cards (and their accounts and subscriptions) into an empty store."""
    if cards < 1 or first_serial + cards - 1 > 0xFFFF_FFFF:
        raise ValueError("cards must be >= 1 and serials must stay u32")
    at_s = to_s(at)
    profile = current_profile(session)
    packages = list(session.execute(select(Package.id, Package.kind, Package.price_minor,
                                           Package.period_days)
                                    .where(Package.retired.is_(False))))
    bases = [p for p in packages if p.kind == "base"] or packages
    addons = [p for p in packages if p.kind == "addon"]
    rng = random.Random(seed)
    first_account = int(session.execute(select(func.coalesce(func.max(Account.id), 0)))
                        .scalar_one()) + 1
    first_group = int(session.execute(select(func.coalesce(func.max(CardGroup.shared_address),
                                                           0))).scalar_one()) + 1
    n_accounts = 0
    n_subs = 0
    card_i = 0
    for block in _chunks(cards, chunk):
        acc_rows: list[dict[str, object]] = []
        card_rows: list[dict[str, object]] = []
        sub_rows: list[dict[str, object]] = []
        for i in block:
            if i < card_i:
                continue  # already placed as the second card of an account
            roll = rng.random()
            serial = first_serial + i
            sa, pos = first_group + i // GROUP_SIZE, i % GROUP_SIZE
            card: dict[str, object] = {
                "serial": serial, "shared_address": sa, "member_position": pos,
                "account_id": None, "status": "killed" if roll < 0.002 else "active",
                "region": profile.home_region,
                "maturity_limit": (profile.kids_maturity_limit if rng.random() < 0.05
                                   else NO_MATURITY_LIMIT),
                "paired_chip_id": None, "registered_at_s": at_s - 400 * DAY_S,
                "rights_version": 1, "rights_changed_at_s": at_s - 400 * DAY_S}
            card_i = i + 1
            if roll < 0.03:  # in stock: not on an account
                card_rows.append(card)
                continue
            account_id = first_account + n_accounts
            n_accounts += 1
            body = f"9{account_id:0{profile.account_number_digits - 2}d}"
            suspended = 0.03 <= roll < 0.05
            blocked = 0.05 <= roll < 0.10
            acc_rows.append({
                "id": account_id, "account_number": body + luhn_digit(body),
                "contract_number": f"S{account_id:09d}", "surname": "Synthetic",
                "name": f"Subscriber {account_id}", "patronymic": None, "phone": None,
                "email": None, "kind": "prepaid", "credit_limit_minor": 0,
                "balance_minor": rng.randrange(0, 50) * 100, "region": profile.home_region,
                "extra_screens": 0, "notify_email": False, "notify_sms": False,
                "created_at_s": at_s - 400 * DAY_S,
                "suspended_from_s": at_s - 5 * DAY_S if suspended else None,
                "suspended_until_s": at_s + 10 * DAY_S if suspended else None,
                "blocked_since_s": at_s - 2 * DAY_S if blocked else None,
                "block_cause": "unpaid_renewal" if blocked else None, "last_switch_at_s": None})
            card["account_id"] = account_id
            card_rows.append(card)
            if rng.random() < 0.10 and card_i < block.stop:  # a second room, a second card
                j = card_i
                card_rows.append({**card, "serial": first_serial + j,
                                  "shared_address": first_group + j // GROUP_SIZE,
                                  "member_position": j % GROUP_SIZE, "status": "active"})
                card_i = j + 1
            start_s = at_s - rng.randrange(0, 30) * DAY_S - rng.randrange(0, DAY_S)
            chosen = [rng.choice(bases)]
            if addons and rng.random() < 0.3:
                chosen += rng.sample(addons, k=min(len(addons), rng.randint(1, 2)))
            for pkg in chosen:
                end_s = start_s + pkg.period_days * DAY_S
                sub_rows.append({
                    "account_id": account_id, "package_id": pkg.id,
                    "status": "blocked" if blocked else "active", "auto_renew": True,
                    "start_s": start_s - (60 * DAY_S if blocked else 0),
                    "paid_until_s": (start_s - 30 * DAY_S) if blocked else end_s,
                    "period_start_s": start_s, "period_price_minor": pkg.price_minor,
                    "periods_billed": 1, "activated_at_s": start_s, "created_at_s": start_s,
                    "closed_at_s": None, "reminded_until_s": None, "source": "synthetic"})
        _bulk(session, Account.__tablename__, acc_rows)
        _bulk(session, Card.__tablename__, card_rows)
        _bulk(session, Subscription.__tablename__, sub_rows)
        n_subs += len(sub_rows)
    groups = (cards + GROUP_SIZE - 1) // GROUP_SIZE
    session.execute(insert(CardGroup), [
        {"shared_address": first_group + g,
         "next_position": min(GROUP_SIZE, cards - g * GROUP_SIZE)} for g in range(groups)])
    if session.get_bind().dialect.name == "postgresql":
        # Explicit ids were inserted: move the sequence past them.
        session.execute(text("SELECT setval(pg_get_serial_sequence('accounts', 'id'), "
                             "(SELECT max(id) FROM accounts))"))
    return SyntheticBase(cards=cards, accounts=n_accounts, subscriptions=n_subs,
                         first_serial=first_serial, first_shared_address=first_group)
