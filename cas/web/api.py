"""The operator API (``/api/v1``): what billing and CRM systems call.

Thin by design: every handler checks the API key, opens one transaction on the key's
operator store, calls one domain function (:mod:`cas.billing.service`,
:mod:`cas.billing.accounts`, :mod:`cas.headend.why`, :mod:`cas.web.domain`), writes one audit
row when it changed something, and turns the result into JSON.  The domain functions record
the rights changes themselves (``rights_changes`` journal, ``cards.rights_version``), which is
what the EMM generator's incremental feed turns into EMMs; ``/emm-queue`` shows that queue.

Errors: ``cas.web.errors.classify`` (one place) maps our typed errors to status + code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.catalog import channel_counts, list_packages
from cas.billing.clock import clock_now
from cas.billing.state import card_state_at
from cas.billing.txn import current_profile
from cas.errors import CasError, ValidationError
from cas.store.models import Channel
from cas.text import SINGLE_LINE_PATTERN
from cas.web import audit
from cas.web import domain as web_domain
from cas.web.errors import Unauthenticated, WebError
from cas.web.models import WebApiKey, WebIdempotency
from cas.web.schemas import (
    AccountCreate,
    AccountNumber,
    AccountOut,
    AccountUpdate,
    AuditOut,
    BalanceOut,
    BoxOut,
    CardEmmQueueOut,
    CardOut,
    ChannelOut,
    ChipIdHex,
    ConfirmIn,
    ConfirmOut,
    EmmQueueOut,
    EntitlementOut,
    EntitlementStateOut,
    ErrorOut,
    ExtendIn,
    LinkIn,
    LookupIn,
    LookupOut,
    OperatorOut,
    PackageOut,
    PairIn,
    PasswordSet,
    PaymentIn,
    PaymentOut,
    PaymentRecordOut,
    PromiseIn,
    PromoIn,
    RenewalIn,
    StatementOut,
    SubscribeIn,
    SubscriptionOut,
    SuspendIn,
    SwitchIn,
    SwitchOut,
    VerificationIn,
    VerificationOut,
    WhyOut,
)
from cas.web.security import parse_api_key, same_digest
from cas.web.settings import Tenant
from cas.web.state import client_ip, web_state

T = TypeVar("T")

API_PREFIX = "/api/v1"
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="cas.<operator>.<key id>.<secret> "
                                          "(`cas serve apikey create`)")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text} for status, text in (
        (400, "Malformed request"), (401, "Missing or invalid API key"),
        (404, "Unknown record"), (409, "Conflict or refused by a subscriber rule"),
        (422, "Invalid input"), (503, "Store unavailable"))
}
router = APIRouter(prefix=API_PREFIX, responses=_ERRORS)

#: u32 wire times (docs/architecture.md): bounds for ``at_s`` query parameters.
MAX_TIME_S = 0xFFFF_FFFF
_IDEMPOTENCY_KEY = r"^[A-Za-z0-9._:\-]{1,128}$"
_PAYMENT_ID = r"^[A-Za-z0-9._:\-]{1,64}$"
#: Refresh ``web_api_keys.last_used_at_s`` at most this often (one write, not one per call).
_LAST_USED_EVERY_S = 60


# --- context --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    """The authenticated caller: its operator's store and the audit actor."""

    tenant: Tenant
    key_id: str
    actor: audit.Actor
    wall_s: int


def api_context(request: Request,
                api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> ApiContext:
    """Authenticate ``X-API-Key``: the operator named in the key must be served here, the key
    id known in that operator's store, not revoked, and the secret's digest equal."""
    state = web_state(request)
    if not api_key:
        raise Unauthenticated("an X-API-Key header is required", code="API_KEY_REQUIRED")
    presented = parse_api_key(api_key)
    tenant = state.tenants.get(presented.operator) if presented is not None else None
    if presented is None or tenant is None:
        raise Unauthenticated("invalid API key")
    now_s = state.settings.now_s()
    with tenant.store.reader() as s:
        row = s.execute(select(WebApiKey).where(WebApiKey.key_id == presented.key_id)).scalar()
        ok = (row is not None and row.operator == presented.operator
              and row.revoked_at_s is None
              and same_digest(row.secret_sha256, presented.secret_sha256))
        stale = ok and row is not None and (
            row.last_used_at_s is None or now_s - row.last_used_at_s >= _LAST_USED_EVERY_S)
    if not ok:
        raise Unauthenticated("invalid API key")
    if stale:
        with tenant.transaction() as s:
            fresh = s.execute(select(WebApiKey).where(WebApiKey.key_id == presented.key_id)
                              ).scalar_one()
            fresh.last_used_at_s = now_s
    return ApiContext(tenant=tenant, key_id=presented.key_id,
                      actor=audit.Actor(kind="api_key", name=presented.key_id,
                                        client_ip=client_ip(request)),
                      wall_s=now_s)


Ctx = Annotated[ApiContext, Depends(api_context)]


def _read(ctx: ApiContext, fn: Callable[[Session, datetime], T]) -> T:
    with ctx.tenant.store.reader() as s:
        return fn(s, clock_now(s))


def _write(ctx: ApiContext, action: str, target: str | Callable[[T], str],
           fn: Callable[[Session, datetime], T], detail: dict[str, Any] | None = None) -> T:
    """One transaction: the domain call and its audit row commit together or not at all.
    ``target`` is the record changed, or a function of the result that names it."""
    with ctx.tenant.transaction() as s:
        at = clock_now(s)
        result = fn(s, at)
        name = target(result) if callable(target) else target
        audit.record(s, ctx.actor, action, name, wall_s=ctx.wall_s, sim_at=at, detail=detail)
    return result


def _at(at_s: int | None, now: datetime) -> datetime:
    return datetime.fromtimestamp(at_s, UTC) if at_s is not None else now


def _serial_text(serial: int) -> str:
    return f"{serial:010d}"


AccountPath = Annotated[AccountNumber, Path(description="Personal account number.")]
SerialPath = Annotated[int, Path(ge=1, le=0xFFFF_FFFF, description="Smart-card number.")]
ChipPath = Annotated[ChipIdHex, Path(description="Chip ID, 8 hex digits.")]
PackagePath = Annotated[str, Path(min_length=1, max_length=64, description="Package code or id.")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
AtS = Annotated[int | None, Query(ge=0, le=MAX_TIME_S, description="Moment (default: the "
                                  "store's clock).")]


# --- operator and catalog --------------------------------------------------------------------------
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
    return _read(ctx, run)


@router.get("/packages", response_model=list[PackageOut], tags=["catalog"])
def get_packages(ctx: Ctx) -> list[PackageOut]:
    def run(s: Session, _now: datetime) -> list[PackageOut]:
        pkgs = list_packages(s)
        counts = channel_counts(s, [p.id for p in pkgs])
        return [PackageOut(id=p.id, code=p.code, name=p.name, kind=p.kind,
                           price_minor=p.price_minor, period_days=p.period_days,
                           max_screens=p.max_screens, channels=counts.get(p.id, 0))
                for p in pkgs]
    return _read(ctx, run)


@router.get("/channels", response_model=list[ChannelOut], tags=["catalog"])
def get_channels(ctx: Ctx) -> list[ChannelOut]:
    def run(s: Session, _now: datetime) -> list[ChannelOut]:
        return [ChannelOut(number=c.number, name=c.name, service_id=c.service_id,
                           maturity_rating=c.maturity_rating)
                for c in s.execute(select(Channel).order_by(Channel.number)).scalars()]
    return _read(ctx, run)


# --- accounts ------------------------------------------------------------------------------------------
@router.post("/accounts", response_model=AccountOut, status_code=201, tags=["accounts"])
def create_account(ctx: Ctx, body: AccountCreate) -> AccountOut:
    """Open a personal account; its number is assigned here, once, and never changes."""
    def run(s: Session, at: datetime) -> AccountOut:
        view = acc_mod.create_account(s, at=at, **body.model_dump())
        return AccountOut.of(view)
    return _write(ctx, "account.create", lambda out: out.account_number, run,
                  body.model_dump())


@router.get("/accounts", response_model=list[AccountOut], tags=["accounts"])
def get_accounts(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> list[AccountOut]:
    return _read(ctx, lambda s, _: [AccountOut.of(v) for v in
                                    acc_mod.list_accounts(s, limit=limit, offset=offset)])


@router.get("/accounts/{account_number}", response_model=AccountOut, tags=["accounts"])
def get_account(ctx: Ctx, account_number: AccountPath) -> AccountOut:
    return _read(ctx, lambda s, _: AccountOut.of(acc_mod.get_account(s, account_number)))


@router.patch("/accounts/{account_number}", response_model=AccountOut, tags=["accounts"])
def update_account(ctx: Ctx, account_number: AccountPath, body: AccountUpdate) -> AccountOut:
    """Change contact data and notification choices (never the account number)."""
    fields = body.model_dump(exclude_none=True)
    return _write(ctx, "account.update", account_number,
                  lambda s, at: AccountOut.of(acc_mod.update_account(
                      s, account_number=account_number, at=at, **fields)), fields)


@router.put("/accounts/{account_number}/portal-password", status_code=204, tags=["accounts"])
def set_password(ctx: Ctx, account_number: AccountPath, body: PasswordSet) -> Response:
    """Set the subscriber's personal-account password (stored as an argon2id hash)."""
    _write(ctx, "password.set", account_number,
           lambda s, _: web_domain.set_portal_password(
               s, account_number=account_number, password=body.password, wall_s=ctx.wall_s))
    return Response(status_code=204)


@router.get("/accounts/{account_number}/balance", response_model=BalanceOut, tags=["accounts"])
def get_balance(ctx: Ctx, account_number: AccountPath) -> BalanceOut:
    return _read(ctx, lambda s, _: BalanceOut.of(service.balance(
        s, account_number=account_number)))


@router.get("/accounts/{account_number}/statement", response_model=StatementOut,
            tags=["accounts"])
def get_statement(ctx: Ctx, account_number: AccountPath,
                  since_s: AtS = None, until_s: AtS = None) -> StatementOut:
    """The payment statement: ledger lines with opening and closing balances."""
    def run(s: Session, _now: datetime) -> StatementOut:
        since = datetime.fromtimestamp(since_s, UTC) if since_s is not None else None
        until = datetime.fromtimestamp(until_s, UTC) if until_s is not None else None
        return StatementOut.of(service.statement(s, account_number=account_number,
                                                 since=since, until=until))
    return _read(ctx, run)


# --- subscriptions -------------------------------------------------------------------------------------------
@router.get("/accounts/{account_number}/subscriptions", response_model=list[SubscriptionOut],
            tags=["subscriptions"])
def get_subscriptions(ctx: Ctx, account_number: AccountPath,
                      include_closed: bool = False) -> list[SubscriptionOut]:
    """Subscriptions with activation date, end date and days left (Uzonline)."""
    return _read(ctx, lambda s, now: [SubscriptionOut.of(v) for v in service.subscriptions(
        s, account_number=account_number, at=now, include_closed=include_closed)])


@router.post("/accounts/{account_number}/subscriptions", response_model=SubscriptionOut,
             status_code=201, tags=["subscriptions"])
def subscribe(ctx: Ctx, account_number: AccountPath, body: SubscribeIn) -> SubscriptionOut:
    """Choose a package: active at once if the balance covers it, else pending."""
    return _write(ctx, "subscription.create", account_number,
                  lambda s, at: SubscriptionOut.of(service.subscribe(
                      s, account_number=account_number, package=body.package, at=at,
                      verification=body.verification)), {"package": body.package})


@router.post("/accounts/{account_number}/switch", response_model=SwitchOut, tags=["subscriptions"])
def switch(ctx: Ctx, account_number: AccountPath, body: SwitchIn) -> SwitchOut:
    """Switch the base package (ATV+: once per 30 days; unused days credited back)."""
    return _write(ctx, "package.switch", account_number,
                  lambda s, at: SwitchOut.of(service.switch_package(
                      s, account_number=account_number, package=body.package, at=at)),
                  {"package": body.package})


@router.post("/accounts/{account_number}/subscriptions/{package}/extend",
             response_model=SubscriptionOut, tags=["subscriptions"])
def extend(ctx: Ctx, account_number: AccountPath, package: PackagePath,
           body: ExtendIn) -> SubscriptionOut:
    """Prepay more periods of an active subscription (Uzonline "+ Extend")."""
    return _write(ctx, "subscription.extend", account_number,
                  lambda s, at: SubscriptionOut.of(service.extend(
                      s, account_number=account_number, package=package, at=at,
                      periods=body.periods)), {"package": package, "periods": body.periods})


@router.put("/accounts/{account_number}/renewal", response_model=list[SubscriptionOut],
            tags=["subscriptions"])
def renewal(ctx: Ctx, account_number: AccountPath, body: RenewalIn) -> list[SubscriptionOut]:
    """Turn auto-renewal off or on (TV+) without losing prepaid days."""
    return _write(ctx, "renewal.on" if body.on else "renewal.off", account_number,
                  lambda s, at: [SubscriptionOut.of(v) for v in service.set_renewal(
                      s, account_number=account_number, on=body.on, at=at,
                      package=body.package)], body.model_dump())


@router.post("/accounts/{account_number}/suspension", response_model=BalanceOut,
             status_code=201, tags=["subscriptions"])
def suspend(ctx: Ctx, account_number: AccountPath, body: SuspendIn) -> BalanceOut:
    """Temporary suspension (holiday, NTV Plus): cards suspended, paid days kept."""
    if body.until_s is not None and not 0 <= body.until_s <= MAX_TIME_S:
        raise ValidationError("until_s must be a u32 time", code="BAD_SUSPENSION")
    until = datetime.fromtimestamp(body.until_s, UTC) if body.until_s is not None else None
    return _write(ctx, "suspension.start", account_number,
                  lambda s, at: BalanceOut.of(service.suspend(
                      s, account_number=account_number, at=at, until=until)),
                  body.model_dump())


@router.delete("/accounts/{account_number}/suspension", response_model=BalanceOut,
               tags=["subscriptions"])
def resume(ctx: Ctx, account_number: AccountPath) -> BalanceOut:
    return _write(ctx, "suspension.end", account_number,
                  lambda s, at: BalanceOut.of(service.resume(
                      s, account_number=account_number, at=at)))


@router.post("/accounts/{account_number}/promised-payment", response_model=BalanceOut,
             status_code=201, tags=["payments"])
def promise(ctx: Ctx, account_number: AccountPath, body: PromiseIn) -> BalanceOut:
    """NTV Plus "Promised Payment": a short credit, written off by the next payment."""
    return _write(ctx, "promise.take", account_number,
                  lambda s, at: BalanceOut.of(service.promise(
                      s, account_number=account_number, at=at,
                      amount_minor=body.amount_minor)), body.model_dump())


@router.post("/accounts/{account_number}/promo", response_model=SubscriptionOut,
             status_code=201, tags=["subscriptions"])
def promo(ctx: Ctx, account_number: AccountPath, body: PromoIn) -> SubscriptionOut:
    """Activate a promo code (TV+; confirmed by an SMS verification when the operator asks)."""
    return _write(ctx, "promo.redeem", account_number,
                  lambda s, at: SubscriptionOut.of(service.redeem_promo(
                      s, account_number=account_number, code=body.code, at=at,
                      verification=body.verification)), {"promo": body.code})


# --- payments ---------------------------------------------------------------------------------------------------
def _request_digest(path: str, body: PaymentIn) -> str:
    canonical = json.dumps({"path": path, "body": body.model_dump(mode="json")},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(ctx: ApiContext, idem_key: str, digest: str) -> Response | None:
    with ctx.tenant.store.reader() as s:
        row = s.get(WebIdempotency, (ctx.key_id, idem_key))
        if row is None:
            return None
        if row.request_sha256 != digest:
            raise WebError("this Idempotency-Key was used with a different request",
                           code="IDEMPOTENCY_KEY_REUSED", category="CONFLICT")
        return Response(content=row.response_body, status_code=row.status_code,
                        media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})


@router.post("/payments", response_model=PaymentOut, status_code=201, tags=["payments"])
def create_payment(
    ctx: Ctx, body: PaymentIn, request: Request,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", pattern=_IDEMPOTENCY_KEY,
                                           description="Same key + same body: the first "
                                           "answer again, no second payment; same key + "
                                           "another body: 409 IDEMPOTENCY_KEY_REUSED.")],
) -> Response:
    """Book a payment by card, contract or account number (optionally choosing a package)."""
    digest = _request_digest(request.url.path, body)
    replay = _replay(ctx, idempotency_key, digest)
    if replay is not None:
        return replay
    payment_id = body.payment_id or "api-" + ctx.key_id + "-" + hashlib.sha256(
        idempotency_key.encode()).hexdigest()[:32]
    if not re.match(_PAYMENT_ID, payment_id):
        raise ValidationError("payment id must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                              code="BAD_PAYMENT_ID")

    def run(s: Session, at: datetime) -> str:
        result = service.pay(s, by=body.by, ref=body.ref, amount_minor=body.amount_minor,
                             payment_id=payment_id, at=at, method=body.method,
                             package=body.package)
        text = PaymentOut.of(result).model_dump_json()
        s.add(WebIdempotency(api_key_id=ctx.key_id, idem_key=idempotency_key,
                             request_sha256=digest, status_code=201, response_body=text,
                             created_at_s=ctx.wall_s))
        return text

    try:
        text = _write(ctx, "payment.create", body.ref, run,
                      {**body.model_dump(), "payment_id": payment_id})
    except CasError:
        # A concurrent request with the same key may have won the race: answer as it did.
        replay = _replay(ctx, idempotency_key, digest)
        if replay is not None:
            return replay
        raise
    return Response(content=text, status_code=201, media_type="application/json")


@router.get("/payments/{payment_id}", response_model=PaymentRecordOut, tags=["payments"])
def get_payment(ctx: Ctx, payment_id: Annotated[str, Path(pattern=_PAYMENT_ID)]
                ) -> PaymentRecordOut:
    return _read(ctx, lambda s, _: PaymentRecordOut.of(web_domain.get_payment(s, payment_id)))


# --- cards -------------------------------------------------------------------------------------------------------
@router.get("/cards", response_model=list[CardOut], tags=["cards"])
def get_cards(ctx: Ctx, account: Annotated[AccountNumber | None, Query()] = None,
              limit: Limit = 100, offset: Offset = 0) -> list[CardOut]:
    return _read(ctx, lambda s, _: [CardOut.of(v) for v in acc_mod.list_cards(
        s, account_number=account, limit=limit, offset=offset)])


@router.get("/cards/{serial}", response_model=CardOut, tags=["cards"])
def get_card(ctx: Ctx, serial: SerialPath) -> CardOut:
    def run(s: Session, _now: datetime) -> CardOut:
        from cas.store.repo import get_card as repo_get_card

        return CardOut.of(acc_mod.card_view(s, repo_get_card(s, serial)))
    return _read(ctx, run)


@router.post("/cards/{serial}/link", response_model=CardOut, tags=["cards"])
def link_card(ctx: Ctx, serial: SerialPath, body: LinkIn) -> CardOut:
    """Give a registered card to an account (it takes the account's region)."""
    def run(s: Session, at: datetime) -> CardOut:
        from cas.store.repo import get_card as repo_get_card

        acc_mod.link_card(s, serial=serial, account_number=body.account_number, at=at)
        return CardOut.of(acc_mod.card_view(s, repo_get_card(s, serial)))
    return _write(ctx, "card.link", _serial_text(serial), run, body.model_dump())


@router.delete("/cards/{serial}/link", response_model=CardOut, tags=["cards"])
def unlink_card(ctx: Ctx, serial: SerialPath) -> CardOut:
    def run(s: Session, at: datetime) -> CardOut:
        from cas.store.repo import get_card as repo_get_card

        acc_mod.unlink_card(s, serial=serial, at=at)
        return CardOut.of(acc_mod.card_view(s, repo_get_card(s, serial)))
    return _write(ctx, "card.unlink", _serial_text(serial), run)


@router.post("/cards/{serial}/pair", response_model=CardOut, tags=["cards"])
def pair_card(ctx: Ctx, serial: SerialPath, body: PairIn) -> CardOut:
    """Pair the card with a box (a PAIR EMM carries the pairing key to the card)."""
    def run(s: Session, at: datetime) -> CardOut:
        from cas.store.repo import get_card as repo_get_card

        acc_mod.pair_card(s, serial=serial, chip_id=int(body.chip_id, 16), at=at)
        return CardOut.of(acc_mod.card_view(s, repo_get_card(s, serial)))
    return _write(ctx, "card.pair", _serial_text(serial), run, body.model_dump())


@router.get("/cards/{serial}/entitlements", response_model=EntitlementStateOut, tags=["cards"])
def get_entitlements(ctx: Ctx, serial: SerialPath, at_s: AtS = None) -> EntitlementStateOut:
    """The rights the card should hold at a moment (the EMM generator's input)."""
    def run(s: Session, now: datetime) -> EntitlementStateOut:
        at = _at(at_s, now)
        st = card_state_at(s, serial, at)
        t = int(at.timestamp())
        return EntitlementStateOut(
            serial=serial, at_s=t, status=st.rights.status.name, region=st.rights.region,
            maturity_limit=st.rights.maturity_limit,
            paired_chip_id=f"{st.paired_chip_id:08X}" if st.paired_chip_id is not None else None,
            rights_version=st.rights_version,
            entitlements=[EntitlementOut(package_id=e.package_id, start_s=e.start_s,
                                         end_s=e.end_s, valid_now=e.covers(t))
                          for e in st.rights.entitlements])
    return _read(ctx, run)


@router.get("/cards/{serial}/why", response_model=WhyOut, tags=["cards"])
def why(ctx: Ctx, serial: SerialPath,
        channel: Annotated[str, Query(min_length=1, max_length=128,
                                      pattern=SINGLE_LINE_PATTERN,
                                      description="Channel number (ASCII digits), "
                                                  "'sid:<id>' or name.")],
        chip_id: Annotated[ChipIdHex | None, Query()] = None,
        pin_ok: bool = False, at_s: AtS = None) -> WhyOut:
    """Why a channel is open or locked on this card — the same explanation as `cas why`."""
    from cas.headend.why import explain

    def run(s: Session, now: datetime) -> WhyOut:
        at = _at(at_s, now)
        result = explain(s, serial, channel, at,
                         chip_id=int(chip_id, 16) if chip_id is not None else None,
                         pin_ok=pin_ok)
        d = result.as_dict()
        return WhyOut(card=d["card"], channel=result.channel_number,
                      channel_name=result.channel_name, at_s=int(at.timestamp()),
                      state=d["state"], reason=result.reason.value,
                      screen_code=result.screen_code, message=result.message,
                      cause=result.cause, fix=result.fix, details=dict(result.details),
                      cannot_know=list(result.cannot_know))
    return _read(ctx, run)


@router.get("/cards/{serial}/emm-queue", response_model=CardEmmQueueOut, tags=["emm"])
def card_emm_queue(ctx: Ctx, serial: SerialPath) -> CardEmmQueueOut:
    """Rights changes of this card not yet carried by an EMM, and its EMM outbox rows."""
    return _read(ctx, lambda s, _: CardEmmQueueOut.of(web_domain.card_emm_queue(s, serial)))


@router.get("/emm-queue", response_model=EmmQueueOut, tags=["emm"])
def emm_queue(ctx: Ctx) -> EmmQueueOut:
    """Cards waiting for EMMs, the journal size and the EMM outbox by status."""
    return _read(ctx, lambda s, _: EmmQueueOut.of(web_domain.emm_queue_summary(s)))


# --- boxes ----------------------------------------------------------------------------------------------------------
@router.get("/boxes", response_model=list[BoxOut], tags=["boxes"])
def get_boxes(ctx: Ctx, account: Annotated[AccountNumber | None, Query()] = None,
              limit: Limit = 100, offset: Offset = 0) -> list[BoxOut]:
    return _read(ctx, lambda s, _: [BoxOut.of(v) for v in acc_mod.list_boxes(
        s, account_number=account, limit=limit, offset=offset)])


@router.get("/boxes/{chip_id}", response_model=BoxOut, tags=["boxes"])
def get_box(ctx: Ctx, chip_id: ChipPath) -> BoxOut:
    return _read(ctx, lambda s, _: BoxOut.of(acc_mod.get_box(s, int(chip_id, 16))))


@router.post("/boxes/{chip_id}/link", response_model=BoxOut, tags=["boxes"])
def link_box(ctx: Ctx, chip_id: ChipPath, body: LinkIn) -> BoxOut:
    def run(s: Session, at: datetime) -> BoxOut:
        acc_mod.link_box(s, chip_id=int(chip_id, 16), account_number=body.account_number, at=at)
        return BoxOut.of(acc_mod.get_box(s, int(chip_id, 16)))
    return _write(ctx, "box.link", f"{int(chip_id, 16):08X}", run, body.model_dump())


# --- lookup and verification ---------------------------------------------------------------------------------------
@router.post("/lookup", response_model=LookupOut, tags=["accounts"])
def lookup(ctx: Ctx, body: LookupIn) -> LookupOut:
    """MTS: the personal account number from the box's Chip ID and the card number."""
    return _read(ctx, lambda s, _: LookupOut(account_number=service.lookup_by_chip_and_card(
        s, chip_id=int(body.chip_id, 16), card_serial=body.card)))


@router.post("/verifications", response_model=VerificationOut, status_code=201,
             tags=["accounts"])
def start_verification(ctx: Ctx, body: VerificationIn) -> VerificationOut:
    """Send an SMS code to a phone for an account (Uzonline, TV+ promo).  The code goes only
    into the SMS (the store's notification outbox); the token identifies the session."""
    def run(s: Session, at: datetime) -> VerificationOut:
        from cas.billing.txn import account_by_number

        acc = account_by_number(s, body.account_number)
        token = web_domain.send_sms_code(s, account=acc, phone=body.phone, at=at)
        from cas.store.models import VerificationSession

        row = s.get(VerificationSession, token)
        assert row is not None
        return VerificationOut(token=token, phone=row.phone, expires_at_s=row.expires_at_s)
    return _write(ctx, "verification.start", body.account_number, run,
                  {"phone": body.phone})


@router.post("/verifications/{token}/confirm", response_model=ConfirmOut, tags=["accounts"])
def confirm_verification(ctx: Ctx, token: Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")],
                         body: ConfirmIn) -> ConfirmOut:
    """Check an SMS code; wrong codes are counted and the session closes after the limit."""
    account: list[str] = []

    def run(s: Session, at: datetime) -> ConfirmOut:
        from cas.store.models import Account, VerificationSession

        res = acc_mod.confirm_verification(s, token=token, code=body.code, at=at)
        row = s.get(VerificationSession, token)
        acc = s.get(Account, row.account_id) if row is not None else None
        account.append(acc.account_number if acc is not None else "")
        return ConfirmOut(verified=res.verified, attempts_left=res.attempts_left)
    return _write(ctx, "verification.confirm", lambda _out: account[0], run)


# --- audit ------------------------------------------------------------------------------------------------------------
@router.get("/audit", response_model=list[AuditOut], tags=["audit"])
def get_audit(ctx: Ctx, target: Annotated[str | None,
                                           Query(max_length=64, pattern=SINGLE_LINE_PATTERN)]
              = None,
              after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
              limit: Limit = 100) -> list[AuditOut]:
    """The audit log of this operator's store: who changed what, when."""
    return _read(ctx, lambda s, _: [AuditOut(**{f: getattr(e, f) for f in AuditOut.model_fields})
                                    for e in audit.entries(s, target=target, after_id=after_id,
                                                           limit=limit)])


__all__ = ["API_PREFIX", "ApiContext", "api_context", "router"]
