"""The box's on-screen display: the card's mailbox on screen, and the fingerprint order.

docs/osd.md §1-§2.  After every EMM the card applied the box asks the card for the message
to show (GET DATA 20).  Nothing on screen: it is shown.  A message of higher priority than the
one on screen preempts it (the preempted one was not acknowledged, so the card hands it out
again later).  At the end of the pass the message on screen has been seen: the box
acknowledges it (ACK OSD) and shows the next, until the mailbox is empty.  So every message
is shown, in priority order, and acknowledged once; a message for another card never
reaches this card's mailbox (its EMM is not addressed to it).  Live, a message is also
acknowledged when its display time is over (:meth:`OsdScreen.tick`), and each event is
announced as a JSON line as it happens.

The fingerprint order (GET DATA 21) is read at the end of the pass; :func:`shows_for_clip`
maps its window (card time) onto the clip's time for :mod:`firmware_stub.fingerprint`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cas.errors import CardError, FormatError
from cas.formats.emm import Fingerprint, OsdMail
from firmware_stub.fingerprint import FingerprintShow

#: Messages shown at most per pass (a card that keeps handing out the same one is broken).
MAX_MESSAGES_PER_PASS = 64


@runtime_checkable
class OsdCard(Protocol):
    """What the OSD needs of :class:`cas.card.client.CardClient`."""

    def osd_mail(self) -> OsdMail | None: ...

    def ack_osd(self, message_id: int) -> None: ...

    def fingerprint(self) -> Fingerprint | None: ...


class OsdEventKind(StrEnum):
    SHOWN = "osd_shown"
    PREEMPTED = "osd_preempted"
    ACKNOWLEDGED = "osd_acknowledged"


@dataclass(frozen=True, slots=True, kw_only=True)
class OsdEvent:
    """One thing the screen did with a message."""

    kind: OsdEventKind
    message_id: int
    priority: int
    duration_s: int
    text: str

    def to_json(self) -> dict[str, object]:
        return {"event": self.kind.value, "message_id": self.message_id,
                "priority": self.priority, "duration_s": self.duration_s, "text": self.text}


@dataclass(slots=True)
class OsdScreen:
    """The box's OSD plane for one pass.  ``clock`` (seconds, monotonic) and ``on_event``
    are for live mode: a message is acknowledged when its display time is over
    (:meth:`tick`), and every event is announced as it happens."""

    card: OsdCard | None
    events: list[OsdEvent] = field(default_factory=list)
    current: OsdMail | None = None
    error: str | None = None
    clock: Callable[[], float] | None = None
    on_event: Callable[[OsdEvent], None] | None = None
    shown_at: float = 0.0

    def _event(self, kind: OsdEventKind, mail: OsdMail) -> None:
        event = OsdEvent(kind=kind, message_id=mail.message_id, priority=mail.priority,
                         duration_s=mail.duration_s, text=mail.text)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _show(self, mail: OsdMail) -> None:
        self.current = mail
        self.shown_at = self.clock() if self.clock is not None else 0.0
        self._event(OsdEventKind.SHOWN, mail)

    def _next(self) -> OsdMail | None:
        if self.card is None or self.error is not None:
            return None
        try:
            return self.card.osd_mail()
        except (CardError, FormatError) as exc:
            self.error = f"mailbox unreadable: {exc}"
            return None

    def poll(self) -> None:
        """After an applied EMM: show a new message, or let a higher priority one preempt."""
        mail = self._next()
        if mail is None:
            return
        cur = self.current
        if cur is None:
            self._show(mail)
        elif mail.message_id != cur.message_id and mail.priority > cur.priority:
            self._event(OsdEventKind.PREEMPTED, cur)
            self._show(mail)

    def _acknowledge(self) -> bool:
        """The message on screen has been seen: tell the card; False if it refused."""
        cur = self.current
        assert cur is not None and self.card is not None
        try:
            self.card.ack_osd(cur.message_id)
        except (CardError, FormatError) as exc:
            self.error = f"acknowledgement refused: {exc}"
            return False
        self._event(OsdEventKind.ACKNOWLEDGED, cur)
        self.current = None
        return True

    def tick(self) -> None:
        """Live mode, now and then: the message on screen whose display time is over is
        acknowledged and the next one shown."""
        cur = self.current
        if (cur is not None and self.clock is not None
                and self.clock() - self.shown_at >= cur.duration_s and self._acknowledge()):
            self.poll()

    def finish(self) -> None:
        """End of the pass: acknowledge what is on screen, show the rest in turn."""
        for _ in range(MAX_MESSAGES_PER_PASS):
            if self.current is None:
                self.poll()
                if self.current is None:
                    return
            if not self._acknowledge():
                return

    @property
    def shown(self) -> list[OsdEvent]:
        """The messages acknowledged (seen to their end), in the order they were."""
        return [e for e in self.events if e.kind is OsdEventKind.ACKNOWLEDGED]

    def fingerprint(self) -> Fingerprint | None:
        if self.card is None or self.error is not None:
            return None
        try:
            return self.card.fingerprint()
        except (CardError, FormatError):
            return None

    def to_json(self) -> dict[str, object]:
        return {"events": [e.to_json() for e in self.events],
                "shown": [e.message_id for e in self.shown], "error": self.error}


def shows_for_clip(order: Fingerprint, serial: int, *, clip_start_s: int | None,
                   clip_length_s: float) -> list[FingerprintShow]:
    """The fingerprint window on the clip's time axis (0 = the clip's first frame), or
    nothing when the order is not on air during the clip.  ``clip_start_s``: the card time
    (ECM time) of the clip's start; an order with start 0 is on air from the clip's start."""
    if order.start_s == 0 or clip_start_s is None:
        start = 0.0
    else:
        start = float(order.start_s - clip_start_s)
    end = start + order.duration_s
    if end <= 0 or start >= clip_length_s:
        return []
    return [FingerprintShow(kind=order.kind, serial=serial, start_s=max(0.0, start),
                            end_s=min(end, clip_length_s), x_pct=order.x_pct,
                            y_pct=order.y_pct)]
