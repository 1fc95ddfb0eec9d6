"""DVB-CISSA v1 (ETSI TS 103 127 §6.3): AES-128-CBC per TS packet payload.

Every payload is encrypted on its own, CBC starting from the fixed IV
``b"DVBTMCPTAESCISSA"``.  Only whole 16-byte blocks are encrypted; the residue
(``len % 16`` bytes) stays clear, so a payload shorter than 16 bytes is entirely clear (and,
here, its packet is not flagged scrambled).  Header and adaptation field stay clear.

Speed without numpy: building a cipher context per packet costs more than the AES work, so
one long-lived AES-CBC context runs over all packets of a parity, and we make it restart
from the IV at every packet by patching the first block:

* **Encrypt.**  Feed ``P_0 xor IV xor C_last`` (``C_last`` = last ciphertext block of the
  previous packet): the context computes ``E(P_0 xor IV xor C_last xor C_last) = E(P_0 xor IV)``.
* **Decrypt.**  The context outputs ``D(C_0) xor C_last`` for the first block; xor it with
  ``C_last xor IV`` to get ``D(C_0) xor IV``.  The other blocks are plain CBC.

That is one ``update()`` and a 16-byte big-integer xor per packet: several times faster than
a context per packet (about 1 Gbit/s on one core here; ``benchmarks/scramble.md``).
"""

from __future__ import annotations

from collections.abc import Collection

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


def _check_cw(cw: bytes) -> bytes:
    if len(cw) != CISSA_CW_LEN:
        raise CryptoError(f"a CISSA control word is {CISSA_CW_LEN} bytes, got {len(cw)}").with_id(
            "crypto.cissa_control_word_bytes", cissa_cw_len=CISSA_CW_LEN, n=len(cw))
    return bytes(cw)


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
            raise CryptoError("parity must be 0 (even) or 1 (odd)").with_id(
                "crypto.parity_even_odd")
        self._cws[parity] = _check_cw(cw)

    def _have(self) -> tuple[bool, bool]:
        return self._cws[0] is not None, self._cws[1] is not None

    def _cw(self, parity: int) -> bytes:
        cw = self._cws[parity]
        if cw is None:
            raise CryptoError(f"no {'odd' if parity else 'even'} control word set").with_id(
                "crypto.no_control_word_set", value='odd' if parity else 'even')
        return cw

    @staticmethod
    def _spans(reg: Regions) -> list[tuple[int, int]]:
        """(offset, encrypted length) per payload; payloads under one block are left out."""
        spans = [(TS_PACKET_LEN * i + TS_HEADER_LEN, _FULL_ENC) for i in reg.full]
        spans += [(off, ln - ln % BLOCK) for off, ln in reg.partial if ln >= BLOCK]
        return spans

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
                _encrypt_spans(mv, self._cw(p), self._spans(reg))
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
                _decrypt_spans(mv, self._cw(p), self._spans(reg))
                total += len(reg)
        return total


def _encrypt_spans(mv: memoryview, cw: bytes, spans: list[tuple[int, int]]) -> None:
    """CBC-encrypt each (offset, length) span from the IV, with one encryptor (see module doc)."""
    update = Cipher(algorithms.AES(cw), modes.CBC(IV)).encryptor().update
    from_bytes = int.from_bytes
    chain = 0  # C_last xor IV of the previous span (0: the context starts from the IV)
    for off, n in spans:
        first = (from_bytes(mv[off : off + BLOCK], "big") ^ chain).to_bytes(BLOCK, "big")
        ct = update(first + mv[off + BLOCK : off + n])
        mv[off : off + n] = ct
        chain = from_bytes(ct[-BLOCK:], "big") ^ _IV_INT


def _decrypt_spans(mv: memoryview, cw: bytes, spans: list[tuple[int, int]]) -> None:
    """CBC-decrypt each (offset, length) span from the IV, with one decryptor (see module doc)."""
    update = Cipher(algorithms.AES(cw), modes.CBC(IV)).decryptor().update
    from_bytes = int.from_bytes
    chain = 0  # C_last xor IV of the previous span (0: the context starts from the IV)
    for off, n in spans:
        ct = mv[off : off + n]
        last = from_bytes(ct[n - BLOCK :], "big")  # read before the span is overwritten
        pt = update(ct)
        if chain:
            mv[off : off + BLOCK] = (from_bytes(pt[:BLOCK], "big") ^ chain).to_bytes(BLOCK, "big")
            mv[off + BLOCK : off + n] = pt[BLOCK:]
        else:
            mv[off : off + n] = pt
        chain = last ^ _IV_INT


def scramble_packets(buf: bytearray | memoryview, cw_even: bytes | None, cw_odd: bytes | None,
                     parity: Parities = 0, *, pids: Collection[int] | None = None) -> int:
    """One-shot :meth:`Cissa.scramble` (sets scrambling bits ``10``/``11``)."""
    return Cissa(cw_even, cw_odd).scramble(buf, parity, pids=pids)


def descramble_packets(buf: bytearray | memoryview, cw_even: bytes | None,
                       cw_odd: bytes | None, *, pids: Collection[int] | None = None) -> int:
    """One-shot :meth:`Cissa.descramble` (resets scrambling bits to ``00``)."""
    return Cissa(cw_even, cw_odd).descramble(buf, pids=pids)
