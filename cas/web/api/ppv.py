"""Pay-per-view return path: ``POST /ppv/reports`` takes a card's signed purchase report
(as the box read it, ``stb ppv-report``), bills each purchase once and queues the
acknowledgement EMM (docs/ppv.md).  A replayed report is 409 ``PPV_REPORT_REPLAYED``, a
forged one 409 ``PPV_REPORT_FORGED``; the report key comes from the operator keys
(``$CAS_OPERATOR_KEY``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from cas.billing.ppv import ImportResult, import_report
from cas.crypto import OperatorKeys, load_operator_keys
from cas.errors import ConfigError, CryptoError
from cas.store.repo import to_s
from cas.web.api.deps import Ctx

router = APIRouter()


class PpvReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    report_hex: str = Field(pattern=r"^([0-9a-fA-F]{2}){30,600}$",
                            description="The report's bytes as the card gave them, in hex.")
    top_up_tokens: int = Field(default=0, ge=0, le=0xFFFF_FFFF,
                               description="Tokens to load with the acknowledgement EMM.")


class PpvReportOut(BaseModel):
    serial: str
    report_counter: int
    billed: list[int]
    already_billed: list[int]
    amount_minor: int
    ack_emm_queued: bool

    @classmethod
    def of(cls, r: ImportResult) -> PpvReportOut:
        return cls(serial=f"{r.serial:010d}", report_counter=r.report_counter,
                   billed=list(r.billed), already_billed=list(r.already_billed),
                   amount_minor=r.amount_minor, ack_emm_queued=r.ack_emm is not None)


def _keys() -> OperatorKeys:
    try:
        return load_operator_keys()
    except CryptoError as exc:
        raise ConfigError(f"PPV reports need the operator keys: {exc}").with_id(
            "web.ppv_reports_need_operator", exc=exc) from None


@router.post("/ppv/reports", response_model=PpvReportOut, status_code=201, tags=["ppv"])
def post_report(ctx: Ctx, body: PpvReportIn) -> PpvReportOut:
    """Import a card's purchase report: verified, billed once, acknowledged by EMM."""
    keys = _keys()
    data = bytes.fromhex(body.report_hex)

    def run(s: Session, at: datetime) -> PpvReportOut:
        return PpvReportOut.of(import_report(s, keys, data, now_s=to_s(at),
                                             top_up_tokens=body.top_up_tokens))

    return ctx.write("ppv.report", lambda r: r.serial, run,
                     {"bytes": len(data), "top_up_tokens": body.top_up_tokens})
