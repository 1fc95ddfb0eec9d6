"""The card's OSD mailbox: on-screen messages waiting for the box, and the fingerprint order.

docs/osd.md §1-§2.  An EMM's :class:`~cas.formats.emm.OsdMail` and
:class:`~cas.formats.emm.Fingerprint` commands land here once the EMM is applied.  The box
asks for the next message (GET DATA 20: the highest priority one whose start time has come,
by the card's clock), shows it, and acknowledges it (ACK OSD, ``80 60 00 00`` + id): an
acknowledged id is remembered and never handed out again, so a message is shown once even
when its EMM is repeated by the carousel.  GET DATA 21 gives the fingerprint order.

Like a Conax card's mail slot the mailbox is held in the card's RAM (it survives a reset and
a power cycle of the slot, not a restart of the card process): the EEPROM record keeps its
layout, and the text of the newest message still goes to its OSD area (GET DATA 06), so a
box that only knows GET DATA 06 still shows it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from cas.errors import FormatError
from cas.formats.emm import (
    EmmCommand,
    EmmTag,
    Fingerprint,
    OsdMail,
    build_emm_commands,
    parse_emm_commands,
)

#: Messages the mailbox holds; a new one beyond this pushes out the lowest priority one.
MAILBOX_SLOTS = 8
#: Acknowledged message ids remembered (a repeated EMM of an older id is ignored).
ACKED_MEMORY = 64


def mail_is_due(mail: OsdMail, now_s: int) -> bool:
    """Has the message's start time come (0: at once) and its display time not passed?"""
    if mail.start_s == 0:
        return True
    return mail.start_s <= now_s < mail.start_s + max(mail.duration_s, 1)


@dataclass(slots=True)
class Mailbox:
    """What the card keeps for the box's on-screen display."""

    messages: dict[int, OsdMail] = field(default_factory=dict)
    acked: deque[int] = field(default_factory=lambda: deque(maxlen=ACKED_MEMORY))
    fingerprint: Fingerprint | None = None

    def accept(self, commands: list[EmmCommand]) -> None:
        """Take the OSD commands of an applied EMM."""
        for c in commands:
            if isinstance(c, OsdMail):
                if c.message_id in self.acked:
                    continue
                self.messages[c.message_id] = c
                if len(self.messages) > MAILBOX_SLOTS:
                    worst = min(self.messages.values(),
                                key=lambda m: (m.priority, -m.message_id))
                    del self.messages[worst.message_id]
            elif isinstance(c, Fingerprint):
                self.fingerprint = c

    def next_mail(self, now_s: int) -> OsdMail | None:
        """The message to show now: highest priority first, then the older id."""
        due = [m for m in self.messages.values() if mail_is_due(m, now_s)]
        if not due:
            return None
        return min(due, key=lambda m: (-m.priority, m.message_id))

    def ack(self, message_id: int) -> bool:
        """The box showed ``message_id``; False if the mailbox does not hold it."""
        if self.messages.pop(message_id, None) is None:
            return False
        self.acked.append(message_id)
        return True


# --- GET DATA answers: the value layouts of the EMM commands (docs/osd.md §4) --------------
def build_mail_answer(mail: OsdMail | Fingerprint) -> bytes:
    """GET DATA 20 / 21: the command's TLV value."""
    return build_emm_commands([mail])[2:]


def _parse(tag: EmmTag, data: bytes) -> EmmCommand:
    if len(data) > 255:
        raise FormatError(f"{len(data)} bytes > 255", path=f"{tag.name.lower()}").with_id(
            "card.bytes", field=f"{tag.name.lower()}", n=len(data))
    return parse_emm_commands(bytes((tag, len(data))) + data)[0]


def parse_mail_answer(data: bytes) -> OsdMail:
    """The card's answer to GET DATA 20."""
    cmd = _parse(EmmTag.OSD_MAIL, data)
    assert isinstance(cmd, OsdMail)
    return cmd


def parse_fingerprint_answer(data: bytes) -> Fingerprint:
    """The card's answer to GET DATA 21."""
    cmd = _parse(EmmTag.FINGERPRINT, data)
    assert isinstance(cmd, Fingerprint)
    return cmd
