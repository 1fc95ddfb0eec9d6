"""The hot path of a refresh work item on PostgreSQL: the item's rows in plain range reads,
its EMMs numbered from the run's sequence epoch and sealed in one flat loop, and nothing
written back per card unless its rights changed.  ``docs/scale.md``.

:mod:`cas.headend.emmrefresh` hands every work item (an inclusive range of shared
addresses) to :func:`build_item` when the store is PostgreSQL.  The reference path
(:func:`cas.billing.state.iter_card_states` → :func:`cas.headend.emmrun.card_targets` →
:func:`cas.headend.emmgen.build_batch`) builds a ``CardState``, ``CardRights``, an
``Entitlement`` per window and a ``CardTarget`` per card.  Here:

* **the reads** evaluate no expression per card: the cards of the group range (bare
  columns, in the order of the ``(shared_address, member_position)`` index), the rights
  version last sent to them, the item's accounts that are or were suspended or blocked, and
  the accounts' windows.  The last three are read by id range when the ids are dense (cards
  registered in runs), else by id list.  Rows come in psycopg's binary format through
  ``fetchall`` (C loaders): measured 3x cheaper for the worker than ``COPY … (FORMAT
  binary)`` read row by row, whose Python-level row iterator cost 1.7 µs per card;
* Python folds the card status (the rules of ``iter_card_states``), picks the
  CLEAR/SET_STATUS/SET_REGION/SET_MATURITY head from a dict of prebuilt templates, appends
  the account's ADD_ENTITLEMENTs (packed once per account), derives every CUK of the item in
  one AES-ECB call (:func:`cas.crypto.derive_cuks_concat`) and seals each card's EMM in one
  loop (one ``struct`` pack, one ``AESGCM``, one ``encrypt`` per card, no function layer per
  EMM).  Every card's first EMM carries the run's epoch base as its sequence number
  (:mod:`cas.store.emmseq`), so nothing is read or written per card for the numbering;
* the rare card that is paired or holds more windows than one EMM carries goes through
  :func:`cas.headend.emmgen.split_plaintexts` and PAIR, and then the whole item through
  :func:`cas.headend.emmgen.seal_plaintexts` (also when shared EMMs are on), the very code
  :func:`~cas.headend.emmgen.build_batch` ends in.  Both give the reference's bytes for
  the same inputs and random numbers (``tests/integration/headend/test_emmfast.py``).

What is written back (:func:`book_item`): the sent rights version of the cards whose
rights changed since their last EMM (``cards.rights_version`` above
``emm_sequences.sent_rights_version``), in one statement.  A refresh of a base whose cards
are all up to date writes no per-card row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cas.access import CardRights, CardStatus
from cas.crypto import Key, OperatorKeys, Rng, derive_cuks_concat
from cas.formats.emm import SEQ_MODULUS, EmmAddressType, EmmTag
from cas.headend.emmgen import (
    ADD_TLV,
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

_CARDS_SQL = """
SELECT serial, shared_address, member_position, account_id, status, region, maturity_limit,
       paired_chip_id, rights_version
FROM cards WHERE shared_address BETWEEN %(lo)s AND %(hi)s
ORDER BY shared_address, member_position
"""

# The rights version last sent to each card: a range of serials when the item's serials are
# dense (cards are registered in runs), else by list.
_SENT_RANGE_SQL = """
SELECT address, sent_rights_version FROM emm_sequences
WHERE address_kind = 'unique' AND address BETWEEN %(lo)s AND %(hi)s
"""
_SENT_LIST_SQL = """
SELECT address, sent_rights_version FROM emm_sequences
WHERE address_kind = 'unique' AND address = ANY(%(ids)s)
"""

# The item's accounts that are or were suspended or blocked (the others are active), and
# the windows of its accounts, by id range when the ids are dense, else by list.  Window
# states: cas.billing.vocab.WINDOW_STATES as iter_card_states reads them.
_ACCOUNTS_SQL = """
SELECT id, suspended_from_s, suspended_until_s, blocked_since_s FROM accounts
WHERE {where} AND (suspended_from_s IS NOT NULL OR blocked_since_s IS NOT NULL)
"""
_WINDOWS_SQL = """
SELECT account_id, package_id, start_s, paid_until_s FROM subscriptions
WHERE {where} AND status IN ('active', 'blocked', 'expired')
  AND paid_until_s IS NOT NULL AND start_s IS NOT NULL
ORDER BY account_id, package_id, start_s, paid_until_s
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
SELECT 'unique', t.a, 1, t.v
FROM unnest(string_to_array(%(a)s, ',')::int8[], string_to_array(%(v)s, ',')::int8[])
     AS t(a, v)
ON CONFLICT (address_kind, address) DO UPDATE
SET sent_rights_version = greatest(emm_sequences.sent_rights_version,
                                   EXCLUDED.sent_rights_version)
"""

_ADD = ADD_TLV
_ADD_TAG = int(EmmTag.ADD_ENTITLEMENT)
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


def _dense(ids: list[int]) -> bool:
    """A sorted id list whose range holds few other ids: read it as a range."""
    return ids[-1] - ids[0] < 4 * len(ids)


def read_cards(session: Session, lo: int, hi: int) -> list[tuple[Any, ...]]:
    """The item's card rows, in group and position order (binary rows, C parsers)."""
    with _raw(session).cursor() as cur:
        cur.execute(_PLANNER_SQL)
        cur.execute(_CARDS_SQL, {"lo": lo, "hi": hi}, binary=True)
        rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def read_sent(session: Session, serials: list[int]) -> dict[int, int]:
    """serial -> the rights version last sent, for the cards of ``serials`` (sorted) that
    have a row."""
    if not serials:
        return {}
    with _raw(session).cursor() as cur:
        if _dense(serials):
            cur.execute(_SENT_RANGE_SQL, {"lo": serials[0], "hi": serials[-1]}, binary=True)
        else:
            cur.execute(_SENT_LIST_SQL, {"ids": serials}, binary=True)
        return dict(cur.fetchall())


def read_accounts(session: Session, ids: list[int],
                  at_s: int) -> dict[int, tuple[int, bytes]]:
    """account id -> (its status code at ``at_s``, its packed ADD_ENTITLEMENT list), for
    the accounts of ``ids`` (sorted) that are not active or have windows: any other account
    of ``ids`` is active without windows."""
    if not ids:
        return {}
    params: dict[str, object]
    if _dense(ids):
        where, params = "{col} BETWEEN %(lo)s AND %(hi)s", {"lo": ids[0], "hi": ids[-1]}
    else:
        where, params = "{col} = ANY(%(ids)s)", {"ids": ids}
    pack = _ADD.pack
    adds: dict[int, list[bytes]] = {}
    codes: dict[int, int] = {}
    with _raw(session).cursor() as cur:
        cur.execute(_ACCOUNTS_SQL.format(where=where.format(col="id")), params, binary=True)
        for aid, s_from, s_until, blocked in cur.fetchall():
            if s_from is not None and s_from <= at_s and (s_until is None or at_s < s_until):
                codes[aid] = _SUSPENDED
            elif blocked is not None and blocked <= at_s:
                codes[aid] = _BLOCKED
        cur.execute(_WINDOWS_SQL.format(where=where.format(col="account_id")), params,
                    binary=True)
        for aid, package, start, until in cur.fetchall():
            end = until if until < WIRE_TIME_MAX_S else WIRE_TIME_MAX_S
            if end > start:
                tlv = pack(_ADD_TAG, 10, package, start, end)
                got = adds.get(aid)
                if got is None:
                    adds[aid] = [tlv]
                else:
                    got.append(tlv)
    active = _ACTIVE
    join = b"".join
    out = {aid: (codes.get(aid, active), join(parts)) for aid, parts in adds.items()}
    for aid, code in codes.items():
        if aid not in out:
            out[aid] = (code, b"")
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
    sent_before = read_sent(session, sorted(serials))
    accounts = read_accounts(session, sorted({r[3] for r in rows if r[3] is not None}), at_s)
    cuks = derive_cuks_concat(keys, serials)
    not_after = at_s + settings.validity_s
    if (settings.shared_min_members or any(r[7] is not None for r in rows)
            or any(len(adds) > MAX_UNIQUE_PLAINTEXT - HEAD_LEN
                   for _, adds in accounts.values())):
        return _build_general(session, keys, rows, sent_before, accounts, cuks, at_s=at_s,
                              settings=settings, unique_base=unique_base,
                              shared_base=shared_base, rng=rng)
    # The common item: no paired card, every card's rights in one EMM, no shared EMMs.
    # Commands and sealing in one loop.
    nonces = rng(NONCE_SIZE * n)
    heads: dict[tuple[int, int, int], bytes] = {}
    heads_get = heads.get
    accounts_get = accounts.get
    sent_get = sent_before.get
    no_account = (_INACTIVE, b"")
    active = (_ACTIVE, b"")
    killed = _KILLED
    pack = UNIQUE_AAD.pack
    tid = int(EmmAddressType.UNIQUE)
    length_base = UNIQUE_LENGTH_BASE
    wire = unique_base % SEQ_MODULUS
    cipher = AESGCM
    out: list[bytes] = []
    append = out.append
    sent_serials: list[int] = []
    sent_versions: list[int] = []
    for i, (serial, _g, _p, acc, status, region, maturity, _chip, version) in enumerate(rows):
        code, adds = accounts_get(acc, active) if acc is not None else no_account
        if status == "killed" or status == "blocked":  # blocked: card sharing
            code = killed
        hkey = (code, region, maturity)
        head = heads_get(hkey)
        if head is None:
            head = heads[hkey] = _head(code, region, maturity)
        plain = head + adds
        nonce = nonces[12 * i : 12 * i + 12]
        aad = pack(tid, length_base + len(plain), serial, wire, not_after, nonce)
        append(aad)
        append(cipher(cuks[16 * i : 16 * i + 16]).encrypt(nonce, plain, aad))
        sent = sent_get(serial)
        if sent is None or version > sent:
            sent_serials.append(serial)
            sent_versions.append(version)
    return ItemEmms(data=b"".join(out), cards=n, unique_emms=n, shared_emms=0,
                    sent_serials=sent_serials, sent_versions=sent_versions, unique_span=1,
                    shared_span=0)


def _head(code: int, region: int, maturity: int) -> bytes:
    """CLEAR, SET_STATUS, SET_REGION, SET_MATURITY: the head of every card's rights."""
    return rights_plaintexts(CardRights(status=CardStatus(code), region=region,
                                        maturity_limit=maturity))[0]


def _build_general(session: Session, keys: OperatorKeys, rows: list[tuple[Any, ...]],
                   sent_before: dict[int, int], accounts: dict[int, tuple[int, bytes]],
                   cuks: bytes, *, at_s: int, settings: EmmSettings, unique_base: int,
                   shared_base: int, rng: Rng) -> ItemEmms:
    """An item with paired cards, long rights or shared EMMs: command lists first, then
    :func:`cas.headend.emmgen.seal_plaintexts` (the tail of ``build_batch``)."""
    n = len(rows)
    serials = [r[0] for r in rows]
    heads: dict[tuple[int, int, int], bytes] = {}
    plains: list[Any] = []
    sent_serials: list[int] = []
    sent_versions: list[int] = []
    rare: list[int] = []
    for i, (serial, _g, _p, acc, status, region, maturity, chip, version) in enumerate(rows):
        code, adds = (accounts.get(acc, (_ACTIVE, b"")) if acc is not None
                      else (_INACTIVE, b""))
        if status == "killed" or status == "blocked":  # blocked: card sharing
            code = _KILLED
        hkey = (code, region, maturity)
        head = heads.get(hkey)
        if head is None:
            head = heads[hkey] = _head(code, region, maturity)
        plain = head + adds
        plains.append(plain)
        if chip is not None or len(plain) > MAX_UNIQUE_PLAINTEXT:
            rare.append(i)
        sent = sent_before.get(serial)
        if sent is None or version > sent:
            sent_serials.append(serial)
            sent_versions.append(version)
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
            # Comma-separated text: psycopg's list dumper costs the worker ~1.5 µs per card.
            cur.execute(_BOOK_SENT_SQL, {"a": ",".join(map(str, item.sent_serials)),
                                         "v": ",".join(map(str, item.sent_versions))})
