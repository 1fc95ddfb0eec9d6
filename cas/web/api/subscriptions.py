"""Subscriptions of an account: subscribe, switch, extend, renewal, suspension, promised
payment, promo."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from cas.billing import service
from cas.errors import ValidationError
from cas.web.api.deps import MAX_TIME_S, AccountPath, Ctx, PackagePath
from cas.web.schemas import (
    BalanceOut,
    ExtendIn,
    PromiseIn,
    PromoIn,
    RenewalIn,
    SubscribeIn,
    SubscriptionOut,
    SuspendIn,
    SwitchIn,
    SwitchOut,
)

router = APIRouter()


@router.get("/accounts/{account_number}/subscriptions", response_model=list[SubscriptionOut],
            tags=["subscriptions"])
def get_subscriptions(ctx: Ctx, account_number: AccountPath,
                      include_closed: bool = False) -> list[SubscriptionOut]:
    """Subscriptions with activation date, end date and days left (Uzonline)."""
    return ctx.read(lambda s, now: [SubscriptionOut.of(v) for v in service.subscriptions(
           s, account_number=account_number, at=now, include_closed=include_closed)])


@router.post("/accounts/{account_number}/subscriptions", response_model=SubscriptionOut,
             status_code=201, tags=["subscriptions"])
def subscribe(ctx: Ctx, account_number: AccountPath, body: SubscribeIn) -> SubscriptionOut:
    """Choose a package: active at once if the balance covers it, else pending."""
    return ctx.write("subscription.create", account_number,
                     lambda s, at: SubscriptionOut.of(service.subscribe(
                         s, account_number=account_number, package=body.package, at=at,
                         verification=body.verification)), {"package": body.package})


@router.post("/accounts/{account_number}/switch", response_model=SwitchOut, tags=["subscriptions"])
def switch(ctx: Ctx, account_number: AccountPath, body: SwitchIn) -> SwitchOut:
    """Switch the base package (ATV+: once per 30 days; unused days credited back)."""
    return ctx.write("package.switch", account_number,
                     lambda s, at: SwitchOut.of(service.switch_package(
                         s, account_number=account_number, package=body.package, at=at)),
                     {"package": body.package})


@router.post("/accounts/{account_number}/subscriptions/{package}/extend",
             response_model=SubscriptionOut, tags=["subscriptions"])
def extend(ctx: Ctx, account_number: AccountPath, package: PackagePath,
           body: ExtendIn) -> SubscriptionOut:
    """Prepay more periods of an active subscription (Uzonline "+ Extend")."""
    return ctx.write("subscription.extend", account_number,
                     lambda s, at: SubscriptionOut.of(service.extend(
                         s, account_number=account_number, package=package, at=at,
                         periods=body.periods)), {"package": package, "periods": body.periods})


@router.put("/accounts/{account_number}/renewal", response_model=list[SubscriptionOut],
            tags=["subscriptions"])
def renewal(ctx: Ctx, account_number: AccountPath, body: RenewalIn) -> list[SubscriptionOut]:
    """Turn auto-renewal off or on (TV+) without losing prepaid days."""
    return ctx.write("renewal.on" if body.on else "renewal.off", account_number,
                     lambda s, at: [SubscriptionOut.of(v) for v in service.set_renewal(
                         s, account_number=account_number, on=body.on, at=at,
                         package=body.package)], body.model_dump())


@router.post("/accounts/{account_number}/suspension", response_model=BalanceOut,
             status_code=201, tags=["subscriptions"])
def suspend(ctx: Ctx, account_number: AccountPath, body: SuspendIn) -> BalanceOut:
    """Temporary suspension (holiday, NTV Plus): cards suspended, paid days kept."""
    if body.until_s is not None and not 0 <= body.until_s <= MAX_TIME_S:
        raise ValidationError("until_s must be a u32 time", code="BAD_SUSPENSION").with_id(
            "web.until_u32_time")
    until = datetime.fromtimestamp(body.until_s, UTC) if body.until_s is not None else None
    return ctx.write("suspension.start", account_number,
                     lambda s, at: BalanceOut.of(service.suspend(
                         s, account_number=account_number, at=at, until=until)),
                     body.model_dump())


@router.delete("/accounts/{account_number}/suspension", response_model=BalanceOut,
               tags=["subscriptions"])
def resume(ctx: Ctx, account_number: AccountPath) -> BalanceOut:
    return ctx.write("suspension.end", account_number,
                     lambda s, at: BalanceOut.of(service.resume(
                         s, account_number=account_number, at=at)))


@router.post("/accounts/{account_number}/promised-payment", response_model=BalanceOut,
             status_code=201, tags=["payments"])
def promise(ctx: Ctx, account_number: AccountPath, body: PromiseIn) -> BalanceOut:
    """NTV Plus "Promised Payment": a short credit, written off by the next payment."""
    return ctx.write("promise.take", account_number,
                     lambda s, at: BalanceOut.of(service.promise(
                         s, account_number=account_number, at=at,
                         amount_minor=body.amount_minor)), body.model_dump())


@router.post("/accounts/{account_number}/promo", response_model=SubscriptionOut,
             status_code=201, tags=["subscriptions"])
def promo(ctx: Ctx, account_number: AccountPath, body: PromoIn) -> SubscriptionOut:
    """Activate a promo code (TV+; confirmed by an SMS verification when the operator asks)."""
    return ctx.write("promo.redeem", account_number,
                     lambda s, at: SubscriptionOut.of(service.redeem_promo(
                         s, account_number=account_number, code=body.code, at=at,
                         verification=body.verification)), {"promo": body.code})
