"""The box's descrambler: one key slot per ECM stream, CSA2 or CISSA (WIRE-FACTS §4).

A key slot holds the even and odd control words the card last returned for one ECM PID
and the cipher the PMT's scrambling_descriptor asks for: DVB-CSA2 through libdvbcsa when
the descriptor is absent or says 0x02, DVB-CISSA v1 (AES-128-CBC, ETSI TS 103 127) for 0x10.
Each packet is descrambled with the CW its transport_scrambling_control names (10 even,
11 odd), and its bits are reset to 00 (both done by :mod:`cas.crypto`).

A DVB-CSA2 receiver reduces every 8-byte control word before it keys the descrambler
(bytes 3 and 7 become the sums of the three bytes before them, :func:`cas.crypto.reduce_cw`),
as a CSA2 descrambler chip does: a head-end may put the full 64-bit CW in its ECMs and scramble
with the reduced one (TSDuck's scrambler does by default).  The reduction is idempotent, so an
already-reduced CW is unchanged.  CISSA keys are used as they are.

How a box knows that the result is right: a packet that starts a PES packet
(payload_unit_start_indicator set) must begin with the start code prefix 00 00 01
(ISO/IEC 13818-1 §2.4.3.6).  Wrong control words give random bytes there.
"""

from __future__ import annotations

from collections.abc import Collection

from cas.crypto.cissa import Cissa
from cas.crypto.csa2 import Csa2
from cas.crypto.cw import CISSA_CW_LEN, CSA2_CW_LEN, reduce_cw
from cas.errors import CryptoError
from firmware_stub.demux import SCRAMBLING_CISSA, SCRAMBLING_CSA2, SCRAMBLING_NAMES

PES_START_CODE = b"\x00\x00\x01"


def scrambling_name(mode: int) -> str:
    return SCRAMBLING_NAMES.get(mode, f"mode 0x{mode:02X}")


def supported(mode: int) -> bool:
    return mode in (SCRAMBLING_CSA2, SCRAMBLING_CISSA)


def cw_length(mode: int) -> int:
    return CISSA_CW_LEN if mode == SCRAMBLING_CISSA else CSA2_CW_LEN


def pes_start_ok(packet: bytes | bytearray | memoryview) -> bool | None:
    """For a PUSI packet: does its payload start with 00 00 01?  ``None``: cannot tell
    (not PUSI, no payload, or a payload too short to have been scrambled)."""
    if not packet[1] & 0x40:
        return None
    afc = (packet[3] >> 4) & 0x3
    if afc == 1:
        off = 4
    elif afc == 3:
        off = 5 + packet[4]
    else:
        return None
    if off + 8 > 188:  # under 8 payload bytes: CSA2 leaves them clear, nothing to learn
        return None
    return bytes(packet[off:off + 3]) == PES_START_CODE


class KeySlot:
    """Control words for one ECM stream and the cipher that uses them."""

    __slots__ = ("_cipher", "_cws", "generation", "mode")

    def __init__(self, mode: int) -> None:
        if not supported(mode):
            raise CryptoError(f"scrambling {scrambling_name(mode)} is not supported").with_id(
                "box.scrambling_not_supported", mode=scrambling_name(mode))
        self.mode = mode
        self._cipher: Csa2 | Cissa = Cissa() if mode == SCRAMBLING_CISSA else Csa2()
        self._cws: tuple[bytes, bytes] | None = None
        #: bumped at every CW change, so checks can tell which keys a verdict was made with
        self.generation = 0

    def __repr__(self) -> str:
        return f"KeySlot({scrambling_name(self.mode)}, keys={self.cws_installed})"

    @property
    def cws_installed(self) -> bool:
        return self._cws is not None

    def install(self, cw_even: bytes, cw_odd: bytes) -> bool:
        """Set both CWs; True when they differ from the ones installed before."""
        want = cw_length(self.mode)
        if len(cw_even) != want or len(cw_odd) != want:
            raise CryptoError(f"{scrambling_name(self.mode)} needs {want}-byte control words, "
                              f"the card returned {len(cw_even)} bytes").with_id(
                "box.needs_byte_control_words", mode=scrambling_name(self.mode), want=want,
                n=len(cw_even))
        cws = (bytes(cw_even), bytes(cw_odd))
        if self.mode != SCRAMBLING_CISSA:   # DVB-CSA2: the receiver's CW reduction
            cws = (reduce_cw(cws[0]), reduce_cw(cws[1]))
        if cws == self._cws:
            return False
        self._cipher.set_cw(0, cws[0])
        self._cipher.set_cw(1, cws[1])
        self._cws = cws
        self.generation += 1
        return True

    def forget(self) -> None:
        """Drop the control words (the card refused the channel)."""
        self._cipher = Cissa() if self.mode == SCRAMBLING_CISSA else Csa2()
        if self._cws is not None:
            self.generation += 1
        self._cws = None

    def descramble(self, buf: bytearray, pids: Collection[int] | None = None) -> int:
        """Descramble the scrambled packets of ``buf`` (whole TS packets) in place; only
        those on ``pids`` when given."""
        if not self.cws_installed:
            raise CryptoError("no control words installed").with_id(
                "box.no_control_words_installed")
        return self._cipher.descramble(buf, pids=pids)
