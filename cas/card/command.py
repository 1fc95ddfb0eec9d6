"""Command APDUs of the card applet: parsing (ISO/IEC 7816-4 §5.1) and the internal refusal.

A handler refuses a command by raising :class:`Refusal` with the status word to answer;
:meth:`cas.card.applet.Applet.transmit` turns it into the response at one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from cas.card.sw import SW


class Refusal(Exception):
    """Internal: a command refused with status word ``sw`` (never leaves the applet)."""

    def __init__(self, sw: int) -> None:
        self.sw = sw
        super().__init__(f"{sw:04X}")


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command APDU (ISO/IEC 7816-4 §5.1).  ``ne`` = 0 when Le is absent."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    ne: int
    extended: bool = False


def parse_command(apdu: bytes) -> Command:
    """Split a command APDU into its fields; :class:`Refusal` (6700) if no case fits."""
    n = len(apdu)
    if n < 4:
        raise Refusal(SW.WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if n == 4:  # case 1
        return Command(cla, ins, p1, p2, b"", 0)
    b4 = apdu[4]
    if n == 5:  # case 2 short
        return Command(cla, ins, p1, p2, b"", b4 or 256)
    if b4:
        lc = b4
        if n == 5 + lc:  # case 3 short
            return Command(cla, ins, p1, p2, apdu[5:], 0)
        if n == 6 + lc:  # case 4 short
            return Command(cla, ins, p1, p2, apdu[5 : 5 + lc], apdu[-1] or 256)
        raise Refusal(SW.WRONG_LENGTH)
    if n == 7:  # case 2 extended
        return Command(cla, ins, p1, p2, b"", ((apdu[5] << 8) | apdu[6]) or 65536, True)
    if n < 7:
        raise Refusal(SW.WRONG_LENGTH)
    lc = (apdu[5] << 8) | apdu[6]
    if lc == 0:
        raise Refusal(SW.WRONG_LENGTH)
    if n == 7 + lc:  # case 3 extended
        return Command(cla, ins, p1, p2, apdu[7:], 0, True)
    if n == 9 + lc:  # case 4 extended
        return Command(cla, ins, p1, p2, apdu[7 : 7 + lc],
                       ((apdu[-2] << 8) | apdu[-1]) or 65536, True)
    raise Refusal(SW.WRONG_LENGTH)


def sw_bytes(sw: int) -> bytes:
    return bytes((sw >> 8, sw & 0xFF))


#: The response of a command that succeeded with no data.
OK = b"\x90\x00"
