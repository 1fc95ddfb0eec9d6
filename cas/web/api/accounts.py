"""Personal accounts: open, list, read, update, portal password, balance, statement."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.statement import balance_fast
from cas.web.api.deps import AccountPath, AtS, Ctx, Limit, Offset
from cas.web.credentials import set_portal_password
from cas.web.schemas import (
    AccountCreate,
    AccountOut,
    AccountUpdate,
    BalanceOut,
    PasswordSet,
    StatementOut,
)

router = APIRouter()


@router.post("/accounts", response_model=AccountOut, status_code=201, tags=["accounts"])
def create_account(ctx: Ctx, body: AccountCreate) -> AccountOut:
    """Open a personal account; its number is assigned here, once, and never changes."""
    def run(s: Session, at: datetime) -> AccountOut:
        view = acc_mod.create_account(s, at=at, **body.model_dump())
        return AccountOut.of(view)
    return ctx.write("account.create", lambda out: out.account_number, run,
                     body.model_dump())


@router.get("/accounts", response_model=list[AccountOut], tags=["accounts"])
def get_accounts(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> list[AccountOut]:
    return ctx.read(lambda s, _: [AccountOut.of(v) for v in
                                       acc_mod.list_accounts(s, limit=limit, offset=offset)])


@router.get("/accounts/{account_number}", response_model=AccountOut, tags=["accounts"])
def get_account(ctx: Ctx, account_number: AccountPath) -> AccountOut:
    return ctx.read(lambda s, _: AccountOut.of(acc_mod.get_account(s, account_number)))


@router.patch("/accounts/{account_number}", response_model=AccountOut, tags=["accounts"])
def update_account(ctx: Ctx, account_number: AccountPath, body: AccountUpdate) -> AccountOut:
    """Change contact data and notification choices (never the account number)."""
    fields = body.model_dump(exclude_none=True)
    return ctx.write("account.update", account_number,
                     lambda s, at: AccountOut.of(acc_mod.update_account(
                         s, account_number=account_number, at=at, **fields)), fields)


@router.put("/accounts/{account_number}/portal-password", status_code=204, tags=["accounts"])
def set_password(ctx: Ctx, account_number: AccountPath, body: PasswordSet) -> Response:
    """Set the subscriber's personal-account password (stored as an argon2id hash)."""
    ctx.write("password.set", account_number,
              lambda s, _: set_portal_password(
                  s, account_number=account_number, password=body.password, wall_s=ctx.wall_s))
    return Response(status_code=204)


@router.get("/accounts/{account_number}/balance", response_model=BalanceOut, tags=["accounts"])
async def get_balance(ctx: Ctx, account_number: AccountPath) -> Response:
    # The hot read of billing systems: one indexed statement (Core), serialised once by
    # pydantic, in the event loop (no thread hop).
    view = ctx.read_core(lambda conn: balance_fast(conn, account_number=account_number))
    return Response(content=BalanceOut.of(view).model_dump_json(),
                    media_type="application/json")


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
    return ctx.read(run)
