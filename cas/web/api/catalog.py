"""The operator and its catalog: ``/operator``, ``/packages``, ``/channels``."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.catalog import channel_counts, list_packages
from cas.billing.records import current_profile
from cas.store.models import Channel
from cas.web.api.deps import Ctx
from cas.web.schemas import ChannelOut, OperatorOut, PackageOut

router = APIRouter()


@router.get("/operator", response_model=OperatorOut, tags=["catalog"])
def get_operator(ctx: Ctx) -> OperatorOut:
    """The operator this key belongs to, its rules and the store's clock."""
    def run(s: Session, now: datetime) -> OperatorOut:
        p = current_profile(s)
        return OperatorOut(key=p.key, name=p.name, country=p.country, currency=p.currency,
                           minor_per_major=p.minor_per_major, now_s=int(now.timestamp()),
                           payment_by=list(p.payment_by),
                           payment_card_denominations_minor=list(
                               p.payment_card_denominations_minor),
                           renewal_toggle=p.renewal_toggle, switch_lock_days=p.switch_lock_days,
                           suspension=p.suspension is not None,
                           promised_payment=p.promised_payment is not None,
                           promo=p.promo_enabled,
                           subscribe_requires_code=p.subscribe_requires_verification)
    return ctx.read(run)


@router.get("/packages", response_model=list[PackageOut], tags=["catalog"])
def get_packages(ctx: Ctx) -> list[PackageOut]:
    def run(s: Session, _now: datetime) -> list[PackageOut]:
        pkgs = list_packages(s)
        counts = channel_counts(s, [p.id for p in pkgs])
        return [PackageOut(id=p.id, code=p.code, name=p.name, kind=p.kind,
                           price_minor=p.price_minor, period_days=p.period_days,
                           max_screens=p.max_screens, channels=counts.get(p.id, 0))
                for p in pkgs]
    return ctx.read(run)


@router.get("/channels", response_model=list[ChannelOut], tags=["catalog"])
def get_channels(ctx: Ctx) -> list[ChannelOut]:
    def run(s: Session, _now: datetime) -> list[ChannelOut]:
        return [ChannelOut(number=c.number, name=c.name, service_id=c.service_id,
                           maturity_rating=c.maturity_rating)
                for c in s.execute(select(Channel).order_by(Channel.number)).scalars()]
    return ctx.read(run)
