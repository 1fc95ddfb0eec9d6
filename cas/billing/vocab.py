"""The fixed vocabularies of the subscriber rules (DESIGN §6).

Each member's value is the string the store keeps (``subscriptions.status``,
``payments.by_kind``, ``ledger.kind``), so rows written before these enums existed read the
same and no migration is needed: a ``StrEnum`` compares equal to its stored string.
"""

from __future__ import annotations

from enum import StrEnum


class PayerKind(StrEnum):
    """What a payer's reference names (NTV Plus, ATV+, MTS seeds: pay by card, contract or
    account number)."""

    CARD = "card"
    CONTRACT = "contract"
    ACCOUNT = "account"


class SubscriptionStatus(StrEnum):
    """A subscription's state: ``pending`` (chosen, waiting for money), ``active``,
    ``blocked`` (renewal due but unpaid), ``expired`` (renewal off or no base package),
    ``closed`` (replaced by another choice or a switch)."""

    PENDING = "pending"
    ACTIVE = "active"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    CLOSED = "closed"


#: Subscription states whose window is part of the card's rights.
WINDOW_STATES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.BLOCKED,
                 SubscriptionStatus.EXPIRED)
#: Subscription states that are not closed (the account's current choices).
OPEN_STATES = (SubscriptionStatus.PENDING, *WINDOW_STATES)


class LedgerKind(StrEnum):
    """Why a ledger row changed the balance."""

    PAYMENT = "payment"
    CHARGE = "charge"
    ADJUSTMENT = "adjustment"
    UNUSED_CREDIT = "unused_credit"
    PROMISED_CREDIT = "promised_credit"
    PROMISED_REPAYMENT = "promised_repayment"
    PROMISED_WRITEOFF = "promised_writeoff"


__all__ = ["OPEN_STATES", "WINDOW_STATES", "LedgerKind", "PayerKind", "SubscriptionStatus"]
