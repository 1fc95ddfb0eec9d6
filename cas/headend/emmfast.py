"""The hot path of a refresh work item on PostgreSQL: the item's rows in two plain reads, its
EMMs numbered from the run's sequence epoch and sealed in one flat loop, and nothing written
back per card.  ``docs/scale.md``.

:mod:`cas.headend.emmrefresh` hands every work item (an inclusive range of shared
addresses) to :func:`build_item` when the store is PostgreSQL.  The reference path
(:func:`cas.billing.state.iter_card_states` → :func:`cas.headend.emmrun.card_targets` →
:func:`cas.headend.emmgen.build_batch`) builds a ``CardState``, ``CardRights``, an
``Entitlement`` per window and a ``CardTarget`` per card.  Here:

* **the cards** of the range come in ONE ``COPY … TO STDOUT (FORMAT binary)`` of bare
  columns (serial, group, position, account, status, region, maturity, paired Chip ID,
  rights version, the rights version last sent), read with psycopg's C row parser.  The
  database evaluates no expression per card;
* **the accounts** of those cards come in one query keyed by the item's account ids: each
  account's suspension and block times, and its ADD_ENTITLEMENT list already packed
  (``string_agg`` of ``int4send``/``int8send`` slices, ordered by package, start, end: the
  only per-row work the database does, once per account, not per card);
* Python folds the card status (the rules of ``iter_card_states``), picks the
  CLEAR/SET_STATUS/SET_REGION/SET_MATURITY head from a dict of prebuilt templates, derives
  every CUK of the item in one AES-ECB call (:func:`cas.crypto.derive_cuks_concat`) and
  seals each card's EMM in one loop (one ``struct`` pack, one ``AESGCM``, one ``encrypt``
  per card, no function layer per EMM).  Every card's first EMM carries the run's epoch
  base as its sequence number (:mod:`cas.store.emmseq`), so nothing is read or written per
  card for the numbering;
* the rare card that is paired or holds more windows than one EMM carries goes through
  :func:`cas.headend.emmgen.split_plaintexts` and PAIR, and then the whole item through
  :func:`cas.headend.emmgen.seal_plaintexts` (also when shared EMMs are on), the very code
  :func:`~cas.headend.emmgen.build_batch` ends in.  Both give the reference's bytes for
  the same inputs and random numbers (``tests/integration/headend/test_emmfast.py``).

What is written back (:func:`book_item`): the sent rights version of the cards whose
rights changed since their last EMM (``cards.rights_version`` above
``emm_sequences.sent_rights_version``), in one statement.  A refresh of a base whose cards
are all up to date writes no per-card row.  The TLV tags and lengths in the SQL are
literals because SQL cannot import them; the tests check them against ``cas.formats.emm``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cas.access import CardRights, CardStatus
from cas.crypto import Key, OperatorKeys, Rng, derive_cuks_concat
from cas.formats.emm import SEQ_MODULUS, EmmAddressType
from cas.headend.emmgen import (
    HEAD_LEN,
    MAX_UNIQUE_PLAINTEXT,
    NONCE_SIZE,
    UNIQUE_AAD,
    UNIQUE_LENGTH_BASE,
    EmmSettings,
    PairingTarget,
    pairing_command,
    rights_plaintexts,
    seal_plaintexts,
    split_plaintexts,
)
from cas.wiretime import WIRE_TIME_MAX_S

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Unique EMMs one card may get from one refresh (the epoch's stride): 12 + 15 × 17 = 267
#: entitlement windows, far beyond the 32 a card holds.  A card needing more gets the first
#: ``UNIQUE_STRIDE`` EMMs and stays pending for the incremental feed.
UNIQUE_STRIDE = 16
#: Shared EMMs one group may get from one refresh: 256 members, at least 2 per shared EMM.
SHARED_STRIDE = 128

_CARDS_COPY = """
COPY (SELECT c.serial, c.shared_address, c.member_position, c.account_id, c.status,
             c.region, c.maturity_limit, c.paired_chip_id, c.rights_version,
             q.sent_rights_version
      FROM cards c
      LEFT JOIN emm_sequences q ON q.address_kind = 'unique' AND q.address = c.serial
      WHERE c.shared_address BETWEEN {lo:d} AND {hi:d}
      ORDER BY c.shared_address, c.member_position) TO STDOUT (FORMAT binary)
"""
_CARD_TYPES = ["int8", "int4", "int4", "int8", "text", "int4", "int4", "int8", "int8", "int8"]

# Window states (cas.billing.vocab.WINDOW_STATES) as iter_card_states reads them.
_ACCOUNTS_SQL = rf"""
SELECT a.id, a.suspended_from_s, a.suspended_until_s, a.blocked_since_s, e.adds
FROM accounts a
LEFT JOIN LATERAL (
    SELECT string_agg('\x010a'::bytea || substring(int4send(w.package_id) from 3)
                      || substring(int8send(w.start_s) from 5)
                      || substring(int8send(w.end_s) from 5),
                      '\x'::bytea ORDER BY w.package_id, w.start_s, w.end_s) AS adds
    FROM (SELECT s.package_id, s.start_s,
                 least(s.paid_until_s, {WIRE_TIME_MAX_S}) AS end_s
          FROM subscriptions s
          WHERE s.account_id = a.id
            AND s.status IN ('active', 'blocked', 'expired')
            AND s.paid_until_s IS NOT NULL AND s.start_s IS NOT NULL) w
    WHERE w.end_s > w.start_s
) e ON true
WHERE a.id = ANY(%(ids)s)
"""

# An item is a small slice of the base, read through indexes.  Left to itself the planner
# hash-joins it against every account (a full scan per item) or, while ``emm_sequences``
# still looks empty to it, scans that table once per card.  JIT compiling costs more than
# the query saves; parallel workers would only compete with the other refresh workers.
_PLANNER_SQL = ("SELECT set_config('enable_hashjoin', 'off', true), "
                "set_config('enable_mergejoin', 'off', true), "
                "set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true), "
                "set_config('max_parallel_workers_per_gather', '0', true)")

_BOOK_SENT_SQL = """
INSERT INTO emm_sequences (address_kind, address, next_seq, sent_rights_version)
SELECT 'unique', t.a, 1, t.v FROM unnest(%(a)s::int8[], %(v)s::int8[]) AS t(a, v)
ON CONFLICT (address_kind, address) DO UPDATE
SET sent_rights_version = greatest(emm_sequences.sent_rights_version,
                                   EXCLUDED.sent_rights_version)
"""

_KILLED = int(CardStatus.KILLED)
_INACTIVE = int(CardStatus.INACTIVE)
_SUSPENDED = int(CardStatus.SUSPENDED)
_BLOCKED = int(CardStatus.FINANCIAL_BLOCK)
_ACTIVE = int(CardStatus.ACTIVE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemEmms:
    """One work item's EMMs and what to book for them."""

    data: bytes
    cards: int
    unique_emms: int
    shared_emms: int
    #: the cards whose rights changed since their last EMM, and the version now sent
    sent_serials: list[int]
    sent_versions: list[int]
    #: the most unique EMMs one card got (at most UNIQUE_STRIDE) and shared EMMs one group got
    unique_span: int
    shared_span: int


def _raw(session: Session) -> Any:
    return session.connection().connection.dbapi_connection


def read_cards(session: Session, lo: int, hi: int) -> list[tuple[Any, ...]]:
    """The item's card rows (one binary COPY), in group and position order."""
    rows: list[tuple[Any, ...]] = []
    with _raw(session).cursor() as cur:
        cur.execute(_PLANNER_SQL)
        with cur.copy(_CARDS_COPY.format(lo=int(lo), hi=int(hi))) as copy:
            copy.set_types(_CARD_TYPES)
            rows.extend(copy.rows())
    return rows


def read_accounts(session: Session, ids: list[int],
                  at_s: int) -> dict[int, tuple[int, bytes]]:
    """account id -> (its status code at ``at_s``, its packed ADD_ENTITLEMENT list)."""
    out: dict[int, tuple[int, bytes]] = {}
    if not ids:
        return out
    with _raw(session).cursor() as cur:
        cur.execute(_ACCOUNTS_SQL, {"ids": ids}, binary=True)
        for aid, s_from, s_until, blocked, adds in cur.fetchall():
            if s_from is not None and s_from <= at_s and (s_until is None or at_s < s_until):
                code = _SUSPENDED
            elif blocked is not None and blocked <= at_s:
                code = _BLOCKED
            else:
                code = _ACTIVE
            out[aid] = (code, adds or b"")
    return out


def build_item(session: Session, keys: OperatorKeys, *, lo: int, hi: int, at_s: int,
               settings: EmmSettings, unique_base: int, shared_base: int,
               rng: Rng = os.urandom) -> ItemEmms:
    """The EMMs of every card whose shared address is in ``lo..hi`` (PostgreSQL only), in
    the item's transaction ``session``, numbered from the run's epoch bases.  Nothing is
    booked here: :func:`book_item`."""
    rows = read_cards(session, lo, hi)
    n = len(rows)
    if not n:
        return ItemEmms(data=b"", cards=0, unique_emms=0, shared_emms=0, sent_serials=[],
                        sent_versions=[], unique_span=0, shared_span=0)
    serials = [r[0] for r in rows]
    accounts = read_accounts(session, sorted({r[3] for r in rows if r[3] is not None}), at_s)
    cuks = derive_cuks_concat(keys, serials)
    heads: dict[tuple[int, int, int], bytes] = {}
    plains: list[Any] = []
    append_plain = plains.append
    sent_serials: list[int] = []
    sent_versions: list[int] = []
    rare: list[int] = []
    no_account = (_INACTIVE, b"")
    limit = MAX_UNIQUE_PLAINTEXT
    for i, (serial, _g, _p, acc, status, region, maturity, chip, version, sent) in enumerate(
            rows):
        code, adds = accounts.get(acc, no_account) if acc is not None else no_account
        if status == "killed" or status == "blocked":  # blocked: card sharing
            code = _KILLED
        hkey = (code, region, maturity)
        head = heads.get(hkey)
        if head is None:
            head = heads[hkey] = rights_plaintexts(CardRights(
                status=CardStatus(code), region=region, maturity_limit=maturity))[0]
        plain = head + adds
        append_plain(plain)
        if chip is not None or len(plain) > limit:
            rare.append(i)
        if sent is None or version > sent:
            sent_serials.append(serial)
            sent_versions.append(version)
    not_after = at_s + settings.validity_s
    if not rare and not settings.shared_min_members:
        return ItemEmms(data=_seal_one_each(serials, plains, cuks, unique_base, not_after,
                                            rng(NONCE_SIZE * n)),
                        cards=n, unique_emms=n, shared_emms=0, sent_serials=sent_serials,
                        sent_versions=sent_versions, unique_span=1, shared_span=0)
    capped = _split_rare(session, keys, rows, plains, rare, cuks)
    if capped:  # left pending: the incremental feed sends them whole
        keep = [k for k, s in enumerate(sent_serials) if s not in capped]
        sent_serials = [sent_serials[k] for k in keep]
        sent_versions = [sent_versions[k] for k in keep]
    res = seal_plaintexts(keys, plains, serials=serials, seqs=[unique_base] * n, cuks=cuks,
                          shared_addresses=[r[1] for r in rows],
                          positions=[r[2] for r in rows], at_s=at_s,
                          shared_seq=lambda _g: shared_base, settings=settings, rng=rng)
    return ItemEmms(data=b"".join(res.sections), cards=n, unique_emms=res.unique_count,
                    shared_emms=res.shared_count, sent_serials=sent_serials,
                    sent_versions=sent_versions,
                    unique_span=max((x - unique_base for x in res.unique_next.values()),
                                    default=0),
                    shared_span=max((x - shared_base for x in res.shared_next.values()),
                                    default=0))


def _seal_one_each(serials: list[int], plains: list[bytes], cuks: bytes, seq: int,
                   not_after: int, nonces: bytes) -> bytes:
    """One unique EMM per card, every one numbered ``seq``: the loop of a refresh."""
    pack = UNIQUE_AAD.pack
    tid = int(EmmAddressType.UNIQUE)
    base = UNIQUE_LENGTH_BASE
    wire = seq % SEQ_MODULUS
    cipher = AESGCM
    out: list[bytes] = []
    append = out.append
    for i, (serial, plain) in enumerate(zip(serials, plains, strict=True)):
        nonce = nonces[12 * i : 12 * i + 12]
        aad = pack(tid, base + len(plain), serial, wire, not_after, nonce)
        append(aad)
        append(cipher(cuks[16 * i : 16 * i + 16]).encrypt(nonce, plain, aad))
    return b"".join(out)


def _split_rare(session: Session, keys: OperatorKeys, rows: list[tuple[Any, ...]],
                plains: list[Any], rare: list[int], cuks: bytes) -> set[int]:
    """Paired cards and cards with more windows than one EMM carries: their command lists
    split (and PAIR added) in place.  Returns the cards cut to UNIQUE_STRIDE EMMs."""
    if not rare:
        return set()
    from cas.headend.emmrun import chip_keys

    paired = {rows[i][7] for i in rare if rows[i][7] is not None}
    csks = chip_keys(session, keys, paired) if paired else {}
    capped: set[int] = set()
    for i in rare:
        chip = rows[i][7]
        plain = plains[i]
        csk = csks.get(chip) if chip is not None else None
        if csk is None and len(plain) <= MAX_UNIQUE_PLAINTEXT:
            continue
        extra = b""
        if csk is not None:
            extra = pairing_command(Key(cuks[16 * i : 16 * i + 16], label="cuk"),
                                    PairingTarget(chip_id=chip, csk=csk))
        lists = split_plaintexts(plain[:HEAD_LEN] + extra, plain[HEAD_LEN:])
        if len(lists) > UNIQUE_STRIDE:
            lists = lists[:UNIQUE_STRIDE]
            capped.add(rows[i][0])
        plains[i] = lists[0] if len(lists) == 1 and csk is None else lists
    return capped


def book_item(session: Session, item: ItemEmms) -> None:
    """Record the rights version sent to the cards whose rights changed since their last
    EMM: one statement, inside the item's transaction.  No sequence number is written."""
    if item.sent_serials:
        with _raw(session).cursor() as cur:
            cur.execute(_BOOK_SENT_SQL, {"a": item.sent_serials, "v": item.sent_versions})
