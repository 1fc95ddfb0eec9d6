"""TV+ (seed 000): base and add-on packages, lock causes, renewal off/on without losing a
prepaid day, financial block, promo codes confirmed by SMS code, prepaid and postpaid, screen
limits, kids profile, service only inside Kazakhstan."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cas.access import CardStatus
from cas.billing import accounts, service
from cas.errors import BillingError, ValidationError
from cas.reasons import Reason
from cas.store.errors import RecordConflict, RecordNotFound
from tests.unit.billing.helpers import DAY, Bench

KZT = 100
START, OPTIMAL, MAXIMUM = 2490 * KZT, 3490 * KZT, 4990 * KZT


def _subscribe(tv: Bench, acc: str, package: str) -> service.SubscriptionView:
    with tv.tx() as s:
        return service.subscribe(s, account_number=acc, package=package, at=tv.now())


def test_addon_needs_a_base_package(tv: Bench) -> None:
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, 10_000 * KZT)
    before = tv.snapshot()
    with pytest.raises(BillingError) as exc:
        _subscribe(tv, acc, "viasat-sport")
    assert exc.value.code == "ADDON_NEEDS_BASE"
    assert tv.snapshot() == before

    _subscribe(tv, acc, "start")
    assert tv.why(card, 1) == Reason.OPEN
    assert tv.why(card, 24) == Reason.CHANNEL_NOT_IN_PACKAGE  # Viasat Sport HD
    view = _subscribe(tv, acc, "viasat-sport")
    assert view.status == "active"
    assert tv.why(card, 24) == Reason.OPEN
    assert tv.balance(acc) == 10_000 * KZT - START - 1990 * KZT
    with pytest.raises(RecordConflict):
        _subscribe(tv, acc, "viasat-sport")


def test_the_five_addons_ship(tv: Bench) -> None:
    with tv.store.reader() as s:
        from cas.billing.catalog import list_packages

        addons = {p.name for p in list_packages(s) if p.kind == "addon"}
    assert addons == {"VIP Premiere", "VIP Megahit", "VIP Comedy", "Viasat Sport HD",
                      "Viasat Nature/History HD"}


def test_lock_causes_no_card_not_connected_not_in_package_financial_block(tv: Bench) -> None:
    acc = tv.account()
    loose = tv.card()
    assert tv.why(loose, 1) == Reason.CARD_NOT_ACTIVE  # not on an account ("not logged in")
    card = tv.card(acc)
    assert tv.why(card, 1) == Reason.NOT_SUBSCRIBED  # "To start viewing, subscribe"
    tv.pay(acc, START)
    _subscribe(tv, acc, "start")
    assert tv.why(card, 15) == Reason.CHANNEL_NOT_IN_PACKAGE
    tv.advance(days=30)  # no money for the renewal
    assert tv.rights(card).status == CardStatus.FINANCIAL_BLOCK
    assert {tv.why(card, n) for n in (1, 15, 24)} == {Reason.FINANCIAL_BLOCK}


def test_renewal_off_then_on_loses_no_prepaid_day(tv: Bench) -> None:
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, 2 * START)
    _subscribe(tv, acc, "start")
    end = tv.subs(acc)["start"].end
    tv.advance(days=10)
    with tv.tx() as s:
        service.set_renewal(s, account_number=acc, on=False, at=tv.now())
    v = tv.subs(acc)["start"]
    assert (v.auto_renew, v.end, v.days_left) == (False, end, 20)
    tv.advance(days=5)
    ledger_before = len(tv.statement(acc).lines)
    with tv.tx() as s:
        service.set_renewal(s, account_number=acc, on=True, at=tv.now())
    v = tv.subs(acc)["start"]
    assert (v.auto_renew, v.end, v.days_left, v.status) == (True, end, 15, "active")
    assert len(tv.statement(acc).lines) == ledger_before  # nothing charged
    rep = tv.advance(days=15)
    assert [e.kind for e in rep.events] == ["renewed"]
    assert tv.subs(acc)["start"].end == end + 30 * DAY
    assert tv.rights(card).entitlements[0].end_s == int((end + 30 * DAY).timestamp())


def test_renewal_off_lets_the_package_end_and_on_restarts_it(tv: Bench) -> None:
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, 2 * START)
    _subscribe(tv, acc, "start")
    with tv.tx() as s:
        service.set_renewal(s, account_number=acc, on=False, at=tv.now(), package="start")
    rep = tv.advance(days=31)
    assert [e.kind for e in rep.events] == ["expired"]
    assert tv.subs(acc)["start"].status == "expired"
    assert tv.rights(card).status == CardStatus.ACTIVE  # no block: the subscriber chose it
    assert tv.why(card, 1) == Reason.ENTITLEMENT_EXPIRED
    assert tv.balance(acc) == START
    with tv.tx() as s:
        service.set_renewal(s, account_number=acc, on=True, at=tv.now())
    v = tv.subs(acc)["start"]
    assert v.status == "active" and v.days_left == 30
    assert tv.balance(acc) == 0
    assert tv.why(card, 1) == Reason.OPEN


def test_financial_block_when_money_runs_out_and_payment_lifts_it(tv: Bench) -> None:
    acc = tv.account(phone="+77011234567", email="a@example.kz")
    card = tv.card(acc)
    tv.pay(acc, START + 1000 * KZT)
    _subscribe(tv, acc, "start")
    rep = tv.advance(days=30)
    assert [e.kind for e in rep.events] == ["reminder", "blocked"]
    b = tv.balance_view(acc)
    assert b.blocked_since is not None and b.block_cause == "unpaid_renewal"
    assert tv.rights(card).status == CardStatus.FINANCIAL_BLOCK
    r = tv.pay(acc, 2000 * KZT)
    assert r.activated == ("start",)
    assert tv.balance(acc) == 3000 * KZT - START
    assert tv.balance_view(acc).blocked_since is None
    assert tv.why(card, 1) == Reason.OPEN


def test_postpaid_runs_on_credit_until_the_limit(tv: Bench) -> None:
    acc = tv.account(kind="postpaid")  # profile credit limit: 10,000 KZT
    card = tv.card(acc)
    view = _subscribe(tv, acc, "start")
    assert view.status == "active"
    assert tv.balance(acc) == -START
    tv.advance(days=90)
    assert tv.balance(acc) == -4 * START  # 9,960 of 10,000 KZT credit used
    assert tv.rights(card).status == CardStatus.ACTIVE
    tv.advance(days=30)  # a 5th month would pass the limit
    assert tv.rights(card).status == CardStatus.FINANCIAL_BLOCK
    assert tv.balance(acc) == -4 * START


def test_prepaid_account_cannot_have_credit(tv: Bench) -> None:
    with pytest.raises(ValidationError) as exc:
        tv.account(kind="prepaid", credit_limit_minor=100)
    assert exc.value.code == "BAD_CREDIT_LIMIT"


def test_promo_code_needs_the_sms_code_then_activates_free(tv: Bench) -> None:
    acc = tv.account()
    card = tv.card(acc)
    with pytest.raises(BillingError) as exc, tv.tx() as s:
        service.redeem_promo(s, account_number=acc, code="TVPLUS30", at=tv.now())
    assert exc.value.code == "VERIFICATION_REQUIRED"
    # No code given at all: say what is needed, not "no such verification session".
    assert "no such verification session" not in str(exc.value)
    assert "confirmed by SMS code" in str(exc.value)

    codes = iter([bytes(range(16)), (123456).to_bytes(8, "big")])
    with tv.tx() as s:
        ch = accounts.start_verification(s, account_number=acc, phone="+7 701 555 0101",
                                         at=tv.now(), rng=lambda n: next(codes)[:n])
    assert ch.code == "123456" and ch.phone == "+77015550101"
    with tv.tx() as s:
        wrong = accounts.confirm_verification(s, token=ch.token, code="000000", at=tv.now())
    assert not wrong.verified and wrong.attempts_left == 4
    with tv.tx() as s:
        ok = accounts.confirm_verification(s, token=ch.token, code="123456", at=tv.now())
    assert ok.verified
    with tv.tx() as s:
        view = service.redeem_promo(s, account_number=acc, code="tvplus30", at=tv.now(),
                                    verification=ch.token)
    assert view.package_code == "start" and view.days_left == 30
    assert tv.balance(acc) == 0 and tv.statement(acc).lines == ()
    assert tv.why(card, 1) == Reason.OPEN
    with pytest.raises(BillingError) as exc2, tv.tx() as s:  # a rule refusal: exit 7
        service.redeem_promo(s, account_number=acc, code="TVPLUS30", at=tv.now(),
                             verification=ch.token)
    assert exc2.value.code == "PROMO_USED" and exc2.value.exit_code == 7
    with pytest.raises(BillingError) as exc4, tv.tx() as s:  # an unknown token is still named
        service.redeem_promo(s, account_number=acc, code="TVPLUS30", at=tv.now(),
                             verification="f" * 32)
    assert str(exc4.value) == "no such verification session"
    with pytest.raises(RecordNotFound) as exc3, tv.tx() as s:
        service.redeem_promo(s, account_number=acc, code="NOPE", at=tv.now(),
                             verification=ch.token)
    assert exc3.value.code == "UNKNOWN_PROMO"


def test_verification_code_valid_only_until_the_session_ends(tv: Bench) -> None:
    acc = tv.account()
    with tv.tx() as s:
        ch = accounts.start_verification(s, account_number=acc, phone="+77015550101", at=tv.now())
    with tv.tx() as s:
        accounts.end_verification(s, token=ch.token, at=tv.now())
    with pytest.raises(BillingError) as exc, tv.tx() as s:
        accounts.confirm_verification(s, token=ch.token, code=ch.code, at=tv.now())
    assert exc.value.code == "VERIFICATION_EXPIRED"

    with tv.tx() as s:
        ch2 = accounts.start_verification(s, account_number=acc, phone="+77015550101",
                                          at=tv.now())
    tv.advance(hours=1)  # the session (30 minutes) is over
    with pytest.raises(BillingError) as exc2, tv.tx() as s:
        accounts.confirm_verification(s, token=ch2.token, code=ch2.code, at=tv.now())
    assert exc2.value.code == "VERIFICATION_EXPIRED"


def test_too_many_wrong_codes_close_the_session(tv: Bench) -> None:
    acc = tv.account()
    with tv.tx() as s:
        ch = accounts.start_verification(s, account_number=acc, phone="+77015550101", at=tv.now())
    wrong = "1" * 6 if ch.code != "1" * 6 else "2" * 6
    for left in (4, 3, 2, 1, 0):
        with tv.tx() as s:
            r = accounts.confirm_verification(s, token=ch.token, code=wrong, at=tv.now())
        assert (r.verified, r.attempts_left) == (False, left)
    with pytest.raises(BillingError), tv.tx() as s:
        accounts.confirm_verification(s, token=ch.token, code=ch.code, at=tv.now())


def test_extra_devices_are_logged_out(tv: Bench) -> None:
    acc = tv.account()
    tv.pay(acc, OPTIMAL)
    _subscribe(tv, acc, "optimal")  # 2 screens
    outs = []
    for i, dev in enumerate(["phone", "tv", "tablet"]):
        with tv.tx() as s:
            r = accounts.device_login(s, account_number=acc, device_id=dev,
                                      at=tv.now() + timedelta(minutes=i))
        outs.append(r.logged_out)
    assert outs == [(), (), ("phone",)]
    assert r.active_devices == ("tv", "tablet") and r.screens_limit == 2
    with tv.tx() as s:
        assert accounts.set_extra_screens(s, account_number=acc, extra=3, at=tv.now()) == 5
    with pytest.raises(ValidationError) as exc, tv.tx() as s:
        accounts.set_extra_screens(s, account_number=acc, extra=4, at=tv.now())
    assert exc.value.code == "SCREEN_LIMIT"
    for dev in ["laptop", "phone", "box"]:
        with tv.tx() as s:
            r = accounts.device_login(s, account_number=acc, device_id=dev, at=tv.now())
    assert len(r.active_devices) == 5 and r.logged_out == ()
    with tv.tx() as s:  # selling the extra screens back logs the oldest out
        assert accounts.set_extra_screens(s, account_number=acc, extra=0, at=tv.now()) == 2
        left = accounts.active_devices(s, service.find_account(s, by="account", ref=acc))
    assert len(left) == 2


def test_kids_profile_hides_adult_channels(tv: Bench) -> None:
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, MAXIMUM)
    _subscribe(tv, acc, "maximum")
    assert tv.why(card, 27) == Reason.OPEN  # Night Club 18+
    with tv.tx() as s:
        assert accounts.set_kids_profile(s, serial=card, on=True, at=tv.now()) == 12
    assert tv.rights(card).maturity_limit == 12
    assert tv.why(card, 27) == Reason.MATURITY_LOCKED
    assert tv.why(card, 27, pin_ok=True) == Reason.OPEN
    assert tv.why(card, 1) == Reason.OPEN
    with tv.tx() as s:
        accounts.set_kids_profile(s, serial=card, on=False, at=tv.now())
    assert tv.why(card, 27) == Reason.OPEN


def test_service_only_inside_the_country(tv: Bench) -> None:
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, START)
    _subscribe(tv, acc, "start")
    assert tv.rights(card).region == 398
    with tv.tx() as s:
        accounts.set_card_region(s, serial=card, region=643, at=tv.now())
    assert tv.why(card, 1) == Reason.REGION_BLACKOUT
