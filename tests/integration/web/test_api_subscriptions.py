"""Subscriptions through the API: subscribe, switch (ATV+ 30-day rule), extend, renewal,
suspension and resumption, promised payment, promo (TV+, confirmed by SMS) — each with the
rights change it journals, and refusals with their code and nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.web.conftest import WebEnv, assert_error, nothing_written
from tests.integration.web.seed import last_sms_code

pytestmark = pytest.mark.slow


def _causes(env: WebEnv, op: str, card: int) -> list[str]:
    q = env.client.get(f"/api/v1/cards/{card}/emm-queue", headers=env.headers(op)).json()
    return [c["cause"] for c in q["pending_changes"]]


def test_subscribe_then_switch_then_switch_again_is_locked(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    acc = web_env.new_account("atvplus", balance_minor=3000)
    n = acc.account_number
    sub = c.post(f"/api/v1/accounts/{n}/subscriptions", headers=h, json={"package": "sport"})
    assert sub.status_code == 201 and sub.json()["status"] == "active"
    assert sub.json()["days_left"] == 30 and sub.json()["end_s"] - sub.json()["start_s"] == 30 * 86400
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/subscriptions", headers=h,
                            json={"package": "sport"}), 409, "ALREADY_SUBSCRIBED")
        assert_error(c.post(f"/api/v1/accounts/{n}/subscriptions", headers=h,
                            json={"package": "standard"}), 409, "HAS_BASE_PACKAGE")
    sw = c.post(f"/api/v1/accounts/{n}/switch", headers=h, json={"package": "standard"})
    assert sw.status_code == 200, sw.text
    body = sw.json()
    assert (body["from_package"], body["to_package"], body["unused_days"]) == ("sport",
                                                                                "standard", 30)
    assert body["credited_minor"] == 1200 and body["charged_minor"] == 900
    assert body["balance_minor"] == 3000 - 1200 + 1200 - 900
    assert body["next_switch_from_s"] is not None
    assert "switch" in _causes(web_env, "atvplus", acc.card)
    with nothing_written(web_env):
        err = assert_error(c.post(f"/api/v1/accounts/{n}/switch", headers=h,
                                  json={"package": "sport"}), 409, "SWITCH_LOCKED")
        assert err["category"] == "RULE_REFUSED" and "30-day" in err["message"]
        assert_error(c.post(f"/api/v1/accounts/{n}/switch", headers=h,
                            json={"package": "nope"}), 404, "UNKNOWN_PACKAGE")
        assert_error(c.post(f"/api/v1/accounts/{n}/switch", headers=h, json={"package": 2}),
                     422, "INVALID_REQUEST")


def test_extend_prepays_a_period(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    acc = web_env.new_account("atvplus", balance_minor=2400, package="sport")
    n = acc.account_number
    ext = c.post(f"/api/v1/accounts/{n}/subscriptions/sport/extend", headers=h,
                 json={"periods": 1})
    assert ext.status_code == 200 and ext.json()["days_left"] == 60
    assert "extend" in _causes(web_env, "atvplus", acc.card)
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/subscriptions/sport/extend", headers=h,
                            json={"periods": 1}), 409, "INSUFFICIENT_FUNDS")
        assert_error(c.post(f"/api/v1/accounts/{n}/subscriptions/sport/extend", headers=h,
                            json={"periods": 0}), 422, "BAD_PERIODS")
        assert_error(c.post(f"/api/v1/accounts/{n}/subscriptions/standard/extend",
                            headers=h, json={}), 409, "NOT_ACTIVE")
        assert_error(c.post(f"/api/v1/accounts/{n}/subscriptions/sport/extend", headers=h,
                            json={"periods": "2"}), 422, "INVALID_REQUEST")


def test_renewal_off_and_on_keeps_the_paid_window(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    acc = web_env.new_account("atvplus", balance_minor=1200, package="sport")
    n = acc.account_number
    before = c.get(f"/api/v1/accounts/{n}/subscriptions", headers=h).json()[0]
    off = c.put(f"/api/v1/accounts/{n}/renewal", headers=h, json={"on": False})
    assert off.status_code == 200 and off.json()[0]["auto_renew"] is False
    assert off.json()[0]["end_s"] == before["end_s"]
    on = c.put(f"/api/v1/accounts/{n}/renewal", headers=h, json={"on": True,
                                                                  "package": "sport"})
    assert on.json()[0]["auto_renew"] is True and on.json()[0]["end_s"] == before["end_s"]
    with nothing_written(web_env):
        assert_error(c.put(f"/api/v1/accounts/{n}/renewal", headers=h,
                           json={"on": True, "package": "standard"}), 404,
                     "UNKNOWN_SUBSCRIPTION")
        assert_error(c.put(f"/api/v1/accounts/{n}/renewal", headers=h, json={"on": "yes"}),
                     422, "INVALID_REQUEST")


def test_suspension_and_resumption_on_mts(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers("mts")
    acc = web_env.new_account("mts", balance_minor=19000, package="basic")
    n = acc.account_number
    now_s = c.get("/api/v1/operator", headers=h).json()["now_s"]
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/suspension", headers=h,
                            json={"until_s": now_s + 3600}), 422, "BAD_SUSPENSION")
        assert_error(c.delete(f"/api/v1/accounts/{n}/suspension", headers=h), 409,
                     "NOT_SUSPENDED")
    sus = c.post(f"/api/v1/accounts/{n}/suspension", headers=h,
                 json={"until_s": now_s + 10 * 86400})
    assert sus.status_code == 201 and sus.json()["suspended_until_s"] == now_s + 10 * 86400
    state = c.get(f"/api/v1/cards/{acc.card}/entitlements", headers=h).json()
    assert state["status"] == "SUSPENDED"
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/suspension", headers=h, json={}), 409,
                     "ALREADY_SUSPENDED")
    res = c.delete(f"/api/v1/accounts/{n}/suspension", headers=h)
    assert res.status_code == 200 and res.json()["suspended_from_s"] is None
    assert _causes(web_env, "mts", acc.card)[-2:] == ["suspend", "resume"]
    # ATV+ has no suspension: a rule refusal.
    a = web_env.new_account("atvplus")
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{a.account_number}/suspension",
                            headers=web_env.headers(), json={}), 409, "SUSPENSION_UNSUPPORTED")


def test_promised_payment_on_mts(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers("mts")
    acc = web_env.new_account("mts", balance_minor=19000, package="basic")
    n = acc.account_number
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/promised-payment", headers=h,
                            json={"amount_minor": -5}), 422, "NEGATIVE_AMOUNT")
        assert_error(c.post(f"/api/v1/accounts/{n}/promised-payment", headers=h,
                            json={"amount_minor": 10**9}), 422, "PROMISE_TOO_LARGE")
    got = c.post(f"/api/v1/accounts/{n}/promised-payment", headers=h, json={})
    assert got.status_code == 201, got.text
    assert got.json()["promised_minor"] > 0 and got.json()["promised_due_s"] is not None
    atv = web_env.new_account().account_number
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/promised-payment", headers=h, json={}), 409,
                     "PROMISE_OPEN")
        assert_error(c.post(f"/api/v1/accounts/{atv}/promised-payment",
                            headers=web_env.headers(), json={}), 409, "PROMISE_UNSUPPORTED")


def test_promo_on_tvplus_needs_the_sms_code(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers("tvplus")
    acc = web_env.new_account("tvplus")
    n = acc.account_number
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/promo", headers=h,
                            json={"code": "TVPLUS30"}), 409, "VERIFICATION_REQUIRED")
    started = c.post("/api/v1/verifications", headers=h,
                     json={"account_number": n, "phone": acc.phone})
    assert started.status_code == 201
    token = started.json()["token"]
    assert "code" not in started.json()  # the code only goes by SMS
    with web_env.store("tvplus").reader() as s:
        code = last_sms_code(s, n)
    wrong = c.post(f"/api/v1/verifications/{token}/confirm", headers=h,
                   json={"code": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 200 and wrong.json()["verified"] is False
    ok = c.post(f"/api/v1/verifications/{token}/confirm", headers=h, json={"code": code})
    assert ok.json()["verified"] is True
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/promo", headers=h,
                            json={"code": "NOPE", "verification": token}), 404, "UNKNOWN_PROMO")
    red = c.post(f"/api/v1/accounts/{n}/promo", headers=h,
                 json={"code": "TVPLUS30", "verification": token})
    assert red.status_code == 201, red.text
    assert red.json()["package_code"] == "start" and red.json()["days_left"] == 30
    assert "promo" in _causes(web_env, "tvplus", acc.card)
    trail = c.get("/api/v1/audit", headers=h, params={"target": n}).json()
    assert [e["action"] for e in trail] == ["verification.start", "verification.confirm",
                                            "verification.confirm", "promo.redeem"]
    assert token not in str(trail) and all("code" not in e["detail"] for e in trail)
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{n}/promo", headers=h,
                            json={"code": "TVPLUS30", "verification": token}), 409,
                     "PROMO_USED")
    atv = web_env.new_account("atvplus").account_number
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/accounts/{atv}/promo", headers=web_env.headers(),
                            json={"code": "TVPLUS30"}), 409, "PROMO_UNSUPPORTED")


def test_subscription_listing_and_unknown_account(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    a1 = web_env.seeded["atvplus"].accounts["a2"]
    listing = c.get(f"/api/v1/accounts/{a1.account_number}/subscriptions",
                    params={"include_closed": True}, headers=h)
    assert listing.status_code == 200 and isinstance(listing.json(), list)
    for path in ("subscriptions", "balance", "statement"):
        assert_error(c.get(f"/api/v1/accounts/999999999999/{path}", headers=h), 404,
                     "UNKNOWN_ACCOUNT")
    assert_error(c.get("/api/v1/accounts/12ab/subscriptions", headers=h), 422,
                 "INVALID_REQUEST")
    body: dict[str, Any] = {"package": "sport", "verification": None}
    with nothing_written(web_env):
        assert_error(c.post("/api/v1/accounts/999999999999/subscriptions", headers=h,
                            json=body), 404, "UNKNOWN_ACCOUNT")
