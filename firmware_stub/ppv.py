"""The box's side of pay-per-view (docs/ppv.md): offer an impulse purchase and carry the
card's purchase report back to the head-end.

``stb buy``: the box tunes the stream, hands the EMMs it meets to the card (a purse top-up
may be among them) and, at each new ECM of the chosen channel, asks the card to buy the
event with that ECM and the purchase PIN (PPV BUY).  The card alone decides (PIN, purse,
event on air); the box only reports the answer.  An ECM whose event is not (yet) the one
asked for is passed over, so the purchase is made once the event is on air in the stream.

``stb ppv-report``: the box reads the card's signed purchase report (PPV REPORT) and writes
it to a file for upload (``cas ppv import-report`` or ``POST /api/v1/ppv/reports``).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cas.card.errors import AccessDeniedError, PinBlockedError, WrongPinError
from cas.card.ppv import PurseInfo
from cas.errors import CardError, StatusWordError, StreamError
from cas.reasons import Reason
from firmware_stub.demux import Demux
from firmware_stub.errors import TuneError
from firmware_stub.run import Source
from firmware_stub.tsreader import READ_SIZE


@runtime_checkable
class PpvCard(Protocol):
    """The part of :class:`cas.card.client.CardClient` PPV uses."""

    def ppv_buy(self, pin: str, event_id: int, ecm_section: bytes) -> PurseInfo: ...

    def ppv_report(self) -> bytes: ...

    def purse(self) -> PurseInfo: ...

    def process_emm(self, section: bytes) -> object: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BuyResult:
    """What ``stb buy`` did: ``reason`` OPEN when bought (or already held)."""

    channel: int
    event_id: int
    reason: Reason
    detail: str
    purse: PurseInfo | None = None

    @property
    def bought(self) -> bool:
        return self.reason is Reason.OPEN

    def to_json(self) -> dict[str, object]:
        return {"channel": self.channel, "event_id": self.event_id, "bought": self.bought,
                "reason": self.reason.value, "detail": self.detail,
                "purse": self.purse.to_json() if self.purse is not None else None}


class _Listener:
    def __init__(self, card: PpvCard, channel: int, event_id: int, pin: str) -> None:
        self.card, self.channel, self.event_id, self.pin = card, channel, event_id, pin
        self.demux: Demux | None = None
        self.result: BuyResult | None = None
        self.last_refusal: BuyResult | None = None
        self.ecms_seen = 0
        self._tried: set[bytes] = set()

    def on_lineup(self) -> None:
        pass

    def on_es(self, pid: int, packet: bytes, packet_index: int) -> None:
        pass

    def on_emm(self, pid: int, section: bytes, packet_index: int) -> None:
        with contextlib.suppress(StatusWordError):  # not for this card, replayed, ...
            self.card.process_emm(section)

    def on_ecm(self, pid: int, section: bytes, packet_index: int) -> None:
        if self.result is not None or self.demux is None:
            return
        demux = self.demux
        if section in self._tried or not any(
                sid == self.channel or demux.service(sid).channel == self.channel
                for sid in demux.services_for_ecm_pid(pid)):
            return
        self._tried.add(section)
        self.ecms_seen += 1
        try:
            purse = self.card.ppv_buy(self.pin, self.event_id, section)
        except AccessDeniedError as exc:
            refusal = BuyResult(channel=self.channel, event_id=self.event_id,
                                reason=exc.reason, detail=str(exc))
            if exc.reason is Reason.PPV_NOT_ON_AIR:
                self.last_refusal = refusal  # maybe the next ECM carries the event
                return
            self.result = refusal
            return
        except WrongPinError as exc:
            self.result = BuyResult(channel=self.channel, event_id=self.event_id,
                                    reason=Reason.PPV_PIN_WRONG,
                                    detail=f"wrong PIN ({exc.tries_left} tries left)")
            return
        except PinBlockedError:
            self.result = BuyResult(channel=self.channel, event_id=self.event_id,
                                    reason=Reason.PIN_BLOCKED, detail="PIN blocked")
            return
        except StatusWordError as exc:
            self.result = BuyResult(channel=self.channel, event_id=self.event_id,
                                    reason=Reason.CARD_ERROR, detail=str(exc))
            return
        self.result = BuyResult(channel=self.channel, event_id=self.event_id,
                                reason=Reason.OPEN,
                                detail=f"event {self.event_id} bought; purse "
                                       f"{purse.purse_tokens} tokens", purse=purse)


def ppv_card(card: object) -> PpvCard:
    if card is None:
        raise CardError("no card in the slot").with_id("box.no_card_slot")
    if not isinstance(card, PpvCard):
        raise CardError("this card cannot do pay-per-view").with_id("box.card_cannot_do_pay")
    return card


def buy(card: object, source: Source, *, channel: int, event_id: int, pin: str,
        ca_system_id: int) -> BuyResult:
    """Offer ``event_id`` on ``channel`` to the card with ``pin`` (module doc)."""
    listener = _Listener(ppv_card(card), channel, event_id, pin)
    demux = Demux(listener, ca_system_id=ca_system_id)
    listener.demux = demux
    stream = _open(source)
    try:
        while listener.result is None:
            chunk = stream.read(READ_SIZE)
            if not chunk:
                break
            demux.feed(chunk)
        demux.finish()
    finally:
        if isinstance(source, Path):
            stream.close()
    if listener.result is not None:
        return listener.result
    if listener.last_refusal is not None:
        return listener.last_refusal
    if not any(channel in (s.service_id, s.channel) for s in demux.services()):
        raise TuneError(f"channel {channel} is not in this stream's lineup").with_id(
            "box.channel_not_stream_lineup", channel=channel)
    return BuyResult(channel=channel, event_id=event_id, reason=Reason.NO_ECM,
                     detail="no ECM of this channel in the stream")


def _open(source: Source) -> io.BufferedIOBase | io.BytesIO:
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(bytes(source))
    if isinstance(source, Path):
        try:
            return source.open("rb")
        except OSError as exc:
            raise StreamError(f"cannot read {source}: {exc.strerror}").with_id(
                "box.cannot_read", source=source, strerror=exc.strerror) from exc
    return source  # type: ignore[return-value]


def read_report(card: object) -> bytes:
    """The card's signed purchase report (each read carries a new counter)."""
    return ppv_card(card).ppv_report()
