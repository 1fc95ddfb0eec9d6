"""Set-top boxes: list, read, link to an account."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.web.api.deps import ChipPath, Ctx, Limit, Offset
from cas.web.schemas import AccountNumber, BoxOut, LinkIn

router = APIRouter()


@router.get("/boxes", response_model=list[BoxOut], tags=["boxes"])
def get_boxes(ctx: Ctx, account: Annotated[AccountNumber | None, Query()] = None,
              limit: Limit = 100, offset: Offset = 0) -> list[BoxOut]:
    return ctx.read(lambda s, _: [BoxOut.of(v) for v in acc_mod.list_boxes(
           s, account_number=account, limit=limit, offset=offset)])


@router.get("/boxes/{chip_id}", response_model=BoxOut, tags=["boxes"])
def get_box(ctx: Ctx, chip_id: ChipPath) -> BoxOut:
    return ctx.read(lambda s, _: BoxOut.of(acc_mod.get_box(s, int(chip_id, 16))))


@router.post("/boxes/{chip_id}/link", response_model=BoxOut, tags=["boxes"])
def link_box(ctx: Ctx, chip_id: ChipPath, body: LinkIn) -> BoxOut:
    def run(s: Session, at: datetime) -> BoxOut:
        acc_mod.link_box(s, chip_id=int(chip_id, 16), account_number=body.account_number, at=at)
        return BoxOut.of(acc_mod.get_box(s, int(chip_id, 16)))
    return ctx.write("box.link", f"{int(chip_id, 16):08X}", run, body.model_dump())
