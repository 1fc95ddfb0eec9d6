"""The bulk personalisation path gives byte for byte what the per-card path gives
(``build_card_record(personalise_card(…))``), in one process and across worker processes."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from cas.access import CardStatus
from cas.card.personalise import CardSlot, default_slot
from cas.card.personalise_fast import (
    Factory,
    Personaliser,
    personalise_records,
    personalise_run,
    split_records,
    wrap16_many,
)
from cas.errors import UsageError
from cas.formats.records import build_card_record

from .helpers import KEYS

# Slots spread over the serial range (0 and the top included), groups shared by several
# cards and groups of one.
SAMPLE = [CardSlot(serial=s, shared_address=a, member_position=p) for s, a, p in (
    (0, 0, 0), (1, 1, 255), (0xFFFFFFFF, 0xFFFFFF, 17), (1_000_000_001, 1, 0),
    *((1_000_000_002 + 7919 * i, 1 + i // 40, i % 256) for i in range(300)))]


@pytest.mark.parametrize("factory", [
    Factory(now_s=1_790_000_000),
    Factory(now_s=1_790_000_123, pin="9876", ecm_key_indexes=(3, 200), ecm_key_epoch=5,
            region=12, maturity_limit=16, status=CardStatus.ACTIVE),
    Factory(now_s=0, pin="0001", ecm_key_indexes=(7,), ca_system_id=0x4AE1, operator_id=9,
            card_os_version=0x0203),
])
def test_records_equal_the_per_card_path(factory: Factory) -> None:
    fast = split_records(personalise_records(KEYS, SAMPLE, factory))
    assert fast == [build_card_record(factory.record(KEYS, slot)) for slot in SAMPLE]


def test_batched_wrap_equals_rfc3394() -> None:
    kek = os.urandom(16)
    keys = [os.urandom(16) for _ in range(50)]
    encrypt = Cipher(algorithms.AES(kek), modes.ECB()).encryptor().update
    assert wrap16_many(encrypt, b"".join(keys)) == b"".join(aes_key_wrap(kek, k) for k in keys)


def test_bad_options_and_slots_are_refused() -> None:
    with pytest.raises(UsageError, match="PIN"):
        personalise_records(KEYS, SAMPLE[:2], Factory(now_s=1, pin="12"))
    with pytest.raises(UsageError, match="member position"):
        personalise_records(KEYS, [default_slot(5), CardSlot(serial=6, shared_address=1,
                                                              member_position=256)],
                            Factory(now_s=1))
    assert personalise_records(KEYS, [], Factory(now_s=1)) == b""


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_give_the_same_records_in_order(workers: int) -> None:
    factory = Factory(now_s=1_790_000_000, ecm_key_indexes=(0, 1))
    slots = [default_slot(5_000 + i) for i in range(45_000)]  # three chunks, the last short
    done: list[int] = []
    with Personaliser(KEYS, factory, workers=workers, advance=done.append) as personaliser:
        personaliser.submit(slots[:30_000])
        personaliser.submit(slots[30_000:])
        records = [r for chunk in personaliser.results() for r in split_records(chunk)]
    assert sum(done) == len(slots)
    assert len(records) == len(slots)
    for n in (0, 19_999, 20_000, 29_999, 30_000, 44_999):
        assert records[n] == build_card_record(factory.record(KEYS, slots[n]))
    assert records == split_records(personalise_records(KEYS, slots, factory))


def test_a_run_gives_the_records_of_its_slots() -> None:
    # 600 cards from serial 7000 at the slots from group 3, position 250: the run crosses
    # two groups.
    factory = Factory(now_s=1_790_000_000, ecm_key_indexes=(2, 9), region=4)
    slots = [CardSlot(serial=7000 + i, shared_address=(3 * 256 + 250 + i) >> 8,
                      member_position=(3 * 256 + 250 + i) & 0xFF) for i in range(600)]
    assert slots[6].shared_address == 4 and slots[6].member_position == 0
    fast = personalise_run(KEYS, 7000, 600, 3 * 256 + 250, factory)
    assert fast == personalise_records(KEYS, slots, factory)
    assert split_records(fast)[5] == build_card_record(factory.record(KEYS, slots[5]))
    assert personalise_run(KEYS, 1, 0, 0, factory) == b""


@pytest.mark.parametrize("workers", [1, 2])
def test_runs_through_the_workers_give_the_records_of_their_slots(workers: int) -> None:
    factory = Factory(now_s=1_790_000_000)
    # (serial, count, first linear slot, new): a run longer than a task, a short one.
    runs = [(9_000, 25_000, 256, True), (40_000, 300, 70_000, False)]
    slots = [CardSlot(serial=s + i, shared_address=(slot + i) >> 8,
                      member_position=(slot + i) & 0xFF)
             for s, n, slot, _ in runs for i in range(n)]
    done: list[int] = []
    with Personaliser(KEYS, factory, workers=workers, advance=done.append) as personaliser:
        personaliser.submit_runs(runs)
        records = b"".join(personaliser.results())
    assert sum(done) == len(slots)
    assert records == personalise_records(KEYS, slots, factory)
