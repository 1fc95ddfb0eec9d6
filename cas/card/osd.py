"""The card's OSD mailbox: on-screen messages waiting for the box, and the fingerprint order.

docs/osd.md §1-§2.  An EMM's :class:`~cas.formats.emm.OsdMail` and
:class:`~cas.formats.emm.Fingerprint` commands land here once the EMM is applied.  The box
asks for the next message (GET DATA 20: the highest priority one whose start time has come,
by the card's clock), shows it, and acknowledges it (ACK OSD, ``80 60 00 00`` + id): an
acknowledged id is remembered and never handed out again, so a message is shown once even
when its EMM is repeated by the carousel.  GET DATA 21 gives the fingerprint order.

The mailbox is part of the card's EEPROM state area (:mod:`cas.formats.cardstate`), written
in the same atomic write as the EMM that brought a message or the ACK that removed it, so
messages, acknowledgements and the fingerprint order survive a reset, a power cycle and a
restart of the card process.  The text of the newest message also goes to the record's OSD
area (GET DATA 06), so a box that only knows GET DATA 06 still shows it.

Pure functions: state in, state out; the applet commits.
"""

from __future__ import annotations

import dataclasses

from cas.errors import FormatError
from cas.formats.cardstate import ACKED_MEMORY, MAILBOX_SLOTS, CardState
from cas.formats.emm import (
    EmmCommand,
    EmmTag,
    Fingerprint,
    OsdMail,
    build_emm_commands,
    parse_emm_commands,
)

__all__ = [
    "ACKED_MEMORY",
    "MAILBOX_SLOTS",
    "accept_osd",
    "ack_mail",
    "build_mail_answer",
    "mail_is_due",
    "next_mail",
    "parse_fingerprint_answer",
    "parse_mail_answer",
]


def mail_is_due(mail: OsdMail, now_s: int) -> bool:
    """Has the message's start time come (0: at once) and its display time not passed?"""
    if mail.start_s == 0:
        return True
    return mail.start_s <= now_s < mail.start_s + max(mail.duration_s, 1)


def accept_osd(state: CardState, commands: list[EmmCommand]) -> CardState:
    """The state after the OSD commands of an applied EMM (the same state when none)."""
    messages = {m.message_id: m for m in state.mails}
    fingerprint = state.fingerprint
    for c in commands:
        if isinstance(c, OsdMail):
            if c.message_id in state.acked:
                continue
            messages[c.message_id] = c
            if len(messages) > MAILBOX_SLOTS:
                worst = min(messages.values(), key=lambda m: (m.priority, -m.message_id))
                del messages[worst.message_id]
        elif isinstance(c, Fingerprint):
            fingerprint = c
    mails = tuple(messages.values())
    if mails == state.mails and fingerprint == state.fingerprint:
        return state
    return dataclasses.replace(state, mails=mails, fingerprint=fingerprint)


def next_mail(state: CardState, now_s: int) -> OsdMail | None:
    """The message to show now: highest priority first, then the older id."""
    due = [m for m in state.mails if mail_is_due(m, now_s)]
    if not due:
        return None
    return min(due, key=lambda m: (-m.priority, m.message_id))


def ack_mail(state: CardState, message_id: int) -> CardState | None:
    """The box showed ``message_id``: the state without it, its id remembered; None if the
    mailbox does not hold it."""
    if all(m.message_id != message_id for m in state.mails):
        return None
    return dataclasses.replace(
        state, mails=tuple(m for m in state.mails if m.message_id != message_id),
        acked=(*state.acked, message_id)[-ACKED_MEMORY:])


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
