"""The operator API (``/api/v1``): what billing and CRM systems call.

One router per resource, included here in the order of the OpenAPI document
(``docs/openapi.json``): catalog, accounts, subscriptions, payments, cards (with the EMM
queue), boxes, look-up and verifications, audit.  What every handler shares is declared once
in :mod:`cas.web.api.deps`: the ``X-API-Key`` check (``Ctx``), one read or one audited write
transaction on the key's operator store, and the parameter types.

Handlers are thin: one domain call (:mod:`cas.billing.service`, :mod:`cas.billing.accounts`,
:mod:`cas.billing.records`, :mod:`cas.billing.emm_queue`, :mod:`cas.headend.why`) and the
response model.  The domain functions record the rights changes themselves
(``rights_changes`` journal, ``cards.rights_version``), which is what the EMM generator's
incremental feed turns into EMMs; ``/emm-queue`` shows that queue.  Refusals are our typed
errors, answered by the app's exception handlers (:func:`cas.web.errors.classify`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cas.web.api import (
    accounts,
    audit,
    boxes,
    cards,
    catalog,
    payments,
    ppv,
    subscriptions,
    verification,
)
from cas.web.api.deps import API_PREFIX, ApiContext, api_context
from cas.web.schemas import ErrorOut

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text} for status, text in (
        (400, "Malformed request"), (401, "Missing or invalid API key"),
        (404, "Unknown record"), (409, "Conflict or refused by a subscriber rule"),
        (422, "Invalid input"), (503, "Store unavailable"))
}
router = APIRouter(prefix=API_PREFIX, responses=_ERRORS)
for _part in (catalog, accounts, subscriptions, payments, cards, boxes, verification, audit,
              ppv):
    router.include_router(_part.router)

__all__ = ["API_PREFIX", "ApiContext", "api_context", "router"]
