"""The subscriber's personal account ("личный кабинет"): server-rendered pages per operator
under ``/<operator>/``, in English and Russian, with each seed operator's self-care flows
(DESIGN §6): login by account number or phone with a password or an SMS code, balance and
payment history, payment by card number with a payment-card denomination (ATV+), package
switch with the 30-day rule explained (ATV+), renewal off/on (TV+), suspension and promised
payment (NTV Plus, MTS), promo codes confirmed by SMS (TV+), subscriptions with dates, days
left and "extend" (Uzonline), the account number from Chip ID + card number (MTS), and "why
is my channel locked" with the same explanation as ``cas why``.

One router per flow, included below.  What every handler shares is a dependency declared
once in :mod:`cas.web.portal.deps` (the visit, the CSRF check, the logged-in subscriber);
"login required" is an exception answered by :func:`on_login_required`, which the app
registers.  A handler calls one domain function (:mod:`cas.billing`) in one transaction
together with its audit row (:mod:`cas.web.portal.actions`), and redirects (POST → 303 →
GET) with a one-shot signed "flash" message.  Pages never say whether someone else's account
or card exists: a card that is not yours reads exactly like a card that does not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from cas.web.portal import (
    account,
    home,
    login,
    lookup,
    notifications,
    packages,
    password,
    pay,
    promo,
    verify,
    why,
)
from cas.web.portal.deps import LoginRequired, on_login_required, scan_form
from cas.web.portal.pages import error_page, error_text, redirect, render
from cas.web.portal.visit import CSRF_COOKIE, FLASH_COOKIE, Visit, session_cookie_name

router = APIRouter(include_in_schema=False, dependencies=[Depends(scan_form)])
for _flow in (home, login, account, pay, packages, verify, promo, why, lookup, password,
              notifications):
    router.include_router(_flow.router)

__all__ = [
    "CSRF_COOKIE", "FLASH_COOKIE", "LoginRequired", "Visit", "error_page", "error_text",
    "on_login_required", "redirect", "render", "router", "session_cookie_name",
]
