"""Concurrent payments against a real database: 50 threads paying one account leave the exact
sum (none lost, none doubled); 50 threads replaying one payment id book it exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from cas.billing import accounts, clock, service
from cas.billing.setup import use_profile
from cas.errors import CasError
from cas.store.engine import Store
from cas.store.errors import RecordConflict
from tests.unit.billing.helpers import T0

THREADS = 50


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    st = Store.open(db_url)
    yield st
    st.dispose()


def _account(store: Store) -> str:
    with store.transaction() as s:
        use_profile(s, "ntvplus", clock_start=T0)
        return accounts.create_account(s, surname="Sidorov", name="Sidor",
                                       at=clock.clock_now(s)).account_number


def _hammer(store: Store, acc: str, payment_ids: list[str]) -> list[object]:
    barrier = threading.Barrier(len(payment_ids))

    def one(i: int) -> object:
        barrier.wait()  # start together, to collide for real
        try:
            with store.transaction() as s:
                return service.pay(s, by="account", ref=acc, amount_minor=100 + i,
                                   payment_id=payment_ids[i], at=T0)
        except CasError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(payment_ids)) as pool:
        return list(pool.map(one, range(len(payment_ids))))


def test_fifty_concurrent_payments_leave_the_exact_sum(store: Store) -> None:
    acc = _account(store)
    results = _hammer(store, acc, [f"p-{i}" for i in range(THREADS)])
    assert all(isinstance(r, service.PaymentResult) for r in results), results
    expected = sum(100 + i for i in range(THREADS))
    with store.reader() as s:
        st = service.statement(s, account_number=acc)
        assert service.balance(s, account_number=acc).balance_minor == expected
    assert len(st.lines) == THREADS
    running = 0
    for line in st.lines:  # in commit order each row saw every earlier payment
        running += line.amount_minor
        assert line.balance_after_minor == running
    assert st.closing_balance_minor == expected


def test_a_replayed_payment_id_is_booked_once(store: Store) -> None:
    acc = _account(store)
    results = _hammer(store, acc, ["same-id"] * THREADS)
    ok = [r for r in results if isinstance(r, service.PaymentResult)]
    refused = [r for r in results if isinstance(r, RecordConflict)]
    assert len(ok) == 1 and len(refused) == THREADS - 1, results
    assert {r.code for r in refused} == {"DUPLICATE_PAYMENT"}
    with store.reader() as s:
        assert service.balance(s, account_number=acc).balance_minor == ok[0].amount_minor
        assert len(service.statement(s, account_number=acc).lines) == 1
