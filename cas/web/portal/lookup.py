"""Account look-up (MTS: Chip ID + card number, no login)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from cas.billing import service
from cas.errors import CasError
from cas.web.portal import throttle
from cas.web.portal.deps import CheckedVisit, PortalVisit
from cas.web.portal.pages import render

router = APIRouter()


@router.get("/{op}/lookup", response_class=HTMLResponse)
def lookup_page(v: PortalVisit) -> Response:
    return render(v, "lookup.html", result=None, error=None, chip_id="", card="")


@router.post("/{op}/lookup", response_class=HTMLResponse)
def lookup(v: CheckedVisit, chip_id: Annotated[str, Form()] = "",
           card: Annotated[str, Form()] = "") -> Response:
    """Find the personal account number from the box's Chip ID and the smart-card number.
    Any mismatch — unknown box, unknown card, someone else's card — gets one answer, after
    the same queries; attempts per address are limited."""
    key = [(f"lookup:ip:{v.ip}", v.state.settings.lookup_per_ip)]
    throttle.check(v, key)
    throttle.count(v, key)
    chip_text = chip_id.strip().upper().removeprefix("0X")
    card_text = card.strip()
    if not re.fullmatch(r"[0-9A-F]{1,8}", chip_text) or not re.fullmatch(r"[0-9]{1,10}",
                                                                            card_text):
        return render(v, "lookup.html", status=422, result=None, error=v.t("lookup.bad_input"),
                      chip_id=chip_id[:16], card=card[:16])
    number = None
    with v.tenant.store.reader() as s:
        try:
            number = service.lookup_by_chip_and_card(s, chip_id=int(chip_text, 16),
                                                     card_serial=int(card_text))
        except CasError:
            number = None
    if number is None:
        return render(v, "lookup.html", status=200, result=None, error=v.t("lookup.no_match"),
                      chip_id=chip_id[:16], card=card[:16])
    return render(v, "lookup.html", result=number, error=None, chip_id=chip_id[:16],
                  card=card[:16])
