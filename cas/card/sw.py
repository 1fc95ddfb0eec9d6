"""Status words the card answers with (the :class:`cas.formats.apdu.SW` table) and the lock
reason each ``98xx`` word stands for.

The enum itself lives in :mod:`cas.formats.apdu` so that the card, the box and ``cas decode``
share it; this module adds the few words that carry a number (``61xx``, ``63Cx``, ``6Cxx``)
and the reason tables the card and its hosts use.
"""

from __future__ import annotations

from cas.formats.apdu import SW, describe_sw, sw_for_reason
from cas.reasons import Reason

#: ISO/IEC 7816-4 §5.6: "not enough memory space in the file" (entitlement table full).
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_BYTES_REMAINING = 0x6100  # | xx
SW_VERIFY_FAILED = 0x63C0  # | x tries left
SW_WRONG_LE = 0x6C00  # | exact Le

#: The word the card answers for each locked access decision (PROCESS ECM).
REASON_SW: dict[Reason, int] = {
    reason: int(sw_for_reason(reason))
    for reason in (
        Reason.NOT_SUBSCRIBED, Reason.ENTITLEMENT_EXPIRED, Reason.NOT_YET_VALID,
        Reason.REGION_BLACKOUT, Reason.MATURITY_LOCKED, Reason.CARD_SUSPENDED,
        Reason.FINANCIAL_BLOCK, Reason.CARD_KILLED, Reason.PAIRING_MISMATCH,
        Reason.CARD_NOT_ACTIVE, Reason.CHANNEL_NOT_IN_PACKAGE, Reason.ECM_KEY_UNKNOWN,
        Reason.PPV_NOT_PURCHASED, Reason.PURSE_EMPTY, Reason.PPV_EVENT_ENDED,
        Reason.PPV_NOT_ON_AIR, Reason.SHARING_DETECTED,
    )
}
REASON_SW[Reason.PIN_BLOCKED] = int(SW.PIN_BLOCKED)

#: The lock reason a status word from PROCESS ECM stands for (the host's side of REASON_SW).
SW_REASON: dict[int, Reason] = {sw: reason for reason, sw in REASON_SW.items()}


def sw_name(sw: int) -> str:
    """``"6982 SECURITY_NOT_SATISFIED"`` — the word in hex and what it means."""
    return f"{sw:04X} {describe_sw(sw)}"


__all__ = [
    "REASON_SW",
    "SW",
    "SW_BYTES_REMAINING",
    "SW_NOT_ENOUGH_MEMORY",
    "SW_REASON",
    "SW_VERIFY_FAILED",
    "SW_WRONG_LE",
    "sw_name",
]
