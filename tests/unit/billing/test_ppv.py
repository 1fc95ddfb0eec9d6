"""Pay-per-view in the store (docs/ppv.md): the catalogue's rules, pre-booking billed in
money by the token rule, and ``cas why`` giving the PPV reasons from the head-end's records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cas.billing import clock
from cas.billing.ppv import add_event, book_event
from cas.billing.state import explain
from cas.cli.main import cli
from cas.crypto import Key, OperatorKeys
from cas.errors import BillingError, ValidationError
from cas.reasons import Reason
from cas.store.errors import RecordConflict
from cas.store.models import Account, Channel
from cas.store.repo import to_s
from tests.unit.billing.helpers import Bench

KEYS = OperatorKeys(Key(bytes(range(16)), label="omk"))
HOUR = 3600


def _sid(bench: Bench) -> int:
    with bench.store.reader() as s:
        return int(s.execute(select(Channel.service_id).order_by(Channel.number)).scalars()
                   .first())


def test_catalogue_rules(tv: Bench) -> None:
    sid = _sid(tv)
    with tv.tx() as s:
        now_s = to_s(clock.clock_now(s))
        add_event(s, event_id=1, service_id=sid, start_s=now_s, end_s=now_s + HOUR,
                  price_tokens=100, now_s=now_s)
    for kwargs, error, code in (
            (dict(event_id=1, start_s=now_s + 2 * HOUR, end_s=now_s + 3 * HOUR), RecordConflict,
             "PPV_EVENT_EXISTS"),
            (dict(event_id=2, start_s=now_s + HOUR // 2, end_s=now_s + 2 * HOUR),
             RecordConflict, "PPV_EVENT_OVERLAP"),
            (dict(event_id=3, start_s=now_s + 5 * HOUR, end_s=now_s + 4 * HOUR),
             ValidationError, "BAD_EVENT_TIME")):
        with pytest.raises(error) as exc, tv.tx() as s:
            add_event(s, service_id=sid, price_tokens=100, now_s=now_s,
                      **kwargs)  # type: ignore[arg-type]
        assert exc.value.code == code


def test_prebooking_bills_money_and_why_follows_the_event(tv: Bench) -> None:
    number = tv.account()
    tv.pay(number, 500_00)
    serial = tv.card(number)
    sid = _sid(tv)
    with tv.tx() as s:
        at = clock.clock_now(s)
        now_s = to_s(at)
        add_event(s, event_id=77, service_id=sid, start_s=now_s + HOUR,
                  end_s=now_s + 3 * HOUR, price_tokens=150, now_s=now_s)
    channel = f"sid:{sid}"
    with tv.store.reader() as s:
        during = at + timedelta(hours=2)
        base = explain(s, serial=serial, channel=channel, at=during)
        assert base.reason is Reason.PPV_NOT_PURCHASED
    with tv.tx() as s:
        balance = s.execute(select(Account.balance_minor)
                            .where(Account.account_number == number)).scalar_one()
        booking = book_event(s, KEYS, serial=serial, event_id=77, now_s=now_s)
        after = s.execute(select(Account.balance_minor)
                          .where(Account.account_number == number)).scalar_one()
    assert booking.amount_minor == 150 * tv.profile.minor_per_major
    assert balance - after == booking.amount_minor
    with pytest.raises(RecordConflict), tv.tx() as s:
        book_event(s, KEYS, serial=serial, event_id=77, now_s=now_s)
    with tv.store.reader() as s:
        assert explain(s, serial=serial, channel=channel, at=during).reason is Reason.OPEN
        later = at + timedelta(hours=4)
        assert explain(s, serial=serial, channel=channel,
                       at=later).reason is Reason.PPV_EVENT_ENDED
    with pytest.raises(BillingError) as exc, tv.tx() as s:
        book_event(s, KEYS, serial=serial, event_id=77, now_s=now_s + 4 * HOUR)
    assert exc.value.code in ("PPV_EVENT_ENDED", "PPV_ALREADY_BOOKED")


def test_cli_add_and_list(tv: Bench) -> None:
    sid = _sid(tv)
    url = tv.store.engine.url.render_as_string(hide_password=False)
    r = CliRunner().invoke(cli, [
        "--db-url", url, "--json", "ppv", "add", "--event", "9", "--service-id", str(sid),
        "--start", "2030-01-01T20:00:00Z", "--end", "2030-01-01T22:00:00Z", "--price", "99"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, [
        "--db-url", url, "--json", "ppv", "list"])
    assert r.exit_code == 0 and '"event_id": 9' in r.output
    r = CliRunner().invoke(cli, [
        "--db-url", url, "ppv", "add", "--event", "9", "--service-id", str(sid),
        "--start", "2030-01-02T20:00:00Z", "--end", "2030-01-02T22:00:00Z", "--price", "99"])
    assert r.exit_code != 0 and "Traceback" not in r.output
