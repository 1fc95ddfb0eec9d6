"""API keys: missing, malformed, unknown, wrong secret, revoked, and scoped to one operator —
another operator's card is as unknown as a card that does not exist, and nothing is written."""

from __future__ import annotations

import time

import pytest

from cas.web.domain import create_api_key, revoke_api_key
from tests.integration.web.conftest import WebEnv, assert_error, nothing_written

pytestmark = pytest.mark.slow


def test_missing_key(web_env: WebEnv) -> None:
    with nothing_written(web_env):
        resp = web_env.client.get("/api/v1/operator")
        err = assert_error(resp, 401, "API_KEY_REQUIRED")
    assert err["category"] == "UNAUTHENTICATED"
    assert "ApiKey" in resp.headers["www-authenticate"]


@pytest.mark.parametrize("key", [
    "nope",
    "cas.atvplus.0123456789abcdef." + "0" * 64,  # well-formed, unknown id
    "cas.nosuchop.0123456789abcdef." + "0" * 64,  # operator not served here
    "cas.atvplus.0123456789abcdef." + "0" * 63,  # one hex digit short
])
def test_invalid_keys(web_env: WebEnv, key: str) -> None:
    with nothing_written(web_env):
        assert_error(web_env.client.get("/api/v1/operator", headers={"X-API-Key": key}),
                     401, "INVALID_API_KEY")
        assert_error(web_env.client.post(
            "/api/v1/payments", headers={"X-API-Key": key, "Idempotency-Key": "k"},
            json={"by": "card", "ref": "1000000001", "amount_minor": 100}), 401,
            "INVALID_API_KEY")


def test_wrong_secret_for_a_real_key_id(web_env: WebEnv) -> None:
    real = web_env.seeded["atvplus"].api_key
    forged = real[:-1] + ("0" if real[-1] != "0" else "1")
    with nothing_written(web_env):
        assert_error(web_env.client.get("/api/v1/operator", headers={"X-API-Key": forged}),
                     401, "INVALID_API_KEY")


def test_key_of_one_operator_presented_as_another(web_env: WebEnv) -> None:
    # The MTS key's id and secret, relabelled "atvplus": the ATV+ store does not know it.
    _, _, key_id, secret = web_env.seeded["mts"].api_key.split(".")
    relabelled = f"cas.atvplus.{key_id}.{secret}"
    with nothing_written(web_env):
        assert_error(web_env.client.get("/api/v1/operator", headers={"X-API-Key": relabelled}),
                     401, "INVALID_API_KEY")


def test_revoked_key(web_env: WebEnv) -> None:
    store = web_env.store("atvplus")
    with store.transaction() as s:
        minted = create_api_key(s, operator="atvplus", label="to revoke", wall_s=int(time.time()))
    ok = web_env.client.get("/api/v1/operator", headers={"X-API-Key": minted.full})
    assert ok.status_code == 200 and ok.json()["key"] == "atvplus"
    with store.transaction() as s:
        revoke_api_key(s, key_id=minted.key_id, wall_s=int(time.time()))
    assert_error(web_env.client.get("/api/v1/operator", headers={"X-API-Key": minted.full}),
                 401, "INVALID_API_KEY")


def test_each_key_sees_its_own_operator(web_env: WebEnv) -> None:
    for op in ("atvplus", "mts", "tvplus"):
        body = web_env.client.get("/api/v1/operator", headers=web_env.headers(op)).json()
        assert body["key"] == op


def test_another_operators_card_is_unknown_and_nothing_written(web_env: WebEnv) -> None:
    mts_card = web_env.seeded["mts"].accounts["m1"].card
    mts_account = web_env.seeded["mts"].accounts["m1"].account_number
    h = web_env.headers("atvplus")
    c = web_env.client
    # The card exists — in the MTS store.  With the ATV+ key it reads like no card at all.
    assert c.get(f"/api/v1/cards/{mts_card}", headers=web_env.headers("mts")).status_code == 200
    unknown = assert_error(c.get("/api/v1/cards/4199999999", headers=h), 404, "UNKNOWN_CARD")
    with nothing_written(web_env):
        other = assert_error(c.get(f"/api/v1/cards/{mts_card}", headers=h), 404, "UNKNOWN_CARD")
        assert other["category"] == unknown["category"] == "NOT_FOUND"
        assert_error(c.get(f"/api/v1/cards/{mts_card}/why", params={"channel": "1"}, headers=h),
                     404, "UNKNOWN_CARD")
        assert_error(c.get(f"/api/v1/cards/{mts_card}/emm-queue", headers=h), 404,
                     "UNKNOWN_CARD")
        assert_error(c.post(f"/api/v1/cards/{mts_card}/link", headers=h,
                            json={"account_number": web_env.seeded["atvplus"].accounts["a1"]
                                  .account_number}), 404, "UNKNOWN_CARD")
        assert_error(c.post("/api/v1/payments", headers={**h, "Idempotency-Key": "x-op-1"},
                            json={"by": "card", "ref": str(mts_card), "amount_minor": 1000}),
                     404, "UNKNOWN_CARD")
        # Account numbers are per operator: the same number in the ATV+ store is an ATV+
        # subscriber, never the MTS one.
        same_number = c.get(f"/api/v1/accounts/{mts_account}", headers=h)
        assert same_number.status_code == 404 or same_number.json()["surname"] != "Smirnova"
