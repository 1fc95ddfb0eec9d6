"""The account page and payment history, and the actions offered there: renewal off/on
(TV+), suspension and resumption (NTV Plus, MTS), promised payment (NTV Plus), "+ extend"
(Uzonline)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.clock import clock_now
from cas.billing.records import current_profile
from cas.billing.selfcare import parse_day
from cas.billing.statement import ledger_text
from cas.i18n import Translator
from cas.web.portal.actions import run_action
from cas.web.portal.deps import CheckedVisit, LoggedIn, PortalVisit
from cas.web.portal.pages import render

router = APIRouter()


@router.get("/{op}/account", response_class=HTMLResponse)
def account_page(v: PortalVisit, user: LoggedIn) -> Response:
    number = user.account_number
    with v.tenant.store.reader() as s:
        now = clock_now(s)
        profile = current_profile(s)
        account = acc_mod.get_account(s, number)
        bal = service.balance(s, account_number=number)
        subs = service.subscriptions(s, account_number=number, at=now)
        cards = acc_mod.list_cards(s, account_number=number)
    money = profile.money_in(v.t.lang)
    # "+ Extend" pays the next period from the balance (plus a postpaid credit line): when
    # that does not cover it, the page says what is missing next to the button.
    spendable = bal.balance_minor + (profile.postpaid_credit_limit_minor
                                     if account.kind == "postpaid" else 0)
    short = {x.package_code: v.t("packages.short", price=money(x.next_price_minor),
                                 balance=money(bal.balance_minor),
                                 missing=money(x.next_price_minor - spendable))
             for x in subs if x.status == "active" and x.next_price_minor > spendable}
    return render(v, "account.html", account=account, balance=bal, subs=subs, cards=cards,
                  profile=profile, now=now, money=money, short=short,
                  suspension=profile.suspension, promised=profile.promised_payment)


@router.get("/{op}/payments", response_class=HTMLResponse)
def payments_page(v: PortalVisit, user: LoggedIn) -> Response:
    with v.tenant.store.reader() as s:
        profile = current_profile(s)
        stmt = service.statement(s, account_number=user.account_number)
    # The store keeps the billing rules' English descriptions; the statement's own reading
    # of them (shared with `cas statement` and the support ticket) puts them in the language.
    words = Translator(v.t.lang)
    return render(v, "payments.html", statement=stmt, money=profile.money_in(v.t.lang),
                  describe=lambda text: ledger_text(text, words))


@router.post("/{op}/renewal", response_class=HTMLResponse)
def renewal(v: CheckedVisit, user: LoggedIn, package: Annotated[str, Form()] = "",
            on: Annotated[str, Form()] = "") -> Response:
    """TV+: switch auto-renewal off and back on without losing prepaid days."""
    turn_on = on == "1"

    def fn(s: Session, at: datetime) -> str:
        service.set_renewal(s, account_number=user.account_number, on=turn_on, at=at,
                            package=package or None)
        return v.t("renewal.on_done" if turn_on else "renewal.off_done")
    return run_action(v, user, "renewal.on" if turn_on else "renewal.off",
                      f"/{v.op}/account", fn, {"package": package, "on": turn_on})


@router.post("/{op}/suspend", response_class=HTMLResponse)
def suspend(v: CheckedVisit, user: LoggedIn, until: Annotated[str, Form()] = "") -> Response:
    """NTV Plus / MTS: suspend the service for a holiday (until a date, or the longest
    allowed)."""
    def fn(s: Session, at: datetime) -> str:
        until_dt = parse_day(until) if until.strip() else None
        view = service.suspend(s, account_number=user.account_number, at=at, until=until_dt)
        return v.t("suspend.done", until=v.t.date(view.suspended_until))
    return run_action(v, user, "suspension.start", f"/{v.op}/account", fn, {"until": until})


@router.post("/{op}/resume", response_class=HTMLResponse)
def resume(v: CheckedVisit, user: LoggedIn) -> Response:
    def fn(s: Session, at: datetime) -> str:
        service.resume(s, account_number=user.account_number, at=at)
        return v.t("resume.done")
    return run_action(v, user, "suspension.end", f"/{v.op}/account", fn)


@router.post("/{op}/promise", response_class=HTMLResponse)
def promise(v: CheckedVisit, user: LoggedIn) -> Response:
    """NTV Plus "Promised Payment"."""
    def fn(s: Session, at: datetime) -> str:
        view = service.promise(s, account_number=user.account_number, at=at)
        profile = current_profile(s)
        return v.t("promise.done", amount=profile.money(view.promised_minor, v.t.lang),
                   due=v.t.date(view.promised_due))
    return run_action(v, user, "promise.take", f"/{v.op}/account", fn)


@router.post("/{op}/extend", response_class=HTMLResponse)
def extend(v: CheckedVisit, user: LoggedIn, package: Annotated[str, Form()] = "") -> Response:
    """Uzonline "+ Продлить": prepay one more period."""
    def fn(s: Session, at: datetime) -> str:
        view = service.extend(s, account_number=user.account_number, package=package, at=at)
        return v.t("extend.done", package=view.package_name, end=v.t.date(view.end),
                   days=view.days_left)
    return run_action(v, user, "subscription.extend", f"/{v.op}/account", fn,
                      {"package": package})
