"""The audit log of the operator's store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cas.text import SINGLE_LINE_PATTERN
from cas.web import audit
from cas.web.api.deps import Ctx, Limit
from cas.web.schemas import AuditOut

router = APIRouter()


@router.get("/audit", response_model=list[AuditOut], tags=["audit"])
def get_audit(ctx: Ctx, target: Annotated[str | None,
                                           Query(max_length=64, pattern=SINGLE_LINE_PATTERN)]
              = None,
              after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
              limit: Limit = 100) -> list[AuditOut]:
    """The audit log of this operator's store: who changed what, when."""
    return ctx.read(lambda s, _: [AuditOut(**{f: getattr(e, f) for f in AuditOut.model_fields})
                                       for e in audit.entries(s, target=target, after_id=after_id,
                                                              limit=limit)])
