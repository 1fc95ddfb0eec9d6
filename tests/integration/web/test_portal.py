"""Portal pages without a browser (the seed flows in Chromium are in
``test_portal_browser.py``): routing, languages, login required, the Uzonline SMS
confirmation before connecting a package, statement, notifications, password change."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.clock import clock_now
from cas.store.models import Subscription
from cas.store.repo import register_card
from cas.web.domain import set_portal_password
from tests.fixtures.lang import english_in
from tests.integration.web.portal_client import PortalEnv, make_portal_env
from tests.integration.web.seed import last_sms_code

pytestmark = pytest.mark.slow


def _flash(html: str) -> str:
    m = re.search(r'data-testid="flash-(?:ok|error)">([^<]+)<', html)
    assert m is not None, html[:2000]
    return m.group(1)


def test_index_unknown_operator_static_and_headers(portal_env: PortalEnv) -> None:
    p = portal_env.client()
    index = p.get("/")
    assert index.status_code == 200
    for op in ("atvplus", "mts", "uzonline"):
        assert f'href="/{op}/"' in index.text
    missing = p.get("/nosuch/login")
    assert missing.status_code == 404 and "NOT_FOUND" in missing.text
    css = p.get("/static/portal.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert p.get("/atvplus/", follow_redirects=False).headers["location"] == "/atvplus/login"
    login = p.get("/atvplus/login")
    assert login.headers["cache-control"] == "no-store" and "x-request-id" in login.headers
    assert "<script" not in login.text


def test_a_single_operator_redirects_from_the_root(tmp_path: Path) -> None:
    env, close = make_portal_env("sqlite", [f"sqlite:///{tmp_path / 'one.sqlite'}"], ["mts"])
    try:
        resp = env.client().get("/", follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/mts/"
    finally:
        close()


def test_languages(portal_env: PortalEnv) -> None:
    p = portal_env.client()
    assert "Вход в личный кабинет" in p.get("/mts/login",
                                            headers={"Accept-Language": "ru-RU,ru"}).text
    assert "Log in to your personal account" in p.get("/mts/login").text
    assert "Вход в личный кабинет" in p.get("/mts/login?lang=ru").text
    assert "Вход в личный кабинет" in p.get("/mts/login").text  # remembered in a cookie
    assert "Log in to your personal account" in p.get("/mts/login?lang=en").text
    assert '<html lang="en">' in p.get("/mts/lookup").text


def test_pages_need_a_login(portal_env: PortalEnv) -> None:
    p = portal_env.client()
    for page in ("account", "pay", "packages", "payments", "why", "promo", "verify",
                 "notifications", "password"):
        resp = p.get(f"/atvplus/{page}")
        assert resp.url.path == "/atvplus/login", page
        assert _flash(resp.text) == "Please log in first."
    assert p.get("/atvplus/login/code").url.path == "/atvplus/login"


def _uzonline_account(env: PortalEnv, password: str) -> tuple[str, str]:
    store = env.store("uzonline")
    serial = 4_150_000_000 + int(time.time() * 1000) % 1_000_000
    with store.transaction() as s:
        at = clock_now(s)
        view = acc_mod.create_account(s, surname="Test", name="Uz", at=at,
                                      phone=f"+99890{serial % 10_000_000:07d}")
        register_card(s, serial, at=at)
        acc_mod.link_card(s, serial=serial, account_number=view.account_number, at=at)
        service.adjust_balance(s, account_number=view.account_number, amount_minor=2_000_000,
                               reason="test", at=at)
        set_portal_password(s, account_number=view.account_number, password=password,
                            wall_s=int(time.time()))
    return view.account_number, view.phone or ""


def test_uzonline_package_needs_the_sms_code_of_the_session(portal_env: PortalEnv) -> None:
    number, _phone = _uzonline_account(portal_env, "uz password 1")
    p = portal_env.client()
    p.login("uzonline", number, "uz password 1")
    p.post("/uzonline/packages/subscribe", {"package": "ivi"}, token_from="/uzonline/packages")
    assert "confirm your phone" in _flash(p.last.text)
    p.post("/uzonline/verify/send", {}, token_from="/uzonline/verify")
    assert 'data-testid="verify-code"' in p.last.text
    with portal_env.store("uzonline").reader() as s:
        code = last_sms_code(s, number)
    bad = p.post("/uzonline/verify", {"code": "x"}, token_from="/uzonline/verify")
    assert bad.status_code == 401
    p.post("/uzonline/verify", {"code": code}, token_from="/uzonline/verify")
    assert _flash(p.last.text) == "Phone confirmed for this session."
    p.post("/uzonline/packages/subscribe", {"package": "ivi"}, token_from="/uzonline/packages")
    assert "is active until" in _flash(p.last.text)
    with portal_env.store("uzonline").reader() as s:
        from cas.billing.txn import account_by_number

        acc = account_by_number(s, number)
        sub = s.execute(select(Subscription).where(Subscription.account_id == acc.id)
                        ).scalar_one()
        assert sub.status == "active" and sub.period_price_minor == 1_000_000


def test_statement_notifications_and_password_change(portal_env: PortalEnv) -> None:
    number, _phone = _uzonline_account(portal_env, "first password")
    p = portal_env.client()
    p.login("uzonline", number, "first password")
    statement = p.get("/uzonline/payments")
    assert 'data-kind="adjustment"' in statement.text and "UZS20,000.00" in statement.text
    p.post("/uzonline/verify/send", {}, token_from="/uzonline/verify")
    notes = p.get("/uzonline/notifications").text
    assert "Code " not in notes  # codes stay in the SMS outbox, never on a page
    p.post("/uzonline/password", {"current": "wrong one!", "new": "second password",
                                  "repeat": "second password"}, token_from="/uzonline/password")
    assert _flash(p.last.text) == "The current password is wrong."
    p.post("/uzonline/password", {"current": "first password", "new": "second password",
                                  "repeat": "other password"}, token_from="/uzonline/password")
    assert _flash(p.last.text) == "The two new passwords differ."
    p.post("/uzonline/password", {"current": "first password", "new": "second password",
                                  "repeat": "second password"}, token_from="/uzonline/password")
    assert _flash(p.last.text) == "Password saved."
    q = portal_env.client()
    assert q.login("uzonline", number, "first password").status_code == 401
    assert q.login("uzonline", number, "second password").url.path == "/uzonline/account"


def test_why_open_channel_and_unknown_channel(portal_env: PortalEnv) -> None:
    m1 = portal_env.seeded["mts"].accounts["m1"]
    p = portal_env.client()
    p.login("mts", m1.account_number, m1.password)
    open_page = p.get("/mts/why", params={"card": f"{m1.card:010d}", "channel": "1"}).text
    assert 'data-reason="OPEN"' in open_page and "open" in open_page
    locked = p.get("/mts/why", params={"card": f"{m1.card:010d}", "channel": "26"}).text
    assert 'data-reason="CHANNEL_NOT_IN_PACKAGE"' in locked
    ru = p.get("/mts/why", params={"card": f"{m1.card:010d}", "channel": "26",
                                   "lang": "ru"}).text
    assert "Канал не входит в подключённые пакеты" in ru
    # The cause and the fix in Russian too, the words of `cas why` (they were English).
    result = ru.split('data-testid="why-result"')[1].split("</section>")[0]
    cause = re.search(r'data-testid="why-cause">([^<]+)<', result)
    fix = re.search(r'data-testid="why-fix">([^<]+)<', result)
    assert cause is not None and fix is not None
    assert "канала 26 нет" in cause[1] and fix[1].startswith("подключите")
    visible = re.sub(r"<[^>]+>", " ", result)
    assert english_in(visible, allow=["Sport"]) == [], visible
    english = re.sub(r"<[^>]+>", " ", locked.split('data-testid="why-result"')[1])
    assert english_in(english.split("</section>")[0])  # the check can fail
    unknown = p.get("/mts/why", params={"card": f"{m1.card:010d}", "channel": "9999",
                                        "lang": "en"}).text
    assert "unknown channel" in unknown


def test_unaffordable_packages_and_extension_say_why(portal_env: PortalEnv) -> None:
    """MTS "Basic" (190 ₽) is on the account with 1 ₽ left: "+ Extend" and the "Sport"
    add-on (199 ₽) say what is missing, in the page's language; once paid up, nothing."""
    from cas.locale import format_money

    store = portal_env.store("mts")
    serial = 4_200_000_000 + int(time.time() * 1000) % 1_000_000
    with store.transaction() as s:
        at = clock_now(s)
        view = acc_mod.create_account(s, surname="Test", name="Ru", at=at,
                                      phone=f"+7916{serial % 10_000_000:07d}")
        register_card(s, serial, at=at)
        acc_mod.link_card(s, serial=serial, account_number=view.account_number, at=at)
        service.adjust_balance(s, account_number=view.account_number, amount_minor=19_100,
                               reason="test", at=at)
        service.subscribe(s, account_number=view.account_number, package="basic", at=at)
        set_portal_password(s, account_number=view.account_number, password="ru password",
                            wall_s=int(time.time()))
    p = portal_env.client()
    p.login("mts", view.account_number, "ru password")
    page = p.get("/mts/account?lang=ru").text
    assert 'data-testid="extend-short-basic"' in page
    assert format_money(18_900, "RUB", "ru") in page  # 190 ₽ - 1 ₽
    assert "Не хватает денег" in page
    packages = p.get("/mts/packages?lang=en").text
    assert 'data-testid="short-sport"' in packages
    assert format_money(19_800, "RUB", "en") in packages  # 199 ₽ - 1 ₽
    with store.transaction() as s:
        service.adjust_balance(s, account_number=view.account_number, amount_minor=50_000,
                               reason="test", at=clock_now(s))
    assert 'data-testid="extend-short-basic"' not in p.get("/mts/account").text
    assert 'data-testid="short-sport"' not in p.get("/mts/packages").text


def test_payments_page_in_russian(portal_env: PortalEnv) -> None:
    """The payment history in Russian: operation kinds and the billing rules' descriptions
    (a payment by card, a package period) from the catalogue, money and days per locale."""
    number, _phone = _uzonline_account(portal_env, "uz password 3")
    with portal_env.store("uzonline").transaction() as s:
        at = clock_now(s)
        serial = acc_mod.get_account(s, number).cards[0]
        service.pay(s, by="card", ref=serial, amount_minor=251_000, payment_id=f"ru-{number}",
                    at=at, method="online")
    p = portal_env.client()
    p.login("uzonline", number, "uz password 3")
    p.post("/uzonline/verify/send", {}, token_from="/uzonline/verify")
    with portal_env.store("uzonline").reader() as s:
        code = last_sms_code(s, number)
    p.post("/uzonline/verify", {"code": code}, token_from="/uzonline/verify")
    p.post("/uzonline/packages/subscribe", {"package": "ivi"}, token_from="/uzonline/packages")
    page = p.get("/uzonline/payments", params={"lang": "ru"}).text
    table = page.split('data-testid="statement"')[1].split("</table>")[0]
    visible = " ".join(re.sub(r"<[^>]+>", " ", table).split())
    assert english_in(visible, allow=["ivi"]) == [], visible
    assert f"оплата по номеру (карта) {serial:010d} (онлайн)" in visible
    assert "списание за пакет" in visible and "платёж" in visible
    assert re.search(r": период 1", visible)
    assert "2\u00a0510,00\u00a0UZS" in table and "-10\u00a0000,00\u00a0UZS" in table
    assert re.search(r"\d\d\.\d\d\.20\d\d", visible)  # the day, Russian style
    english = p.get("/uzonline/payments", params={"lang": "en"}).text
    assert f"payment by card {serial:010d} (online)" in english and ": period 1" in english


def test_a_refusal_without_a_portal_text_is_russian_on_a_russian_page(
        portal_env: PortalEnv) -> None:
    """A domain refusal the portal's catalog has no text for shows the error's own Russian
    line (the command lines' catalogue), not English."""
    m1 = portal_env.seeded["mts"].accounts["m1"]
    p = portal_env.client()
    p.login("mts", m1.account_number, m1.password)
    p.get("/mts/packages", params={"lang": "ru"})
    p.post("/mts/packages/subscribe", {"package": "nosuch"}, token_from="/mts/packages")
    assert html.unescape(_flash(p.last.text)) == "пакет 'nosuch' не найден"
    p.get("/mts/packages", params={"lang": "en"})
    p.post("/mts/packages/subscribe", {"package": "nosuch"}, token_from="/mts/packages")
    assert html.unescape(_flash(p.last.text)) == "unknown package 'nosuch'"
