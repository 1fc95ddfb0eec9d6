"""The box's smart-card slot: what it asks the card, and what it makes of the answers.

The card is reached only through :class:`cas.card.client.CardClient` (APDUs over an
in-process or PC/SC transport; docs/architecture.md "Card access").  This module turns the
card's status words and transport failures into the box's vocabulary:

* PROCESS ECM: wrapped CWs, or a refusal whose ``98xx`` word names the lock reason
  (docs/architecture.md SW table, :data:`cas.card.sw.SW_REASON`), or a message the card
  could not use (bad MAC, wrong data, stale: the ECM was garbage — it is counted and the
  channel keeps its previous state), or a card fault (``CARD_ERROR``) or no card
  (``NO_CARD``).
* VERIFY PIN: accepted, wrong (``63Cx``: tries left), or blocked (``6983``).
* PROCESS EMM: applied, or refused with a status word (replayed, expired, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from cas.card.data import CardInfo, PairingInfo
from cas.card.sw import SW, SW_REASON, SW_VERIFY_FAILED, sw_name
from cas.crypto import Key
from cas.errors import (
    CardError,
    CasError,
    FormatError,
    NoCardError,
    StatusWordError,
    UsageError,
)
from cas.reasons import Reason
from cas.words import tries_left

#: Size of the card's PROCESS ECM answer: two CW slots wrapped with RFC 3394.
WRAPPED_CWS_LEN = 40

#: Words that mean "this message is no good" rather than "you may not watch": the ECM (or
#: EMM) was damaged, forged, replayed or not for this card.
MESSAGE_REJECTED = frozenset({
    SW.SECURITY_NOT_SATISFIED, SW.WRONG_DATA, SW.WRONG_LENGTH, SW.EMM_REPLAYED,
    SW.EMM_NOT_ADDRESSED, SW.EMM_EXPIRED, SW.ECM_STALE, SW.CONDITIONS_NOT_SATISFIED,
    SW.DATA_NOT_FOUND, SW.WRONG_P1P2, SW.INCORRECT_P1P2,
})

EMM_RESULTS = {
    SW.OK: "applied",
    SW.EMM_REPLAYED: "replayed",
    SW.EMM_NOT_ADDRESSED: "not_addressed",
    SW.EMM_EXPIRED: "expired",
    SW.SECURITY_NOT_SATISFIED: "bad_mac",
    SW.KEY_INDEX_UNKNOWN: "key_unknown",
    SW.WRONG_DATA: "wrong_data",
    SW.WRONG_LENGTH: "wrong_length",
}
_EMM_RESULT_BY_SW = {int(sw): text for sw, text in EMM_RESULTS.items()}


class CardClientLike(Protocol):
    """The part of :class:`cas.card.client.CardClient` the box uses."""

    def info(self) -> CardInfo: ...

    def pairing(self) -> PairingInfo | None: ...

    def process_emm(self, section: bytes) -> object: ...

    def process_ecm(self, section: bytes) -> bytes: ...

    def verify_pin(self, pin: str) -> object: ...


class EcmKind(StrEnum):
    CWS = "cws"  # the card returned wrapped control words
    DENIED = "denied"  # the card refused with a lock reason
    REJECTED = "rejected"  # the card could not use the message (garbage ECM)
    CARD_ERROR = "card_error"  # transport failure or a nonsense answer
    NO_CARD = "no_card"


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmAnswer:
    kind: EcmKind
    wrapped: bytes = b""
    reason: Reason | None = None
    sw: int | None = None
    detail: str = ""


class PinKind(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    BLOCKED = "blocked"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class PinAnswer:
    kind: PinKind
    tries_left: int | None = None
    detail: str = ""

    def text(self) -> str:
        if self.kind is PinKind.WRONG:
            return f"wrong PIN ({tries_left(self.tries_left or 0)})"
        if self.kind is PinKind.BLOCKED:
            return "PIN blocked"
        if self.kind is PinKind.ERROR:
            return f"PIN not checked: {self.detail}"
        return "PIN accepted"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmAnswer:
    sw: int
    result: str
    pairing_changed: bool = False


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class CardSlot:
    """The slot, with or without a card; never raises on what the card says."""

    def __init__(self, client: CardClientLike | None, *, reader: str | None = None,
                 error: str | None = None) -> None:
        self.client = client
        self.reader = reader
        #: set when the card could not be read at boot or failed later
        self.error = error
        self.info: CardInfo | None = None

    @property
    def present(self) -> bool:
        return self.client is not None

    @property
    def usable(self) -> bool:
        return self.client is not None and self.info is not None and self.error is None

    def read_info(self) -> CardInfo | None:
        """GET DATA 02 at boot; a failure leaves the slot in the ``CARD_ERROR`` state."""
        if self.client is None or (self.error is not None and self.info is None):
            return self.info
        try:
            self.info = self.client.info()
            self.error = None
        except NoCardError:
            self.client = None  # the reader is there, the card is not
            self.error = None
        except (CardError, FormatError) as exc:
            self.error = f"card info unreadable: {_error_text(exc)}"
        return self.info

    def read_pairing(self) -> PairingInfo | None:
        """GET DATA 05: the chip the card is paired with (``None``: not paired/unreadable)."""
        if not self.usable or self.client is None:
            return None
        try:
            return self.client.pairing()
        except (CardError, FormatError):
            return None

    def ecm(self, section: bytes) -> EcmAnswer:
        """PROCESS ECM, classified."""
        if self.client is None:
            return EcmAnswer(kind=EcmKind.NO_CARD, reason=Reason.NO_CARD, detail="no card")
        if self.error is not None:
            return EcmAnswer(kind=EcmKind.CARD_ERROR, reason=Reason.CARD_ERROR,
                             detail=self.error)
        try:
            wrapped = self.client.process_ecm(section)
        except StatusWordError as exc:
            reason = SW_REASON.get(exc.sw)
            if reason is not None:
                return EcmAnswer(kind=EcmKind.DENIED, reason=reason, sw=exc.sw,
                                 detail=f"card: SW {exc.sw:04X}")
            if exc.sw in MESSAGE_REJECTED:
                return EcmAnswer(kind=EcmKind.REJECTED, sw=exc.sw,
                                 detail=f"card rejected the ECM: {sw_name(exc.sw)}")
            return EcmAnswer(kind=EcmKind.CARD_ERROR, reason=Reason.CARD_ERROR, sw=exc.sw,
                             detail=f"unexpected status word {sw_name(exc.sw)}")
        except NoCardError as exc:
            return EcmAnswer(kind=EcmKind.NO_CARD, reason=Reason.NO_CARD,
                             detail=f"card removed: {_error_text(exc)}")
        except (CardError, FormatError) as exc:
            return EcmAnswer(kind=EcmKind.CARD_ERROR, reason=Reason.CARD_ERROR,
                             detail=f"card failed: {_error_text(exc)}")
        if len(wrapped) != WRAPPED_CWS_LEN:
            return EcmAnswer(kind=EcmKind.CARD_ERROR, reason=Reason.CARD_ERROR,
                             detail=f"card answered {len(wrapped)} bytes instead of wrapped CWs")
        return EcmAnswer(kind=EcmKind.CWS, wrapped=bytes(wrapped))

    def verify_pin(self, pin: str) -> PinAnswer:
        if self.client is None:
            return PinAnswer(kind=PinKind.ERROR, detail="no card")
        try:
            self.client.verify_pin(pin)
        except StatusWordError as exc:
            if exc.sw & 0xFFF0 == SW_VERIFY_FAILED:
                left = exc.sw & 0x0F
                if left == 0:
                    return PinAnswer(kind=PinKind.BLOCKED, tries_left=0)
                return PinAnswer(kind=PinKind.WRONG, tries_left=left)
            if exc.sw == SW.PIN_BLOCKED:
                return PinAnswer(kind=PinKind.BLOCKED, tries_left=0)
            return PinAnswer(kind=PinKind.ERROR, detail=sw_name(exc.sw))
        except CasError as exc:
            return PinAnswer(kind=PinKind.ERROR, detail=_error_text(exc))
        return PinAnswer(kind=PinKind.OK)

    def emm(self, section: bytes) -> EmmAnswer:
        """PROCESS EMM.  ``pairing_changed`` when the card reports new pairing data."""
        if self.client is None or self.error is not None:
            return EmmAnswer(sw=0, result="no_card")
        try:
            result = self.client.process_emm(section)
        except StatusWordError as exc:
            return EmmAnswer(sw=exc.sw, result=_EMM_RESULT_BY_SW.get(exc.sw, "refused"))
        except (CardError, FormatError) as exc:
            return EmmAnswer(sw=0, result=f"card_error: {_error_text(exc)}")
        pairing = getattr(result, "pairing", None)
        return EmmAnswer(sw=SW.OK, result="applied", pairing_changed=pairing is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class InsertedCard:
    """What :func:`insert_card` found: a client, or why there is none."""

    client: CardClientLike | None
    reader: str | None = None
    error: str | None = None  # the card is there but does not work (CARD_ERROR)
    note: str | None = None  # why there is no card (NO_CARD)


def insert_card(*, reader: str | None = None, image: Path | None = None,
                rom_key: Key | None = None, stack: ExitStack,
                trace: Callable[[str], None] | None = None,
                ecm_log: Path | None = None) -> InsertedCard:
    """Find the box's card: a PC/SC reader (by name or substring) or an in-process card
    from its EEPROM image.  No reader or no card is not an error (``NO_CARD``); a card
    that does not answer SELECT properly is ``CARD_ERROR``."""
    from cas.card.client import CardClient
    from cas.card.transport import ApduTracer, InProcessTransport

    if image is not None:
        from cas.card.service import open_applets

        if rom_key is None:
            raise UsageError("an in-process card needs its ROM key (--rom-key-file)").with_id(
                "in_process_needs_rom_key")
        applet = open_applets([image], rom_key, stack, ecm_log=ecm_log)[0]
        transport: Any = InProcessTransport(applet)
        stack.callback(transport.close)
        name = f"in-process:{image.name}"
    elif reader is not None:
        from cas.card.pcsc import PcscTransport

        try:
            transport = PcscTransport(reader)
        except NoCardError as exc:
            return InsertedCard(client=None, reader=reader, note=str(exc))
        except CardError as exc:  # no pcscd, no such reader: the box sees no card
            return InsertedCard(client=None, reader=reader, note=str(exc))
        stack.callback(transport.close)
        name = transport.reader
    else:
        return InsertedCard(client=None, note="no reader configured")
    if trace is not None:
        transport.add_observer(ApduTracer(trace))
    try:
        client = CardClient(transport)
    except NoCardError as exc:
        return InsertedCard(client=None, reader=name, note=str(exc))
    except (CardError, FormatError) as exc:
        return InsertedCard(client=_Unusable(), reader=name,
                            error=f"card does not answer SELECT: {_error_text(exc)}")
    return InsertedCard(client=client, reader=name)


class _Unusable:
    """A card that is physically there but cannot be talked to (the slot shows E05)."""

    def info(self) -> CardInfo:
        raise CardError("card unusable").with_id("box.card_unusable")

    def pairing(self) -> PairingInfo | None:
        raise CardError("card unusable").with_id("box.card_unusable")

    def process_emm(self, section: bytes) -> object:
        raise CardError("card unusable").with_id("box.card_unusable")

    def process_ecm(self, section: bytes) -> bytes:
        raise CardError("card unusable").with_id("box.card_unusable")

    def verify_pin(self, pin: str) -> object:
        raise CardError("card unusable").with_id("box.card_unusable")
