"""Fuzz the API and the portal forms with numbers in other digits (``²``, ``１０``, ``١``) and
text with control characters (``U+0000`` …), on SQLite and PostgreSQL: never a 500 (the test
client re-raises server errors), always our 4xx with a code and a clear one-line message,
and nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.web.conftest import WebEnv, assert_error, nothing_written
from tests.integration.web.portal_client import PortalEnv

_FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])

#: A digit ``str.isdigit()`` accepts that is not ASCII: superscripts, full width, Arabic-Indic,
#: Devanagari, mathematical …
_other_digit = st.characters(categories=["Nd", "No"]).filter(
    lambda c: c.isdigit() and not "0" <= c <= "9")
#: A number as someone might type it with such digits, ASCII ones mixed in.
foreign_numbers = st.lists(st.one_of(_other_digit, st.sampled_from("0123456789")),
                           min_size=1, max_size=10).map("".join).filter(
    lambda t: not t.isascii())
_control = st.sampled_from([chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]])
#: Text with at least one control character somewhere.
control_texts = st.tuples(st.text(max_size=8), _control, st.text(max_size=8)).map("".join)


def _our_4xx(resp: Any) -> dict[str, Any]:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    body = resp.json()
    error = body["error"]
    assert error["code"] and error["category"] and error["message"], body
    assert "\n" not in error["message"] and "invalid literal" not in error["message"]
    return dict(error)


# --- the API --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("by", "code"), [("card", "BAD_SERIAL"), ("contract", "BAD_NUMBER"),
                                          ("account", "BAD_NUMBER")])
def test_payment_reference_in_other_digits(web_env: WebEnv, by: str, code: str) -> None:
    # Was: POST /payments {"ref": "²"} -> 500 (int('²') in billing/service.py _account_id).
    counter = iter(range(10**6))

    @_FUZZ
    @given(ref=foreign_numbers)
    def check(ref: str) -> None:
        resp = web_env.client.post(
            "/api/v1/payments",
            headers=web_env.headers(**{"Idempotency-Key": f"fuzz-{by}-{next(counter)}"}),
            json={"by": by, "ref": ref, "amount_minor": 1000})
        error = _our_4xx(resp)
        assert resp.status_code == 422 and error["code"] == code, error
        assert "ASCII digits" in error["message"]

    with nothing_written(web_env):
        check()
        # The reported case itself.
        assert_error(web_env.client.post(
            "/api/v1/payments", headers=web_env.headers(**{"Idempotency-Key": "fuzz-sup2"}),
            json={"by": "card", "ref": "²", "amount_minor": 1000}), 422, "BAD_SERIAL")


def test_why_channel_in_other_digits(web_env: WebEnv) -> None:
    # Was: GET …/why?channel=² (and sid:²) -> 500 (billing/catalog.py get_channel).
    card = web_env.seeded["atvplus"].accounts["a1"].card

    @_FUZZ
    @given(number=foreign_numbers, sid=st.booleans())
    def check(number: str, sid: bool) -> None:
        channel = f"sid:{number}" if sid else number
        resp = web_env.client.get(f"/api/v1/cards/{card}/why", params={"channel": channel},
                                  headers=web_env.headers())
        error = _our_4xx(resp)
        assert resp.status_code == 422 and error["code"] == "BAD_NUMBER", error

    with nothing_written(web_env):
        check()


def test_paths_and_bodies_with_other_digits(web_env: WebEnv) -> None:
    acc = web_env.seeded["atvplus"].accounts["a1"]

    @_FUZZ
    @given(number=foreign_numbers)
    def check(number: str) -> None:
        h = web_env.headers()
        for resp in (
            web_env.client.get(f"/api/v1/accounts/{number}", headers=h),
            web_env.client.get(f"/api/v1/cards/{number}", headers=h),
            web_env.client.get(f"/api/v1/boxes/{number}", headers=h),
            web_env.client.post(f"/api/v1/cards/{acc.card}/link", headers=h,
                                json={"account_number": number}),
            web_env.client.post(f"/api/v1/accounts/{acc.account_number}/subscriptions",
                                headers=h, json={"package": number}),
            web_env.client.post(f"/api/v1/accounts/{acc.account_number}/subscriptions/"
                                f"{number}/extend", headers=h, json={}),
            web_env.client.post("/api/v1/lookup", headers=h,
                                json={"chip_id": number, "card": acc.card}),
        ):
            _our_4xx(resp)

    with nothing_written(web_env):
        check()


@pytest.mark.parametrize("field", ["surname", "name", "patronymic", "phone", "email",
                                   "contract_number"])
def test_account_text_fields_refuse_control_characters(web_env: WebEnv, field: str) -> None:
    # Was: {"surname": "x\u0000y"} -> 201 (and PostgreSQL cannot store U+0000 at all).
    acc = web_env.seeded["atvplus"].accounts["a1"]

    @_FUZZ
    @given(text=control_texts)
    def check(text: str) -> None:
        body = {"surname": "Ivanov", "name": "Ivan", field: text}
        created = web_env.client.post("/api/v1/accounts", headers=web_env.headers(), json=body)
        error = _our_4xx(created)
        assert created.status_code == 422 and error["code"] == "INVALID_REQUEST", error
        assert "control characters" in error["message"]
        if field != "contract_number":
            changed = web_env.client.patch(f"/api/v1/accounts/{acc.account_number}",
                                           headers=web_env.headers(), json={field: text})
            assert _our_4xx(changed)["code"] == "INVALID_REQUEST"

    with nothing_written(web_env):
        check()
        resp = web_env.client.post("/api/v1/accounts", headers=web_env.headers(),
                                   json={"surname": "x\u0000y", "name": "Ivan"})
        error = assert_error(resp, 422, "INVALID_REQUEST")
        assert error["message"] == "body.surname: must not contain control characters" \
            or "control characters" in error["message"]


def test_references_and_queries_refuse_control_characters(web_env: WebEnv) -> None:
    acc = web_env.seeded["atvplus"].accounts["a1"]

    @_FUZZ
    @given(text=control_texts)
    def check(text: str) -> None:
        h = web_env.headers()
        for resp in (
            web_env.client.post("/api/v1/payments", headers={**h, "Idempotency-Key": "nul-1"},
                                json={"by": "contract", "ref": text or "\x00",
                                      "amount_minor": 1000}),
            web_env.client.get(f"/api/v1/cards/{acc.card}/why", headers=h,
                               params={"channel": text}),
            web_env.client.get("/api/v1/audit", headers=h, params={"target": text}),
            web_env.client.post(f"/api/v1/accounts/{acc.account_number}/promo", headers=h,
                                json={"code": text}),
            web_env.client.post(f"/api/v1/accounts/{acc.account_number}/switch", headers=h,
                                json={"package": text}),
        ):
            _our_4xx(resp)

    with nothing_written(web_env):
        check()


def test_the_schema_shows_the_rule(web_env: WebEnv) -> None:
    doc = web_env.client.get("/api/v1/openapi.json").json()
    surname = doc["components"]["schemas"]["AccountCreate"]["properties"]["surname"]
    assert surname["pattern"] == r"^[^\x00-\x1f\x7f-\x9f]*$"


# --- the portal -------------------------------------------------------------------------------------
def _mts_user(portal_env_module: PortalEnv) -> tuple[Any, Any]:
    portal_env_module.clock.advance(3600)  # fresh rate-limit windows
    m1 = portal_env_module.seeded["mts"].accounts["m1"]
    p = portal_env_module.client()
    assert p.login("mts", m1.account_number, m1.password).status_code == 200
    return p, m1


def test_portal_why_and_pay_with_other_digits(portal_env_module: PortalEnv) -> None:
    # Was: /why?card=²… and the /pay form with card "²" -> 500.
    p, m1 = _mts_user(portal_env_module)
    store = portal_env_module.store("mts")
    from cas.store.models import LedgerEntry, Payment

    def money_rows() -> tuple[int, int]:
        with store.reader() as s:
            return s.query(Payment).count(), s.query(LedgerEntry).count()

    before = money_rows()
    token = p.csrf("/mts/pay")

    @_FUZZ
    @given(number=foreign_numbers)
    def check(number: str) -> None:
        for params in ({"card": number, "channel": "1"},
                       {"card": f"{m1.card:010d}", "channel": number},
                       {"card": f"{m1.card:010d}", "channel": f"sid:{number}"}):
            page = p.get("/mts/why", params=params)
            assert page.status_code == 200, page.text
            assert 'data-reason="' not in page.text  # no explanation for a bad number
        for form in ({"card": number, "amount": "10"},
                     {"card": f"{m1.card:010d}", "amount": number}):
            resp = p.post("/mts/pay", form, token=token)
            assert resp.status_code < 500, resp.text

    check()
    assert money_rows() == before
    # Full-width digits are not an amount (they were read as 10).
    p.post("/mts/pay", {"card": f"{m1.card:010d}", "amount": "１０"}, token=token)
    assert money_rows() == before
    ok = p.post("/mts/pay", {"card": f"{m1.card:010d}", "amount": "10"}, token=token)
    assert ok.status_code == 200 and money_rows()[0] == before[0] + 1


def test_portal_forms_refuse_control_characters(portal_env_module: PortalEnv) -> None:
    p, m1 = _mts_user(portal_env_module)
    token = p.csrf("/mts/pay")
    store = portal_env_module.store("mts")
    from cas.store.models import Payment

    def payments() -> int:
        with store.reader() as s:
            return s.query(Payment).count()

    before = payments()

    @_FUZZ
    @given(text=control_texts, field=st.sampled_from(["card", "amount", "package"]))
    def check(text: str, field: str) -> None:
        form = {"card": f"{m1.card:010d}", "amount": "10", field: text}
        resp = p.post("/mts/pay", form, token=token)
        assert resp.status_code == 422, resp.text
        assert "BAD_TEXT" in resp.text or "control characters" in resp.text

    check()
    assert payments() == before
    # The CSRF check still comes first.
    resp = p.post("/mts/pay", {"card": "\x00", "amount": "10"}, token="0" * 64)
    assert resp.status_code == 403
    # Logging in with a control character is refused, not stored in the throttle table.
    login = p.post("/mts/login", {"identifier": "x\x00y", "password": "whatever"},
                   token_from="/mts/login")
    assert login.status_code == 422
