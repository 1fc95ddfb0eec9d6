"""Rate limits of the portal's guessable steps (logins, SMS codes, account look-up), counted
in the store (:mod:`cas.web.security`) per account or typed identifier and per client
address."""

from __future__ import annotations

import re

from cas.web.errors import RateLimited
from cas.web.portal.visit import Visit
from cas.web.security import throttle_count, throttle_retry_after
from cas.web.settings import RateLimit

Keys = list[tuple[str, RateLimit]]


def check(v: Visit, keys: Keys) -> None:
    """Refuse with 429 when any of ``keys`` is over its limit."""
    now_s = v.now_s
    with v.tenant.store.reader() as s:
        waits = [w for key, rule in keys
                 if (w := throttle_retry_after(s, key, rule, now_s)) is not None]
    if waits:
        raise RateLimited(max(waits))


def count(v: Visit, keys: Keys) -> None:
    """Count one attempt against each of ``keys``."""
    now_s = v.now_s
    with v.tenant.transaction() as s:
        for key, rule in keys:
            throttle_count(s, key, rule, now_s)


def login_keys(v: Visit, identifier: str, account_id: int | None) -> Keys:
    """Failed-login counters: one per account (whichever identifier named it: account number
    or phone), or per typed identifier when none matches; and one per client address."""
    settings = v.state.settings
    if account_id is not None:
        who = f"acct:{account_id}"
    else:
        who = "id:" + (re.sub(r"[\s()\-+]", "", identifier)[:64].lower() or "-")
    return [(f"login:{who}", settings.login_per_account),
            (f"login:ip:{v.ip}", settings.login_per_ip)]


def sms_send_keys(v: Visit, account_id: int | None) -> Keys:
    settings = v.state.settings
    return [(f"sms:acct:{account_id}", settings.sms_per_account),
            (f"sms:ip:{v.ip}", settings.sms_per_ip)]


def code_keys(v: Visit, account_id: int) -> Keys:
    settings = v.state.settings
    return [(f"code:acct:{account_id}", settings.login_per_account),
            (f"code:ip:{v.ip}", settings.login_per_ip)]
