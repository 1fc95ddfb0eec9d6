"""Former home of the domain functions the web layer used; they now live where they belong
and are re-exported here under their old names for existing importers (``cas serve apikey``,
benchmarks, tests):

* EMM queue status — :mod:`cas.billing.emm_queue`;
* payment look-up by id — :mod:`cas.billing.records`;
* login identifiers, own cards, SMS codes — :mod:`cas.billing.selfcare`;
* portal passwords and API keys (the web layer's own tables) — :mod:`cas.web.credentials`.
"""

from __future__ import annotations

from cas.billing.emm_queue import (
    CardEmmQueue,
    EmmQueueSummary,
    RightsChangeView,
    card_emm_queue,
    emm_queue_summary,
)
from cas.billing.records import PaymentView, get_payment
from cas.billing.selfcare import account_for_login, owns_card, send_sms_code
from cas.web.credentials import (
    ApiKeyView,
    create_api_key,
    list_api_keys,
    password_hash_of,
    revoke_api_key,
    set_portal_password,
)

__all__ = [
    "ApiKeyView", "CardEmmQueue", "EmmQueueSummary", "PaymentView", "RightsChangeView",
    "account_for_login", "card_emm_queue", "create_api_key", "emm_queue_summary",
    "get_payment", "list_api_keys", "owns_card", "password_hash_of", "revoke_api_key",
    "send_sms_code", "set_portal_password",
]
