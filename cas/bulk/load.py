"""Bulk import: a file of one kind into the store, in chunks, in one transaction.

Two error modes: ``all`` (all-or-nothing: any bad row and nothing is written; the report
lists every bad row) and ``skip`` (bad rows are left out and reported, the good ones are
written).  Rows are keyed by their natural key (account number, card serial, Chip ID, card
for a link, account+package+start for a subscription, payment id): a row whose key is
already in the store is left alone, so importing the same file again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from cas.bulk.cards import NewCard, Registrar
from cas.bulk.fast import execute_many, insert_rows, lookup, query
from cas.bulk.rows import KINDS, Format, Row, RowError, read_rows
from cas.errors import CasError, StoreError, UsageError
from cas.store.engine import Store

Mode = Literal["all", "skip"]
CHUNK = 10_000
#: Errors kept in memory for the report (the count goes on past it).
MAX_KEPT_ERRORS = 10_000


class BulkRowsRefused(CasError):
    """All-or-nothing import refused: some rows are bad; nothing was written."""

    exit_code = 3  # bad input data, like a FormatError

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        first = report.errors[0] if report.errors else None
        super().__init__(f"{report.bad} bad row(s), nothing imported"
                         + (f" (first: {first})" if first else ""))


@dataclass(slots=True)
class ImportReport:
    """What an import did: rows read, written, already there, and the bad rows."""

    kind: str
    file: str
    read: int = 0
    written: int = 0
    unchanged: int = 0
    bad: int = 0
    errors: list[RowError] = field(default_factory=list)

    def add_error(self, error: RowError) -> None:
        self.bad += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)


Handler = Callable[[Connection, list[Row], "_Context"], list[tuple[Row, str]]]


@dataclass(slots=True)
class _Context:
    report: ImportReport
    advance: Callable[[int], None]
    registrar: Registrar | None = None
    seen: set[Any] = field(default_factory=set)


def _dupes(rows: list[Row], key: Callable[[Row], Any], ctx: _Context,
           bad: list[tuple[Row, str]]) -> list[Row]:
    out = []
    for row in rows:
        k = key(row)
        if k in ctx.seen:
            bad.append((row, "the same key is earlier in the file"))
            continue
        ctx.seen.add(k)
        out.append(row)
    return out


def _accounts(conn: Connection, rows: list[Row], ctx: _Context) -> list[tuple[Row, str]]:
    bad: list[tuple[Row, str]] = []
    rows = _dupes(rows, lambda r: r.values["account_number"], ctx, bad)
    have = lookup(conn, "accounts", "account_number",
                  [r.values["account_number"] for r in rows], ("contract_number",))
    contracts = lookup(conn, "accounts", "contract_number",
                       [r.values["contract_number"] for r in rows], ("account_number",))
    new = []
    for row in rows:
        v = row.values
        if v["account_number"] in have:
            ctx.report.unchanged += 1
        elif v["contract_number"] in contracts:
            bad.append((row, f"contract {v['contract_number']} belongs to account "
                        f"{contracts[v['contract_number']][0]}"))
        else:
            contracts[v["contract_number"]] = (v["account_number"],)
            new.append((v["account_number"], v["contract_number"], v["surname"], v["name"],
                        v["patronymic"], v["phone"], v["email"], v["kind"],
                        v["credit_limit_minor"], 0, v["region"], 0, True, True,
                        v["created_at"]))
    insert_rows(conn, "accounts", (
        "account_number", "contract_number", "surname", "name", "patronymic", "phone",
        "email", "kind", "credit_limit_minor", "balance_minor", "region", "extra_screens",
        "notify_email", "notify_sms", "created_at_s"), new)
    ctx.report.written += len(new)
    return bad


def _boxes(conn: Connection, rows: list[Row], ctx: _Context) -> list[tuple[Row, str]]:
    bad: list[tuple[Row, str]] = []
    rows = _dupes(rows, lambda r: r.values["chip_id"], ctx, bad)
    have = lookup(conn, "boxes", "chip_id", [r.values["chip_id"] for r in rows], ())
    new = [(v["chip_id"], v["vendor"], v["model"], v["firmware_version"], v["manufactured"],
            v["batch"], v["imported_at"]) for v in (r.values for r in rows)
           if v["chip_id"] not in have]
    ctx.report.unchanged += len(rows) - len(new)
    insert_rows(conn, "boxes", ("chip_id", "vendor", "model", "firmware_version",
                                "manufactured", "batch", "imported_at_s"), new)
    ctx.report.written += len(new)
    return bad


def _cards(conn: Connection, rows: list[Row], ctx: _Context) -> list[tuple[Row, str]]:
    bad: list[tuple[Row, str]] = []
    cards = []
    for row in rows:
        v = row.values
        if (v["shared_address"] is None) != (v["member_position"] is None):
            bad.append((row, "give both shared_address and member_position, or neither"))
            continue
        cards.append((row, NewCard(
            serial=int(v["serial"]),  # type: ignore[arg-type]
            shared_address=v["shared_address"],  # type: ignore[arg-type]
            member_position=v["member_position"],  # type: ignore[arg-type]
            status=str(v["status"]), region=int(v["region"]),  # type: ignore[arg-type]
            maturity_limit=int(v["maturity_limit"]),  # type: ignore[arg-type]
            registered_at_s=int(v["registered_at"]))))  # type: ignore[arg-type]
    assert ctx.registrar is not None
    for (row, _), outcome in zip(cards, ctx.registrar.register([c for _, c in cards]),
                                 strict=True):
        if outcome.reason is not None:
            bad.append((row, outcome.reason))
        elif outcome.new:
            ctx.report.written += 1
        else:
            ctx.report.unchanged += 1
    return bad


def _accounts_by_number(conn: Connection, rows: list[Row]) -> dict[Any, tuple[Any, ...]]:
    return lookup(conn, "accounts", "account_number",
                  [r.values["account_number"] for r in rows], ("id",))


def _links(conn: Connection, rows: list[Row], ctx: _Context) -> list[tuple[Row, str]]:
    bad: list[tuple[Row, str]] = []
    rows = _dupes(rows, lambda r: r.values["serial"], ctx, bad)
    cards = lookup(conn, "cards", "serial", [r.values["serial"] for r in rows],
                   ("account_id", "paired_chip_id"))
    accounts = _accounts_by_number(conn, rows)
    boxes = lookup(conn, "boxes", "chip_id", [r.values["chip_id"] for r in rows], ())
    paired = lookup(conn, "cards", "paired_chip_id", [r.values["chip_id"] for r in rows],
                    ("serial",))
    at_s = _clock_s(conn)
    updates, box_updates, changes = [], [], []
    for row in rows:
        v = row.values
        serial = v["serial"]
        if serial not in cards:
            bad.append((row, f"no card {int(serial):010d}"))  # type: ignore[arg-type]
            continue
        account_id = None
        if v["account_number"] is not None:
            if v["account_number"] not in accounts:
                bad.append((row, f"no account {v['account_number']}"))
                continue
            account_id = accounts[v["account_number"]][0]
        chip = v["chip_id"]
        if chip is not None:
            if chip not in boxes:
                bad.append((row, f"no box with Chip ID {chip}"))
                continue
            other = paired.get(chip)
            if other is not None and other[0] != serial:
                bad.append((row, f"box {chip} is paired with card {int(other[0]):010d}"))
                continue
            paired[chip] = (serial,)
        if (account_id, chip) == cards[serial]:
            ctx.report.unchanged += 1
            continue
        updates.append((account_id, chip, at_s, serial))
        changes.append((serial, at_s, "bulk-link"))
        if chip is not None:
            box_updates.append((account_id, chip))
    execute_many(conn, "UPDATE cards SET paired_chip_id = NULL WHERE serial = ? "
                 "AND paired_chip_id IS NOT NULL", [(u[3],) for u in updates])
    execute_many(conn, "UPDATE cards SET account_id = ?, paired_chip_id = ?, "
                 "rights_version = rights_version + 1, rights_changed_at_s = ? WHERE serial = ?",
                 updates)
    execute_many(conn, "UPDATE boxes SET account_id = ? WHERE chip_id = ?", box_updates)
    insert_rows(conn, "rights_changes", ("card_serial", "at_s", "cause"), changes)
    ctx.report.written += len(updates)
    return bad


def _clock_s(conn: Connection) -> int:
    """The head-end's simulation clock (``cas.billing.clock``), else the wall clock."""
    import time

    from cas.billing.clock import CLOCK_KEY

    found = query(conn, "SELECT value FROM settings WHERE key = ?", (CLOCK_KEY,))
    return int(found[0][0]) if found else int(time.time())


def _subscriptions(conn: Connection, rows: list[Row], ctx: _Context) -> list[tuple[Row, str]]:
    bad: list[tuple[Row, str]] = []
    rows = _dupes(rows, lambda r: (r.values["account_number"], r.values["package_code"],
                                   r.values["start"]), ctx, bad)
    accounts = _accounts_by_number(conn, rows)
    packages = lookup(conn, "packages", "code", [r.values["package_code"] for r in rows],
                      ("id",))
    ids = sorted({a[0] for a in accounts.values()})
    have: set[tuple[Any, ...]] = set()
    for start in range(0, len(ids), 2000):
        part = ids[start:start + 2000]
        have.update(query(conn, "SELECT account_id, package_id, start_s FROM subscriptions "
                          f"WHERE account_id IN ({', '.join('?' for _ in part)})", part))
    new, touched = [], set()
    for row in rows:
        v = row.values
        if v["account_number"] not in accounts:
            bad.append((row, f"no account {v['account_number']}"))
            continue
        if v["package_code"] not in packages:
            bad.append((row, f"no package {v['package_code']}"))
            continue
        account_id, package_id = accounts[v["account_number"]][0], packages[v["package_code"]][0]
        if (account_id, package_id, v["start"]) in have:
            ctx.report.unchanged += 1
            continue
        active = v["status"] == "active"
        new.append((account_id, package_id, v["status"], v["auto_renew"], v["start"],
                    v["paid_until"], v["start"], v["period_price_minor"], 1,
                    v["start"] if active else None, v["created_at"], "import"))
        touched.add((account_id, v["created_at"]))
    insert_rows(conn, "subscriptions", (
        "account_id", "package_id", "status", "auto_renew", "start_s", "paid_until_s",
        "period_start_s", "period_price_minor", "periods_billed", "activated_at_s",
        "created_at_s", "source"), new)
    _bump_account_cards(conn, touched, "bulk-subscription")
    ctx.report.written += len(new)
    return bad


def _bump_account_cards(conn: Connection, touched: set[tuple[Any, Any]], cause: str) -> None:
    """The cards of these accounts changed rights: bump their version, journal the change."""
    latest: dict[Any, Any] = {}
    for account_id, at_s in touched:
        latest[account_id] = max(at_s, latest.get(account_id, at_s))
    ids = sorted(latest)
    for start in range(0, len(ids), 2000):
        part = ids[start:start + 2000]
        marks = ", ".join("?" for _ in part)
        cards = query(conn, f"SELECT serial, account_id FROM cards WHERE account_id IN ({marks})",
                      part)
        execute_many(conn, "UPDATE cards SET rights_version = rights_version + 1, "
                     "rights_changed_at_s = ? WHERE serial = ?",
                     [(latest[a], s) for s, a in cards])
        insert_rows(conn, "rights_changes", ("card_serial", "at_s", "cause"),
                    [(s, latest[a], cause) for s, a in cards])


def _payments(conn: Connection, rows: list[Row], ctx: _Context) -> list[tuple[Row, str]]:
    bad: list[tuple[Row, str]] = []
    rows = _dupes(rows, lambda r: r.values["payment_id"], ctx, bad)
    have = lookup(conn, "payments", "payment_id", [r.values["payment_id"] for r in rows], ())
    accounts = _accounts_by_number(conn, rows)
    new = []
    for row in rows:
        v = row.values
        if v["payment_id"] in have:
            ctx.report.unchanged += 1
        elif v["account_number"] not in accounts:
            bad.append((row, f"no account {v['account_number']}"))
        else:
            new.append((v["payment_id"], accounts[v["account_number"]][0], v["at"],
                        v["amount_minor"], v["method"], "import", v["ref"], v["package_code"]))
    insert_rows(conn, "payments", ("payment_id", "account_id", "at_s", "amount_minor", "method",
                                   "by_kind", "ref", "package_code"), new)
    # Every balance change is a ledger row (docs/architecture.md): post them in time order.
    balances = lookup(conn, "accounts", "id", sorted({p[1] for p in new}), ("balance_minor",))
    running = {k: int(v[0]) for k, v in balances.items()}
    ledger = []
    for p in sorted(new, key=lambda p: (p[2], p[0])):  # type: ignore[arg-type, return-value]
        running[p[1]] += int(p[3])  # type: ignore[call-overload, arg-type]
        ledger.append((p[1], p[2], p[3], running[p[1]], "payment", p[0],
                       f"bulk payment {p[4]}"))
    insert_rows(conn, "ledger_entries", ("account_id", "at_s", "amount_minor",
                                         "balance_after_minor", "kind", "ref", "description"),
                ledger)
    execute_many(conn, "UPDATE accounts SET balance_minor = ? WHERE id = ?",
                 [(b, a) for a, b in running.items()])
    ctx.report.written += len(new)
    return bad


HANDLERS: dict[str, Handler] = {
    "accounts": _accounts, "cards": _cards, "boxes": _boxes, "links": _links,
    "subscriptions": _subscriptions, "payments": _payments,
}


def _chunks(items: Iterator[Row | RowError], size: int,
            report: ImportReport) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for item in items:
        report.read += 1
        if isinstance(item, RowError):
            report.add_error(item)
            continue
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_file(store: Store, path: Path, kind: str, *, fmt: Format, mode: Mode = "all",
                chunk: int = CHUNK,
                advance: Callable[[int], None] = lambda n: None) -> ImportReport:
    """Import ``path`` (rows of ``kind``) into ``store``; the report of what happened.

    ``mode="all"`` raises :class:`BulkRowsRefused` (nothing written) if any row is bad.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}").with_id(
            "bulk.unknown_kind_one", kind=f"{kind!r}", kinds=", ".join(KINDS))
    if mode not in ("all", "skip"):
        raise UsageError(f"unknown error mode {mode!r}: all or skip").with_id(
            "bulk.unknown_error_mode_all", mode=f"{mode!r}")
    report = ImportReport(kind=kind, file=path.name)
    handler = HANDLERS[kind]
    try:
        with store.engine.begin() as conn:
            ctx = _Context(report, advance,
                           registrar=Registrar(conn) if kind == "cards" else None)
            for rows in _chunks(read_rows(path, kind, fmt), chunk, report):
                for row, reason in handler(conn, rows, ctx):
                    report.add_error(RowError(path.name, row.line, reason))
                advance(len(rows))
            if ctx.registrar is not None:
                ctx.registrar.finish()
            if report.bad and mode == "all":
                raise BulkRowsRefused(_sorted(report))
    except SQLAlchemyError as exc:
        raise StoreError(f"bulk import failed: {str(exc).splitlines()[0]}").with_id(
            "bulk.bulk_import_failed", splitlines=str(exc).splitlines()[0]) from exc
    except _driver_errors() as exc:
        raise StoreError(f"bulk import failed: {str(exc).splitlines()[0]}").with_id(
            "bulk.bulk_import_failed", splitlines=str(exc).splitlines()[0]) from exc
    return _sorted(report)


def _sorted(report: ImportReport) -> ImportReport:
    report.errors.sort(key=lambda e: e.line)
    return report


def _driver_errors() -> tuple[type[Exception], ...]:
    import sqlite3

    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    return tuple(errors)
