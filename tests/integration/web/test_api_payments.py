"""POST /payments and GET /payments/{id}: the ATV+ seed by API, idempotency keys, and every
kind of bad input answered with its documented code and nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from cas.store.models import Payment
from tests.integration.web.conftest import WebEnv, assert_error, nothing_written

pytestmark = pytest.mark.slow


def _pay(env: WebEnv, key: str, body: dict[str, Any], op: str = "atvplus") -> Any:
    return env.client.post("/api/v1/payments", json=body,
                           headers=env.headers(op, **{"Idempotency-Key": key}))


def test_atv_seed_payments_activate_the_package_with_9_left(web_env: WebEnv) -> None:
    acc = web_env.new_account("atvplus", balance_minor=100)
    card = str(acc.card)
    first = _pay(web_env, f"atv-{card}-1", {"by": "card", "ref": card, "amount_minor": 1000,
                                            "method": "payment_card", "package": "sport"})
    assert first.status_code == 201, first.text
    assert first.json()["balance_minor"] == 1100
    assert first.json()["activated"] == [] and first.json()["pending"] == ["sport"]
    second = _pay(web_env, f"atv-{card}-2", {"by": "card", "ref": card, "amount_minor": 1000,
                                             "method": "payment_card", "package": "sport"})
    assert second.status_code == 201
    assert second.json()["activated"] == ["sport"] and second.json()["balance_minor"] == 900
    subs = web_env.client.get(f"/api/v1/accounts/{acc.account_number}/subscriptions",
                              headers=web_env.headers()).json()
    assert [(s["package_code"], s["status"], s["days_left"]) for s in subs] == [
        ("sport", "active", 30)]
    record = web_env.client.get(f"/api/v1/payments/{second.json()['payment_id']}",
                                headers=web_env.headers())
    assert record.status_code == 200
    assert record.json()["account_number"] == acc.account_number
    assert record.json()["amount_minor"] == 1000 and record.json()["method"] == "payment_card"
    # The activation is journalled for the EMM generator.
    queue = web_env.client.get(f"/api/v1/cards/{card}/emm-queue",
                               headers=web_env.headers()).json()
    assert queue["pending"] and "payment" in [c["cause"] for c in queue["pending_changes"]]


def test_replayed_idempotency_key_same_body_gives_same_answer_and_one_payment(
        web_env: WebEnv) -> None:
    acc = web_env.new_account("atvplus")
    body = {"by": "account", "ref": acc.account_number, "amount_minor": 1500}
    first = _pay(web_env, f"idem-{acc.card}", body)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    with nothing_written(web_env):
        again = _pay(web_env, f"idem-{acc.card}", dict(reversed(list(body.items()))))
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
    with web_env.store().reader() as s:
        n = s.execute(select(func.count()).select_from(Payment).where(
            Payment.payment_id == first.json()["payment_id"])).scalar_one()
    assert n == 1


def test_replayed_idempotency_key_with_another_body_is_409(web_env: WebEnv) -> None:
    acc = web_env.new_account("atvplus")
    body = {"by": "account", "ref": acc.account_number, "amount_minor": 1500}
    assert _pay(web_env, f"idem2-{acc.card}", body).status_code == 201
    with nothing_written(web_env):
        assert_error(_pay(web_env, f"idem2-{acc.card}", {**body, "amount_minor": 1600}),
                     409, "IDEMPOTENCY_KEY_REUSED")


def test_idempotency_keys_are_per_api_key(web_env: WebEnv) -> None:
    # The same Idempotency-Key from two operators are two different requests.
    a = web_env.new_account("atvplus")
    m = web_env.new_account("mts")
    ra = _pay(web_env, "shared-key-1", {"by": "card", "ref": str(a.card), "amount_minor": 100})
    rm = _pay(web_env, "shared-key-1", {"by": "card", "ref": str(m.card), "amount_minor": 100},
              op="mts")
    assert ra.status_code == rm.status_code == 201
    assert ra.json()["account_number"] == a.account_number
    assert rm.json()["account_number"] == m.account_number


def test_explicit_payment_id_seen_before_is_a_duplicate(web_env: WebEnv) -> None:
    acc = web_env.new_account("atvplus")
    body = {"by": "card", "ref": str(acc.card), "amount_minor": 500,
            "payment_id": f"bank-{acc.card}"}
    assert _pay(web_env, f"dup-a-{acc.card}", body).status_code == 201
    with nothing_written(web_env):
        assert_error(_pay(web_env, f"dup-b-{acc.card}", body), 409, "DUPLICATE_PAYMENT")


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"by": "card", "ref": "R", "amount_minor": -100}, 422, "NEGATIVE_AMOUNT"),
    ({"by": "card", "ref": "R", "amount_minor": 0}, 422, "ZERO_AMOUNT"),
    ({"by": "card", "ref": "R", "amount_minor": 10**14}, 422, "BAD_AMOUNT"),
    ({"by": "card", "ref": "R", "amount_minor": "100"}, 422, "INVALID_REQUEST"),
    ({"by": "card", "ref": "R", "amount_minor": 1.5}, 422, "INVALID_REQUEST"),
    ({"by": "card", "ref": "R", "amount_minor": True}, 422, "INVALID_REQUEST"),
    ({"by": "card", "ref": 1000000001, "amount_minor": 100}, 422, "INVALID_REQUEST"),
    ({"by": "phone", "ref": "R", "amount_minor": 100}, 422, "INVALID_REQUEST"),
    ({"by": "card", "ref": "R", "amount_minor": 100, "method": "crypto"}, 422,
     "INVALID_REQUEST"),
    ({"by": "card", "ref": "R", "amount_minor": 100, "extra": 1}, 422, "INVALID_REQUEST"),
    ({"by": "card", "ref": "R"}, 422, "INVALID_REQUEST"),
    ({"by": "card", "ref": "R", "amount_minor": 1100, "method": "payment_card"}, 422,
     "BAD_DENOMINATION"),
    ({"by": "card", "ref": "R", "amount_minor": 100, "package": "no-such"}, 404,
     "UNKNOWN_PACKAGE"),
    ({"by": "card", "ref": "R", "amount_minor": 100, "payment_id": "has space"}, 422,
     "BAD_PAYMENT_ID"),
    ({"by": "card", "ref": "4199999999", "amount_minor": 100}, 404, "UNKNOWN_CARD"),
    ({"by": "card", "ref": "12ab", "amount_minor": 100}, 422, "BAD_SERIAL"),
    ({"by": "account", "ref": "999999999999", "amount_minor": 100}, 404, "UNKNOWN_ACCOUNT"),
    ({"by": "contract", "ref": "NOPE-1", "amount_minor": 100}, 404, "UNKNOWN_CONTRACT"),
])
def test_bad_payments_answer_their_code_and_write_nothing(
        web_env: WebEnv, body: dict[str, Any], status: int, code: str) -> None:
    card = str(web_env.seeded["atvplus"].accounts["a2"].card)
    body = {k: (card if v == "R" else v) for k, v in body.items()}
    with nothing_written(web_env):
        assert_error(_pay(web_env, f"bad-{code}", body), status, code)


def test_malformed_json_and_missing_idempotency_key(web_env: WebEnv) -> None:
    card = str(web_env.seeded["atvplus"].accounts["a2"].card)
    with nothing_written(web_env):
        resp = web_env.client.post("/api/v1/payments", content=b"{not json",
                                   headers=web_env.headers(**{"Idempotency-Key": "m1",
                                                              "Content-Type": "application/json"}))
        assert_error(resp, 400, "BAD_REQUEST")
        assert_error(web_env.client.post("/api/v1/payments", headers=web_env.headers(),
                                          json={"by": "card", "ref": card, "amount_minor": 100}),
                     422, "IDEMPOTENCY_KEY_REQUIRED")
        assert_error(web_env.client.post(
            "/api/v1/payments", headers=web_env.headers(**{"Idempotency-Key": "bad key!"}),
            json={"by": "card", "ref": card, "amount_minor": 100}), 422, "INVALID_REQUEST")


def test_unknown_payment_id(web_env: WebEnv) -> None:
    assert_error(web_env.client.get("/api/v1/payments/nope-123", headers=web_env.headers()),
                 404, "UNKNOWN_PAYMENT")
    assert_error(web_env.client.get("/api/v1/payments/has%20space", headers=web_env.headers()),
                 422, "INVALID_REQUEST")


def test_concurrent_retries_with_one_key_book_one_payment(web_env: WebEnv) -> None:
    """Eight retries of one payment at the same moment: one booking, eight equal answers."""
    import threading

    acc = web_env.new_account("atvplus")
    body = {"by": "card", "ref": str(acc.card), "amount_minor": 900}
    app = web_env.client.app
    answers: list[tuple[int, str]] = []
    barrier = threading.Barrier(8)

    def retry() -> None:
        from tests.integration.web.conftest import TestClient

        client = TestClient(app)
        barrier.wait()
        r = client.post("/api/v1/payments", json=body,
                        headers=web_env.headers(**{"Idempotency-Key": f"race-{acc.card}"}))
        answers.append((r.status_code, r.json()["payment_id"] if r.status_code == 201 else r.text))

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 8 and {a[0] for a in answers} == {201}, answers
    assert len({a[1] for a in answers}) == 1
    with web_env.store().reader() as s:
        from cas.billing.txn import account_by_number

        acct = account_by_number(s, acc.account_number)
        assert s.execute(select(func.count()).select_from(Payment).where(
            Payment.account_id == acct.id)).scalar_one() == 1
        assert acct.balance_minor == 900
