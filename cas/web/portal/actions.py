"""A subscriber action: one transaction holding the domain call and its audit row, then a
redirect back with the outcome as a flash message — the domain's refusal in the subscriber's
language, or the success text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi.responses import Response
from sqlalchemy.orm import Session

from cas.billing.clock import clock_now
from cas.errors import CasError
from cas.web import audit
from cas.web.errors import WebError
from cas.web.portal.pages import error_text, redirect
from cas.web.portal.visit import Subscriber, Visit

Action = Callable[[Session, datetime], str]
OnError = Callable[[Session, CasError], str]


def run_action(v: Visit, user: Subscriber, action: str, back: str, fn: Action,
               detail: dict[str, Any] | None = None,
               on_error: OnError | None = None) -> Response:
    """Run ``fn(session, store clock)`` (it returns the success text) and audit ``action`` in
    the same transaction; redirect to ``back``.  A refusal is shown there instead:
    ``on_error`` may word it better (an empty answer keeps the catalog's text).  403 and 429
    are not the action's outcome: they go to the app's error page."""
    try:
        with v.tenant.transaction() as s:
            at = clock_now(s)
            message = fn(s, at)
            audit.record(s, v.actor(), action, user.account_number, wall_s=v.now_s,
                         sim_at=at, detail=detail)
    except CasError as exc:
        if isinstance(exc, WebError) and exc.category in ("FORBIDDEN", "RATE_LIMITED"):
            raise
        text = error_text(v, exc)
        if on_error is not None:
            with v.tenant.store.reader() as s:
                text = on_error(s, exc) or text
        return redirect(v, back, error=text)
    return redirect(v, back, ok=message)
