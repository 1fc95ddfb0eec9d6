"""Card registration: groups of 256 filled in order, explicit slots reserved, re-registration
idempotent, conflicts refused; the rights journal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cas.errors import ConflictError, ValidationError
from cas.store.engine import Store
from cas.store.errors import RecordNotFound
from cas.store.repo import (
    GROUP_SIZE,
    card_slots,
    get_card,
    iter_rights_changes,
    record_rights_change,
    register_card,
)

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_slots_fill_groups_of_256_in_order(store: Store) -> None:
    with store.transaction() as s:
        slots = [register_card(s, 1000 + i, at=AT) for i in range(GROUP_SIZE + 2)]
    assert [(x.shared_address, x.member_position) for x in slots[:2]] == [(1, 0), (1, 1)]
    assert (slots[255].shared_address, slots[255].member_position) == (1, 255)
    assert [(x.shared_address, x.member_position) for x in slots[256:]] == [(2, 0), (2, 1)]
    with store.reader() as s:
        assert [c.serial for c in card_slots(s, 2)] == [1256, 1257]


def test_explicit_slots_are_reserved_and_skipped(store: Store) -> None:
    with store.transaction() as s:
        assert register_card(s, 50, 1, 1, at=AT).member_position == 1
        auto = [register_card(s, 60 + i, at=AT) for i in range(3)]
        far = register_card(s, 70, 9, 200, at=AT)
    assert [(x.shared_address, x.member_position) for x in auto] == [(1, 2), (1, 3), (1, 4)]
    assert (far.shared_address, far.member_position) == (9, 200)
    with store.transaction() as s:
        nxt = register_card(s, 71, at=AT)
    assert (nxt.shared_address, nxt.member_position) == (1, 5)


def test_re_registration_is_idempotent_and_conflicts_refused(store: Store) -> None:
    with store.transaction() as s:
        first = register_card(s, 2256884759, at=AT)
    with store.transaction() as s:
        assert register_card(s, 2256884759, at=AT) == first
        assert register_card(s, 2256884759, first.shared_address, first.member_position,
                             at=AT) == first
    with pytest.raises(ConflictError), store.transaction() as s:
        register_card(s, 2256884759, 5, 5, at=AT)
    with pytest.raises(ConflictError), store.transaction() as s:
        register_card(s, 42, first.shared_address, first.member_position, at=AT)


@pytest.mark.parametrize(("serial", "sa", "pos"), [
    (0, None, None), (2**32, None, None), (-1, None, None), (5, 1, None), (5, 2**24, 0),
    (5, 1, 256),
])
def test_bad_serials_and_slots(store: Store, serial: int, sa: int | None, pos: int | None) -> None:
    with pytest.raises(ValidationError), store.transaction() as s:
        register_card(s, serial, sa, pos, at=AT)


def test_registration_and_changes_are_journalled(store: Store) -> None:
    with store.transaction() as s:
        register_card(s, 7, at=AT)
        register_card(s, 8, at=AT)
        record_rights_change(s, [7], 1_800_000_000, "test")
        assert get_card(s, 7).rights_version == 2
        assert get_card(s, 8).rights_version == 1
    with store.reader() as s:
        rows = list(iter_rights_changes(s))
        assert [(r.card_serial, r.cause) for r in rows] == [(7, "register"), (8, "register"),
                                                            (7, "test")]
        assert [r.card_serial for r in iter_rights_changes(s, after_id=rows[1].id)] == [7]
        with pytest.raises(RecordNotFound):
            get_card(s, 9)
