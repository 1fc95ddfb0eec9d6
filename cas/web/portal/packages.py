"""Packages: the catalog with the subscriber's subscriptions, the base-package switch (ATV+:
refused within 30 days of the last one, with the rule and the dates shown) and subscribing
(Uzonline: confirmed by the SMS code of this session)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cas.billing import service
from cas.billing.catalog import channel_counts, list_packages
from cas.billing.clock import clock_now
from cas.billing.records import current_profile
from cas.billing.selfcare import account_switch_lock
from cas.errors import CasError
from cas.web.portal.actions import run_action
from cas.web.portal.deps import CheckedVisit, LoggedIn, PortalVisit
from cas.web.portal.pages import render
from cas.web.portal.visit import Visit

router = APIRouter()


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRow:
    """A catalog package as the pages show it (plain values: ORM rows do not outlive their
    session)."""

    id: int
    code: str
    name: str
    kind: str
    price_minor: int
    period_days: int


def package_rows(s: Session) -> list[PackageRow]:
    return [PackageRow(id=p.id, code=p.code, name=p.name, kind=p.kind, price_minor=p.price_minor,
                       period_days=p.period_days) for p in list_packages(s)]


def switch_lock_text(v: Visit, s: Session, exc: CasError) -> str | None:
    """ATV+: "a repeated package switch is possible no earlier than 30 days after the last
    one" — said with the dates of this account."""
    if getattr(exc, "code", None) != "SWITCH_LOCKED" or v.user is None \
            or v.user.account_id is None:
        return None
    lock = account_switch_lock(s, v.user.account_id)
    if lock is None:
        return None
    return v.t("switch.locked", days=lock.days, last=v.t.date(lock.last),
               next=v.t.date(lock.next_free))


@router.get("/{op}/packages", response_class=HTMLResponse)
def packages_page(v: PortalVisit, user: LoggedIn) -> Response:
    with v.tenant.store.reader() as s:
        now = clock_now(s)
        profile = current_profile(s)
        pkgs = package_rows(s)
        counts = channel_counts(s, [p.id for p in pkgs])
        subs = service.subscriptions(s, account_number=user.account_number, at=now)
        lock = account_switch_lock(s, user.account_id)
    base = next((x for x in subs if x.kind == "base"), None)
    next_switch = lock.next_free if lock is not None and profile.switch_lock_days else None
    return render(v, "packages.html", packages=pkgs, counts=counts, subs=subs, base=base,
                  profile=profile, next_switch=next_switch, money=profile.money)


@router.post("/{op}/packages/switch", response_class=HTMLResponse)
def switch(v: CheckedVisit, user: LoggedIn, package: Annotated[str, Form()] = "") -> Response:
    """ATV+: switch the base package; refused within 30 days of the last switch, with the rule
    and the dates shown."""
    def fn(s: Session, at: datetime) -> str:
        res = service.switch_package(s, account_number=user.account_number, package=package,
                                     at=at)
        profile = current_profile(s)
        return v.t("switch.done", package=res.to_package, days=res.unused_days,
                   credit=profile.money(res.credited_minor),
                   balance=profile.money(res.balance_minor))

    def on_error(s: Session, exc: CasError) -> str:
        return switch_lock_text(v, s, exc) or ""
    return run_action(v, user, "package.switch", f"/{v.op}/packages", fn, {"package": package},
                      on_error)


@router.post("/{op}/packages/subscribe", response_class=HTMLResponse)
def subscribe(v: CheckedVisit, user: LoggedIn, package: Annotated[str, Form()] = "") -> Response:
    """Choose a package (Uzonline: confirmed by the SMS code of this session)."""
    def fn(s: Session, at: datetime) -> str:
        view = service.subscribe(s, account_number=user.account_number, package=package,
                                 at=at, verification=user.verification_token)
        if view.status == "active":
            return v.t("subscribe.active", package=view.package_name, end=v.t.date(view.end))
        return v.t("subscribe.pending", package=view.package_name)

    def on_error(s: Session, exc: CasError) -> str:
        if getattr(exc, "code", None) in ("VERIFICATION_REQUIRED", "VERIFICATION_EXPIRED"):
            return v.t("verify.needed")
        return ""
    return run_action(v, user, "subscription.create", f"/{v.op}/packages", fn,
                      {"package": package}, on_error)
