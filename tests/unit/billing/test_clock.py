"""The simulation clock: explicit "now", never backwards, and what falls due runs in time
order (reminders before renewals, base before add-ons, blocks, expiries)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from cas.billing import clock, service
from cas.errors import ValidationError
from tests.unit.billing.helpers import DAY, T0, Bench


def test_clock_starts_where_told_and_never_goes_back(bench: Callable[[str], Bench]) -> None:
    tv = bench("tvplus")
    assert tv.now() == T0
    with tv.tx() as s:
        assert clock.set_clock(s, T0 + DAY) == T0 + DAY
    for bad in (lambda s: clock.set_clock(s, T0),
                lambda s: clock.advance_clock(s, to=T0)):
        with pytest.raises(ValidationError) as exc, tv.tx() as s:
            bad(s)
        assert exc.value.code == "CLOCK_BACKWARDS"
    with pytest.raises(ValidationError), tv.tx() as s:
        clock.advance_clock(s)
    with pytest.raises(ValidationError), tv.tx() as s:
        clock.advance_clock(s, days=-1)
    rep = tv.advance(days=2, hours=3)
    assert (rep.start, rep.end) == (T0 + DAY, T0 + 3 * DAY + DAY / 8)
    assert tv.now() == rep.end


def test_a_store_without_a_clock_uses_the_wall_clock(store: object) -> None:
    from cas.store.engine import Store

    assert isinstance(store, Store)
    with store.reader() as s:
        now = clock.clock_now(s)
    assert abs((now - datetime.now(UTC)).total_seconds()) < 60


def test_events_run_in_time_order_across_accounts(bench: Callable[[str], Bench]) -> None:
    tv = bench("tvplus")
    a = tv.account(phone="+77010000001")
    tv.pay(a, 2490_00 + 990_00 + 100_00)
    tv.call(service.subscribe, account_number=a, package="start")
    tv.call(service.subscribe, account_number=a, package="vip-comedy")
    tv.advance(days=10)
    b = tv.account()
    tv.pay(b, 2 * 2490_00)
    tv.call(service.subscribe, account_number=b, package="start")
    rep = tv.advance(days=45)
    got = [(e.at - T0, e.account_number, e.kind, e.detail.split(":")[0]) for e in rep.events]
    assert got == [
        (27 * DAY, a, "reminder", "TV+ Start renews on 2026-03-31"),
        (27 * DAY, a, "reminder", "VIP Comedy renews on 2026-03-31"),
        (30 * DAY, a, "blocked", "start"),        # the base first ...
        (30 * DAY, a, "expired", "vip-comedy"),   # ... then the add-on, which needs it
        (40 * DAY, b, "renewed", "start"),  # b could pay: no reminder at day 37
    ]
    assert [e.at for e in rep.events] == sorted(e.at for e in rep.events)


def test_a_due_account_catches_up_when_touched_without_the_clock(
        bench: Callable[[str], Bench]) -> None:
    """Domain calls process the account's due events first: paying 40 days later, with the
    clock never advanced, sees the renewal that fell due at day 30."""
    tv = bench("tvplus")
    acc = tv.account()
    tv.pay(acc, 2 * 2490_00)
    tv.call(service.subscribe, account_number=acc, package="start")
    with tv.tx() as s:
        r = service.pay(s, by="account", ref=acc, amount_minor=1_00, payment_id="late",
                        at=T0 + 40 * DAY)
    assert r.balance_minor == 1_00
    lines = tv.statement(acc).lines
    assert [x.kind for x in lines] == ["payment", "charge", "charge", "payment"]
    assert lines[2].at == T0 + 30 * DAY
