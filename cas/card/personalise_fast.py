"""Personalising many cards at once: the bulk path of ``cas card personalise --count N``.

:func:`personalise_records` gives, for a list of slots, exactly the bytes that
``build_card_record(personalise_card(keys, slot, …))`` gives card by card
(``tests/unit/card/test_personalise_fast.py`` compares them), at a fraction of the cost:

* the CUKs of all cards come from one AES-ECB call (:func:`cas.crypto.keys.derive_cuks_concat`);
* every CUK is wrapped under the one transport key by a batched RFC 3394 wrap: each of the
  wrap's 12 steps is one AES-ECB call over all the cards' blocks (RFC 3394 §2.2.1: the steps
  of one wrap depend on each other, the wraps of different keys do not);
* the keys wrapped under a card's own CUK (group key, global key, ECM keys) are wrapped
  together, one cipher object per card and one AES call per step for all of them;
* the PIN key is the single-block AES-CMAC of SP 800-108 (``cas.crypto.keys``):
  ``AES_CUK(M xor K1)`` with ``K1 = dbl(AES_CUK(0))`` (RFC 4493 §2.3–2.4);
* the record is a template built once by :func:`cas.formats.records.build_card_record`; each
  card's own fields are packed into a copy and its CRC-32 computed.

:func:`personalise_parallel` splits the cards over worker processes (``fork``: the operator
keys are inherited, never pickled) and hands back each chunk's records as one ``bytes``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cas import DEFAULT_CA_SYSTEM_ID, DEFAULT_OPERATOR_ID
from cas.access import NO_MATURITY_LIMIT, CardStatus
from cas.card.personalise import (
    DEFAULT_CARD_OS_VERSION,
    DEFAULT_PIN,
    CardSlot,
    personalise_card,
)
from cas.crypto import OperatorKeys
from cas.crypto.keys import Purpose, _fixed_input, derive_cuks_concat
from cas.errors import UsageError
from cas.formats.records import CardRecord, build_card_record
from cas.formats.records.declaration import CARD_RECORD_SIZE
from cas.formats.records.fast import _CRC_OFFSET, _RECORD_LAYOUT

_IV_WORD = b"\xa6" * 8  # RFC 3394 §2.2.3.1 default initial value
#: ``table[t]`` xors a byte with ``t``: the step counter of RFC 3394 (< 256 for 16-byte keys)
#: only touches the last byte of the big-endian 64-bit A.
_XOR_TABLES = [bytes(b ^ t for b in range(256)) for t in range(13)]
_PIN_BLOCK = _fixed_input(Purpose.PIN, 0)
#: HMAC's key pads (RFC 2104 §2) as translation tables: ``key.translate(_IPAD)`` is key xor ipad.
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))

_OFF_SERIAL = _RECORD_LAYOUT.offset("body.serial")
_OFF_SLOT = _RECORD_LAYOUT.offset("body.shared_address+member_position")
_OFF_CUK = _RECORD_LAYOUT.offset("body.wrapped_cuk")
_OFF_GROUP = _RECORD_LAYOUT.offset("body.wrapped_group_key")
_OFF_GLOBAL = _RECORD_LAYOUT.offset("body.wrapped_global_key")
_OFF_ECM = (_RECORD_LAYOUT.offset("body.ecm_key_slots[0].wrapped_key"),
            _RECORD_LAYOUT.offset("body.ecm_key_slots[1].wrapped_key"))
_OFF_PIN = _RECORD_LAYOUT.offset("body.pin_hash")
_U32 = struct.Struct(">I")
_CRC = struct.Struct(">I")

#: Cards per task of a worker process.
CHUNK = 20_000


_ECB = modes.ECB()


def _ecb(key: bytes) -> Callable[[bytes | memoryview], bytes]:
    return Cipher(algorithms.AES(key), _ECB).encryptor().update


def _interleave(*parts: array[int]) -> array[int]:
    out = array("Q", bytes(8 * len(parts[0]) * len(parts)))
    for i, part in enumerate(parts):
        out[i::len(parts)] = part
    return out


def wrap16_many(encrypt: Callable[[bytes], bytes], keys: bytes) -> bytes:
    """RFC 3394 §2.2.1 wrap of each 16-byte key in ``keys`` under one KEK (``encrypt`` is
    that KEK's AES-ECB ``update``): 24 bytes per key, in order, equal to ``aes_key_wrap``.

    The 64-bit halves are moved as opaque 8-byte words (``array('Q')``); only the step
    counter is xored into A's last byte, with a translation table."""
    words = array("Q")
    words.frombytes(keys)
    r = [words[0::2], words[1::2]]
    a = array("Q", _IV_WORD * (len(words) // 2))
    for j in range(6):
        for i in range(2):
            out = array("Q")
            out.frombytes(encrypt(_interleave(a, r[i]).tobytes()))
            a_bytes = bytearray(out[0::2].tobytes())
            a_bytes[7::8] = a_bytes[7::8].translate(_XOR_TABLES[2 * j + i + 1])
            a = array("Q")
            a.frombytes(a_bytes)
            r[i] = out[1::2]
    return _interleave(a, r[0], r[1]).tobytes()


def _dbl(block: bytes) -> int:
    """RFC 4493 §2.3: the CMAC subkey K1 from ``L = AES_K(0)``."""
    value = int.from_bytes(block, "big")
    k1 = (value << 1) & ((1 << 128) - 1)
    return k1 ^ 0x87 if value >> 127 else k1


class SlotLike(Protocol):
    """A card's slot as the store or the factory has it (serial, group, position)."""

    @property
    def serial(self) -> int: ...
    @property
    def shared_address(self) -> int: ...
    @property
    def member_position(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Factory:
    """What every card of one personalisation run shares (the options of the command)."""

    now_s: int
    pin: str = DEFAULT_PIN
    ecm_key_indexes: tuple[int, ...] = (0,)
    ecm_key_epoch: int = 0
    region: int = 0
    maturity_limit: int = NO_MATURITY_LIMIT
    status: CardStatus = CardStatus.INACTIVE
    ca_system_id: int = DEFAULT_CA_SYSTEM_ID
    operator_id: int = DEFAULT_OPERATOR_ID
    card_os_version: int = DEFAULT_CARD_OS_VERSION

    def record(self, keys: OperatorKeys, slot: CardSlot) -> CardRecord:
        """The per-card reference path (:func:`personalise_card`) with these options."""
        return personalise_card(
            keys, slot, now_s=self.now_s, pin=self.pin, ecm_key_indexes=self.ecm_key_indexes,
            ecm_key_epoch=self.ecm_key_epoch, region=self.region,
            maturity_limit=self.maturity_limit, status=self.status,
            ca_system_id=self.ca_system_id, operator_id=self.operator_id,
            card_os_version=self.card_os_version)


def _be32(values: Sequence[int]) -> bytes:
    words = array("I", values)
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()


def _put(out: bytearray, offset: int, width: int, column: bytes, start: int = 0,
         stride: int = 0) -> None:
    """Write field ``column[start + n*stride:][:width]`` (``stride`` defaults to ``width``)
    into record ``n`` at ``offset``, for every record at once: one strided copy per byte of
    the field."""
    stride = stride or width
    for b in range(width):
        out[offset + b::CARD_RECORD_SIZE] = column[start + b::stride]


def personalise_records(keys: OperatorKeys, slots: Sequence[CardSlot],
                        factory: Factory) -> bytes:
    """The card records of ``slots``, concatenated (``CARD_RECORD_SIZE`` bytes each), equal
    to ``build_card_record(factory.record(keys, slot))`` for each slot."""
    return personalise_columns(keys, [s.serial for s in slots],
                               [s.shared_address for s in slots],
                               [s.member_position for s in slots], factory)


def personalise_run(keys: OperatorKeys, serial: int, count: int, slot: int,
                    factory: Factory) -> bytes:
    """:func:`personalise_records` of ``count`` cards with serials from ``serial`` at the
    consecutive slots from the linear slot number ``slot`` (``shared_address * 256 +
    member_position``; :class:`cas.bulk.cards.SlotRun`)."""
    linear = range(slot, slot + count)
    return personalise_columns(keys, range(serial, serial + count), [s >> 8 for s in linear],
                               [s & 0xFF for s in linear], factory)


def personalise_columns(keys: OperatorKeys, serials: Sequence[int], addresses: Sequence[int],
                        positions: Sequence[int], factory: Factory) -> bytes:
    """:func:`personalise_records` with the slots given as three columns (card ``i`` is
    serial ``serials[i]`` at group ``addresses[i]``, position ``positions[i]``)."""
    n = len(serials)
    if not n:
        return b""
    # The reference path checks the options and builds the template: a card whose own
    # fields are overwritten below.
    template = build_card_record(factory.record(keys, CardSlot(
        serial=serials[0], shared_address=addresses[0], member_position=positions[0])))
    if min(positions) < 0 or max(positions) > 255:
        bad = next(p for p in positions if not 0 <= p < 256)
        raise UsageError(f"member position {bad} out of range 0..255").with_id(
            "card.member_position_out_range", member_position=bad)
    cuks = derive_cuks_concat(keys, serials)
    wrapped_cuks = wrap16_many(_ecb(keys.transport_key().raw()), cuks)
    # Under each card's CUK: its group key, the global key, the ECM keys (k keys a card),
    # wrapped by one cipher object per card, one AES call per card and step.
    group_keys = {a: keys.group_key(a).raw() for a in dict.fromkeys(addresses)}
    shared = b"".join([keys.global_key().raw()] + [
        keys.ecm_key(i, epoch=factory.ecm_key_epoch).raw() for i in factory.ecm_key_indexes])
    k = 1 + len(shared) // 16
    inner = b"".join([group_keys[a] + shared for a in addresses])
    encrypts = [_ecb(cuks[i:i + 16]) for i in range(0, 16 * n, 16)]
    wrapped = _wrap16_each(encrypts, inner, k)
    # PIN keys: AES_CUK(M xor K1), K1 = dbl(AES_CUK(0)).
    zero = bytes(16)
    pin_block = int.from_bytes(_PIN_BLOCK, "big")
    pin = factory.pin.encode("ascii")
    # PIN hash: HMAC-SHA256(PIN key, PIN)[:16] (RFC 2104, the 16-byte key zero-padded to
    # SHA-256's 64-byte block), two hashlib calls a card, about half the cost of hmac.digest here.
    sha256 = hashlib.sha256
    pad = bytes(64 - 16)
    pin_hashes = b"".join([
        sha256((key := enc((pin_block ^ _dbl(enc(zero))).to_bytes(16, "big")) + pad
                ).translate(_OPAD) + sha256(key.translate(_IPAD) + pin).digest()).digest()[:16]
        for enc in encrypts])
    out = bytearray(template) * n
    _put(out, _OFF_SERIAL, 4, _be32(serials))
    _put(out, _OFF_SLOT, 4, _be32([(a << 8) | p for a, p in zip(addresses, positions,
                                                                 strict=True)]))
    _put(out, _OFF_CUK, 24, wrapped_cuks)
    # ``wrapped`` holds k wrapped keys a card: group key, global key, the ECM keys.
    for e, offset in enumerate((_OFF_GROUP, _OFF_GLOBAL,
                                *_OFF_ECM[:len(factory.ecm_key_indexes)])):
        _put(out, offset, 24, wrapped, 24 * e, 24 * k)
    _put(out, _OFF_PIN, 16, pin_hashes)
    view = memoryview(out)
    crc32 = zlib.crc32
    size = CARD_RECORD_SIZE
    crcs = _be32([crc32(view[i:i + _CRC_OFFSET]) for i in range(0, n * size, size)])
    del view
    _put(out, _CRC_OFFSET, 4, crcs)
    return bytes(out)


def _wrap16_each(encrypts: Sequence[Callable[[bytes | memoryview], bytes]], keys: bytes,
                 k: int) -> bytes:
    """RFC 3394 wrap of ``k`` 16-byte keys per KEK: ``keys`` holds ``k`` keys for each of
    ``encrypts`` in turn; 24 bytes per key out, in the same order.  Like :func:`wrap16_many`
    with one AES call per KEK and step."""
    words = array("Q")
    words.frombytes(keys)
    r = [words[0::2], words[1::2]]
    a = array("Q", _IV_WORD * (len(words) // 2))
    width = 16 * k
    for j in range(6):
        for i in range(2):
            blocks = memoryview(_interleave(a, r[i]).tobytes())
            out = array("Q")
            out.frombytes(b"".join([
                enc(blocks[c:c + width])
                for enc, c in zip(encrypts, range(0, len(blocks), width), strict=True)]))
            a_bytes = bytearray(out[0::2].tobytes())
            a_bytes[7::8] = a_bytes[7::8].translate(_XOR_TABLES[2 * j + i + 1])
            a = array("Q")
            a.frombytes(a_bytes)
            r[i] = out[1::2]
    return _interleave(a, r[0], r[1]).tobytes()


def split_records(data: bytes) -> list[bytes]:
    """Concatenated records → one ``bytes`` per record."""
    size = CARD_RECORD_SIZE
    return [data[i:i + size] for i in range(0, len(data), size)]


# --- several processes --------------------------------------------------------------------------
# Set in the parent before the fork; the children inherit them (keys are never pickled).
_JOB: tuple[OperatorKeys, Factory] | None = None


def _work(slots: list[tuple[int, int, int]]) -> bytes:
    assert _JOB is not None
    keys, factory = _JOB
    return personalise_records(
        keys, [CardSlot(serial=s, shared_address=a, member_position=p) for s, a, p in slots],
        factory)


def _work_run(serial: int, count: int, slot: int) -> bytes:
    assert _JOB is not None
    keys, factory = _JOB
    return personalise_run(keys, serial, count, slot, factory)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the workers (and reports in
    # one line); a worker must not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers() -> int:
    """One worker process per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


class Personaliser:
    """Personalise chunks of cards in worker processes while the caller goes on (e.g.
    registering the next chunk): :meth:`submit` a chunk of slots, then :meth:`results` gives
    every chunk's records in submission order.  With ``workers`` ≤ 1, or where ``fork`` is
    not available, the chunks are personalised in this process when submitted."""

    def __init__(self, keys: OperatorKeys, factory: Factory, *, workers: int,
                 advance: Callable[[int], None] = lambda n: None) -> None:
        global _JOB
        self._keys = keys
        self._factory = factory
        self.advance = advance
        self._pending: list[object] = []
        self._pool = None
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods() \
                and sys.platform != "win32":
            _JOB = (keys, factory)
            self._pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=_ignore_sigint)
            _JOB = None

    def submit(self, slots: Sequence[SlotLike]) -> None:
        for start in range(0, len(slots), CHUNK):
            part = slots[start:start + CHUNK]
            if self._pool is None:
                self._pending.append(personalise_records(
                    self._keys, [CardSlot(serial=s.serial, shared_address=s.shared_address,
                                          member_position=s.member_position) for s in part],
                    self._factory))
                self.advance(len(part))
            else:
                self._pending.append(self._pool.apply_async(
                    _work, ([(s.serial, s.shared_address, s.member_position) for s in part],),
                    callback=self._done))

    def submit_runs(self, runs: Iterable[tuple[int, int, int] | tuple[int, int, int, bool]]
                    ) -> None:
        """Like :meth:`submit`, for runs of cards ``(serial, count, slot, …)``: ``count``
        consecutive serials at consecutive linear slots (:class:`cas.bulk.cards.SlotRun`).
        A task is three numbers, whatever its number of cards."""
        for run in runs:
            serial, count, slot = run[0], run[1], run[2]
            for start in range(0, count, CHUNK):
                n = min(CHUNK, count - start)
                if self._pool is None:
                    self._pending.append(personalise_run(
                        self._keys, serial + start, n, slot + start, self._factory))
                    self.advance(n)
                else:
                    self._pending.append(self._pool.apply_async(
                        _work_run, (serial + start, n, slot + start), callback=self._done))

    def _done(self, data: bytes) -> None:
        # In the pool's result thread, as each chunk comes back.
        self.advance(len(data) // CARD_RECORD_SIZE)

    def results(self) -> Iterator[bytes]:
        """Every chunk's records (concatenated), in order; waits for the workers."""
        for item in self._pending:
            yield item if isinstance(item, bytes) else item.get()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Personaliser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
