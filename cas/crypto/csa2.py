"""DVB-CSA2 (ETSI ETR 289 / TS 100 289) through libdvbcsa, bound with ctypes.

libdvbcsa (Debian ``libdvbcsa1``) offers a one-payload API (``dvbcsa_encrypt``) and a
bitslice batch API that processes up to ``dvbcsa_bs_batch_size()`` payloads per call
(``dvbcsa_bs_encrypt(key, batch, 184)``, ``batch`` an array of
``struct dvbcsa_bs_batch_s {unsigned char *data; unsigned int len;}`` ending with
``data == NULL``).  :class:`Csa2` scrambles a whole buffer of TS packets in place: the batch
array is built as raw machine words pointing into that buffer (one ``array`` per parity, no
Python object per packet), then libdvbcsa is called once per batch.

Payloads shorter than 8 bytes are left clear and their packets unflagged (libdvbcsa does
not touch them; WIRE-FACTS §4.1).  The residue ``len % 8`` is scrambled by the stream layer.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import weakref
from array import array
from collections.abc import Collection
from typing import Any

from cas.crypto._ts import (
    TS_HEADER_LEN,
    TS_PACKET_LEN,
    Parities,
    Regions,
    plan_descramble,
    plan_scramble,
    writable_view,
)
from cas.crypto.cw import CSA2_CW_LEN
from cas.errors import CryptoError

LIBRARY = "libdvbcsa.so.1"
#: libdvbcsa's DVBCSA_BS_MAX_PACKET_LEN: the batch API's maxlen for TS payloads.
MAX_PAYLOAD_LEN = 184
#: Shorter payloads are left clear (libdvbcsa returns without touching them).
MIN_PAYLOAD_LEN = 8

_lib: Any = None
_lib_lock = threading.Lock()


def load_library() -> Any:
    """Load libdvbcsa once; :class:`CryptoError` with the package name if it is missing."""
    global _lib
    with _lib_lock:
        if _lib is None:
            try:
                lib = ctypes.CDLL(LIBRARY)
            except OSError as exc:
                raise CryptoError(
                    f"DVB-CSA2 needs {LIBRARY} (Debian/Ubuntu package libdvbcsa1, "
                    f"installed by scripts/setup.sh): {exc}").with_id(
                    "crypto.dvb_csa2_needs_debian", library=LIBRARY, exc=exc) from None
            vp, uint = ctypes.c_void_p, ctypes.c_uint
            lib.dvbcsa_key_alloc.restype = vp
            lib.dvbcsa_key_alloc.argtypes = []
            lib.dvbcsa_key_free.argtypes = [vp]
            lib.dvbcsa_key_set.argtypes = [ctypes.c_char_p, vp]
            lib.dvbcsa_encrypt.argtypes = [vp, vp, uint]
            lib.dvbcsa_decrypt.argtypes = [vp, vp, uint]
            lib.dvbcsa_bs_key_alloc.restype = vp
            lib.dvbcsa_bs_key_alloc.argtypes = []
            lib.dvbcsa_bs_key_free.argtypes = [vp]
            lib.dvbcsa_bs_key_set.argtypes = [ctypes.c_char_p, vp]
            lib.dvbcsa_bs_batch_size.restype = uint
            lib.dvbcsa_bs_batch_size.argtypes = []
            lib.dvbcsa_bs_encrypt.argtypes = [vp, vp, uint]
            lib.dvbcsa_bs_decrypt.argtypes = [vp, vp, uint]
            for fn in (lib.dvbcsa_key_free, lib.dvbcsa_key_set, lib.dvbcsa_encrypt,
                       lib.dvbcsa_decrypt, lib.dvbcsa_bs_key_free, lib.dvbcsa_bs_key_set,
                       lib.dvbcsa_bs_encrypt, lib.dvbcsa_bs_decrypt):
                fn.restype = None
            _lib = lib
    return _lib


def batch_size() -> int:
    """Packets per bitslice batch of the installed libdvbcsa (e.g. 128 with SSE2)."""
    return int(load_library().dvbcsa_bs_batch_size())


# struct dvbcsa_bs_batch_s as machine words: {pointer, unsigned int len, padding}.
_PTR_SIZE = ctypes.sizeof(ctypes.c_void_p)
_WORD = "Q" if _PTR_SIZE == 8 else "I"
_ENTRY_SIZE = ctypes.sizeof(ctypes.c_void_p) * 2
if ctypes.sizeof(ctypes.c_uint) > _PTR_SIZE:  # pragma: no cover - no such ABI in use
    raise ImportError("unsupported ABI for struct dvbcsa_bs_batch_s")
# On a big-endian 64-bit machine the int sits in the high half of the second word.
_LEN_SHIFT = 0 if sys.byteorder == "little" else 8 * (_PTR_SIZE - ctypes.sizeof(ctypes.c_uint))


def _check_cw(cw: bytes) -> bytes:
    if len(cw) != CSA2_CW_LEN:
        raise CryptoError(f"a CSA2 control word is {CSA2_CW_LEN} bytes, got {len(cw)}").with_id(
            "crypto.csa2_control_word_bytes", csa2_cw_len=CSA2_CW_LEN, n=len(cw))
    return bytes(cw)


class _KeyPair:
    """libdvbcsa key contexts (single-packet and bitslice) for one CW; freed with the object."""

    __slots__ = ("__weakref__", "bs", "cw", "single")

    def __init__(self, cw: bytes) -> None:
        lib = load_library()
        self.cw = cw
        self.single = lib.dvbcsa_key_alloc()
        self.bs = lib.dvbcsa_bs_key_alloc()
        if not self.single or not self.bs:
            raise CryptoError("libdvbcsa could not allocate a key context").with_id(
                "crypto.libdvbcsa_could_not_allocate")
        weakref.finalize(self, _free, lib, self.single, self.bs)
        lib.dvbcsa_key_set(cw, self.single)
        lib.dvbcsa_bs_key_set(cw, self.bs)


def _free(lib: Any, single: int, bs: int) -> None:
    lib.dvbcsa_key_free(single)
    lib.dvbcsa_bs_key_free(bs)


class Csa2:
    """A DVB-CSA2 scrambler/descrambler holding an even and an odd CW.

    ``scramble(buf, parity)`` and ``descramble(buf)`` work in place on a ``bytearray`` of
    whole TS packets.  CWs can be changed at every crypto-period with :meth:`set_cw`.
    Not thread-safe (one instance per thread).
    """

    __slots__ = ("_batch", "_keys")

    def __init__(self, cw_even: bytes | None = None, cw_odd: bytes | None = None) -> None:
        self._batch = batch_size()
        self._keys: list[_KeyPair | None] = [None, None]
        if cw_even is not None:
            self.set_cw(0, cw_even)
        if cw_odd is not None:
            self.set_cw(1, cw_odd)

    def __repr__(self) -> str:
        return f"Csa2(even={self._keys[0] is not None}, odd={self._keys[1] is not None})"

    def set_cw(self, parity: int, cw: bytes) -> None:
        """Install the CW for ``parity`` (0 even, 1 odd)."""
        if parity not in (0, 1):
            raise CryptoError("parity must be 0 (even) or 1 (odd)").with_id(
                "crypto.parity_even_odd")
        cw = _check_cw(cw)
        current = self._keys[parity]
        if current is None or current.cw != cw:  # key setup is costly: skip when unchanged
            self._keys[parity] = _KeyPair(cw)

    def _have(self) -> tuple[bool, bool]:
        return self._keys[0] is not None, self._keys[1] is not None

    def _key(self, parity: int) -> _KeyPair:
        key = self._keys[parity]
        if key is None:
            raise CryptoError(f"no {'odd' if parity else 'even'} control word set").with_id(
                "crypto.no_control_word_set", value='odd' if parity else 'even')
        return key

    # --- one payload ---------------------------------------------------------------------------
    def encrypt_payload(self, parity: int, payload: bytearray | memoryview) -> None:
        """Scramble one TS payload in place (single-packet API)."""
        self._one(parity, payload, encrypt=True)

    def decrypt_payload(self, parity: int, payload: bytearray | memoryview) -> None:
        """Descramble one TS payload in place (single-packet API)."""
        self._one(parity, payload, encrypt=False)

    def _one(self, parity: int, payload: bytearray | memoryview, *, encrypt: bool) -> None:
        key = self._key(parity)
        mv = memoryview(payload)
        if mv.readonly:
            raise CryptoError("payload must be writable (bytearray)").with_id(
                "crypto.payload_writable_bytearray")
        if len(mv) > MAX_PAYLOAD_LEN:
            raise CryptoError(f"a TS payload is at most {MAX_PAYLOAD_LEN} bytes").with_id(
                "crypto.ts_payload_most_bytes", max_payload_len=MAX_PAYLOAD_LEN)
        if len(mv) == 0:
            return
        holder = (ctypes.c_char * len(mv)).from_buffer(mv)
        lib = load_library()
        fn = lib.dvbcsa_encrypt if encrypt else lib.dvbcsa_decrypt
        fn(key.single, ctypes.addressof(holder), len(mv))
        del holder

    # --- many TS packets --------------------------------------------------------------------------
    def scramble(self, buf: bytearray | memoryview, parity: Parities = 0, *,
                 pids: Collection[int] | None = None) -> int:
        """Scramble the clear packets of ``buf`` in place; return how many were scrambled.

        ``parity``: 0 / 1 for every packet, or one value per packet (0 even, 1 odd, 0xFF leave
        clear).  ``pids``: only packets on these PIDs.  Packets already scrambled, without a
        payload or with a payload under 8 bytes are left as they are.
        """
        mv = writable_view(buf)
        regions = plan_scramble(mv, parity, pids, MIN_PAYLOAD_LEN, self._have())
        return self._run(mv, regions, encrypt=True)

    def descramble(self, buf: bytearray | memoryview, *,
                   pids: Collection[int] | None = None) -> int:
        """Descramble every packet flagged ``10``/``11`` with the matching CW, clear the flags."""
        mv = writable_view(buf)
        regions = plan_descramble(mv, pids, self._have())
        return self._run(mv, regions, encrypt=False)

    def _run(self, mv: memoryview, regions: tuple[Regions, Regions], *, encrypt: bool) -> int:
        lib = load_library()
        fn = lib.dvbcsa_bs_encrypt if encrypt else lib.dvbcsa_bs_decrypt
        total = 0
        holder = (ctypes.c_char * len(mv)).from_buffer(mv) if len(mv) else None
        try:
            base = ctypes.addressof(holder) if holder is not None else 0
            for parity in (0, 1):
                reg = regions[parity]
                if not len(reg):
                    continue
                key = self._key(parity).bs
                ptrs = array(_WORD, [base + TS_PACKET_LEN * i + TS_HEADER_LEN for i in reg.full])
                lens = array(_WORD, [(TS_PACKET_LEN - TS_HEADER_LEN) << _LEN_SHIFT]) * len(reg.full)
                # libdvbcsa leaves payloads under 8 bytes alone: do not hand them over at all.
                partial = [(off, ln) for off, ln in reg.partial if ln >= MIN_PAYLOAD_LEN]
                if partial:
                    ptrs.extend(base + off for off, _ in partial)
                    lens.extend(ln << _LEN_SHIFT for _, ln in partial)
                total += _run_batches(fn, key, ptrs, lens, self._batch)
        finally:
            del holder
        return total


def _run_batches(fn: Any, key: int, ptrs: array[int], lens: array[int], batch: int) -> int:
    """Lay out NULL-terminated batches of ``batch`` entries and call libdvbcsa on each."""
    count = len(ptrs)
    chunks = -(-count // batch)
    stride = 2 * (batch + 1)  # words per batch incl. the terminator entry
    words = array(_WORD, bytes(_ENTRY_SIZE * (batch + 1) * chunks))
    for c in range(chunks):
        lo, hi = c * batch, min(count, (c + 1) * batch)
        start = c * stride
        words[start : start + 2 * (hi - lo) : 2] = ptrs[lo:hi]
        words[start + 1 : start + 1 + 2 * (hi - lo) : 2] = lens[lo:hi]
    addr, _ = words.buffer_info()
    entry_bytes = stride * words.itemsize
    for c in range(chunks):
        fn(key, addr + c * entry_bytes, MAX_PAYLOAD_LEN)
    return count


def scramble_packets(buf: bytearray | memoryview, cw_even: bytes | None, cw_odd: bytes | None,
                     parity: Parities = 0, *, pids: Collection[int] | None = None) -> int:
    """One-shot :meth:`Csa2.scramble` (sets scrambling bits ``10``/``11``)."""
    return Csa2(cw_even, cw_odd).scramble(buf, parity, pids=pids)


def descramble_packets(buf: bytearray | memoryview, cw_even: bytes | None,
                       cw_odd: bytes | None, *, pids: Collection[int] | None = None) -> int:
    """One-shot :meth:`Csa2.descramble` (resets scrambling bits to ``00``)."""
    return Csa2(cw_even, cw_odd).descramble(buf, pids=pids)
