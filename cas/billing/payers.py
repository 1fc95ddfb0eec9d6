"""Who pays: a payer's reference (card, contract or account number) resolved to an account,
and the MTS lookup of an account number from a Chip ID and a card number.

Reads only; nothing here writes or commits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.vocab import PayerKind
from cas.errors import ValidationError
from cas.i18n import Msg
from cas.store.errors import RecordNotFound
from cas.store.models import Account, Box, Card
from cas.text import (
    control_character,
    control_refusal,
    foreign_number_refusal,
    parse_digits,
)


def card_serial(ref: str | int) -> int:
    """A card number as typed (ASCII digits, 1 to 4294967295), else ``BAD_SERIAL``."""
    text = str(ref).strip()
    serial = parse_digits(text, max_value=0xFFFF_FFFF)
    if not serial:
        shown = text if control_character(text) is None else "(with control characters)"
        raise ValidationError(f"card number {shown!r} is not a card number (1 to 4294967295 "
                              "in ASCII digits)", code="BAD_SERIAL").with_id(
            "billing.card_number_not_card", shown=f"{shown!r}")
    return serial


def find_account(session: Session, *, by: PayerKind | str, ref: str | int) -> Account:
    """Resolve a payer's reference: ``by`` is ``card`` (serial), ``contract`` or ``account``."""
    text = str(ref).strip()
    refusal = control_refusal(text, "a payer's reference")
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_TEXT").with_id(
            refusal.message_id, **refusal.params)
    refusal = foreign_number_refusal(text, f"{by} number")
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_SERIAL" if by == PayerKind.CARD else "BAD_NUMBER").with_id(
            refusal.message_id, **refusal.params)
    if by == PayerKind.CARD:
        serial = card_serial(text)
        card = session.get(Card, serial)
        if card is None:
            raise RecordNotFound(f"unknown card {serial:010d}", code="UNKNOWN_CARD").with_id(
                "unknown_card", card=f"{serial:010d}")
        if card.account_id is None:
            raise RecordNotFound(f"card {serial:010d} is not linked to an account",
                                 code="CARD_NOT_LINKED").with_id(
                                     "card_without_account", card=f"{serial:010d}")
        acc = session.get(Account, card.account_id)
    elif by == PayerKind.CONTRACT:
        acc = session.execute(select(Account).where(Account.contract_number == text)).scalar()
        if acc is None:
            raise RecordNotFound(f"unknown contract {text!r}", code="UNKNOWN_CONTRACT").with_id(
                "unknown_contract", ref=text)
    elif by == PayerKind.ACCOUNT:
        acc = session.execute(select(Account).where(Account.account_number == text)).scalar()
        if acc is None:
            raise RecordNotFound(f"unknown account {text!r}", code="UNKNOWN_ACCOUNT").with_id(
                "unknown_account", ref=text)
    else:
        raise ValidationError(f"pay by card, contract or account, not {by!r}", code="BAD_PAYER").with_id(
            "billing.pay_card_contract_account", by=f"{by!r}")
    assert acc is not None
    return acc


def account_id_of(session: Session, *, by: PayerKind | str, ref: str | int) -> int:
    """:func:`find_account`'s answer as an id, without loading the account for a card (the
    caller locks it next)."""
    if by == PayerKind.CARD:
        serial = parse_digits(str(ref).strip(), max_value=0xFFFF_FFFF)
        if serial:
            card = session.get(Card, serial)
            if card is not None and card.account_id is not None:
                return card.account_id
    return find_account(session, by=by, ref=ref).id


#: The order in which a bare reference is tried, and the kind recorded when several kinds
#: name the same account (docs/subscribers.md, "References").
REFERENCE_ORDER = (PayerKind.CONTRACT, PayerKind.CARD, PayerKind.ACCOUNT)


def resolve_reference(session: Session, ref: str | int, *,
                      kinds: tuple[str, ...] = REFERENCE_ORDER) -> tuple[PayerKind, Account]:
    """A bare reference (NTV Plus SMS: "ntvplus <card-or-contract-number> <amount>"; the CLI's
    REF) -> ``(kind, account)``.

    Every kind in ``kinds`` is tried.  NTV Plus contract numbers have 10 digits like card
    numbers, so one number can be both a contract and a card: if all the matches name the
    same account, the first kind of :data:`REFERENCE_ORDER` that matched is reported; if they
    name different accounts the reference is refused (``AMBIGUOUS_REFERENCE``, naming every
    match) — money is never booked on a guess."""
    text = str(ref).strip()
    found: list[tuple[PayerKind, Account]] = []
    for by in REFERENCE_ORDER:
        if by not in kinds:
            continue
        try:
            found.append((by, find_account(session, by=by, ref=text)))
        except (RecordNotFound, ValidationError):
            continue
    if not found:
        names = [k for k in (PayerKind.CARD, PayerKind.CONTRACT, PayerKind.ACCOUNT) if k in kinds]
        what = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        raise RecordNotFound(f"no {what} {text!r}", code="UNKNOWN_CARD_OR_CONTRACT").with_id(
            "no_payer", ref=text, kinds=[Msg(f"ticket.payer.{k}") for k in names])
    if len({acc.id for _by, acc in found}) > 1:
        named = " and ".join(f"{by} {_ref_text(by, text)} of account {acc.account_number}"
                             for by, acc in found)
        raise ValidationError(f"{text!r} is {named}: use the account number, or pay by card "
                              "or by contract explicitly", code="AMBIGUOUS_REFERENCE").with_id(
            "billing.account_number_pay_card", text=f"{text!r}",
            named=[Msg("errors.billing.payer_of_account", {"by": Msg(f"ticket.payer.{by}"),
                       "ref": _ref_text(by, text), "account": acc.account_number})
                   for by, acc in found])
    return found[0]


def _ref_text(by: str, text: str) -> str:
    return f"{int(text):010d}" if by == PayerKind.CARD else text


def find_account_any(session: Session, ref: str) -> Account:
    """A card number, contract number or account number — whichever matches (see
    :func:`resolve_reference`).  Two different accounts matching is an error, never a guess."""
    return resolve_reference(session, ref)[1]



def lookup_by_chip_and_card(session: Session, *, chip_id: int, card_serial: int) -> str:
    """MTS seed: find the personal account number from the box's Chip ID and the smart-card
    number.  Both must belong to the same account; any mismatch gives the same answer, so
    the lookup never tells whether someone else's card or box exists."""
    card = session.get(Card, card_serial) if isinstance(card_serial, int) else None
    box = session.get(Box, chip_id) if isinstance(chip_id, int) else None
    if card is not None and box is not None and card.account_id is not None and (
            box.account_id == card.account_id or card.paired_chip_id == box.chip_id):
        acc = session.get(Account, card.account_id)
        if acc is not None:
            return acc.account_number
    raise RecordNotFound("no account matches this Chip ID and card number",
                         code="NO_MATCH").with_id(
        "no_match")


__all__ = ["REFERENCE_ORDER", "account_id_of", "card_serial", "find_account",
           "find_account_any", "lookup_by_chip_and_card", "resolve_reference"]
