"""Account look-up by Chip ID + card number (MTS) and SMS verifications."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.records import account_by_number
from cas.billing.selfcare import send_sms_code
from cas.store.models import Account, VerificationSession
from cas.web.api.deps import Ctx
from cas.web.schemas import (
    ConfirmIn,
    ConfirmOut,
    LookupIn,
    LookupOut,
    VerificationIn,
    VerificationOut,
)

router = APIRouter()


@router.post("/lookup", response_model=LookupOut, tags=["accounts"])
def lookup(ctx: Ctx, body: LookupIn) -> LookupOut:
    """MTS: the personal account number from the box's Chip ID and the card number."""
    return ctx.read(lambda s, _: LookupOut(account_number=service.lookup_by_chip_and_card(
           s, chip_id=int(body.chip_id, 16), card_serial=body.card)))


@router.post("/verifications", response_model=VerificationOut, status_code=201,
             tags=["accounts"])
def start_verification(ctx: Ctx, body: VerificationIn) -> VerificationOut:
    """Send an SMS code to a phone for an account (Uzonline, TV+ promo).  The code goes only
    into the SMS (the store's notification outbox); the token identifies the session."""
    def run(s: Session, at: datetime) -> VerificationOut:
        acc = account_by_number(s, body.account_number)
        token = send_sms_code(s, account=acc, phone=body.phone, at=at)
        row = s.get(VerificationSession, token)
        assert row is not None
        return VerificationOut(token=token, phone=row.phone, expires_at_s=row.expires_at_s)
    return ctx.write("verification.start", body.account_number, run,
                     {"phone": body.phone})


@router.post("/verifications/{token}/confirm", response_model=ConfirmOut, tags=["accounts"])
def confirm_verification(ctx: Ctx, token: Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")],
                         body: ConfirmIn) -> ConfirmOut:
    """Check an SMS code; wrong codes are counted and the session closes after the limit."""
    account: list[str] = []

    def run(s: Session, at: datetime) -> ConfirmOut:
        res = acc_mod.confirm_verification(s, token=token, code=body.code, at=at)
        row = s.get(VerificationSession, token)
        acc = s.get(Account, row.account_id) if row is not None else None
        account.append(acc.account_number if acc is not None else "")
        return ConfirmOut(verified=res.verified, attempts_left=res.attempts_left)
    return ctx.write("verification.confirm", lambda _out: account[0], run)
