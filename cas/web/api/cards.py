"""Smart cards: list, read, link to an account, pair with a box, the entitlement state, `why`
and the card's EMM queue; and the store's EMM queue."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing.emm_queue import card_emm_queue as billing_card_emm_queue
from cas.billing.emm_queue import emm_queue_summary
from cas.billing.state import card_state_at
from cas.store.repo import get_card as repo_get_card
from cas.text import SINGLE_LINE_PATTERN
from cas.web.api.deps import AtS, Ctx, Limit, Offset, SerialPath, at_or_now, serial_text
from cas.web.schemas import (
    AccountNumber,
    CardEmmQueueOut,
    CardOut,
    ChipIdHex,
    EmmQueueOut,
    EntitlementOut,
    EntitlementStateOut,
    LinkIn,
    PairIn,
    WhyOut,
)

router = APIRouter()


def _card_out(s: Session, serial: int) -> CardOut:
    return CardOut.of(acc_mod.card_view(s, repo_get_card(s, serial)))


@router.get("/cards", response_model=list[CardOut], tags=["cards"])
def get_cards(ctx: Ctx, account: Annotated[AccountNumber | None, Query()] = None,
              limit: Limit = 100, offset: Offset = 0) -> list[CardOut]:
    return ctx.read(lambda s, _: [CardOut.of(v) for v in acc_mod.list_cards(
           s, account_number=account, limit=limit, offset=offset)])


@router.get("/cards/{serial}", response_model=CardOut, tags=["cards"])
def get_card(ctx: Ctx, serial: SerialPath) -> CardOut:
    return ctx.read(lambda s, _: _card_out(s, serial))


@router.post("/cards/{serial}/link", response_model=CardOut, tags=["cards"])
def link_card(ctx: Ctx, serial: SerialPath, body: LinkIn) -> CardOut:
    """Give a registered card to an account (it takes the account's region)."""
    def run(s: Session, at: datetime) -> CardOut:
        acc_mod.link_card(s, serial=serial, account_number=body.account_number, at=at)
        return _card_out(s, serial)
    return ctx.write("card.link", serial_text(serial), run, body.model_dump())


@router.delete("/cards/{serial}/link", response_model=CardOut, tags=["cards"])
def unlink_card(ctx: Ctx, serial: SerialPath) -> CardOut:
    def run(s: Session, at: datetime) -> CardOut:
        acc_mod.unlink_card(s, serial=serial, at=at)
        return _card_out(s, serial)
    return ctx.write("card.unlink", serial_text(serial), run)


@router.post("/cards/{serial}/pair", response_model=CardOut, tags=["cards"])
def pair_card(ctx: Ctx, serial: SerialPath, body: PairIn) -> CardOut:
    """Pair the card with a box (a PAIR EMM carries the pairing key to the card)."""
    def run(s: Session, at: datetime) -> CardOut:
        acc_mod.pair_card(s, serial=serial, chip_id=int(body.chip_id, 16), at=at)
        return _card_out(s, serial)
    return ctx.write("card.pair", serial_text(serial), run, body.model_dump())


@router.get("/cards/{serial}/entitlements", response_model=EntitlementStateOut, tags=["cards"])
def get_entitlements(ctx: Ctx, serial: SerialPath, at_s: AtS = None) -> EntitlementStateOut:
    """The rights the card should hold at a moment (the EMM generator's input)."""
    def run(s: Session, now: datetime) -> EntitlementStateOut:
        at = at_or_now(at_s, now)
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
    return ctx.read(run)


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
        at = at_or_now(at_s, now)
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
    return ctx.read(run)


@router.get("/cards/{serial}/emm-queue", response_model=CardEmmQueueOut, tags=["emm"])
def card_emm_queue(ctx: Ctx, serial: SerialPath) -> CardEmmQueueOut:
    """Rights changes of this card not yet carried by an EMM, and its EMM outbox rows."""
    return ctx.read(lambda s, _: CardEmmQueueOut.of(billing_card_emm_queue(s, serial)))


@router.get("/emm-queue", response_model=EmmQueueOut, tags=["emm"])
def emm_queue(ctx: Ctx) -> EmmQueueOut:
    """Cards waiting for EMMs, the journal size and the EMM outbox by status."""
    return ctx.read(lambda s, _: EmmQueueOut.of(emm_queue_summary(s)))
