"""Pay-per-view on the card: the PPV file, its EMM commands, IPPV purchase and the report.

Rules in ``docs/ppv.md``; layouts in ``docs/formats.md`` §8 (:mod:`cas.formats.ppv`).

The PPV file lives beside the card record (``<image>.ppv``; in memory for a volatile card)
and is replaced atomically like the record (:func:`cas.card.eeprom.write_image_atomic`).

PPV BUY (``80 50 00 00``, data = PIN 4 digits || event_id u32 || the channel's current ECM)
checks, in this order (the applet's ``_ppv_buy`` follows it line for line):

1. data long enough (6700), the ECM parses (6A80);
2. the PIN is not blocked (6983);
3. the ECM opens under a key the card holds (9815) and authenticates (6982), is fresh (9814);
4. the ECM carries a PPV event with this event id that may be bought on the card, and the
   card's clock says it is on air (9823 PPV_NOT_ON_AIR, 9822 PPV_EVENT_ENDED once over);
5. the card is ACTIVE and in the event's region (its 98xx lock, as :func:`cas.access.decide`);
6. the PIN is right (63Cx, counting down the parental PIN's retry counter; 6983 at 0);
7. already bought or pre-booked: 9000, nothing debited (a second press costs nothing);
8. a free purchase record (6A84 until the head-end has acknowledged earlier reports);
9. the purse covers the price within the credit limit (9821 PURSE_EMPTY);
10. debit, record the purchase and the right, in one write of the PPV file.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

from cas.access import EventRight, PpvEvent
from cas.card.command import Refusal
from cas.card.eeprom import EepromError, write_image_atomic
from cas.card.sw import SW, SW_NOT_ENOUGH_MEMORY
from cas.crypto import Key
from cas.crypto.ppv import report_key, report_tag
from cas.errors import FormatError
from cas.formats.emm import EmmCommand, PpvEventRight, PpvReportAck, PurseCredit
from cas.formats.ppv import (
    PPV_PURCHASE_SLOTS,
    PPV_RIGHT_SLOTS,
    PpvState,
    Purchase,
    PurchaseReport,
    build_ppv_file,
    build_report,
    parse_ppv_file,
    report_clear_bytes,
    report_nonce,
)

#: The EMM commands this module applies (the rest go to :mod:`cas.card.emm_apply`).
PPV_COMMANDS = (PpvEventRight, PurseCredit, PpvReportAck)
#: Largest purse a card holds (the head-end never loads more).
MAX_PURSE_TOKENS = (1 << 31) - 1

_BUY_HEAD = struct.Struct(">4sI")


class PpvFile:
    """Where the applet keeps its :class:`PpvState`; ``path=None`` is a volatile card."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, sync: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.sync = sync
        self._state = self._load()

    @classmethod
    def beside(cls, image: Path | None, *, sync: bool = True) -> PpvFile:
        """The PPV file of the card whose record image is ``image``."""
        return cls(None if image is None else image.with_name(image.name + ".ppv"), sync=sync)

    def _load(self) -> PpvState:
        if self.path is None:
            return PpvState()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:  # a card personalised before PPV: an empty file
            return PpvState()
        except OSError as exc:
            raise EepromError(f"cannot read PPV file {self.path}: {exc.strerror}").with_id(
                "card.cannot_read_ppv_file", path=self.path, strerror=exc.strerror) from None
        try:
            return parse_ppv_file(data)
        except FormatError as exc:
            raise type(exc)(f"PPV file {self.path}: {exc}") from exc

    @property
    def state(self) -> PpvState:
        return self._state

    def commit(self, state: PpvState) -> None:
        """On disk first, then in memory (as :meth:`cas.card.eeprom.Eeprom.commit`)."""
        data = build_ppv_file(state)
        if self.path is not None:
            write_image_atomic(self.path, data, sync=self.sync)
        self._state = state


def split_commands(commands: list[EmmCommand]) -> tuple[list[EmmCommand], list[EmmCommand]]:
    """(PPV commands, the others) of one EMM."""
    ppv: list[EmmCommand] = [c for c in commands if isinstance(c, PPV_COMMANDS)]
    return ppv, [c for c in commands if not isinstance(c, PPV_COMMANDS)]


def _add_right(rights: list[EventRight], right: EventRight, now_s: int) -> list[EventRight]:
    rights = [r for r in rights if r.event_id != right.event_id]
    if len(rights) >= PPV_RIGHT_SLOTS:
        rights = [r for r in rights if r.end_s > now_s]  # forget events that are over
        if len(rights) >= PPV_RIGHT_SLOTS:
            raise Refusal(SW_NOT_ENOUGH_MEMORY)
    rights.append(right)
    return rights


def apply_ppv_commands(state: PpvState, commands: list[EmmCommand], now_s: int) -> PpvState:
    """The PPV file after the PPV commands of one authentic, fresh EMM (pure)."""
    rights = list(state.rights)
    purse, limit = state.purse_tokens, state.credit_limit_tokens
    purchases = list(state.purchases)
    for c in commands:
        if isinstance(c, PpvEventRight):
            rights = _add_right(rights, EventRight(event_id=c.event_id, channel_id=c.channel_id,
                                                   start_s=c.start_s, end_s=c.end_s), now_s)
        elif isinstance(c, PurseCredit):
            purse = min(purse + c.tokens, MAX_PURSE_TOKENS)
            limit = c.credit_limit_tokens
        elif isinstance(c, PpvReportAck):
            purchases = [p for p in purchases if p.purchase_seq > c.up_to_purchase_seq]
        else:
            raise Refusal(SW.WRONG_DATA)
    return dataclasses.replace(state, rights=tuple(rights), purse_tokens=purse,
                               credit_limit_tokens=limit, purchases=tuple(purchases))


def parse_buy_data(data: bytes) -> tuple[bytes, int, bytes]:
    """(PIN, event id, ECM section) of a PPV BUY command (6700 if too short)."""
    if len(data) <= _BUY_HEAD.size:
        raise Refusal(SW.WRONG_LENGTH)
    pin, event_id = _BUY_HEAD.unpack_from(data)
    return pin, event_id, bytes(data[_BUY_HEAD.size:])


def build_buy_data(pin: bytes, event_id: int, ecm_section: bytes) -> bytes:
    return _BUY_HEAD.pack(pin, event_id) + ecm_section


def event_on_air(event: PpvEvent | None, event_id: int, now_s: int) -> PpvEvent:
    """Step 4: the event the ECM carries, if it is ``event_id``, buyable and on air."""
    if event is None or event.event_id != event_id or not event.impulse:
        raise Refusal(SW.PPV_NOT_ON_AIR)
    if now_s >= event.end_s:
        raise Refusal(SW.PPV_EVENT_ENDED)
    if now_s < event.start_s:
        raise Refusal(SW.PPV_NOT_ON_AIR)
    return event


def purchase(state: PpvState, event: PpvEvent, channel_id: int, now_s: int) -> PpvState | None:
    """Steps 7–10: the PPV file after buying ``event``, or ``None`` when the card already has
    the right (nothing to write)."""
    if any(r.event_id == event.event_id for r in state.rights):
        return None
    if len(state.purchases) >= PPV_PURCHASE_SLOTS:
        raise Refusal(SW_NOT_ENOUGH_MEMORY)
    if state.spendable_tokens() < event.price_tokens:
        raise Refusal(SW.PURSE_EMPTY)
    seq = state.next_purchase_seq
    record = Purchase(purchase_seq=seq, event_id=event.event_id, channel_id=channel_id,
                      price_tokens=event.price_tokens, bought_s=now_s)
    right = EventRight(event_id=event.event_id, channel_id=channel_id, start_s=event.start_s,
                       end_s=event.end_s, impulse=True)
    return dataclasses.replace(
        state, purse_tokens=state.purse_tokens - event.price_tokens,
        next_purchase_seq=(seq + 1) & 0xFFFFFFFF,
        rights=tuple(_add_right(list(state.rights), right, now_s)),
        purchases=(*state.purchases, record))


def next_report(state: PpvState, serial: int, cuk: Key) -> tuple[PpvState, bytes]:
    """The PPV file with its report counter moved on, and the report to answer with.

    Every read gives a new counter (monotonic, never reused: it is also the tag's nonce);
    the records stay until a PPV_REPORT_ACK EMM clears them, so a report lost on the way is
    repeated in the next one and the head-end bills each purchase once by its sequence."""
    counter = state.report_counter + 1
    if counter > 0xFFFFFFFF:
        raise Refusal(SW.CONDITIONS_NOT_SATISFIED)
    report = PurchaseReport(serial=serial, report_counter=counter,
                            purse_tokens=state.purse_tokens,
                            credit_limit_tokens=state.credit_limit_tokens,
                            purchases=state.purchases)
    clear = report_clear_bytes(report)
    tag = report_tag(report_key(cuk), report_nonce(counter), clear)
    return (dataclasses.replace(state, report_counter=counter),
            build_report(dataclasses.replace(report, tag=tag)))


PURSE_INFO = struct.Struct(">iIIBBI")


def build_purse_info(state: PpvState) -> bytes:
    """GET DATA tag 10: purse i32, credit limit u32, report counter u32, purchases u8,
    rights u8, next purchase seq u32."""
    return PURSE_INFO.pack(state.purse_tokens, state.credit_limit_tokens, state.report_counter,
                           len(state.purchases), len(state.rights), state.next_purchase_seq)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PurseInfo:
    """GET DATA tag 10 as the host reads it."""

    purse_tokens: int
    credit_limit_tokens: int
    report_counter: int
    purchases: int
    rights: int
    next_purchase_seq: int

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def parse_purse_info(data: bytes) -> PurseInfo:
    if len(data) != PURSE_INFO.size:
        raise FormatError(f"purse info is {PURSE_INFO.size} bytes, got {len(data)}",
                          path="purse").with_id(
            "card.purse_purse_info_bytes", size=PURSE_INFO.size, n=len(data))
    purse, limit, counter, purchases, rights, seq = PURSE_INFO.unpack(data)
    return PurseInfo(purse_tokens=purse, credit_limit_tokens=limit, report_counter=counter,
                     purchases=purchases, rights=rights, next_purchase_seq=seq)
