"""Typed card errors (pyscard ``smartcard/sw`` style): one class per family of status word.

All derive from :class:`cas.errors.StatusWordError` (``sw``, ``sw1``, ``sw2``, ``data``), so
callers that only care "the card said no" catch that; the STB catches
:class:`AccessDeniedError` for its lock report.
"""

from __future__ import annotations

from cas.card.sw import SW, SW_REASON, SW_VERIFY_FAILED, sw_name
from cas.errors import StatusWordError
from cas.i18n import Msg
from cas.reasons import Reason, message
from cas.words import tries_left


class WrongPinError(StatusWordError):
    """63Cx: the PIN was wrong; ``tries_left`` = x."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        self.tries_left = sw & 0x0F
        super().__init__(sw, data, f"wrong PIN: {tries_left(self.tries_left)} ({sw:04X})")
        self.with_id("card.wrong_pin", n=self.tries_left, sw=f"{sw:04X}")


class PinBlockedError(StatusWordError):
    """6983: the PIN is blocked (no tries left); only a RESET_PIN EMM unblocks it."""

    def __init__(self, sw: int = SW.PIN_BLOCKED, data: bytes = b"") -> None:
        self.reason = Reason.PIN_BLOCKED
        super().__init__(sw, data, f"PIN blocked ({sw:04X})")
        self.with_id("card.pin_blocked", sw=f"{sw:04X}")


class AccessDeniedError(StatusWordError):
    """98xx from PROCESS ECM: the card's access decision; ``reason`` says why."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        self.reason = SW_REASON.get(sw, Reason.CARD_ERROR)
        super().__init__(sw, data, f"access denied: {sw_name(sw)}: {message(self.reason)}")
        self.with_id("card.access_denied", sw=sw_name(sw),
                     reason=Msg(f"reason.{self.reason.name}.message"))


class MessageRefusedError(StatusWordError):
    """The card refused an EMM/ECM itself: replayed (9811), not addressed to it (9812),
    expired (9813), stale (9814), unknown key (9815), or failed authentication (6982)."""

    def __init__(self, sw: int, data: bytes = b"", *, command: str = "message") -> None:
        self.reason = SW_REASON.get(sw, Reason.CARD_ERROR)
        super().__init__(sw, data, f"card refused the {command}: {sw_name(sw)}")
        self.with_id("card.message_refused", command=command, sw=sw_name(sw))


class CardCommandError(StatusWordError):
    """Any other non-9000 answer (wrong length, not supported, ...)."""

    def __init__(self, sw: int, data: bytes = b"", *, command: str = "command") -> None:
        super().__init__(sw, data, f"card refused {command}: {sw_name(sw)}")
        self.with_id("card.command_refused", command=command, sw=sw_name(sw))


_MESSAGE_REFUSALS = frozenset({SW.EMM_REPLAYED, SW.EMM_NOT_ADDRESSED, SW.EMM_EXPIRED,
                               SW.ECM_STALE, SW.KEY_INDEX_UNKNOWN,
                               SW.SECURITY_NOT_SATISFIED})


def error_for(sw: int, data: bytes = b"", *, command: str = "command") -> StatusWordError:
    """The typed error for a non-9000 status word answered to ``command``."""
    if sw & 0xFFF0 == SW_VERIFY_FAILED:
        return WrongPinError(sw, data)
    if sw == SW.PIN_BLOCKED:
        return PinBlockedError(sw, data)
    if sw in SW_REASON and command == "PROCESS ECM":
        return AccessDeniedError(sw, data)
    if sw in _MESSAGE_REFUSALS and command in ("PROCESS EMM", "PROCESS ECM"):
        return MessageRefusedError(sw, data, command=command.removeprefix("PROCESS "))
    if sw in SW_REASON:
        return AccessDeniedError(sw, data)
    return CardCommandError(sw, data, command=command)
