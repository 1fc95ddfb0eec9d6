"""POST /ppv/reports: a card's signed purchase report billed once through the operator API;
the same report again is 409 PPV_REPORT_REPLAYED, a tampered one 409 PPV_REPORT_FORGED, and
neither writes a row."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cas.card.ppv import next_report
from cas.crypto import Key, OperatorKeys
from cas.formats.ppv import PpvState, Purchase
from cas.store.models import Account
from tests.integration.web.conftest import WebEnv, assert_error, nothing_written

pytestmark = pytest.mark.slow

KEYS = OperatorKeys(Key(bytes(range(16, 32)), label="omk"))


@pytest.fixture(autouse=True)
def operator_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAS_OPERATOR_KEY", bytes(range(16, 32)).hex())


def _balance(env: WebEnv, number: str) -> int:
    with env.store("tvplus").reader() as s:
        return int(s.execute(select(Account.balance_minor)
                             .where(Account.account_number == number)).scalar_one())


def test_report_billed_once_replay_and_forgery_refused(web_env: WebEnv) -> None:
    acc = web_env.new_account("tvplus", balance_minor=500_00)
    state = PpvState(purse_tokens=100, purchases=(
        Purchase(purchase_seq=1, event_id=42, channel_id=1001, price_tokens=120,
                 bought_s=1_780_000_000),))
    _, report = next_report(state, acc.card, KEYS.cuk(acc.card))
    headers = web_env.headers("tvplus")
    resp = web_env.client.post("/api/v1/ppv/reports", headers=headers,
                               json={"report_hex": report.hex(), "top_up_tokens": 50})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["billed"] == [1] and body["ack_emm_queued"] is True
    assert body["amount_minor"] == 120 * 100
    assert _balance(web_env, acc.account_number) == 500_00 - 120 * 100
    with nothing_written(web_env):
        again = web_env.client.post("/api/v1/ppv/reports", headers=headers,
                                    json={"report_hex": report.hex()})
        assert_error(again, 409, "PPV_REPORT_REPLAYED")
        forged = bytearray(report)
        forged[-17] ^= 0x01
        bad = web_env.client.post("/api/v1/ppv/reports", headers=headers,
                                  json={"report_hex": bytes(forged).hex()})
        assert_error(bad, 409, "PPV_REPORT_FORGED")
    assert _balance(web_env, acc.account_number) == 500_00 - 120 * 100
