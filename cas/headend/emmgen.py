"""EMM generation: every card's rights, sealed for that card, at operator scale.

DESIGN §3–§4, ``docs/formats.md`` §5, ``docs/headend.md``.  This module is the pure part: card
rights in, EMM sections out.  :mod:`cas.headend.emmrun` drives it from the store (full refresh,
incremental feed, sequence numbers, resumable runs).

What a card gets
----------------
* **Unique EMM** (table_id 0x82, key = the card's CUK): its complete rights —
  ``CLEAR_ENTITLEMENTS, SET_STATUS, SET_REGION, SET_MATURITY, ADD_ENTITLEMENT…`` and, for a card
  paired with a box, ``PAIR(chip_id, CWPK, Enc(CSK, CWPK))``.  Sending the whole state (not a
  diff) makes every EMM idempotent: a card that missed one catches up with the next.  A card
  with more entitlements than fit one 256-byte section gets several EMMs with consecutive
  sequence numbers; the first clears, the others only add.
* **Shared EMM** (0x83, key = the group key): when several members of one group (shared
  address, u24) would get byte-identical commands — typically the same status change or the
  same package line-up — one EMM with the member bitmap replaces them.  A group of ``n`` such
  members costs one section of ``74 + p`` bytes instead of ``n`` of ``43 + p``.
* **Global EMM** (0x84, key = the global key): ECM-key rotation, on-screen messages.

Sequence numbers: unique EMMs count per card, shared per group, global once; the card refuses
anything not newer than what it last applied of that kind (9811).  The caller passes the next
free number and gets back how many were used.  The counters are unbounded; the u32 on the wire
is the counter modulo 2^32 (:func:`cas.formats.emm.wire_seq`), which the card compares in
serial-number arithmetic, so the sequence space never runs out.

Speed (the hot path is :func:`seal_unique_batch`): card keys come from
:func:`cas.crypto.derive_cuks` (one AES-ECB call for a whole chunk), headers and command TLVs
are packed with precompiled ``struct`` layouts (the tests pin them byte for byte against
``cas.formats.emm`` + ``cas.messages.seal_emm``), nonces are sliced from one ``rng`` call per
chunk, and :func:`generate_parallel` spreads chunks over a ``fork`` pool of worker processes
that inherit the input instead of receiving it pickled.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from cas.access import CardRights, CardStatus, Entitlement
from cas.crypto import (
    Key,
    OperatorKeys,
    Purpose,
    Rng,
    aead_seal,
    chip_blob,
    derive_cuks_concat,
    kdf,
)
from cas.errors import UsageError
from cas.formats._layout import struct_layout
from cas.formats.emm import (
    COMMAND_VALUES,
    EMM_HEADERS,
    MEMBER_BITMAP_SIZE,
    SEQ_MODULUS,
    EmmAddressType,
    EmmTag,
    max_emm_plaintext,
)

TAG_SIZE = 16
NONCE_SIZE = 12
#: Default validity of an EMM: the card ignores it after ``at + 7 days``.
DEFAULT_EMM_VALIDITY_S = 7 * 24 * 3600

# --- precompiled layouts (docs/formats.md §5) ---------------------------------------------
# Derived from the declarations in cas.formats.emm (cas.formats._layout), so the EMM layout
# is written down once.  AAD = the 3-byte CA section header (table_id u8, flags|section_length
# u16, as cas.formats._common.build_ca_section writes it) + the clear header of the address
# type: unique (serial, seq, not_after, nonce), shared (shared_address as 3 bytes, members,
# seq, ...), global (seq, not_after, nonce).
def _aad(address_type: EmmAddressType) -> struct.Struct:
    return struct.Struct(">BH" + struct_layout(EMM_HEADERS[address_type]).format[1:])


def _tlv(tag: EmmTag) -> struct.Struct:
    """Command TLV: tag u8 | length u8 | the value as declared for ``tag``."""
    return struct.Struct(">BB" + struct_layout(COMMAND_VALUES[tag]).format[1:])


_UNIQUE_AAD = _aad(EmmAddressType.UNIQUE)
_SHARED_AAD = _aad(EmmAddressType.SHARED)
_GLOBAL_AAD = _aad(EmmAddressType.GLOBAL)
_UNIQUE_HEADER_LEN = _UNIQUE_AAD.size - 3
_SHARED_HEADER_LEN = _SHARED_AAD.size - 3
_GLOBAL_HEADER_LEN = _GLOBAL_AAD.size - 3
_SECTION_FLAGS = 0x7000  # section_syntax_indicator 0, private_indicator 1, reserved 11

_ADD = _tlv(EmmTag.ADD_ENTITLEMENT)
_STATUS = _tlv(EmmTag.SET_STATUS)
_REGION = _tlv(EmmTag.SET_REGION)
_MATURITY = _tlv(EmmTag.SET_MATURITY)
_PAIR = _tlv(EmmTag.PAIR)
_ECM_KEY = _tlv(EmmTag.ECM_KEY_UPDATE)
_CLEAR = bytes((EmmTag.CLEAR_ENTITLEMENTS, 0))
_ADD_LEN = _ADD.size
# the encoders below write these value lengths as literals (hot path): keep them in step
if tuple(t.size - 2 for t in (_ADD, _STATUS, _REGION, _MATURITY, _PAIR, _ECM_KEY)) != (
    10, 1, 2, 1, 44, 17,
):  # fmt: skip
    raise TypeError("EMM command value sizes changed: update the TLV lengths in emmgen")

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cas.store.engine import Store

MAX_UNIQUE_PLAINTEXT = max_emm_plaintext(EmmAddressType.UNIQUE)
MAX_SHARED_PLAINTEXT = max_emm_plaintext(EmmAddressType.SHARED)
MAX_GLOBAL_PLAINTEXT = max_emm_plaintext(EmmAddressType.GLOBAL)


@dataclass(frozen=True, slots=True, kw_only=True)
class PairingTarget:
    """The box a card is paired with, and the chipset key to make the chip blob with.

    ``csk`` is the chip's secret key (unwrapped from its Chip ID record by the caller).
    """

    chip_id: int
    csk: Key = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CardTarget:
    """One card's rights as the head-end wants the card to hold them."""

    serial: int
    shared_address: int = 0
    member_position: int = 0
    rights: CardRights
    pairing: PairingTarget | None = None


# --- command encoding ------------------------------------------------------------------------

def rights_plaintexts(rights: CardRights, *, limit: int = MAX_UNIQUE_PLAINTEXT,
                      extra: bytes = b"") -> list[bytes]:
    """The command TLV lists that carry ``rights`` completely, each within ``limit`` bytes.

    First: CLEAR, SET_STATUS, SET_REGION, SET_MATURITY, ``extra`` (e.g. PAIR), then as many
    ADD_ENTITLEMENTs as fit; further lists carry the remaining ADDs.
    """
    head = (_CLEAR + _STATUS.pack(EmmTag.SET_STATUS, 1, int(rights.status))
            + _REGION.pack(EmmTag.SET_REGION, 2, rights.region)
            + _MATURITY.pack(EmmTag.SET_MATURITY, 1, rights.maturity_limit) + extra)
    adds = [_ADD.pack(EmmTag.ADD_ENTITLEMENT, 10, e.package_id, e.start_s, e.end_s)
            for e in rights.entitlements]
    room = (limit - len(head)) // _ADD_LEN
    if len(adds) <= room:
        return [head + b"".join(adds)]
    out = [head + b"".join(adds[:room])]
    per = limit // _ADD_LEN
    for i in range(room, len(adds), per):
        out.append(b"".join(adds[i : i + per]))
    return out


def pair_command(chip_id: int, cwpk: Key, blob: bytes) -> bytes:
    """PAIR(chip_id, CWPK, chip blob) as a TLV."""
    return _PAIR.pack(EmmTag.PAIR, 44, chip_id, cwpk.raw(), blob)


def ecm_key_update_command(index: int, key: Key) -> bytes:
    return _ECM_KEY.pack(EmmTag.ECM_KEY_UPDATE, 17, index, key.raw())


def osd_command(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise UsageError("an on-screen message is at most 255 bytes of UTF-8")
    return bytes((EmmTag.OSD_MESSAGE, len(raw))) + raw


def cwpk_for(cuk: Key, chip_id: int) -> Key:
    """The CW pairing key of (card, chip): NIST SP 800-108 KDF keyed with the card's CUK,
    context = chip id.  Deterministic, so re-sending a pairing never changes it (the box keeps
    working); a different chip or card gives an unrelated key."""
    return kdf(cuk, Purpose.CUK, chip_id, label="cwpk")


def pairing_command(cuk: Key, pairing: PairingTarget) -> bytes:
    cwpk = cwpk_for(cuk, pairing.chip_id)
    return pair_command(pairing.chip_id, cwpk, chip_blob(pairing.csk, cwpk))


# --- sealing ---------------------------------------------------------------------------------

def seal_unique(cuk: bytes | Key, serial: int, seq: int, not_after_s: int, nonce: bytes,
                plaintext: bytes) -> bytes:
    """A unique EMM section (table_id 0x82) — the precompiled-layout twin of
    ``cas.messages.seal_emm`` with a :class:`~cas.formats.emm.UniqueAddress`."""
    aad = _UNIQUE_AAD.pack(EmmAddressType.UNIQUE,
                           _SECTION_FLAGS | (_UNIQUE_HEADER_LEN + len(plaintext) + TAG_SIZE),
                           serial, seq % SEQ_MODULUS, not_after_s, nonce)
    return aad + aead_seal(cuk, nonce, plaintext, aad)


def seal_shared(group_key: Key, shared_address: int, members: bytes, seq: int,
                not_after_s: int, nonce: bytes, plaintext: bytes) -> bytes:
    """A shared EMM section (table_id 0x83) for the members in the bitmap."""
    if len(members) != MEMBER_BITMAP_SIZE:
        raise UsageError("member bitmap is 32 bytes")
    aad = _SHARED_AAD.pack(EmmAddressType.SHARED,
                           _SECTION_FLAGS | (_SHARED_HEADER_LEN + len(plaintext) + TAG_SIZE),
                           shared_address.to_bytes(3, "big"), members, seq % SEQ_MODULUS,
                           not_after_s, nonce)
    return aad + aead_seal(group_key, nonce, plaintext, aad)


def seal_global(global_key: Key, seq: int, not_after_s: int, nonce: bytes,
                plaintext: bytes) -> bytes:
    """A global EMM section (table_id 0x84): every card."""
    if len(plaintext) > MAX_GLOBAL_PLAINTEXT:
        raise UsageError(f"global EMM commands exceed {MAX_GLOBAL_PLAINTEXT} bytes")
    aad = _GLOBAL_AAD.pack(EmmAddressType.GLOBAL,
                           _SECTION_FLAGS | (_GLOBAL_HEADER_LEN + len(plaintext) + TAG_SIZE),
                           seq % SEQ_MODULUS, not_after_s, nonce)
    return aad + aead_seal(global_key, nonce, plaintext, aad)


def members_bitmap(positions: Iterable[int]) -> bytes:
    bitmap = bytearray(MEMBER_BITMAP_SIZE)
    for p in positions:
        bitmap[p >> 3] |= 0x80 >> (p & 7)
    return bytes(bitmap)


# --- batches ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class EmmSettings:
    """``not_after_s`` = time of the run + validity; ``shared_min_members`` = 0 turns shared
    EMMs off, else the fewest members of a group with identical commands worth one shared EMM."""

    validity_s: int = DEFAULT_EMM_VALIDITY_S
    shared_min_members: int = 2

    def __post_init__(self) -> None:
        if self.validity_s <= 0:
            raise UsageError("EMM validity must be positive")
        if self.shared_min_members < 0 or self.shared_min_members == 1:
            raise UsageError("shared EMMs need at least 2 members (0 turns them off)")


@dataclass(slots=True)
class BatchResult:
    """EMM sections of a batch, and the sequence numbers they used.

    ``unique_next``/``shared_next``: the next free sequence number per card / per group after
    this batch (only for addresses that got an EMM).
    """

    sections: list[bytes] = field(default_factory=list)
    unique_next: dict[int, int] = field(default_factory=dict)
    shared_next: dict[int, int] = field(default_factory=dict)
    unique_count: int = 0
    shared_count: int = 0
    cards: int = 0

    def extend(self, other: BatchResult) -> None:
        self.sections += other.sections
        self.unique_next.update(other.unique_next)
        self.shared_next.update(other.shared_next)
        self.unique_count += other.unique_count
        self.shared_count += other.shared_count
        self.cards += other.cards


def build_batch(keys: OperatorKeys, cards: Sequence[CardTarget], *, at_s: int,
                unique_seq: Callable[[int], int], shared_seq: Callable[[int], int],
                settings: EmmSettings = EmmSettings(), rng: Rng = os.urandom) -> BatchResult:
    """EMMs for ``cards`` (any order; shared grouping needs a group's members in one batch).

    ``unique_seq(serial)`` / ``shared_seq(group)`` give the next free sequence number.
    """
    not_after = at_s + settings.validity_s
    res = BatchResult(cards=len(cards))
    n = len(cards)
    cuks = derive_cuks_concat(keys, [c.serial for c in cards])
    # Phase 1: plaintexts.  bytes = one EMM (the common case), list = several.
    heads: dict[tuple[int, int, int], bytes] = {}
    add_pack = _ADD.pack
    add_tag = int(EmmTag.ADD_ENTITLEMENT)
    room = (MAX_UNIQUE_PLAINTEXT - len(_CLEAR) - _STATUS.size - _REGION.size
            - _MATURITY.size) // _ADD_LEN
    plains: list[bytes | list[bytes]] = []
    for i, card in enumerate(cards):
        r = card.rights
        ents = r.entitlements
        if card.pairing is None and len(ents) <= room:
            hkey = (r.status, r.region, r.maturity_limit)
            head = heads.get(hkey)
            if head is None:
                head = heads[hkey] = rights_plaintexts(
                    CardRights(status=r.status, region=r.region,
                               maturity_limit=r.maturity_limit))[0]
            plains.append(head + b"".join([add_pack(add_tag, 10, e.package_id, e.start_s,
                                                    e.end_s) for e in ents]))
        else:
            extra = b""
            if card.pairing is not None:
                extra = pairing_command(Key(cuks[16 * i : 16 * i + 16], label="cuk"),
                                        card.pairing)
            pl = rights_plaintexts(r, extra=extra)
            plains.append(pl[0] if len(pl) == 1 and card.pairing is None else pl)
    # Phase 2: members of a group with byte-identical commands share one EMM.
    skip: set[int] = set()
    if settings.shared_min_members:
        groups: dict[tuple[int, bytes], list[int]] = {}
        for i, cand in enumerate(plains):
            if isinstance(cand, bytes) and len(cand) <= MAX_SHARED_PLAINTEXT:
                groups.setdefault((cards[i].shared_address, cand), []).append(i)
        jobs = sorted(((g, text, idx) for (g, text), idx in groups.items()
                       if len(idx) >= settings.shared_min_members), key=lambda t: t[0])
        if jobs:
            nonces = rng(NONCE_SIZE * len(jobs))
            for j, (group, text, idx) in enumerate(jobs):
                seq = res.shared_next.get(group) or shared_seq(group)
                bitmap = members_bitmap(cards[i].member_position for i in idx)
                res.sections.append(seal_shared(
                    keys.group_key(group), group, bitmap, seq, not_after,
                    nonces[NONCE_SIZE * j : NONCE_SIZE * (j + 1)], text))
                res.shared_next[group] = seq + 1
                res.shared_count += 1
                skip.update(idx)
    # Phase 3: unique EMMs, sealed under each card's CUK.
    total = sum(1 if isinstance(p, bytes) else len(p) for p in plains) - len(skip)
    nonces = rng(NONCE_SIZE * total)
    pos = 0
    out = res.sections
    append = out.append
    pack = _UNIQUE_AAD.pack
    seal = aead_seal
    base = _SECTION_FLAGS | (_UNIQUE_HEADER_LEN + TAG_SIZE)
    tid = int(EmmAddressType.UNIQUE)
    unique_next = res.unique_next
    count = 0
    for i in range(n):
        if skip and i in skip:
            continue
        serial = cards[i].serial
        seq = unique_seq(serial)
        cuk = cuks[16 * i : 16 * i + 16]
        texts = plains[i]
        for one in ((texts,) if isinstance(texts, bytes) else texts):
            nonce = nonces[pos : pos + NONCE_SIZE]
            aad = pack(tid, base + len(one), serial, seq % SEQ_MODULUS, not_after, nonce)
            append(aad + seal(cuk, nonce, one, aad))
            pos += NONCE_SIZE
            seq += 1
            count += 1
        unique_next[serial] = seq
    res.unique_count = count
    return res


# --- the fast path: many unique EMMs in worker processes -------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class UniqueJob:
    """Input of :func:`seal_unique_batch`: parallel lists, one entry per card."""

    serials: Sequence[int]
    seqs: Sequence[int]
    plaintexts: Sequence[bytes]


def seal_unique_batch(keys: OperatorKeys | Key, job: UniqueJob, *, not_after_s: int,
                      rng: Rng = os.urandom) -> bytes:
    """One unique EMM per card, concatenated — the hot loop of a full refresh."""
    serials = job.serials
    n = len(serials)
    cuks = derive_cuks_concat(keys, serials)
    nonces = rng(NONCE_SIZE * n)
    pack = _UNIQUE_AAD.pack
    seal = aead_seal
    out: list[bytes] = []
    append = out.append
    seqs = job.seqs
    plaintexts = job.plaintexts
    base = _SECTION_FLAGS | (_UNIQUE_HEADER_LEN + TAG_SIZE)
    tid = int(EmmAddressType.UNIQUE)
    for i in range(n):
        pl = plaintexts[i]
        nonce = nonces[12 * i : 12 * i + 12]
        aad = pack(tid, base + len(pl), serials[i], seqs[i] % SEQ_MODULUS, not_after_s, nonce)
        append(aad)
        append(seal(cuks[16 * i : 16 * i + 16], nonce, pl, aad))
    return b"".join(out)


# Worker-process state (set before the fork, inherited by the children: no pickling of the
# input, only of each chunk's result).
_WORK: _ParallelWork | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _ParallelWork:
    keys: OperatorKeys
    cards: Sequence[CardTarget]
    at_s: int
    unique_next: Mapping[int, int]
    shared_next: Mapping[int, int]
    settings: EmmSettings


def _run_chunk(bounds: tuple[int, int]) -> BatchResult:
    work = _WORK
    assert work is not None
    lo, hi = bounds
    u, g = work.unique_next, work.shared_next
    return build_batch(work.keys, work.cards[lo:hi], at_s=work.at_s,
                       unique_seq=lambda s: u.get(s, 1), shared_seq=lambda a: g.get(a, 1),
                       settings=work.settings)


def chunk_bounds(cards: Sequence[CardTarget], chunk: int) -> list[tuple[int, int]]:
    """Index ranges of about ``chunk`` cards that never split a group (shared address), so
    shared EMMs see all members of a group at once (cards sorted by shared address)."""
    n = len(cards)
    out: list[tuple[int, int]] = []
    lo = 0
    while lo < n:
        hi = min(n, lo + chunk)
        while 0 < hi < n and cards[hi].shared_address == cards[hi - 1].shared_address:
            hi += 1
        out.append((lo, hi))
        lo = hi
    return out


def generate_parallel(keys: OperatorKeys, cards: Sequence[CardTarget], *, at_s: int,
                      unique_next: Mapping[int, int] | None = None,
                      shared_next: Mapping[int, int] | None = None,
                      settings: EmmSettings = EmmSettings(), workers: int = 2,
                      chunk: int = 20_000) -> Iterator[tuple[tuple[int, int], BatchResult]]:
    """:func:`build_batch` over ``cards`` in chunks on ``workers`` forked processes, yielding
    ``((lo, hi), result)`` in input order.  ``workers <= 1`` runs in this process.

    ``unique_next``/``shared_next``: next free sequence number per card / group (default 1).
    Chunks never split a group when ``cards`` are sorted by shared address.
    """
    global _WORK
    work = _ParallelWork(keys=keys, cards=cards, at_s=at_s, unique_next=unique_next or {},
                         shared_next=shared_next or {}, settings=settings)
    bounds = chunk_bounds(cards, chunk)
    if workers <= 1 or len(bounds) <= 1:
        _WORK = work
        try:
            for b in bounds:
                yield b, _run_chunk(b)
        finally:
            _WORK = None
        return
    _WORK = work
    # Move every live object to the permanent generation before forking: the children's
    # garbage collector then never writes to the inherited card objects, so their pages stay
    # shared instead of being copied (measured: ~1.5x faster with a million cards).
    gc.freeze()
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers) as pool:
            yield from zip(bounds, pool.imap(_run_chunk, bounds), strict=True)
    finally:
        gc.unfreeze()
        _WORK = None


def unique_job(cards: Iterable[CardTarget], next_seq: Callable[[int], int]) -> UniqueJob:
    """A :class:`UniqueJob` for cards whose rights fit one EMM and that are not paired
    (:func:`build_batch` handles the general case)."""
    serials: list[int] = []
    seqs: list[int] = []
    plains: list[bytes] = []
    for c in cards:
        pl = rights_plaintexts(c.rights)
        if len(pl) != 1 or c.pairing is not None:
            raise UsageError(f"card {c.serial:010d} needs the general path (build_batch)")
        serials.append(c.serial)
        seqs.append(next_seq(c.serial))
        plains.append(pl[0])
    return UniqueJob(serials=serials, seqs=seqs, plaintexts=plains)


# --- global EMMs -----------------------------------------------------------------------------

def global_emm(keys: OperatorKeys, *, seq: int, at: datetime, commands: Sequence[bytes],
               validity_s: int = DEFAULT_EMM_VALIDITY_S, rng: Rng = os.urandom) -> bytes:
    """One global EMM carrying the given command TLVs (ECM key update, OSD message)."""
    if not commands:
        raise UsageError("a global EMM needs at least one command")
    return seal_global(keys.global_key(), seq, int(at.timestamp()) + validity_s,
                       rng(NONCE_SIZE), b"".join(commands))


def ecm_key_rotation_emm(keys: OperatorKeys, index: int, *, seq: int, at: datetime,
                         validity_s: int = DEFAULT_EMM_VALIDITY_S,
                         rng: Rng = os.urandom) -> bytes:
    """Global EMM delivering ECM key ``index`` (the next key of a rollover)."""
    return global_emm(keys, seq=seq, at=at, validity_s=validity_s, rng=rng,
                      commands=[ecm_key_update_command(index, keys.ecm_key(index))])


def status_rights(status: CardStatus, region: int = 0,
                  entitlements: tuple[Entitlement, ...] = ()) -> CardRights:
    """Convenience for tests and tools."""
    return CardRights(status=status, region=region, entitlements=entitlements)


# =============================================================================================
# Runs over the store: full refresh and incremental feed, resumable
# =============================================================================================
#
# A run keeps its state in the store's ``settings`` table under RUN_KEY (JSON): mode, the time
# T of the entitlement state, the temp output file, how many bytes of it are committed, the
# last group (shared address) done, counters.  Cards are processed in shared-address order in
# chunks that never split a group.  Per chunk:
#
#   1. build the EMMs (sequence numbers read from ``emm_sequences``; nothing reserved yet);
#   2. append them to the temp file, flush + fsync;
#   3. ONE transaction: advance ``emm_sequences.next_seq`` (and ``sent_rights_version``) for
#      every card/group of the chunk AND move the run state to the new byte count / group.
#
# A run killed anywhere restarts from its run state: the temp file is cut back to the
# committed byte count (dropping EMMs whose sequence numbers were never reserved) and the next
# chunk is rebuilt with the same sequence numbers.  So no sequence number is used twice in
# the output and none is skipped.  The finished file is renamed into place (sections), or
# packetised into a TS file that is then renamed, or copied to stdout.

RUN_KEY = "emm.run"
#: Pause after every committed chunk (seconds, from $CAS_EMM_THROTTLE_S): lets a demo or a
#: test interrupt a run at a known pace.  Zero (no pause) unless set.
_THROTTLE_S = float(os.environ.get("CAS_EMM_THROTTLE_S", "0") or 0)
_UNIQUE = "unique"
_SHARED = "shared"
_GLOBAL = "global"


@dataclass(slots=True, kw_only=True)
class RunState:
    """The persisted position of an EMM run (see the block comment above)."""

    mode: str
    at_s: int
    tmp_path: str
    bytes_done: int = 0
    last_group: int = -1
    cards: int = 0
    unique_emms: int = 0
    shared_emms: int = 0
    global_emms: int = 0
    finished: bool = False

    def to_json(self) -> str:
        import json

        return json.dumps({f: getattr(self, f) for f in self.__dataclass_fields__},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        import json

        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    mode: str
    at_s: int
    cards: int
    unique_emms: int
    shared_emms: int
    global_emms: int
    bytes: int
    resumed: bool
    output: str

    def to_json(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def _csk_of(keys: OperatorKeys, wrapped: bytes) -> Key | None:
    """The chipset key from a Box row (Chip ID records wrap it under the transport key; a
    vendor-specific key is tried next)."""
    from cas.crypto import unwrap_key
    from cas.errors import AuthenticationError

    for kek in (keys.transport_key(), *keys.vendor_keys.values()):
        try:
            return unwrap_key(kek, wrapped, label="csk")
        except AuthenticationError:
            continue
    return None


def emm_run(store: Store, keys: OperatorKeys, *, mode: str, at: datetime,
            out: str | None, out_format: str = "sections",
            settings: EmmSettings = EmmSettings(), workers: int = 2, chunk: int = 20_000,
            global_commands: Sequence[bytes] = (),
            ca_system_id: int | None = None, emm_pid: int = 0x0C00,
            progress: Callable[[int], None] | None = None,
            total: Callable[[int], None] | None = None,
            stdout: IO[bytes] | None = None) -> RunReport:
    """Full refresh (``mode="full"``), incremental feed (``"incremental"``) or global EMMs only
    (``"global"``), resumable (see the block comment).  ``out`` None means stdout.

    ``store`` is a :class:`cas.store.engine.Store`; ``total(n)`` is told the number of cards
    once known (progress bars); ``progress(n)`` after every chunk.
    """
    import sys

    from sqlalchemy import func, select

    from cas.billing.state import iter_card_states
    from cas.store.engine import Store
    from cas.store.models import Card, EmmSequence, Setting
    from cas.store.repo import get_setting, set_setting

    if not isinstance(store, Store):
        raise UsageError("emm_run needs a cas.store Store")
    if mode not in ("full", "incremental", "global"):
        raise UsageError(f"unknown EMM run mode {mode!r}")
    if out_format not in ("sections", "ts"):
        raise UsageError("output format is 'sections' or 'ts'")
    if mode == "global" and not global_commands:
        raise UsageError("a global run needs at least one global command")

    # --- start or resume -------------------------------------------------------------------
    with store.transaction() as s:
        raw = get_setting(s, RUN_KEY)
        resumed = raw is not None
        if raw is not None:
            state = RunState.from_json(raw)
            if state.mode != mode:
                raise UsageError(f"an unfinished {state.mode} EMM run is pending: run "
                                 f"'cas emm generate --{state.mode}' to finish it first")
        else:
            tmp = _tmp_path(out)
            state = RunState(mode=mode, at_s=int(at.timestamp()), tmp_path=tmp)
            with open(tmp, "wb"):
                pass
            if global_commands:
                seq_row = s.get(EmmSequence, (_GLOBAL, 0))
                seq = seq_row.next_seq if seq_row is not None else 1
                data = b"".join(
                    seal_global(keys.global_key(), seq + i, state.at_s + settings.validity_s,
                                os.urandom(NONCE_SIZE), cmd)
                    for i, cmd in enumerate(global_commands))
                _append(tmp, 0, data)
                _upsert(s, [(_GLOBAL, 0, seq + len(global_commands), None)])
                state.bytes_done = len(data)
                state.global_emms = len(global_commands)
            set_setting(s, RUN_KEY, state.to_json())
    at_s = state.at_s
    at_dt = datetime.fromtimestamp(at_s, tz=at.tzinfo)

    # --- the cards ---------------------------------------------------------------------------
    if not state.finished and mode != "global":
        _truncate(state.tmp_path, state.bytes_done)
        with store.reader() as rs:
            serials: list[int] | None = None
            if mode == "incremental":
                sent = (select(EmmSequence.address, EmmSequence.sent_rights_version)
                        .where(EmmSequence.address_kind == _UNIQUE).subquery())
                serials = [int(x) for x in rs.execute(
                    select(Card.serial).outerjoin(sent, sent.c.address == Card.serial)
                    .where(Card.rights_version > func.coalesce(sent.c.sent_rights_version, 0))
                ).scalars()]
                n_cards = len(serials)
            else:
                n_cards = int(rs.execute(
                    select(func.count()).select_from(Card)
                    .where(Card.shared_address > state.last_group)).scalar_one())
            if total is not None:
                total(n_cards)
            states = iter_card_states(rs, at_dt, serials=serials) if serials != [] else iter([])
            window_size = max(chunk * max(workers, 1) * 2, chunk)
            window: list[Any] = []
            for st in states:
                if mode == "full" and st.shared_address <= state.last_group:
                    continue  # done before the run was interrupted
                if len(window) >= window_size and st.shared_address != window[-1].shared_address:
                    _do_window(store, rs, keys, window, state, settings, workers, chunk,
                               progress)
                    window = []
                window.append(st)
            if window:
                _do_window(store, rs, keys, window, state, settings, workers, chunk, progress)
        with store.transaction() as s:
            state.finished = True
            set_setting(s, RUN_KEY, state.to_json())

    # --- publish -----------------------------------------------------------------------------
    _truncate(state.tmp_path, state.bytes_done)
    if out is None:
        sink = stdout if stdout is not None else sys.stdout.buffer
        with open(state.tmp_path, "rb") as fh:
            data = fh.read()
        if out_format == "ts":
            data = sections_to_ts(_split_sections(data), emm_pid=emm_pid,
                                  ca_system_id=ca_system_id)
        sink.write(data)
        sink.flush()
        os.unlink(state.tmp_path)
        out_name = "-"
    elif out_format == "ts":
        with open(state.tmp_path, "rb") as fh:
            sections = _split_sections(fh.read())
        part = out + ".ts-part"
        with open(part, "wb") as fh:
            fh.write(sections_to_ts(sections, emm_pid=emm_pid, ca_system_id=ca_system_id))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, out)
        os.unlink(state.tmp_path)
        out_name = out
    else:
        os.replace(state.tmp_path, out)
        out_name = out
    with store.transaction() as s:
        row = s.get(Setting, RUN_KEY)
        if row is not None:
            s.delete(row)
    return RunReport(mode=mode, at_s=at_s, cards=state.cards, unique_emms=state.unique_emms,
                     shared_emms=state.shared_emms, global_emms=state.global_emms,
                     bytes=state.bytes_done, resumed=resumed, output=out_name)


def _tmp_path(out: str | None) -> str:
    if out is not None:
        return out + ".emm-partial"
    import tempfile

    fd, path = tempfile.mkstemp(prefix="cas-emm-", suffix=".partial")
    os.close(fd)
    return path


def _truncate(path: str, size: int) -> None:
    with open(path, "ab") as fh:
        fh.truncate(size)


def _append(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def _upsert(session: Session, rows: Sequence[tuple[str, int, int, int | None]]) -> None:
    """Set ``next_seq`` (and ``sent_rights_version`` unless None) per (kind, address)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from cas.store.models import EmmSequence

    if not rows:
        return
    dialect = session.get_bind().dialect.name
    ins_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    with_version = [{"address_kind": k, "address": a, "next_seq": n, "sent_rights_version": v}
                    for k, a, n, v in rows if v is not None]
    without = [{"address_kind": k, "address": a, "next_seq": n, "sent_rights_version": 0}
               for k, a, n, v in rows if v is None]
    if with_version:
        stmt = ins_fn(EmmSequence)
        stmt = stmt.on_conflict_do_update(
            index_elements=[EmmSequence.address_kind, EmmSequence.address],
            set_={"next_seq": stmt.excluded.next_seq,
                  "sent_rights_version": stmt.excluded.sent_rights_version})
        session.execute(stmt, with_version)
    if without:
        stmt = ins_fn(EmmSequence)
        stmt = stmt.on_conflict_do_update(
            index_elements=[EmmSequence.address_kind, EmmSequence.address],
            set_={"next_seq": stmt.excluded.next_seq})
        session.execute(stmt, without)


def _do_window(store: Store, rs: Session, keys: OperatorKeys, window: list[Any], state: RunState,
               settings: EmmSettings, workers: int, chunk: int,
               progress: Callable[[int], None] | None) -> None:
    """EMMs for one window of card states, chunk by chunk, each chunk committed atomically."""
    from sqlalchemy import select

    from cas.store.models import Box, EmmSequence
    from cas.store.repo import set_setting

    lo_serial = min(st.serial for st in window)
    hi_serial = max(st.serial for st in window)
    unique_next = {int(a): int(n) for a, n in rs.execute(
        select(EmmSequence.address, EmmSequence.next_seq).where(
            EmmSequence.address_kind == _UNIQUE, EmmSequence.address >= lo_serial,
            EmmSequence.address <= hi_serial))}
    groups = sorted({st.shared_address for st in window})
    shared_next = {int(a): int(n) for a, n in rs.execute(
        select(EmmSequence.address, EmmSequence.next_seq).where(
            EmmSequence.address_kind == _SHARED, EmmSequence.address >= groups[0],
            EmmSequence.address <= groups[-1]))}
    chips = sorted({st.paired_chip_id for st in window if st.paired_chip_id is not None})
    csks: dict[int, Key] = {}
    for i in range(0, len(chips), 500):
        for chip_id, wrapped in rs.execute(select(Box.chip_id, Box.wrapped_csk)
                                           .where(Box.chip_id.in_(chips[i : i + 500]))):
            csk = _csk_of(keys, wrapped) if wrapped else None
            if csk is not None:
                csks[int(chip_id)] = csk
    cards = [CardTarget(serial=st.serial, shared_address=st.shared_address,
                        member_position=st.member_position, rights=st.rights,
                        pairing=(PairingTarget(chip_id=st.paired_chip_id,
                                               csk=csks[st.paired_chip_id])
                                 if st.paired_chip_id in csks else None))
             for st in window]
    versions = {st.serial: st.rights_version for st in window}
    for (lo, hi), res in generate_parallel(keys, cards, at_s=state.at_s,
                                           unique_next=unique_next, shared_next=shared_next,
                                           settings=settings, workers=workers, chunk=chunk):
        data = b"".join(res.sections)
        _append(state.tmp_path, state.bytes_done, data)
        rows: list[tuple[str, int, int, int | None]] = [
            (_UNIQUE, serial, nxt, versions[serial]) for serial, nxt in res.unique_next.items()]
        # Members served by a shared EMM are up to date too: record their rights version.
        served = {c.serial for c in cards[lo:hi]} - set(res.unique_next)
        rows += [(_UNIQUE, s, unique_next.get(s, 1), versions[s]) for s in served]
        rows += [(_SHARED, g, nxt, None) for g, nxt in res.shared_next.items()]
        with store.transaction() as s:
            _upsert(s, rows)
            state.bytes_done += len(data)
            state.last_group = cards[hi - 1].shared_address
            state.cards += hi - lo
            state.unique_emms += res.unique_count
            state.shared_emms += res.shared_count
            set_setting(s, RUN_KEY, state.to_json())
        if progress is not None:
            progress(hi - lo)
        if _THROTTLE_S:
            time.sleep(_THROTTLE_S)


def _split_sections(data: bytes) -> list[bytes]:
    from cas.formats.sections import iter_sections

    return list(iter_sections(data))


def sections_to_ts(sections: Sequence[bytes], *, emm_pid: int,
                   ca_system_id: int | None = None) -> bytes:
    """EMM sections as a TS: a CAT announcing ``emm_pid`` (our CA_system_ID), then the EMMs
    packed back to back on ``emm_pid`` (ISO/IEC 13818-1 §2.4.4), the CAT repeated every
    1000 EMM packets so a demux that starts late still finds the EMM PID."""
    import cas
    from cas.formats import psi, ts

    cat = psi.build_cat(psi.Cat(descriptors=(psi.CaDescriptor(
        ca_system_id=ca_system_id if ca_system_id is not None else cas.DEFAULT_CA_SYSTEM_ID,
        ca_pid=emm_pid),)))
    cat_pk = ts.Packetizer(psi.CAT_PID)
    emm_pk = ts.Packetizer(emm_pid)
    out: list[bytes] = []
    step = 1000
    for i in range(0, max(len(sections), 1), step):
        out += cat_pk.packetize(cat)
        if sections[i : i + step]:
            out += emm_pk.packetize_many(sections[i : i + step])
    return b"".join(out)
