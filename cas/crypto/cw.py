"""Control words (DVB-CSA2: 8 bytes, DVB-CISSA: 16 bytes) and their parity.

CSA2 CWs follow the common entropy-reduction convention (TSDuck ``DVBCSA2::ReduceCW``):
``cw[3] = (cw[0] + cw[1] + cw[2]) & 0xFF`` and ``cw[7] = (cw[4] + cw[5] + cw[6]) & 0xFF``,
leaving 48 effective bits.  libdvbcsa itself uses the 8 bytes as given, so the places where a
CW enters DVB-CSA2 reduce it first, as a CSA2 receiver does: the scrambler's CSA2 payload
cipher and the box's key slot (a full 64-bit CW in an ECM then opens a stream scrambled with
its reduction; an already-reduced CW is unchanged).
"""

from __future__ import annotations

import os
from enum import IntEnum

from cas.crypto.keys import Rng
from cas.errors import CryptoError

CSA2_CW_LEN = 8
CISSA_CW_LEN = 16


class Parity(IntEnum):
    """Which CW of the pair scrambles a packet.

    transport_scrambling_control (ISO/IEC 13818-1, ETSI TS 100 289): ``10`` even, ``11`` odd.
    """

    EVEN = 0
    ODD = 1

    @property
    def scrambling_control(self) -> int:
        return 0b10 | self.value


def reduce_cw(cw: bytes) -> bytes:
    """Return the 8-byte CW with its checksum bytes 3 and 7 set."""
    if len(cw) != CSA2_CW_LEN:
        raise CryptoError(f"a CSA2 control word is {CSA2_CW_LEN} bytes, got {len(cw)}").with_id(
            "crypto.csa2_control_word_bytes", csa2_cw_len=CSA2_CW_LEN, n=len(cw))
    b = bytearray(cw)
    b[3] = (b[0] + b[1] + b[2]) & 0xFF
    b[7] = (b[4] + b[5] + b[6]) & 0xFF
    return bytes(b)


def is_reduced_cw(cw: bytes) -> bool:
    """True for an 8-byte CW whose bytes 3 and 7 are the checksums of the three before."""
    return (len(cw) == CSA2_CW_LEN
            and cw[3] == (cw[0] + cw[1] + cw[2]) & 0xFF
            and cw[7] == (cw[4] + cw[5] + cw[6]) & 0xFF)


def generate_cw(rng: Rng = os.urandom, length: int = CSA2_CW_LEN) -> bytes:
    """A fresh control word from ``rng``.

    ``length`` 8 (CSA2): 6 random bytes plus the two checksum bytes.  ``length`` 16 (CISSA):
    16 random bytes whose last 8 are not all zero — :func:`cas.crypto.wrap.wrap_cws` uses a
    zero tail to mark an 8-byte CW in a 16-byte slot, so we never produce that ambiguity.
    """
    if length == CSA2_CW_LEN:
        r = rng(6)
        if len(r) != 6:
            raise CryptoError("rng returned the wrong number of bytes").with_id(
                "crypto.rng_returned_wrong_number")
        return reduce_cw(r[0:3] + b"\x00" + r[3:6] + b"\x00")
    if length == CISSA_CW_LEN:
        for _ in range(8):
            cw = rng(CISSA_CW_LEN)
            if len(cw) != CISSA_CW_LEN:
                raise CryptoError("rng returned the wrong number of bytes").with_id(
                    "crypto.rng_returned_wrong_number")
            if any(cw[8:]):
                return cw
        raise CryptoError("rng keeps returning zeros").with_id("crypto.rng_keeps_returning_zeros")
    raise CryptoError(f"control word length must be 8 (CSA2) or 16 (CISSA), not {length}").with_id(
        "crypto.control_word_length_csa2", length=length)
