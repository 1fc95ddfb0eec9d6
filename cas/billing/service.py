"""The subscriber rules of DESIGN §6 as plain domain functions — one entry point over the
rule families, each in its own module:

* :mod:`cas.billing.payers` — a payer's reference resolved to an account;
* :mod:`cas.billing.payments` — top-ups, SMS payments, adjustments;
* :mod:`cas.billing.packages` — subscribe, switch, extend, renewal on/off;
* :mod:`cas.billing.holds` — temporary suspension and the promised payment;
* :mod:`cas.billing.promo` — promo codes;
* :mod:`cas.billing.statement` — the statement, the balance, amounts as text.

Every function takes a SQLAlchemy :class:`~sqlalchemy.orm.Session`, keyword arguments and an
explicit time ``at`` (timezone-aware UTC); reads every rule from the store's operator profile;
raises only our typed errors (``ValidationError``, ``RecordNotFound``/``NotFoundError``,
``RecordConflict``/``ConflictError``, ``BillingError`` — each with a stable ``code``); and
runs inside a SAVEPOINT, so a refused operation writes nothing.  None of them commits: wrap
calls in :meth:`cas.store.engine.Store.transaction`.

Before acting on an account, each function processes that account's events due by ``at``
(renewals, reminders, promise expiry, end of suspension: :mod:`cas.billing.events`), so the
result never depends on whether someone advanced the clock first.
"""

from __future__ import annotations

from cas.billing.holds import promise, resume, suspend
from cas.billing.ledger import can_afford
from cas.billing.packages import (
    SubscriptionView,
    SwitchResult,
    extend,
    set_renewal,
    subscribe,
    subscriptions,
    switch_package,
)
from cas.billing.payers import (
    REFERENCE_ORDER,
    card_serial,
    find_account,
    find_account_any,
    lookup_by_chip_and_card,
    resolve_reference,
)
from cas.billing.payments import (
    PAYMENT_METHODS,
    PaymentResult,
    adjust_balance,
    parse_sms,
    pay,
    pay_by_sms,
)
from cas.billing.promo import redeem_promo
from cas.billing.statement import (
    BalanceView,
    Statement,
    StatementLine,
    balance,
    money_text,
    statement,
)
from cas.billing.vocab import WINDOW_STATES

__all__ = [
    "PAYMENT_METHODS", "REFERENCE_ORDER", "WINDOW_STATES", "BalanceView", "PaymentResult", "Statement",
    "StatementLine", "SubscriptionView", "SwitchResult", "adjust_balance", "balance",
    "can_afford", "card_serial", "extend", "find_account", "find_account_any",
    "lookup_by_chip_and_card", "money_text", "parse_sms", "pay", "pay_by_sms", "promise",
    "redeem_promo", "resolve_reference", "resume",
    "set_renewal", "statement", "subscribe", "subscriptions", "suspend", "switch_package",
]
