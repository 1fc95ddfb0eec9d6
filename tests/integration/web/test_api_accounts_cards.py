"""Accounts, cards, boxes, lookup, entitlement state, ``why``, the EMM queue, the catalog and
the audit log through the API — with unknown ids, wrong types and bad values answered with
their documented codes and nothing written."""

from __future__ import annotations

import pytest

from cas.billing.clock import clock_now
from cas.headend.why import explain
from cas.store.repo import register_card
from tests.integration.web.conftest import WebEnv, assert_error, nothing_written

pytestmark = pytest.mark.slow


def test_catalog_and_operator(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    op = c.get("/api/v1/operator", headers=h).json()
    assert op["payment_card_denominations_minor"] == [900, 1000, 1200, 1500]
    assert op["switch_lock_days"] == 30 and op["currency"] == "AZN"
    pkgs = {p["code"]: p for p in c.get("/api/v1/packages", headers=h).json()}
    assert pkgs["sport"]["price_minor"] == 1200 and pkgs["sport"]["channels"] == 153
    channels = c.get("/api/v1/channels", headers=h).json()
    assert len(channels) == 153 and channels[0]["number"] == 1


def test_account_create_read_update_and_password(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    made = c.post("/api/v1/accounts", headers=h,
                  json={"surname": "Quliyev", "name": "Rauf", "phone": "+994551234567"})
    assert made.status_code == 201, made.text
    n = made.json()["account_number"]
    assert made.json()["balance_minor"] == 0 and made.json()["cards"] == []
    assert c.get(f"/api/v1/accounts/{n}", headers=h).json()["surname"] == "Quliyev"
    assert n in [a["account_number"] for a in c.get("/api/v1/accounts", headers=h,
                                                     params={"limit": 1000}).json()]
    upd = c.patch(f"/api/v1/accounts/{n}", headers=h, json={"email": "rauf@example.org"})
    assert upd.status_code == 200 and upd.json()["email"] == "rauf@example.org"
    assert c.put(f"/api/v1/accounts/{n}/portal-password", headers=h,
                 json={"password": "long enough pw"}).status_code == 204
    bal = c.get(f"/api/v1/accounts/{n}/balance", headers=h).json()
    assert bal["balance_minor"] == 0 and bal["currency"] == "AZN"
    stmt = c.get(f"/api/v1/accounts/{n}/statement", headers=h).json()
    assert stmt["lines"] == [] and stmt["closing_balance_minor"] == 0
    audit = c.get("/api/v1/audit", headers=h, params={"target": n}).json()
    assert [e["action"] for e in audit] == ["account.create", "account.update", "password.set"]
    key_id = web_env.seeded["atvplus"].api_key.split(".")[2]
    assert all(e["actor_kind"] == "api_key" and e["actor"] == key_id for e in audit)
    assert audit[0]["detail"]["surname"] == "Quliyev"
    assert "password" not in audit[2]["detail"] and "long enough" not in str(audit)
    with nothing_written(web_env):
        assert_error(c.post("/api/v1/accounts", headers=h, json={"surname": "", "name": "X"}),
                     422, "BAD_NAME")
        assert_error(c.post("/api/v1/accounts", headers=h,
                            json={"surname": "A", "name": "B", "phone": "call me"}), 422,
                     "BAD_PHONE")
        assert_error(c.post("/api/v1/accounts", headers=h,
                            json={"surname": "A", "name": "B", "kind": "postpaid"}), 422,
                     "BAD_ACCOUNT_KIND")
        assert_error(c.post("/api/v1/accounts", headers=h, json={"surname": 5, "name": "B"}),
                     422, "INVALID_REQUEST")
        assert_error(c.patch(f"/api/v1/accounts/{n}", headers=h, json={"email": "no-at"}),
                     422, "BAD_EMAIL")
        assert_error(c.patch(f"/api/v1/accounts/{n}", headers=h,
                             json={"account_number": "1"}), 422, "INVALID_REQUEST")
        assert_error(c.patch("/api/v1/accounts/999999999999", headers=h, json={}), 404,
                     "UNKNOWN_ACCOUNT")
        assert_error(c.put(f"/api/v1/accounts/{n}/portal-password", headers=h,
                           json={"password": "short"}), 422, "BAD_PASSWORD")
        assert_error(c.get("/api/v1/accounts", headers=h, params={"limit": 0}), 422,
                     "INVALID_REQUEST")
        assert_error(c.get(f"/api/v1/accounts/{n}/statement", headers=h,
                           params={"since_s": -1}), 422, "INVALID_REQUEST")


def test_cards_link_pair_unlink(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    acc = web_env.new_account("atvplus")
    other = web_env.seeded["atvplus"].accounts["a2"]
    serial = 3_999_000_001
    with web_env.store().transaction() as s:
        register_card(s, serial, at=clock_now(s))
    card = c.get(f"/api/v1/cards/{serial}", headers=h).json()
    assert card["account_number"] is None and card["status"] == "active"
    linked = c.post(f"/api/v1/cards/{serial}/link", headers=h,
                    json={"account_number": acc.account_number})
    assert linked.status_code == 200 and linked.json()["account_number"] == acc.account_number
    assert serial in c.get(f"/api/v1/accounts/{acc.account_number}", headers=h).json()["cards"]
    listed = c.get("/api/v1/cards", headers=h, params={"account": acc.account_number}).json()
    assert {x["serial"] for x in listed} == {acc.card, serial}
    with nothing_written(web_env):
        assert_error(c.post(f"/api/v1/cards/{serial}/link", headers=h,
                            json={"account_number": acc.account_number}), 409,
                     "CARD_ALREADY_LINKED")
        assert_error(c.post(f"/api/v1/cards/{serial}/link", headers=h,
                            json={"account_number": other.account_number}), 409,
                     "CARD_LINKED_ELSEWHERE")
        assert_error(c.post(f"/api/v1/cards/{serial}/pair", headers=h,
                            json={"chip_id": "DEADBEEF"}), 404, "UNKNOWN_BOX")
        assert_error(c.post(f"/api/v1/cards/{serial}/pair", headers=h,
                            json={"chip_id": f"{other.chip_id:08X}"}), 409,
                     "BOX_LINKED_ELSEWHERE")
        assert_error(c.post(f"/api/v1/cards/{serial}/pair", headers=h,
                            json={"chip_id": "XYZ"}), 422, "INVALID_REQUEST")
        assert_error(c.get("/api/v1/cards/0", headers=h), 422, "INVALID_REQUEST")
        assert_error(c.get("/api/v1/cards/4294967296", headers=h), 422, "INVALID_REQUEST")
        assert_error(c.get("/api/v1/cards/abc", headers=h), 422, "INVALID_REQUEST")
    unlinked = c.delete(f"/api/v1/cards/{serial}/link", headers=h)
    assert unlinked.status_code == 200 and unlinked.json()["account_number"] is None
    with nothing_written(web_env):
        assert_error(c.delete(f"/api/v1/cards/{serial}/link", headers=h), 409,
                     "CARD_NOT_LINKED")
    causes = [x["cause"] for x in c.get(f"/api/v1/cards/{serial}/emm-queue",
                                        headers=h).json()["pending_changes"]]
    assert causes == ["register", "link", "unlink"]


def test_boxes_and_lookup(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers("mts")
    m1, m2 = web_env.seeded["mts"].accounts["m1"], web_env.seeded["mts"].accounts["m2"]
    box = c.get(f"/api/v1/boxes/{m1.chip_id:08X}", headers=h).json()
    assert box["paired_card"] == m1.card and box["account_number"] == m1.account_number
    assert c.get(f"/api/v1/boxes/{m1.chip_id:08x}", headers=h).json()["chip_id"] == box["chip_id"]
    listed = c.get("/api/v1/boxes", headers=h, params={"account": m1.account_number}).json()
    assert [b["chip_id"] for b in listed] == [f"{m1.chip_id:08X}"]
    found = c.post("/api/v1/lookup", headers=h,
                   json={"chip_id": f"{m1.chip_id:08X}", "card": m1.card})
    assert found.status_code == 200 and found.json() == {"account_number": m1.account_number}
    with nothing_written(web_env):
        mismatch = assert_error(c.post("/api/v1/lookup", headers=h, json={
            "chip_id": f"{m1.chip_id:08X}", "card": m2.card}), 404, "NO_MATCH")
        missing = assert_error(c.post("/api/v1/lookup", headers=h, json={
            "chip_id": f"{m1.chip_id:08X}", "card": 4_199_999_999}), 404, "NO_MATCH")
        assert mismatch == missing  # never tells whether the other card exists
        assert_error(c.post("/api/v1/lookup", headers=h, json={"chip_id": 5, "card": 1}), 422,
                     "INVALID_REQUEST")
        assert_error(c.get("/api/v1/boxes/0BADF00D", headers=h), 404, "UNKNOWN_BOX")
        assert_error(c.get("/api/v1/boxes/not-hex", headers=h), 422, "INVALID_REQUEST")
        assert_error(c.post(f"/api/v1/boxes/{m2.chip_id:08X}/link", headers=h,
                            json={"account_number": m1.account_number}), 409,
                     "BOX_LINKED_ELSEWHERE")
    fresh = web_env.new_account("mts")
    with web_env.store("mts").transaction() as s:
        from cas.billing.accounts import import_boxes
        from cas.formats.chipid import ChipIdRecord

        chip = 0x4D540000 + fresh.card % 0xFFFF
        import_boxes(s, [ChipIdRecord(chip_id=chip, vendor="V", model="M",
                                      wrapped_csk=bytes(24))], at=clock_now(s))
    linked = c.post(f"/api/v1/boxes/{chip:08X}/link", headers=h,
                    json={"account_number": fresh.account_number})
    assert linked.status_code == 200 and linked.json()["account_number"] == fresh.account_number
    paired = c.post(f"/api/v1/cards/{fresh.card}/pair", headers=h,
                    json={"chip_id": f"{chip:08X}"})
    assert paired.status_code == 200 and paired.json()["paired_chip_id"] == f"{chip:08X}"


def test_entitlements_why_and_emm_queue(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers()
    acc = web_env.new_account("atvplus", balance_minor=900, package="standard")
    st = c.get(f"/api/v1/cards/{acc.card}/entitlements", headers=h).json()
    assert st["status"] == "ACTIVE" and [e["package_id"] for e in st["entitlements"]] == [1]
    assert st["entitlements"][0]["valid_now"] is True
    later = c.get(f"/api/v1/cards/{acc.card}/entitlements", headers=h,
                  params={"at_s": st["entitlements"][0]["end_s"]}).json()
    assert later["entitlements"][0]["valid_now"] is False
    why = c.get(f"/api/v1/cards/{acc.card}/why", headers=h, params={"channel": "130"}).json()
    assert why["state"] == "LOCKED" and why["reason"] == "CHANNEL_NOT_IN_PACKAGE"
    # The very explanation `cas why` gives (cas.headend.why.explain on the same store).
    with web_env.store().reader() as s:
        ref = explain(s, acc.card, "130", clock_now(s))
    assert (why["message"], why["cause"], why["fix"]) == (ref.message, ref.cause, ref.fix)
    assert c.get(f"/api/v1/cards/{acc.card}/why", headers=h,
                 params={"channel": "1"}).json()["state"] == "OPEN"
    expired = c.get(f"/api/v1/cards/{acc.card}/why", headers=h,
                    params={"channel": "1", "at_s": st["entitlements"][0]["end_s"] + 1}).json()
    assert expired["reason"] in ("ENTITLEMENT_EXPIRED", "FINANCIAL_BLOCK")
    queue = c.get(f"/api/v1/cards/{acc.card}/emm-queue", headers=h).json()
    assert queue["pending"] and queue["sent_rights_version"] == 0
    # Every change since the last EMM (none sent yet) is listed, oldest first.
    assert queue["rights_version"] - queue["sent_rights_version"] == len(queue["pending_changes"])
    assert [x["cause"] for x in queue["pending_changes"]][:2] == ["register", "link"]
    summary = c.get("/api/v1/emm-queue", headers=h).json()
    assert summary["cards_pending"] >= 1 and summary["cards"] >= summary["cards_pending"]
    assert summary["last_journal_id"] >= summary["journal_rows"] > 0
    with nothing_written(web_env):
        assert_error(c.get(f"/api/v1/cards/{acc.card}/why", headers=h,
                           params={"channel": "9999"}), 404, "UNKNOWN_CHANNEL")
        assert_error(c.get(f"/api/v1/cards/{acc.card}/why", headers=h), 422, "INVALID_REQUEST")
        assert_error(c.get(f"/api/v1/cards/{acc.card}/why", headers=h,
                           params={"channel": "1", "at_s": 2**40}), 422, "INVALID_REQUEST")
        unknown = assert_error(c.get("/api/v1/cards/4199999999/entitlements", headers=h), 404,
                               "UNKNOWN_CARD")
        # The same line from the Russian catalogue beside the English one (docs/web.md).
        assert unknown["message"] == "unknown card 4199999999"
        assert unknown["message_ru"] == "карта 4199999999 не найдена"


def test_verification_endpoints_bad_input(web_env: WebEnv) -> None:
    c, h = web_env.client, web_env.headers("tvplus")
    t1 = web_env.seeded["tvplus"].accounts["t1"]
    with nothing_written(web_env):
        assert_error(c.post("/api/v1/verifications", headers=h,
                            json={"account_number": "999999999999", "phone": "+77010000000"}),
                     404, "UNKNOWN_ACCOUNT")
        assert_error(c.post("/api/v1/verifications", headers=h,
                            json={"account_number": t1.account_number, "phone": "x"}), 422,
                     "BAD_PHONE")
        assert_error(c.post("/api/v1/verifications/abc123/confirm", headers=h,
                            json={"code": "123456"}), 409, "VERIFICATION_REQUIRED")
        assert_error(c.post("/api/v1/verifications/ZZZ/confirm", headers=h,
                            json={"code": "123456"}), 422, "INVALID_REQUEST")


def test_unknown_route_and_method(web_env: WebEnv) -> None:
    h = web_env.headers()
    assert_error(web_env.client.get("/api/v1/nothing-here", headers=h), 404, "NOT_FOUND")
    assert_error(web_env.client.delete("/api/v1/packages", headers=h), 405,
                 "METHOD_NOT_ALLOWED")
