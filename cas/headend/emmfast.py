"""The hot path of a refresh work item on PostgreSQL: commands built by the database, sealed
in one flat loop, sequence numbers booked in one statement.  ``docs/scale.md``.

:mod:`cas.headend.emmrefresh` hands every work item (an inclusive range of shared
addresses) to :func:`build_item` when the store is PostgreSQL.  The reference path
(:func:`cas.billing.state.iter_card_states` → :func:`cas.headend.emmrun.card_targets` →
:func:`cas.headend.emmgen.build_batch`) builds a ``CardState``, ``CardRights``, an
``Entitlement`` per window and a ``CardTarget`` per card, then packs the commands in Python.
Here ONE query returns, per card in address order, the serial, the group and position, the
rights version, the paired Chip ID, the next unique sequence number (``emm_sequences``
joined in) and the complete command list of the card's rights as ``bytea``: CLEAR,
SET_STATUS (the status folded in SQL with the same rules as ``iter_card_states``),
SET_REGION, SET_MATURITY, then one ADD_ENTITLEMENT per window, ordered by package, start,
end (``string_agg`` of ``int4send``/``int8send`` slices).  Python then only:

* derives every CUK of the item in one AES-ECB call (:func:`cas.crypto.derive_cuks_concat`);
* for the rare card that is paired or holds more windows than one EMM carries, splits the
  command list and adds PAIR (:func:`cas.headend.emmgen.split_plaintexts`);
* seals with :func:`cas.headend.emmgen.seal_plaintexts`, the very code that
  :func:`~cas.headend.emmgen.build_batch` ends in, so both paths give the same bytes for the
  same inputs and random numbers (``tests/integration/headend/test_emmfast.py``).

The database side is checked against ``cas.formats.emm``'s layouts by those tests: the TLV
tags and lengths below are literals because SQL cannot import them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from cas.access import CardStatus
from cas.crypto import Key, OperatorKeys, Rng, derive_cuks_concat
from cas.headend.emmgen import (
    MAX_UNIQUE_PLAINTEXT,
    EmmSettings,
    PairingTarget,
    pairing_command,
    seal_plaintexts,
    split_plaintexts,
)
from cas.wiretime import WIRE_TIME_MAX_S

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Length of CLEAR + SET_STATUS + SET_REGION + SET_MATURITY at the start of every list.
HEAD_LEN = 2 + 3 + 4 + 3

# Window states (cas.billing.vocab.WINDOW_STATES) and the card status rules of
# cas.billing.state._emit, written once more in SQL.  Parameters: at_s, lo, hi.
_ITEM_SQL = rf"""
SELECT c.serial, c.shared_address, c.member_position, c.rights_version, c.paired_chip_id,
       coalesce(q.next_seq, 1),
       '\x03000401'::bytea
       || set_byte('\x00'::bytea, 0, CASE
            WHEN c.status IN ('killed', 'blocked') THEN {int(CardStatus.KILLED)}
            WHEN c.account_id IS NULL THEN {int(CardStatus.INACTIVE)}
            WHEN a.suspended_from_s <= %(at)s
                 AND (a.suspended_until_s IS NULL OR %(at)s < a.suspended_until_s)
              THEN {int(CardStatus.SUSPENDED)}
            WHEN a.blocked_since_s <= %(at)s THEN {int(CardStatus.FINANCIAL_BLOCK)}
            ELSE {int(CardStatus.ACTIVE)} END)
       || '\x0502'::bytea || substring(int4send(c.region) from 3)
       || '\x0601'::bytea || substring(int4send(c.maturity_limit) from 4)
       || coalesce(e.adds, '\x'::bytea)
FROM cards c
LEFT JOIN accounts a ON a.id = c.account_id
LEFT JOIN LATERAL (
    SELECT string_agg('\x010a'::bytea || substring(int4send(w.package_id) from 3)
                      || substring(int8send(w.start_s) from 5)
                      || substring(int8send(w.end_s) from 5),
                      '\x'::bytea ORDER BY w.package_id, w.start_s, w.end_s) AS adds
    FROM (SELECT s.package_id, s.start_s,
                 least(s.paid_until_s, {WIRE_TIME_MAX_S}) AS end_s
          FROM subscriptions s
          WHERE s.account_id = c.account_id
            AND s.status IN ('active', 'blocked', 'expired')
            AND s.paid_until_s IS NOT NULL AND s.start_s IS NOT NULL) w
    WHERE w.end_s > w.start_s
) e ON true
LEFT JOIN emm_sequences q ON q.address_kind = 'unique' AND q.address = c.serial
WHERE c.shared_address BETWEEN %(lo)s AND %(hi)s
ORDER BY c.shared_address, c.member_position
"""

# An item is a small slice of the base, read through indexes.  Left to itself the planner
# hash-joins it against every account (a full scan per item, measured 10x slower than index
# lookups at 200,000 cards), and while ``emm_sequences`` still looks empty to it (the first
# refresh, before autovacuum has analysed the rows the first items booked) it scans that
# table once per card.  JIT compiling costs more than the query saves (44 ms per item);
# parallel workers would only compete with the other refresh workers for the same cores.
_PLANNER_SQL = ("SELECT set_config('enable_hashjoin', 'off', true), "
                "set_config('enable_mergejoin', 'off', true), "
                "set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true), "
                "set_config('max_parallel_workers_per_gather', '0', true)")

_BOOK_UNIQUE_SQL = """
INSERT INTO emm_sequences (address_kind, address, next_seq, sent_rights_version)
SELECT 'unique', t.a, t.n, t.v
FROM unnest(string_to_array(%(a)s, ',')::int8[], string_to_array(%(n)s, ',')::int8[],
            string_to_array(%(v)s, ',')::int8[]) AS t(a, n, v)
ON CONFLICT (address_kind, address) DO UPDATE
SET next_seq = EXCLUDED.next_seq, sent_rights_version = EXCLUDED.sent_rights_version
"""

_BOOK_SHARED_SQL = """
INSERT INTO emm_sequences (address_kind, address, next_seq, sent_rights_version)
SELECT 'shared', t.a, t.n, 0
FROM unnest(string_to_array(%(a)s, ',')::int8[], string_to_array(%(n)s, ',')::int8[])
     AS t(a, n)
ON CONFLICT (address_kind, address) DO UPDATE SET next_seq = EXCLUDED.next_seq
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemEmms:
    """One work item's EMMs and what to book for them."""

    data: bytes
    cards: int
    unique_emms: int
    shared_emms: int
    #: every card of the item: serial, next unique sequence number, rights version sent
    serials: list[int]
    unique_next: list[int]
    versions: list[int]
    #: groups that got a shared EMM: group, next shared sequence number
    shared_next: dict[int, int]


def _raw(session: Session) -> Any:
    return session.connection().connection.dbapi_connection


def build_item(session: Session, keys: OperatorKeys, *, lo: int, hi: int, at_s: int,
               settings: EmmSettings, rng: Rng = os.urandom) -> ItemEmms:
    """The EMMs of every card whose shared address is in ``lo..hi`` (PostgreSQL only), in
    the item's transaction ``session``.  Nothing is booked here: :func:`book_item`."""
    from cas.headend.emmrun import chip_keys

    with _raw(session).cursor() as cur:
        cur.execute(_PLANNER_SQL)
        cur.execute(_ITEM_SQL, {"at": at_s, "lo": lo, "hi": hi}, binary=True)
        rows = cur.fetchall()
    if not rows:
        return ItemEmms(data=b"", cards=0, unique_emms=0, shared_emms=0, serials=[],
                        unique_next=[], versions=[], shared_next={})
    serials, groups, positions, versions, chips, seqs, plains = map(list, zip(*rows,
                                                                          strict=True))
    cuks = derive_cuks_concat(keys, serials)
    commands: list[bytes | list[bytes]] = plains  # type: ignore[assignment]
    paired = {c for c in chips if c is not None}
    if paired or any(len(p) > MAX_UNIQUE_PLAINTEXT for p in plains):
        csks = chip_keys(session, keys, paired) if paired else {}
        for i, (chip, plain) in enumerate(zip(chips, plains, strict=True)):
            csk = csks.get(chip) if chip is not None else None
            if csk is None and len(plain) <= MAX_UNIQUE_PLAINTEXT:
                continue
            extra = b""
            if csk is not None:
                extra = pairing_command(Key(cuks[16 * i : 16 * i + 16], label="cuk"),
                                        PairingTarget(chip_id=chip, csk=csk))
            lists = split_plaintexts(plain[:HEAD_LEN] + extra, plain[HEAD_LEN:])
            commands[i] = lists[0] if len(lists) == 1 and csk is None else lists
    shared_seq = _shared_seqs(session, lo, hi) if settings.shared_min_members else {}
    res = seal_plaintexts(keys, commands, serials=serials, seqs=seqs, cuks=cuks,
                          shared_addresses=groups, positions=positions, at_s=at_s,
                          shared_seq=lambda g: shared_seq.get(g, 1), settings=settings, rng=rng)
    # A member served by a shared EMM keeps its next number; its rights version is sent.
    unique_next = cast("list[int]", list(map(res.unique_next.get, serials, seqs)))
    return ItemEmms(data=b"".join(res.sections), cards=len(rows),
                    unique_emms=res.unique_count, shared_emms=res.shared_count,
                    serials=serials, unique_next=unique_next, versions=versions,
                    shared_next=res.shared_next)


def _shared_seqs(session: Session, lo: int, hi: int) -> dict[int, int]:
    with _raw(session).cursor() as cur:
        cur.execute("SELECT address, next_seq FROM emm_sequences WHERE address_kind = 'shared' "
                    "AND address BETWEEN %s AND %s", (lo, hi))
        return {int(a): int(n) for a, n in cur.fetchall()}


def _csv(values: list[int]) -> str:
    return ",".join(map(str, values))


def book_item(session: Session, item: ItemEmms) -> None:
    """Advance ``emm_sequences`` for every card (and group) of ``item``: one upsert each
    for unique and shared addresses, inside the item's transaction."""
    with _raw(session).cursor() as cur:
        if item.serials:
            cur.execute(_BOOK_UNIQUE_SQL, {"a": _csv(item.serials), "n": _csv(item.unique_next),
                                           "v": _csv(item.versions)})
        if item.shared_next:
            cur.execute(_BOOK_SHARED_SQL, {"a": _csv(list(item.shared_next)),
                                           "n": _csv(list(item.shared_next.values()))})
