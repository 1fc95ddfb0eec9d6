"""A change of rights made through the API reaches the card as an EMM: the payment that
activates "+Sport" shows up in the card's EMM queue, the EMM generator's incremental run
(``cas.headend.emmrun.emm_run``) sends a unique EMM carrying the new entitlement — opened
here with the card's own key — and the queue is empty again until the next change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cas.billing.clock import clock_now
from cas.crypto import OperatorKeys
from cas.errors import AuthenticationError, FormatError
from cas.formats.emm import AddEntitlement, UniqueAddress
from cas.formats.sections import iter_sections
from cas.headend.emmgen import EmmSettings
from cas.headend.emmrun import emm_run
from cas.messages import open_emm
from cas.store.engine import Store
from cas.web.app import create_app
from cas.web.settings import WebSettings, tenant_of
from tests.integration.web.conftest import TestClient
from tests.integration.web.seed import seed_operator

pytestmark = pytest.mark.slow


def test_payment_rights_change_is_queued_then_sent_as_an_emm(db_url: str, tmp_path: Path) -> None:
    store = Store.open(db_url)
    seeded = seed_operator(store, "atvplus")
    a1 = seeded.accounts["a1"]
    keys = OperatorKeys.generate()
    app = create_app([tenant_of(store)], WebSettings(secret_key=os.urandom(32)))
    h = {"X-API-Key": seeded.api_key}
    try:
        with TestClient(app) as c:
            # Send what the seed itself queued, so the queue starts empty.
            with store.reader() as s:
                at = clock_now(s)
            emm_run(store, keys, mode="incremental", at=at, out=str(tmp_path / "seed.emm"),
                    settings=EmmSettings(shared_min_members=0), workers=1)
            assert c.get(f"/api/v1/cards/{a1.card}/emm-queue", headers=h).json()["pending"] \
                is False
            for i in (1, 2):  # seed 002: 1 + 10 + 10 on the 12 manat "+Sport"
                r = c.post("/api/v1/payments", headers={**h, "Idempotency-Key": f"emm-{i}"},
                           json={"by": "card", "ref": str(a1.card), "amount_minor": 1000,
                                 "package": "sport", "method": "payment_card"})
                assert r.status_code == 201
            queue = c.get(f"/api/v1/cards/{a1.card}/emm-queue", headers=h).json()
            assert queue["pending"] and [x["cause"] for x in queue["pending_changes"]] == \
                ["payment"]
            summary = c.get("/api/v1/emm-queue", headers=h).json()
            assert summary["cards_pending"] == 1

            out = tmp_path / "incremental.emm"
            report = emm_run(store, keys, mode="incremental", at=at, out=str(out),
                             settings=EmmSettings(shared_min_members=0), workers=1)
            assert report.cards == 1 and report.unique_emms >= 1
            mine = []
            for section in iter_sections(out.read_bytes()):
                try:
                    header, commands = open_emm(keys.cuk(a1.card), section)
                except (AuthenticationError, FormatError):  # another card's EMM
                    continue
                assert header.address == UniqueAddress(serial=a1.card)
                mine.extend(commands)
            adds = [cmd for cmd in mine if isinstance(cmd, AddEntitlement)]
            assert [(e.package_id, e.end_s - e.start_s) for e in adds] == [(2, 30 * 86400)]

            after = c.get(f"/api/v1/cards/{a1.card}/emm-queue", headers=h).json()
            assert after["pending"] is False and after["pending_changes"] == []
            assert after["sent_rights_version"] == after["rights_version"]
            assert c.get("/api/v1/emm-queue", headers=h).json()["cards_pending"] == 0
    finally:
        store.dispose()
