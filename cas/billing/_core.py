"""Old path of the shared subscriber machinery, kept so code written against it (branches
merged later) still imports.  New code imports the modules that own each name:
:mod:`cas.billing.txn`, :mod:`cas.billing.ledger`, :mod:`cas.billing.renewals`,
:mod:`cas.billing.events`, :mod:`cas.billing.verification`, :mod:`cas.billing.vocab`.
"""

from __future__ import annotations

from cas.billing.events import ClockEvent, run_account_until
from cas.billing.ledger import can_afford, floor_minor, is_suspended, notify, post, touch_rights
from cas.billing.renewals import (
    activate,
    base_of,
    next_price,
    open_subscriptions,
    renew,
    settle,
    update_block,
)
from cas.billing.txn import (
    DAY_S,
    PROFILE_KEY,
    PROFILE_TOML_KEY,
    account_by_number,
    atomic,
    current_profile,
    forget_profile,
    lock_account,
)
from cas.billing.verification import hash_code
from cas.billing.vocab import OPEN_STATES, WINDOW_STATES

__all__ = [
    "DAY_S", "OPEN_STATES", "PROFILE_KEY", "PROFILE_TOML_KEY", "WINDOW_STATES", "ClockEvent",
    "account_by_number", "activate", "atomic", "base_of", "can_afford", "current_profile",
    "floor_minor", "forget_profile", "hash_code", "is_suspended", "lock_account", "next_price",
    "notify", "open_subscriptions", "post", "renew", "run_account_until", "settle",
    "touch_rights", "update_block",
]
