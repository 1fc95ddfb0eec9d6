"""The simulated SMS / e-mail outbox of the account (verification codes left out)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from cas.store.models import Notification
from cas.web.portal.deps import LoggedIn, PortalVisit
from cas.web.portal.pages import render

router = APIRouter()


@router.get("/{op}/notifications", response_class=HTMLResponse)
def notifications_page(v: PortalVisit, user: LoggedIn) -> Response:
    with v.tenant.store.reader() as s:
        rows = [{"at_s": n.at_s, "channel": n.channel, "text": n.text}
                for n in s.execute(
                    select(Notification).where(Notification.account_id == user.account_id,
                                               Notification.kind != "verification_code")
                    .order_by(Notification.id.desc()).limit(50)).scalars()]
    return render(v, "notifications.html", rows=rows,
                  when=lambda ts: v.t.date(datetime.fromtimestamp(ts, UTC)))
