"""Helpers shared by the subscriber command modules (``account``, ``billing``, ``box``,
``card_admin``): opening the store, the simulated "now", parsing amounts and dates, and
turning domain results into tables or JSON."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import click
from rich.table import Table
from sqlalchemy.orm import Session

from cas.cli.app import Application
from cas.errors import TimeRangeError, UsageError
from cas.store.engine import Store, open_store
from cas.text import foreign_number_refusal, parse_digits
from cas.wiretime import wire_time_s


def open_app_store(app: Application, *, create: bool = False) -> Store:
    """The store named by ``--db-url``/``CAS_DB_URL``, else ``<data-dir>/cas.sqlite``.

    Only the commands that set up a store pass ``create=True`` (``cas operator use``); every
    other command refuses a data dir or database without one (``StoreMissing``, one line
    naming it and how to make one), so a mistyped ``CAS_DATA_DIR`` is not a new empty store.
    """
    return open_store(db_url=app.db_url, data_dir=app.data_dir if not app.db_url else None,
                      create=create)


@contextmanager
def transaction(app: Application, *, create: bool = False) -> Iterator[Session]:
    store = open_app_store(app, create=create)
    try:
        with store.transaction() as session:
            yield session
    finally:
        store.dispose()


@contextmanager
def reader(app: Application) -> Iterator[Session]:
    store = open_app_store(app)
    try:
        with store.reader() as session:
            yield session
    finally:
        store.dispose()


def now(session: Session) -> datetime:
    from cas.billing.clock import clock_now

    return clock_now(session)


def parse_when(text: str) -> datetime:
    """``2026-03-01`` (midnight UTC) or an ISO date-time (UTC unless it says otherwise).

    Only times the wire can carry (1970 to 2106, u32 seconds: :mod:`cas.wiretime`) are
    accepted; anything else is a :class:`~cas.errors.TimeRangeError` (exit 2).
    """
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text.strip()):
            d = date.fromisoformat(text.strip())
            moment = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise UsageError(f"bad date {text!r}: use YYYY-MM-DD or an ISO date-time").with_id(
            "cli.bad_date_yyyy_mm", text=f"{text!r}") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        wire_time_s(moment, f"date {text.strip()!r}")
    except OverflowError as exc:  # datetime's own range (year 1 / 9999 with an offset)
        raise TimeRangeError(f"date {text.strip()!r}: out of range").with_id(
            "cli.date_out_range", strip=f"{text.strip()!r}") from exc
    return moment


def parse_serial(text: str) -> int:
    """A card number: ASCII digits, 1 to 4294967295 (u32)."""
    serial = parse_digits(text.strip(), max_value=0xFFFF_FFFF)
    if not serial:
        raise UsageError(f"card number {text!r}: 1 to 4294967295 in ASCII digits 0-9").with_id(
            "cli.card_number_ascii_digits", text=f"{text!r}")
    return serial


def refuse_foreign_number(text: str | None, what: str) -> None:
    """A number typed with other digits (``²``, ``１０``) is a usage error (exit 2), before
    anything is looked up: numbers are ASCII digits (:mod:`cas.text`)."""
    if text is not None:
        refusal = foreign_number_refusal(text, what)
        if refusal is not None:
            raise UsageError(refusal).with_id(refusal.message_id, **refusal.params)


def parse_chip_id(text: str) -> int:
    t = text.strip().lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{1,8}", t):
        raise UsageError(f"Chip ID {text!r}: up to 8 hex digits").with_id(
            "cli.chip_id_up_hex", text=f"{text!r}")
    return int(t, 16)


def account_number_of(session: Session, ref: str) -> str:
    """An account number, contract number or card number -> the account number."""
    from cas.billing.service import find_account_any

    refuse_foreign_number(ref, "account, contract or card number")
    return find_account_any(session, ref).account_number


def money(session: Session, amount_minor: int) -> str:
    from cas.billing.txn import current_profile
    from cas.cli.formats import money_formatter

    return money_formatter(current_profile(session))(amount_minor)


def to_json(value: Any) -> Any:
    """Dataclasses, datetimes and tuples as JSON-able values (times as ISO strings, money as
    integer minor units)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if hasattr(value, "name") and hasattr(value, "value") and not isinstance(value, (str, int)):
        return value.name
    return value


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    return t


def day(value: datetime | None) -> str:
    from cas.cli.formats import day as localised_day

    return localised_day(value)


def when(value: datetime | None) -> str:
    from cas.cli.formats import when as localised_when

    return localised_when(value)


def show(app: Application, data: Any, render: Callable[[], None]) -> None:
    app.output(to_json(data), render)


def require_one(**options: Any) -> tuple[str, Any]:
    given = [(k, v) for k, v in options.items() if v is not None]
    if len(given) != 1:
        names = ", ".join(f"--{k}" for k in options)
        raise UsageError(f"give exactly one of {names}").with_id(
            "cli.give_exactly_one", names=names)
    return given[0]


def echo_kv(app: Application, pairs: Sequence[tuple[str, Any]]) -> None:
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in pairs:
        t.add_row(k, "" if v is None else str(v))
    app.print(t)


pass_ctx = click.pass_context
