"""Payments: ``POST /payments`` with its ``Idempotency-Key`` (same key + same body: the first
answer again; same key + another body: 409), and a payment by id."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cas.billing.payments_fast import pay_fast
from cas.billing.records import get_payment as billing_get_payment
from cas.errors import CasError, ValidationError
from cas.store.fastsql import HotStatement
from cas.web import audit
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
                       code="IDEMPOTENCY_KEY_REUSED", category="CONFLICT").with_id(
            "web.idempotency_key_used_different")
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
                              code="BAD_PAYMENT_ID").with_id("web.payment_id_characters_z")

    detail = {**body.model_dump(), "payment_id": payment_id}
    try:
        with ctx.tenant.transaction() as s:
            text = _book(ctx, s, body, payment_id, idempotency_key, digest, detail)
    except CasError:
        # A repeated key (this worker or another one, now or earlier) ends here: its payment
        # id is taken (DUPLICATE_PAYMENT) or its key is (IDEMPOTENCY_KEY_REUSED), and the
        # transaction rolled back.  Answer as the first request did, if there was one.
        with ctx.tenant.store.reader() as s:
            replay = _replay(ctx, idempotency_key, digest, s)
        if replay is not None:
            return replay
        raise
    return Response(content=text, status_code=201, media_type="application/json")


_IDEMPOTENCY_COLUMNS = ("api_key_id", "idem_key", "request_sha256", "status_code",
                        "response_body", "created_at_s")


def _insert_idempotency(dialect: str) -> HotStatement:
    ins = postgresql.insert(WebIdempotency) if dialect == "postgresql" else sqlite.insert(
        WebIdempotency)
    stmt = (ins.values({c: bindparam(c) for c in _IDEMPOTENCY_COLUMNS})
            .on_conflict_do_nothing(index_elements=["api_key_id", "idem_key"])
            .returning(WebIdempotency.status_code))
    return HotStatement(stmt, _IDEMPOTENCY_COLUMNS)


_INSERT_IDEMPOTENCY = {d: _insert_idempotency(d) for d in ("postgresql", "sqlite")}


def _book(ctx: ApiContext, s: Session, body: PaymentIn, payment_id: str, idempotency_key: str,
          digest: str, detail: dict[str, Any]) -> str:
    """The payment, its idempotency record and its audit row in the caller's transaction:
    :func:`cas.billing.payments_fast.pay_fast` plus two Core ``INSERT``s.

    The idempotency record is written last, with ``ON CONFLICT DO NOTHING``: a key already
    recorded (or being recorded by a concurrent transaction, which PostgreSQL waits for)
    refuses the request and rolls the payment back.  A new key costs no look-up before;
    a repeated one is answered from the record by the caller."""
    result, at = pay_fast(s, by=body.by, ref=body.ref, amount_minor=body.amount_minor,
                          payment_id=payment_id, method=body.method, package=body.package)
    text = PaymentOut.of(result).model_dump_json()
    conn = s.connection()
    dialect = conn.dialect.name
    recorded = _INSERT_IDEMPOTENCY[dialect if dialect in _INSERT_IDEMPOTENCY else "sqlite"].first(
        conn, {"api_key_id": ctx.key_id, "idem_key": idempotency_key, "request_sha256": digest,
               "status_code": 201, "response_body": text, "created_at_s": ctx.wall_s})
    if recorded is None:
        raise WebError("this Idempotency-Key was used with a different request",
                       code="IDEMPOTENCY_KEY_REUSED", category="CONFLICT").with_id(
            "web.idempotency_key_used_different")
    audit.record_core(conn, ctx.actor, "payment.create", body.ref, wall_s=ctx.wall_s,
                      sim_at=at, detail=detail)
    return text


@router.get("/payments/{payment_id}", response_model=PaymentRecordOut, tags=["payments"])
def get_payment(ctx: Ctx, payment_id: Annotated[str, Path(pattern=_PAYMENT_ID)]
                ) -> PaymentRecordOut:
    return ctx.read(lambda s, _: PaymentRecordOut.of(billing_get_payment(s, payment_id)))
