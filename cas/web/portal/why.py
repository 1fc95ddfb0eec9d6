"""Why is my channel locked: the head-end's explanation (:func:`cas.headend.why.explain`, as
``cas why``) for one of the subscriber's own cards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from cas.billing import accounts as acc_mod
from cas.billing.clock import clock_now
from cas.billing.selfcare import own_card_serial
from cas.errors import CasError
from cas.i18n import Translator as Words
from cas.reasons import Reason, info
from cas.web.portal.deps import LoggedIn, PortalVisit
from cas.web.portal.pages import error_text, render

router = APIRouter()


@router.get("/{op}/why", response_class=HTMLResponse)
def why_page(v: PortalVisit, user: LoggedIn,
             card: Annotated[str, Query(max_length=16)] = "",
             channel: Annotated[str, Query(max_length=64)] = "") -> Response:
    """The head-end's explanation for one of the subscriber's own cards (someone else's card
    reads like no card)."""
    from cas.headend.why import explain

    with v.tenant.store.reader() as s:
        cards = acc_mod.list_cards(s, account_number=user.account_number)
        result = None
        error = None
        if card and channel:
            serial = own_card_serial(s, user.account_id, card.strip())
            if serial is None:
                error = v.t("err.CARD_NOT_YOURS")
            else:
                try:
                    result = explain(s, serial, channel.strip(), clock_now(s))
                except CasError as exc:
                    error = error_text(v, exc)
    reason_text = cause_text = fix_text = None
    if result is not None:
        reason_text = v.t(f"reason.{result.reason.value}") \
            if v.t.has(f"reason.{result.reason.value}") else (
                info(result.reason).ru if v.t.lang == "ru" else info(result.reason).en)
        # The cause and the fix in the page's language, the words `cas why` uses (the
        # command lines' catalogue): the same explanation at the counter and at home.
        words = Words(v.t.lang)
        cause_text, fix_text = words(result.cause_msg), words(result.fix_msg)
    return render(v, "why.html", cards=cards, card=card, channel=channel, result=result,
                  error=error, reason_text=reason_text, cause_text=cause_text,
                  fix_text=fix_text,
                  is_open=result is not None and result.reason is Reason.OPEN)
