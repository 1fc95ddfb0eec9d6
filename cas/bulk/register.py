"""Card registration for ``cas card personalise``: the bulk fast path (COPY on PostgreSQL,
executemany on SQLite) in one transaction, with progress."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from cas.bulk.cards import NewCard, Outcome, Registrar, SlotRun
from cas.bulk.load import _clock_s, _driver_errors
from cas.errors import StoreError
from cas.formats.cardstate import CardState
from cas.formats.records import CardRecord
from cas.store.engine import Store
from cas.store.errors import RecordConflict
from cas.store.repo import CardSlot

#: Cards per round trip.
CHUNK = 50_000


def register_cards(store: Store, cards: Sequence[NewCard],
                   advance: Callable[[int], None] = lambda n: None,
                   allocated: Callable[[list[CardSlot]], None] | None = None) -> list[CardSlot]:
    """Register ``cards`` (``registered_at_s`` 0 means the head-end clock); their slots.

    A serial already registered keeps its slot (a re-run changes nothing); a slot that
    clashes is a :class:`~cas.store.errors.RecordConflict` and nothing is registered.
    ``allocated`` gets each chunk's slots as soon as they are allocated, while the chunk's
    rows are still being written (``cas card personalise`` personalises them meanwhile);
    if the transaction then fails, the error is raised here as usual.
    """
    slots: list[CardSlot] = []

    def check(outcomes: list[Outcome]) -> None:
        chunk: list[CardSlot] = []
        for outcome in outcomes:
            if outcome.reason is not None or outcome.slot is None:
                raise RecordConflict(outcome.reason or "card not registered",
                                     code="CARD_SLOT_CONFLICT")
            chunk.append(outcome.slot)
        slots.extend(chunk)
        if allocated is not None:
            allocated(chunk)

    try:
        with store.engine.begin() as conn:
            at_s = _clock_s(conn)
            registrar = Registrar(conn)
            for start in range(0, len(cards), CHUNK):
                part = [c if c.registered_at_s else NewCard(
                    serial=c.serial, shared_address=c.shared_address,
                    member_position=c.member_position, status=c.status, region=c.region,
                    maturity_limit=c.maturity_limit, registered_at_s=at_s)
                    for c in cards[start:start + CHUNK]]
                registrar.register(part, advance, check)
            registrar.finish()
    except _db_errors() as exc:
        raise _registration_failed(exc) from exc
    return slots


def _db_errors() -> tuple[type[Exception], ...]:
    return (SQLAlchemyError, *_driver_errors())


def _registration_failed(exc: Exception) -> StoreError:
    """The one-line error of a registration the database refused (its first line only)."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(f"card registration failed: {first}").with_id(
        "bulk.card_registration_failed", splitlines=first)


def register_serials(store: Store, first: int, count: int, *, region: int = 0,
                     maturity_limit: int = 0xFF, status: str = "active",
                     advance: Callable[[int], None] = lambda n: None,
                     allocated: Callable[[list[SlotRun]], None] | None = None
                     ) -> list[SlotRun]:
    """Register the ``count`` cards with serials from ``first`` (``cas card personalise
    --count N``) at the head-end clock: the same cards, slots and rows as
    :func:`register_cards` with ``NewCard(serial, region=…, maturity_limit=…)`` for each
    serial, in one transaction, without a Python object per card (see
    :meth:`Registrar.register_range`).  Their slots as runs; ``allocated`` gets them before
    the rows are written."""
    try:
        with store.engine.begin() as conn:
            registrar = Registrar(conn)
            runs = registrar.register_range(
                first, count, status=status, region=region, maturity_limit=maturity_limit,
                registered_at_s=_clock_s(conn), advance=advance, allocated=allocated,
                chunk=CHUNK)
            registrar.finish()
    except _db_errors() as exc:
        raise _registration_failed(exc) from exc
    return runs


def write_images_fast(records: Sequence[CardRecord], directory: Path, *,
                      advance: Callable[[int], None] = lambda n: None,
                      state: CardState | None = None) -> list[Path]:
    """One EEPROM image per card (see :func:`write_image_bytes`).  ``state``: the card state
    area every image starts with (default: none, the default state — docs/formats.md §2.2)."""
    from cas.card.eeprom import build_image
    from cas.formats.cardstate import DEFAULT_CARD_STATE

    return write_image_bytes([r.serial for r in records],
                             [build_image(r, state or DEFAULT_CARD_STATE) for r in records],
                             directory, advance=advance)


def write_image_bytes(serials: Sequence[int], images: Sequence[bytes], directory: Path, *,
                      advance: Callable[[int], None] = lambda n: None) -> list[Path]:
    """One EEPROM image per card, ``images[i]`` for card ``serials[i]``, each replaced
    atomically (temp file and rename), with one flush to disk at the end instead of two
    ``fsync`` per card (a million cards would spend hours in them).  The caller has checked
    that no image is overwritten by mistake."""
    from cas.card.eeprom import write_image_atomic
    from cas.card.personalise import image_path

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (serial, image) in enumerate(zip(serials, images, strict=True), start=1):
        path = image_path(directory, serial)
        write_image_atomic(path, image, sync=False)
        paths.append(path)
        if n % 1000 == 0:
            advance(1000)
    advance(len(images) % 1000)
    os.sync()
    return paths
