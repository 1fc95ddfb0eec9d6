"""Portal security: CSRF on every form, rate limits on passwords, SMS codes and lookups, cookie
flags, session rotation and logout, lookups that answer "not yours" exactly like "no such
thing" (same page, same queries), and an audit row for every change."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select

from cas.store.models import Base
from cas.web.models import WebAuditEntry, WebSession
from cas.web.portal import CSRF_COOKIE
from tests.integration.web.portal_client import PortalEnv, iter_post_routes, make_portal_env
from tests.integration.web.seed import last_sms_code

pytestmark = pytest.mark.slow


def _counts(env: PortalEnv) -> dict[str, int]:
    out = {}
    for op, seeded in env.seeded.items():
        with seeded.store.reader() as s:
            for t in Base.metadata.sorted_tables:
                out[f"{op}.{t.name}"] = int(s.execute(select(func.count()).select_from(t))
                                            .scalar_one())
    return out


# --- CSRF ----------------------------------------------------------------------------------------
def test_every_portal_form_refuses_a_missing_or_wrong_csrf_token(portal_env: PortalEnv) -> None:
    a1 = portal_env.seeded["atvplus"].accounts["a1"]
    p = portal_env.client()
    assert p.login("atvplus", a1.account_number, a1.password).url.path == "/atvplus/account"
    routes = sorted(set(iter_post_routes(portal_env.app)))
    assert len(routes) >= 15
    before = _counts(portal_env)
    for route in routes:
        path = route.replace("{op}", "atvplus")
        form = {"identifier": a1.account_number, "password": a1.password, "package": "sport",
                "on": "0", "card": str(a1.card), "denomination": "10.00",
                "voucher": "123456789", "code": "123456", "promo": "X", "phone": a1.phone,
                "chip_id": "41545602", "current": a1.password, "new": "new password 1",
                "repeat": "new password 1"}
        for token in (None, "0" * 64, ""):
            resp = p.post(path, form, token=token, follow=False)
            assert resp.status_code == 403, (path, token, resp.status_code)
            assert "CSRF_FAILED" in resp.text
    # The token of another browser (bound to its own cookie) is refused as well.
    other = portal_env.client()
    foreign = other.csrf("/atvplus/login")
    resp = p.post("/atvplus/renewal", {"package": "sport", "on": "0"}, token=foreign)
    assert resp.status_code == 403
    assert _counts(portal_env) == before  # nothing written by any refused form


def test_csrf_cookie_is_httponly_samesite_and_secure_when_asked(
        portal_env: PortalEnv, tmp_path: Any) -> None:
    p = portal_env.client()
    resp = p.get("/atvplus/login")
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(CSRF_COOKIE + "=") and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Secure" not in cookie
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "DENY"
    env, close = make_portal_env("sqlite", [f"sqlite:///{tmp_path / 'secure.sqlite'}"],
                                 ["atvplus"], secure_cookies=True)
    try:
        a1 = env.seeded["atvplus"].accounts["a1"]
        sp = env.client(base_url="https://testserver")
        login = sp.post("/atvplus/login", {"identifier": a1.account_number,
                                           "password": a1.password},
                        token_from="/atvplus/login", follow=False)
        assert login.status_code == 303
        session_cookie = next(c for c in login.headers.get_list("set-cookie")
                              if c.startswith("cas_sid_atvplus="))
        for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/atvplus"):
            assert flag in session_cookie
    finally:
        close()


# --- sessions ------------------------------------------------------------------------------------------
def test_login_rotates_the_session_and_logout_ends_it(portal_env: PortalEnv) -> None:
    m1 = portal_env.seeded["mts"].accounts["m1"]
    p = portal_env.client()
    p.post("/mts/login/sms", {"identifier": m1.account_number}, token_from="/mts/login")
    pre = p.tc.cookies.get("cas_sid_mts")
    with portal_env.store("mts").reader() as s:
        code = last_sms_code(s, m1.account_number)
    p.post("/mts/login/code", {"identifier": m1.account_number, "code": code},
           token_from="/mts/login/code")
    assert p.last.url.path == "/mts/account"
    post = p.tc.cookies.get("cas_sid_mts")
    assert pre and post and pre != post  # no session fixation
    stolen = post
    p.post("/mts/logout", {}, token_from="/mts/account")
    assert p.last.url.path == "/mts/login"
    q = portal_env.client()
    q.tc.cookies.set("cas_sid_mts", stolen, path="/mts")
    assert q.get("/mts/account").url.path == "/mts/login"  # the old cookie is dead
    # An idle session ends by itself.
    p.login("mts", m1.account_number, m1.password)
    assert p.get("/mts/account").url.path == "/mts/account"
    portal_env.clock.advance(portal_env.settings.session_idle_s + 1)
    assert p.get("/mts/account").url.path == "/mts/login"


# --- rate limits --------------------------------------------------------------------------------------------
def test_password_brute_force_hits_the_limit(portal_env: PortalEnv) -> None:
    a2 = portal_env.seeded["atvplus"].accounts["a2"]
    p = portal_env.client()
    limit = portal_env.settings.login_per_account.limit
    for i in range(limit):
        resp = p.login("atvplus", a2.account_number, f"wrong guess {i}")
        assert resp.status_code == 401 and "Wrong account number" in resp.text
    blocked = p.login("atvplus", a2.account_number, "wrong again")
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    # While limited even the right password is refused: guessing gains nothing.
    assert p.login("atvplus", a2.account_number, a2.password).status_code == 429
    # The phone number names the same account: it is limited too.
    assert p.login("atvplus", a2.phone, a2.password).status_code == 429
    portal_env.clock.advance(portal_env.settings.login_per_account.window_s + 1)
    assert p.login("atvplus", a2.account_number, a2.password).url.path == "/atvplus/account"


def test_password_spraying_from_one_address_hits_the_per_ip_limit(portal_env: PortalEnv) -> None:
    p = portal_env.client(client=("203.0.113.7", 5000))
    limit = portal_env.settings.login_per_ip.limit
    for i in range(limit):
        assert p.login("atvplus", f"00000000{i:04d}", "password guess").status_code == 401
    assert p.login("atvplus", "000000009999", "password guess").status_code == 429
    # Another address is not affected.
    a1 = portal_env.seeded["atvplus"].accounts["a1"]
    q = portal_env.client(client=("198.51.100.9", 5000))
    assert q.login("atvplus", a1.account_number, a1.password).url.path == "/atvplus/account"


def test_sms_code_brute_force_hits_the_limit(portal_env: PortalEnv) -> None:
    m2 = portal_env.seeded["mts"].accounts["m2"]
    p = portal_env.client()
    p.post("/mts/login/sms", {"identifier": m2.account_number}, token_from="/mts/login")
    with portal_env.store("mts").reader() as s:
        code = last_sms_code(s, m2.account_number)
    wrong = "000000" if code != "000000" else "111111"
    limit = portal_env.settings.login_per_account.limit
    for _ in range(limit):
        resp = p.post("/mts/login/code", {"identifier": m2.account_number, "code": wrong},
                      token_from="/mts/login/code")
        assert resp.status_code == 401
    resp = p.post("/mts/login/code", {"identifier": m2.account_number, "code": code},
                  token_from="/mts/login/code")
    assert resp.status_code == 429
    # The right code came too late: no logged-in session exists for m2.
    assert p.get("/mts/account").url.path == "/mts/login"
    with portal_env.store("mts").reader() as s:
        from cas.billing.txn import account_by_number

        acc_id = account_by_number(s, m2.account_number).id
        assert s.execute(select(func.count()).select_from(WebSession).where(
            WebSession.account_id == acc_id, WebSession.stage == "in")).scalar_one() == 0


def test_sms_sending_is_limited(portal_env: PortalEnv) -> None:
    u1 = portal_env.seeded["uzonline"].accounts["u1"]
    p = portal_env.client(client=("192.0.2.44", 4000))
    limit = portal_env.settings.sms_per_account.limit
    for _ in range(limit):
        resp = p.post("/uzonline/login/sms", {"identifier": u1.account_number},
                      token_from="/uzonline/login")
        assert resp.status_code == 200 and resp.url.path == "/uzonline/login/code"
    resp = p.post("/uzonline/login/sms", {"identifier": u1.account_number},
                  token_from="/uzonline/login")
    assert resp.status_code == 429


def test_lookup_is_rate_limited_per_address(portal_env: PortalEnv) -> None:
    m1 = portal_env.seeded["mts"].accounts["m1"]
    p = portal_env.client(client=("192.0.2.55", 4000))
    for _ in range(portal_env.settings.lookup_per_ip.limit):
        ok = p.post("/mts/lookup", {"chip_id": f"{m1.chip_id:08X}", "card": str(m1.card)},
                    token_from="/mts/lookup")
        assert ok.status_code == 200 and m1.account_number in ok.text
    assert p.post("/mts/lookup", {"chip_id": f"{m1.chip_id:08X}", "card": str(m1.card)},
                  token_from="/mts/lookup").status_code == 429


# --- no-reveal -----------------------------------------------------------------------------------------------
@contextmanager
def _statements(env: PortalEnv, op: str) -> Iterator[list[str]]:
    engine = env.store(op).engine
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(re.sub(r"\s+", " ", statement.split(" WHERE ")[0]))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def _strip(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[0-9a-f]+"', "", html)


def test_lookup_answers_not_yours_like_not_there(portal_env: PortalEnv) -> None:
    m1, m2 = portal_env.seeded["mts"].accounts["m1"], portal_env.seeded["mts"].accounts["m2"]
    pages, queries = [], []
    for card in (m2.card, 4_199_999_999, 1_000_000_001):
        p = portal_env.client(client=(f"192.0.2.{card % 200}", 4000))
        token = p.csrf("/mts/lookup")
        with _statements(portal_env, "mts") as seen:
            resp = p.post("/mts/lookup", {"chip_id": f"{m1.chip_id:08X}", "card": str(card)},
                          token=token)
        assert resp.status_code == 200
        pages.append(_strip(resp.text).replace(str(card), "<the card typed>"))
        queries.append(seen)
    assert pages[0] == pages[1] == pages[2]
    assert "No account matches" in pages[0]
    assert queries[0] == queries[1] == queries[2]  # the same work, whatever the cause


def test_login_answers_unknown_account_like_wrong_password(portal_env: PortalEnv) -> None:
    a1 = portal_env.seeded["atvplus"].accounts["a1"]
    u1 = portal_env.seeded["uzonline"].accounts["u1"]
    answers = []
    for op, ident in (("atvplus", a1.account_number), ("atvplus", "000000099990"),
                      ("uzonline", u1.account_number)):  # u1 has no password at all
        p = portal_env.client(client=(f"192.0.2.{len(answers) + 100}", 4000))
        resp = p.login(op, ident, "not the password")
        assert resp.status_code == 401
        answers.append(re.search(r'data-testid="error">([^<]+)<', resp.text).group(1))
    assert len(set(answers)) == 1


def test_portal_pages_never_show_a_card_that_is_not_yours(portal_env: PortalEnv) -> None:
    a1, a2 = portal_env.seeded["atvplus"].accounts["a1"], portal_env.seeded["atvplus"].accounts["a2"]
    p = portal_env.client()
    p.login("atvplus", a1.account_number, a1.password)
    texts = [p.get("/atvplus/why", params={"card": str(c), "channel": "1"}).text
             .replace(str(c), "<the card typed>") for c in (a2.card, 4_199_999_999)]
    assert _strip(texts[0]) == _strip(texts[1]) and "No such smart card" in texts[0]
    before = _counts(portal_env)
    flashes = []
    for card in (a2.card, 4_199_999_999):
        p.post("/atvplus/pay", {"card": str(card), "denomination": "10.00",
                                "voucher": f"55{card}"}, token_from="/atvplus/pay")
        flashes.append(re.search(r'data-testid="flash-error">([^<]+)<', p.last.text).group(1))
    assert flashes[0] == flashes[1] == "No such smart card on your account."
    assert _counts(portal_env) == before


# --- audit -----------------------------------------------------------------------------------------------
def test_the_audit_log_has_every_change(portal_env: PortalEnv) -> None:
    store = portal_env.store("mts")
    with store.reader() as s:
        start = s.execute(select(func.coalesce(func.max(WebAuditEntry.id), 0))).scalar_one()
    m1 = portal_env.seeded["mts"].accounts["m1"]
    p = portal_env.client(client=("192.0.2.200", 4000))
    p.login("mts", m1.phone, m1.password)
    p.post("/mts/renewal", {"package": "basic", "on": "0"}, token_from="/mts/account")
    p.post("/mts/renewal", {"package": "basic", "on": "1"}, token_from="/mts/account")
    p.post("/mts/promise", {}, token_from="/mts/account")
    p.post("/mts/suspend", {"until": "2026-03-20"}, token_from="/mts/account")
    p.post("/mts/resume", {}, token_from="/mts/account")
    p.post("/mts/pay", {"card": str(m1.card), "amount": "500"}, token_from="/mts/pay")
    p.post("/mts/packages/subscribe", {"package": "sport"}, token_from="/mts/packages")
    p.post("/mts/extend", {"package": "basic"}, token_from="/mts/account")
    p.post("/mts/password", {"current": m1.password, "new": m1.password + "!",
                             "repeat": m1.password + "!"}, token_from="/mts/password")
    p.post("/mts/password", {"current": m1.password + "!", "new": m1.password,
                             "repeat": m1.password}, token_from="/mts/password")
    # A refused change leaves no audit row (and no other row).
    p.post("/mts/resume", {}, token_from="/mts/account")
    assert "not suspended" in p.last.text
    p.post("/mts/logout", {}, token_from="/mts/account")
    with store.reader() as s:
        rows = s.execute(select(WebAuditEntry).where(WebAuditEntry.id > start)
                         .order_by(WebAuditEntry.id)).scalars().all()
        entries = [(r.action, r.actor_kind, r.actor, r.target, r.client_ip, r.at_s, r.sim_at_s)
                   for r in rows]
    assert [e[0] for e in entries] == [
        "login", "renewal.off", "renewal.on", "promise.take", "suspension.start",
        "suspension.end", "payment.create", "subscription.create", "subscription.extend",
        "password.change", "password.change", "logout"]
    assert all(e[1] == "subscriber" and e[2] == m1.account_number == e[3] for e in entries)
    assert all(e[4] == "192.0.2.200" for e in entries)
    assert all(e[5] >= 1_800_000_000 and e[6] > 0 for e in entries)
