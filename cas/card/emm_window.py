"""Late command EMMs: the card's anti-replay window below its sequence counters (pure).

Like the anti-replay window of IPsec (RFC 4303 §3.4.3) and DTLS (RFC 6347 §4.1.2.6), the
card keeps, besides its counter per address type (the newest sequence number applied), what
it knows of the :data:`~cas.formats.cardstate.EMM_LATE_WINDOW` numbers below it: applied or
not.  So a command EMM whose datagram was lost while a newer EMM got through is applied
when it comes round again (docs/card.md, "Late command EMMs"; docs/live-ops.md).

Rules, in :meth:`cas.card.applet.Applet._process_emm`'s order (``# rule N`` below):

1. An EMM ahead of its type's counter by 1..``SEQ_WINDOW`` is applied as before; the window
   moves up to it, and the numbers it skipped are marked *not applied*.
2. An EMM behind the counter by 1..``EMM_LATE_WINDOW`` is *late*.  It is applied only when
   (a) the window knows that number as not applied, and (b) it carries command kinds only
   (:data:`LATE_COMMANDS`): no command that sets the card's rights state (entitlements,
   status, region, maturity, PIN, pairing, ECM keys, unknown commands), because an older
   rights EMM must never roll rights back.  Otherwise it is refused ``9811``, as is
   everything else behind the counter: the counter itself (a replay), a number applied,
   older than the window, or unknown (a window started on a card that had no window knows
   nothing below its old counter).
3. A late EMM's *settings* — ``SET_SHARING``, the credit limit of ``PURSE_CREDIT``, the
   record's last on-screen text (``OSD_MESSAGE``, ``OSD_MAIL``), the ``FINGERPRINT`` order —
   are skipped when a newer EMM of the same address type in the window set the same one:
   the newest wins, as if the EMMs had come in order.  The rest is applied: event rights,
   tokens, report acknowledgements, mailbox messages, ``CLEAR_SHARING``.
4. The number is marked applied, with the settings its EMM carried, in the same EEPROM
   write as the EMM's effects (all or nothing).  The PPV file's own marker (the last EMM
   whose PPV commands it applied) still keeps a lost record write from loading twice.
"""

from __future__ import annotations

import dataclasses

from cas.formats.cardstate import (
    EMM_LATE_WINDOW,
    MARK_UNKNOWN,
    CardState,
    EmmMark,
    EmmWindow,
)
from cas.formats.emm import (
    ClearSharing,
    EmmAddressType,
    EmmCommand,
    Fingerprint,
    OsdMail,
    OsdMessage,
    PpvEventRight,
    PpvReportAck,
    PurseCredit,
    SetSharing,
    seq_ahead,
)

#: Rule 2(b): the commands a late EMM may carry — one-shot commands, none of which sets the
#: card's rights state.
LATE_COMMANDS = (PpvEventRight, PurseCredit, PpvReportAck, OsdMessage, OsdMail, Fingerprint,
                 SetSharing, ClearSharing)

_SETTINGS: tuple[tuple[type, EmmMark], ...] = (
    (SetSharing, EmmMark.SHARING),
    (PurseCredit, EmmMark.CREDIT_LIMIT),
    (OsdMessage, EmmMark.OSD_TEXT),
    (OsdMail, EmmMark.OSD_TEXT),
    (Fingerprint, EmmMark.FINGERPRINT),
)


def window_for(state: CardState, kind: EmmAddressType, counter: int) -> EmmWindow:
    """The window of ``kind`` around the card's ``counter``.  None kept, or one kept for
    another counter (an image written before the windows, a counter set by personalisation):
    a fresh one that knows only that ``counter`` was passed (rule 2: nothing below it)."""
    window = state.emm_window(kind)
    if window is None or window.top_seq != counter or not window.marks:
        return EmmWindow(kind=kind, top_seq=counter, marks=(MARK_UNKNOWN,))
    return window


def is_late_command_emm(commands: list[EmmCommand]) -> bool:
    """Rule 2(b): every command is a command kind."""
    return all(isinstance(c, LATE_COMMANDS) for c in commands)


def late_position(window: EmmWindow, seq: int) -> int | None:
    """Rule 2(a): how far ``seq`` is behind the counter when the window knows it as not
    applied; None when it is not such a number (9811)."""
    behind = seq_ahead(window.top_seq, seq)
    if 1 <= behind <= EMM_LATE_WINDOW and behind < len(window.marks) and not window.marks[behind]:
        return behind
    return None


def marks_of(commands: list[EmmCommand]) -> EmmMark:
    """What to remember of an applied EMM: applied, and the settings it carried."""
    mark = EmmMark.APPLIED
    for c in commands:
        for kind, setting in _SETTINGS:
            if isinstance(c, kind):
                mark |= setting
    return mark


def superseded(window: EmmWindow, behind: int) -> EmmMark:
    """Rule 3: the settings newer EMMs of the window set (those of the late EMM ``behind``
    numbers below the counter are skipped)."""
    mark = EmmMark(0)
    for m in window.marks[:behind]:
        mark |= m
    return mark & ~EmmMark.APPLIED


def without_superseded(commands: list[EmmCommand], skip: EmmMark,
                       credit_limit_tokens: int) -> list[EmmCommand]:
    """Rule 3: a late EMM's commands without the settings in ``skip``.  A ``PURSE_CREDIT``
    keeps its tokens and takes the card's current ``credit_limit_tokens``; an ``OSD_MAIL``
    stays (the mailbox keeps it by id) — the caller keeps the record's text then."""
    out: list[EmmCommand] = []
    for c in commands:
        if isinstance(c, SetSharing) and EmmMark.SHARING in skip:
            continue
        if isinstance(c, OsdMessage) and EmmMark.OSD_TEXT in skip:
            continue
        if isinstance(c, Fingerprint) and EmmMark.FINGERPRINT in skip:
            continue
        if isinstance(c, PurseCredit) and EmmMark.CREDIT_LIMIT in skip:
            c = dataclasses.replace(c, credit_limit_tokens=credit_limit_tokens)
        out.append(c)
    return out


def advance(window: EmmWindow, seq: int, mark: EmmMark) -> EmmWindow:
    """Rule 1: the window after applying ``seq`` (newer than its counter): the numbers
    between were not applied."""
    gap = min(seq_ahead(seq, window.top_seq) - 1, EMM_LATE_WINDOW)
    marks = ((mark,) + (EmmMark(0),) * gap + window.marks)[:EMM_LATE_WINDOW + 1]
    return EmmWindow(kind=window.kind, top_seq=seq, marks=marks)


def mark_late(window: EmmWindow, behind: int, mark: EmmMark) -> EmmWindow:
    """Rule 4: the window after applying the late EMM ``behind`` numbers below the counter."""
    marks = (*window.marks[:behind], mark, *window.marks[behind + 1:])
    return dataclasses.replace(window, marks=marks)


def with_window(state: CardState, window: EmmWindow) -> CardState:
    """``state`` keeping ``window`` for its address type."""
    others = tuple(w for w in state.emm_windows if w.kind != window.kind)
    return dataclasses.replace(state, emm_windows=(*others, window))
