"""DVB-CISSA v1 (ETSI TS 103 127 §6.3): AES-128-CBC per TS packet payload.

Every payload is encrypted on its own, CBC starting from the fixed IV
``b"DVBTMCPTAESCISSA"``.  Only whole 16-byte blocks are encrypted; the residue
(``len % 16`` bytes) stays clear, so a payload shorter than 16 bytes is entirely clear (and,
here, its packet is not flagged scrambled).  Header and adaptation field stay clear.

Speed without numpy:

* **Decrypt, bulk.**  Payloads without adaptation field (the common case) are gathered into
  one buffer and decrypted with *one* AES-ECB call.  CBC decryption is
  ``P_j = D(C_j) xor C_{j-1}`` with ``C_{-1} = IV`` per packet, so the xor stream is the
  ciphertext shifted by one block (``>> 128`` on a big integer), masked to zero at each
  packet's first block, with the IV put there instead — two masks that depend only on the
  packet count and are cached.
* **Encrypt, sequential.**  One long-lived AES-CBC encryptor runs over all packets; to make
  it restart from the IV at each packet we xor ``IV xor C_last`` of the previous packet into
  the first plaintext block: ``E(P_0 xor IV xor C_last xor C_last) = E(P_0 xor IV)``.  That
  costs one ``update()`` per packet instead of building a cipher context per packet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from functools import lru_cache
from itertools import starmap

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cas.crypto._ts import (
    TS_HEADER_LEN,
    TS_PACKET_LEN,
    Parities,
    Regions,
    plan_descramble,
    plan_scramble,
    writable_view,
)
from cas.crypto.cw import CISSA_CW_LEN
from cas.errors import CryptoError

#: TS 103 127 §6.3.2: the fixed initialisation vector, ASCII "DVBTMCPTAESCISSA".
IV = b"DVBTMCPTAESCISSA"
BLOCK = 16
#: Payloads shorter than one block stay entirely clear.
MIN_PAYLOAD_LEN = BLOCK
_FULL_PAYLOAD = TS_PACKET_LEN - TS_HEADER_LEN  # 184
_FULL_ENC = _FULL_PAYLOAD - _FULL_PAYLOAD % BLOCK  # 176: 11 blocks, 8 clear bytes
_IV_INT = int.from_bytes(IV, "big")
_CHUNK_PACKETS = 16384  # bulk decrypt in ~3 MB slices to bound memory


def _check_cw(cw: bytes) -> bytes:
    if len(cw) != CISSA_CW_LEN:
        raise CryptoError(f"a CISSA control word is {CISSA_CW_LEN} bytes, got {len(cw)}")
    return bytes(cw)


@lru_cache(maxsize=8)
def _chain_masks(count: int) -> tuple[int, int]:
    """(keep, ivs) for ``count`` 176-byte regions: keep = 0 at first blocks, ivs = IV there."""
    keep = (bytes(BLOCK) + b"\xff" * (_FULL_ENC - BLOCK)) * count
    ivs = (IV + bytes(_FULL_ENC - BLOCK)) * count
    return int.from_bytes(keep, "big"), int.from_bytes(ivs, "big")


def cbc_encrypt(cw: bytes, payload: bytes) -> bytes:
    """CISSA-encrypt one payload (any length; the residue is returned clear)."""
    n = len(payload) - len(payload) % BLOCK
    enc = Cipher(algorithms.AES(_check_cw(cw)), modes.CBC(IV)).encryptor()
    return enc.update(bytes(payload[:n])) + bytes(payload[n:])


def cbc_decrypt(cw: bytes, payload: bytes) -> bytes:
    """CISSA-decrypt one payload (any length; the residue is returned as is)."""
    n = len(payload) - len(payload) % BLOCK
    dec = Cipher(algorithms.AES(_check_cw(cw)), modes.CBC(IV)).decryptor()
    return dec.update(bytes(payload[:n])) + bytes(payload[n:])


class Cissa:
    """A DVB-CISSA scrambler/descrambler holding an even and an odd 16-byte CW.

    Same packet interface as :class:`cas.crypto.csa2.Csa2`.  Not thread-safe.
    """

    __slots__ = ("_cws",)

    def __init__(self, cw_even: bytes | None = None, cw_odd: bytes | None = None) -> None:
        self._cws: list[bytes | None] = [None, None]
        if cw_even is not None:
            self.set_cw(0, cw_even)
        if cw_odd is not None:
            self.set_cw(1, cw_odd)

    def __repr__(self) -> str:
        return f"Cissa(even={self._cws[0] is not None}, odd={self._cws[1] is not None})"

    def set_cw(self, parity: int, cw: bytes) -> None:
        if parity not in (0, 1):
            raise CryptoError("parity must be 0 (even) or 1 (odd)")
        self._cws[parity] = _check_cw(cw)

    def _have(self) -> tuple[bool, bool]:
        return self._cws[0] is not None, self._cws[1] is not None

    def _cw(self, parity: int) -> bytes:
        cw = self._cws[parity]
        if cw is None:
            raise CryptoError(f"no {'odd' if parity else 'even'} control word set")
        return cw

    # --- one payload ------------------------------------------------------------------------------
    def encrypt_payload(self, parity: int, payload: bytearray | memoryview) -> None:
        """Scramble one TS payload in place."""
        mv = memoryview(payload)
        mv[:] = cbc_encrypt(self._cw(parity), mv.tobytes())

    def decrypt_payload(self, parity: int, payload: bytearray | memoryview) -> None:
        """Descramble one TS payload in place."""
        mv = memoryview(payload)
        mv[:] = cbc_decrypt(self._cw(parity), mv.tobytes())

    # --- many TS packets ----------------------------------------------------------------------------
    def scramble(self, buf: bytearray | memoryview, parity: Parities = 0, *,
                 pids: Collection[int] | None = None) -> int:
        """Scramble the clear packets of ``buf`` in place; return how many were scrambled.

        ``parity`` and ``pids`` as in :meth:`cas.crypto.csa2.Csa2.scramble`.  Packets already
        scrambled, without payload or with a payload under 16 bytes are left as they are.
        """
        mv = writable_view(buf)
        regions = plan_scramble(mv, parity, pids, MIN_PAYLOAD_LEN, self._have())
        total = 0
        for p in (0, 1):
            reg = regions[p]
            if len(reg):
                spans = [(TS_PACKET_LEN * i + TS_HEADER_LEN, _FULL_ENC) for i in reg.full]
                spans += [(off, ln - ln % BLOCK) for off, ln in reg.partial]
                _encrypt_spans(mv, self._cw(p), spans)
                total += len(reg)
        return total

    def descramble(self, buf: bytearray | memoryview, *,
                   pids: Collection[int] | None = None) -> int:
        """Descramble every packet flagged ``10``/``11`` with the matching CW, clear the flags."""
        mv = writable_view(buf)
        regions = plan_descramble(mv, pids, self._have())
        total = 0
        for p in (0, 1):
            reg = regions[p]
            if len(reg):
                cw = self._cw(p)
                _decrypt_full(mv, cw, reg)
                for off, ln in reg.partial:
                    n = ln - ln % BLOCK
                    if n:
                        mv[off : off + n] = cbc_decrypt(cw, mv[off : off + n].tobytes())
                total += len(reg)
        return total


def _encrypt_spans(mv: memoryview, cw: bytes, spans: list[tuple[int, int]]) -> None:
    """CBC-encrypt each (offset, length) span from the IV, with one encryptor (see module doc)."""
    update = Cipher(algorithms.AES(cw), modes.CBC(IV)).encryptor().update
    from_bytes = int.from_bytes
    chain = 0  # IV xor last ciphertext block fed to the encryptor so far (IV at start)
    for off, n in spans:
        first = (from_bytes(mv[off : off + BLOCK], "big") ^ chain).to_bytes(BLOCK, "big")
        ct = update(first + mv[off + BLOCK : off + n])
        mv[off : off + n] = ct
        chain = from_bytes(ct[-BLOCK:], "big") ^ _IV_INT


def _decrypt_full(mv: memoryview, cw: bytes, reg: Regions) -> None:
    """Bulk CBC decrypt of the 176 encrypted bytes of every packet in ``reg.full``."""
    dec = Cipher(algorithms.AES(cw), modes.ECB()).decryptor()
    offsets = [TS_PACKET_LEN * i + TS_HEADER_LEN for i in reg.full]
    for lo in range(0, len(offsets), _CHUNK_PACKETS):
        chunk = offsets[lo : lo + _CHUNK_PACKETS]
        count = len(chunk)
        slices = [slice(o, o + _FULL_ENC) for o in chunk]
        ct = b"".join(map(mv.__getitem__, slices))
        keep, ivs = _chain_masks(count)
        plain = dec.update(ct)
        size = count * _FULL_ENC
        xored = (int.from_bytes(plain, "big")
                 ^ ((int.from_bytes(ct, "big") >> 128) & keep) ^ ivs).to_bytes(size, "big")
        pv = memoryview(xored)
        # Scatter back: C-level loop over (slice, piece) pairs.
        pieces = map(pv.__getitem__, map(slice, range(0, size, _FULL_ENC),
                                         range(_FULL_ENC, size + 1, _FULL_ENC)))
        deque(starmap(mv.__setitem__, zip(slices, pieces, strict=True)), maxlen=0)


def scramble_packets(buf: bytearray | memoryview, cw_even: bytes | None, cw_odd: bytes | None,
                     parity: Parities = 0, *, pids: Collection[int] | None = None) -> int:
    """One-shot :meth:`Cissa.scramble` (sets scrambling bits ``10``/``11``)."""
    return Cissa(cw_even, cw_odd).scramble(buf, parity, pids=pids)


def descramble_packets(buf: bytearray | memoryview, cw_even: bytes | None,
                       cw_odd: bytes | None, *, pids: Collection[int] | None = None) -> int:
    """One-shot :meth:`Cissa.descramble` (resets scrambling bits to ``00``)."""
    return Cissa(cw_even, cw_odd).descramble(buf, pids=pids)
