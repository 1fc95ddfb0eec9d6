"""The seed operators' self-care flows, end to end in headless Chromium against the portal on
uvicorn (fixtures in ``tests/fixtures/browser.py``), then checked in the database: payments
and ledger, the rights-change journal the EMM generator reads (``cards.rights_version`` ahead
of the last EMM sent), and the audit log."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from cas.billing.txn import account_by_number
from cas.store.models import (
    Card,
    LedgerEntry,
    Payment,
    PromisedPayment,
    PromoRedemption,
    RightsChange,
    Subscription,
    VerificationSession,
)
from cas.web.domain import card_emm_queue
from cas.web.models import WebAuditEntry, WebSession
from tests.fixtures.browser import PortalServer
from tests.integration.web.seed import last_sms_code

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _login(page: Any, server: PortalServer, op: str, identifier: str, password: str) -> None:
    page.goto(server.url(f"/{op}/login?lang=en"))
    form = page.get_by_test_id("login-password")
    form.locator("input[name=identifier]").fill(identifier)
    form.locator("input[name=password]").fill(password)
    form.get_by_role("button").click()
    page.wait_for_url(re.compile(rf"/{op}/account$"))


def _flash(page: Any) -> str:
    return str(page.locator("[data-testid^=flash-]").inner_text())


def _audit_actions(store: Any, account_number: str) -> list[str]:
    with store.reader() as s:
        return list(s.execute(select(WebAuditEntry.action).where(
            WebAuditEntry.target == account_number).order_by(WebAuditEntry.id)).scalars())


def _causes(store: Any, serial: int) -> list[str]:
    with store.reader() as s:
        return list(s.execute(select(RightsChange.cause).where(
            RightsChange.card_serial == serial).order_by(RightsChange.id)).scalars())


def test_atvplus_pay_10_plus_10_on_12_then_switch_rule_and_why(
        page: Any, portal_server: PortalServer) -> None:
    seeded = portal_server.seeded["atvplus"]
    a1 = seeded.accounts["a1"]
    store = seeded.store
    _login(page, portal_server, "atvplus", a1.account_number, a1.password)
    assert page.get_by_test_id("balance").inner_text() == "1.00 AZN"
    before = card_emm_queue_version(store, a1.card)

    # Seed 002: balance 1, pay 10 with "+Sport — 12 manat" chosen: 11 < 12, not active.
    page.get_by_role("link", name="Pay").first.click()
    page.get_by_test_id("pay-package").select_option("sport")
    page.get_by_test_id("pay-denomination").select_option(label="10.00 AZN")
    page.get_by_test_id("pay-voucher").fill("700000000001")
    page.get_by_test_id("pay-submit").click()
    text = _flash(page)
    assert "Paid 10.00 AZN. Balance: 11.00 AZN." in text
    assert "sport" in text and "Activated" not in text
    # ... another 10: 21, 12 debited, active, 9 left.
    page.get_by_test_id("pay-package").select_option("sport")
    page.get_by_test_id("pay-denomination").select_option(label="10.00 AZN")
    page.get_by_test_id("pay-voucher").fill("700000000002")
    page.get_by_test_id("pay-submit").click()
    text = _flash(page)
    assert "Activated: sport." in text and "Balance: 9.00 AZN." in text
    page.get_by_role("link", name="Account").first.click()
    assert page.get_by_test_id("balance").inner_text() == "9.00 AZN"
    row = page.get_by_test_id("sub-sport")
    assert row.get_attribute("data-status") == "active"
    assert row.get_by_test_id("sub-activated").inner_text() == "2026-03-02"
    assert row.get_by_test_id("sub-end").inner_text() == "2026-04-01"
    assert row.get_by_test_id("sub-days").inner_text() == "30"

    # A payment card pays once: the same card number again is refused, nothing booked.
    page.get_by_role("link", name="Pay").first.click()
    page.get_by_test_id("pay-denomination").select_option(label="10.00 AZN")
    page.get_by_test_id("pay-voucher").fill("700000000002")
    page.get_by_test_id("pay-submit").click()
    assert "already used" in page.get_by_test_id("flash-error").inner_text()

    # First switch is allowed (unused days credited back) ...
    page.get_by_role("link", name="Packages").first.click()
    assert "at most once every 30 days" in page.get_by_test_id("switch-rule").inner_text()
    page.get_by_test_id("switch-standard").click()
    assert "Switched to standard" in _flash(page)
    # ... a second one within 30 days is refused, with the rule and the dates shown.
    page.get_by_test_id("switch-sport").click()
    refusal = page.get_by_test_id("flash-error").inner_text()
    assert "at most once every 30 days" in refusal
    assert "2026-03-02" in refusal and "2026-04-01" in refusal

    # Why is channel 130 (a "+Sport" channel) locked now?  Same words as `cas why`.
    page.get_by_role("link", name="Why is my channel locked?").click()
    page.get_by_test_id("why-channel").fill("130")
    page.get_by_test_id("why-submit").click()
    verdict = page.get_by_test_id("why-result")
    assert verdict.get_attribute("data-reason") == "CHANNEL_NOT_IN_PACKAGE"
    assert "Channel not in your connected packages" in page.get_by_test_id("why-reason").inner_text()
    assert "+Sport" in page.get_by_test_id("why-cause").inner_text()

    # The database: two payments, a balanced ledger, sport closed, standard active; the rights
    # changes are journalled and wait for the EMM generator; every change is audited.
    with store.reader() as s:
        acc = account_by_number(s, a1.account_number)
        assert s.execute(select(func.count()).select_from(Payment).where(
            Payment.account_id == acc.id)).scalar_one() == 2
        ledger = s.execute(select(func.sum(LedgerEntry.amount_minor)).where(
            LedgerEntry.account_id == acc.id)).scalar_one()
        assert ledger == acc.balance_minor == 100 + 1000 + 1000 - 1200 + 1200 - 900
        subs = {str(p): st for p, st in s.execute(
            select(Subscription.package_id, Subscription.status).where(
                Subscription.account_id == acc.id)).all()}
        assert subs == {"2": "closed", "1": "active"}
    queue = card_emm_queue_version(store, a1.card)
    assert queue.pending and queue.rights_version > before.rights_version
    causes = [c.cause for c in queue.pending_changes]
    assert "payment" in causes and "switch" in causes
    actions = _audit_actions(store, a1.account_number)
    assert actions == ["login", "payment.create", "payment.create", "package.switch"]


def card_emm_queue_version(store: Any, serial: int) -> Any:
    with store.reader() as s:
        return card_emm_queue(s, serial)


def test_tvplus_renewal_off_on_and_promo_by_phone_and_sms(
        page: Any, portal_server: PortalServer) -> None:
    seeded = portal_server.seeded["tvplus"]
    t1 = seeded.accounts["t1"]
    store = seeded.store
    _login(page, portal_server, "tvplus", t1.account_number, t1.password)
    row = page.get_by_test_id("sub-start")
    assert row.get_by_test_id("sub-days").inner_text() == "30"
    page.get_by_test_id("renewal-off-start").click()
    assert "Auto-renewal is off" in _flash(page)
    row = page.get_by_test_id("sub-start")
    assert "off" in row.get_by_test_id("sub-renewal").inner_text()
    assert row.get_by_test_id("sub-days").inner_text() == "30"  # no prepaid day lost
    page.get_by_test_id("renewal-on-start").click()
    assert "Auto-renewal is on again" in _flash(page)
    assert page.get_by_test_id("renewal-off-start").is_visible()
    with store.reader() as s:
        acc = account_by_number(s, t1.account_number)
        sub = s.execute(select(Subscription).where(Subscription.account_id == acc.id)).scalar_one()
        assert sub.auto_renew is True and sub.status == "active"

    # TV+ promo: phone number + promo code, confirmed with the code sent by SMS to that phone.
    page.get_by_role("link", name="Promo code").click()
    page.get_by_test_id("promo-phone").fill(t1.phone)
    page.get_by_test_id("promo-code").fill("TVPLUS30")
    page.get_by_test_id("promo-send").click()
    with store.reader() as s:
        code = last_sms_code(s, t1.account_number)
    page.get_by_test_id("promo-sms").fill(code)
    page.get_by_test_id("promo-activate").click()
    assert "Promo activated: TV+ Start until 2026-05-01" in _flash(page)
    assert page.get_by_test_id("sub-start").get_by_test_id("sub-days").inner_text() == "60"
    with store.reader() as s:
        acc = account_by_number(s, t1.account_number)
        assert s.execute(select(PromoRedemption.code).where(
            PromoRedemption.account_id == acc.id)).scalar_one() == "TVPLUS30"
    assert _causes(store, t1.card)[-1] == "promo"
    assert _audit_actions(store, t1.account_number) == [
        "login", "renewal.off", "renewal.on", "promo.code_sent", "promo.redeem"]


def test_ntvplus_promised_payment_suspend_why_resume(
        page: Any, portal_server: PortalServer) -> None:
    seeded = portal_server.seeded["ntvplus"]
    n1 = seeded.accounts["n1"]
    store = seeded.store
    _login(page, portal_server, "ntvplus", n1.account_number, n1.password)
    page.get_by_test_id("promise").click()
    with store.reader() as s:
        acc = account_by_number(s, n1.account_number)
        promise = s.execute(select(PromisedPayment).where(
            PromisedPayment.account_id == acc.id)).scalar_one()
        granted = f"{promise.amount_minor // 100}.{promise.amount_minor % 100:02d} RUB"
        assert promise.status == "open" and acc.balance_minor == promise.amount_minor
    assert f"Promised payment of {granted} granted: please pay by 2026-03-" in _flash(page)
    assert granted in page.get_by_test_id("promised").inner_text()

    page.get_by_test_id("suspend-until").fill("2026-03-16")
    page.get_by_test_id("suspend").click()
    assert "Service suspended until 2026-03-16" in _flash(page)
    assert page.get_by_test_id("suspended").is_visible()
    page.get_by_role("link", name="Why is my channel locked?").click()
    page.get_by_test_id("why-channel").fill("1")
    page.get_by_test_id("why-submit").click()
    assert page.get_by_test_id("why-result").get_attribute("data-reason") == "CARD_SUSPENDED"
    assert "Service temporarily suspended" in page.get_by_test_id("why-reason").inner_text()

    page.get_by_role("link", name="Account").first.click()
    page.get_by_test_id("resume").click()
    assert "Service resumed" in _flash(page)
    assert page.get_by_test_id("suspended").count() == 0
    causes = _causes(store, n1.card)
    assert causes[-2:] == ["suspend", "resume"]
    with store.reader() as s:
        assert card_emm_queue(s, n1.card).pending
        acc = account_by_number(s, n1.account_number)
        assert acc.suspended_from_s is None
    assert _audit_actions(store, n1.account_number) == [
        "login", "promise.take", "suspension.start", "suspension.end"]


def test_mts_lookup_by_chip_id_and_card_then_phone_login(
        page: Any, portal_server: PortalServer) -> None:
    seeded = portal_server.seeded["mts"]
    m1, m2 = seeded.accounts["m1"], seeded.accounts["m2"]
    page.goto(portal_server.url("/mts/lookup?lang=en"))
    page.get_by_test_id("lookup-chip").fill(f"{m1.chip_id:08X}")
    page.get_by_test_id("lookup-card").fill(f"{m1.card:010d}")
    page.get_by_test_id("lookup-submit").click()
    assert page.get_by_test_id("lookup-account").inner_text() == m1.account_number
    # Someone else's card with my box, and a card that does not exist: the same answer.
    answers = []
    for card in (m2.card, 4_199_999_999):
        page.get_by_test_id("lookup-chip").fill(f"{m1.chip_id:08X}")
        page.get_by_test_id("lookup-card").fill(f"{card:010d}")
        page.get_by_test_id("lookup-submit").click()
        answers.append(page.get_by_test_id("error").inner_text())
        assert page.get_by_test_id("lookup-account").count() == 0
    assert answers[0] == answers[1] == "No account matches this Chip ID and card number."

    # MTS: "log in by the account number, or by phone".
    _login(page, portal_server, "mts", m1.phone, m1.password)
    assert page.get_by_test_id("account-number").inner_text() == m1.account_number


def test_uzonline_sms_login_subscription_dates_extend_and_logout_ends_code(
        page: Any, portal_server: PortalServer) -> None:
    seeded = portal_server.seeded["uzonline"]
    u1 = seeded.accounts["u1"]
    store = seeded.store
    page.goto(portal_server.url("/uzonline/login?lang=ru"))
    form = page.get_by_test_id("login-sms")
    form.locator("input[name=identifier]").fill(u1.account_number)
    form.get_by_role("button").click()
    page.wait_for_url(re.compile(r"/uzonline/login/code"))
    with store.reader() as s:
        code = last_sms_code(s, u1.account_number)
    page.locator("input[name=code]").fill(code)
    page.get_by_test_id("login-code").get_by_role("button").click()
    page.wait_for_url(re.compile(r"/uzonline/account$"))
    # Uzonline: activation date, end date, days left and "+ Продлить", in Russian.
    assert "Дата активации" in page.content() and "Осталось дней" in page.content()
    row = page.get_by_test_id("sub-ivi")
    assert row.get_by_test_id("sub-activated").inner_text() == "02.03.2026"
    assert row.get_by_test_id("sub-end").inner_text() == "01.04.2026"
    assert row.get_by_test_id("sub-days").inner_text() == "30"
    page.get_by_test_id("extend-ivi").click()
    assert "продлён до 01.05.2026" in _flash(page)
    assert page.get_by_test_id("sub-ivi").get_by_test_id("sub-days").inner_text() == "60"
    with store.reader() as s:
        acc = account_by_number(s, u1.account_number)
        live = s.execute(select(WebSession).where(WebSession.account_id == acc.id,
                                                  WebSession.stage == "in")).scalar_one()
        token, live_sha = live.verification_token, live.token_sha256
        assert token is not None
        assert s.get(VerificationSession, token).ended_at_s is None
    assert _causes(store, u1.card)[-1] == "extend"
    # The code was valid "until the end of the session": logging out ends it.
    page.get_by_test_id("logout").click()
    page.wait_for_url(re.compile(r"/uzonline/login$"))
    with store.reader() as s:
        assert s.get(VerificationSession, token).ended_at_s is not None
        assert s.get(WebSession, live_sha).ended_at_s is not None
        assert s.execute(select(Card.rights_version).where(Card.serial == u1.card)
                         ).scalar_one() > 1
    assert _audit_actions(store, u1.account_number) == [
        "login.code_sent", "login", "subscription.extend", "logout"]
