"""Payments: ``POST /payments`` with its ``Idempotency-Key`` (same key + same body: the first
answer again; same key + another body: 409), and a payment by id."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from sqlalchemy.orm import Session

from cas.billing import service
from cas.billing.records import get_payment as billing_get_payment
from cas.errors import CasError, ValidationError
from cas.web.api.deps import ApiContext, Ctx
from cas.web.errors import WebError
from cas.web.models import WebIdempotency
from cas.web.schemas import PaymentIn, PaymentOut, PaymentRecordOut

router = APIRouter()

_IDEMPOTENCY_KEY = r"^[A-Za-z0-9._:\-]{1,128}$"
_PAYMENT_ID = r"^[A-Za-z0-9._:\-]{1,64}$"


def _request_digest(path: str, body: PaymentIn) -> str:
    canonical = json.dumps({"path": path, "body": body.model_dump(mode="json")},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(ctx: ApiContext, idem_key: str, digest: str, session: Session) -> Response | None:
    """The first answer to this key, if there was one (``session``: the transaction asking)."""
    row = session.get(WebIdempotency, (ctx.key_id, idem_key))
    if row is None:
        return None
    if row.request_sha256 != digest:
        raise WebError("this Idempotency-Key was used with a different request",
                       code="IDEMPOTENCY_KEY_REUSED", category="CONFLICT")
    return Response(content=row.response_body, status_code=row.status_code,
                    media_type="application/json", headers={"Idempotent-Replayed": "true"})


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
        # The replay look-up runs in the payment's own transaction: one transaction per new
        # payment, and a repeated one writes nothing.
        answer = ctx.write("payment.create", body.ref, run,
                           {**body.model_dump(), "payment_id": payment_id},
                           replay=lambda s: _replay(ctx, idempotency_key, digest, s))
    except CasError:
        # A concurrent request with the same key may have won the race (in this worker or
        # another one): answer as it did.
        with ctx.tenant.store.reader() as s:
            replay = _replay(ctx, idempotency_key, digest, s)
        if replay is not None:
            return replay
        raise
    if isinstance(answer, Response):
        return answer
    return Response(content=answer, status_code=201, media_type="application/json")


@router.get("/payments/{payment_id}", response_model=PaymentRecordOut, tags=["payments"])
def get_payment(ctx: Ctx, payment_id: Annotated[str, Path(pattern=_PAYMENT_ID)]
                ) -> PaymentRecordOut:
    return ctx.read(lambda s, _: PaymentRecordOut.of(billing_get_payment(s, payment_id)))
