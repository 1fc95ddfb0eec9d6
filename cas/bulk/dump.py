"""Bulk export: one kind of row from the store, in the columns :mod:`cas.bulk.rows` reads,
so an export imports back into another store (or the same one, changing nothing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from cas.bulk.rows import KINDS, Format, Value, write_rows
from cas.errors import UsageError
from cas.store.engine import Store

_SQL = {
    "accounts": "SELECT account_number, contract_number, surname, name, patronymic, phone, "
                "email, kind, credit_limit_minor, region, created_at_s FROM accounts "
                "ORDER BY id",
    "cards": "SELECT serial, shared_address, member_position, status, region, maturity_limit, "
             "registered_at_s FROM cards ORDER BY serial",
    "boxes": "SELECT chip_id, vendor, model, firmware_version, manufactured, batch, "
             "imported_at_s FROM boxes ORDER BY chip_id",
    "links": "SELECT c.serial, a.account_number, c.paired_chip_id FROM cards c "
             "LEFT JOIN accounts a ON a.id = c.account_id "
             "WHERE c.account_id IS NOT NULL OR c.paired_chip_id IS NOT NULL ORDER BY c.serial",
    "subscriptions": "SELECT a.account_number, p.code, s.start_s, s.status, s.auto_renew, "
                     "s.paid_until_s, s.period_price_minor, s.created_at_s "
                     "FROM subscriptions s JOIN accounts a ON a.id = s.account_id "
                     "JOIN packages p ON p.id = s.package_id "
                     "WHERE s.start_s IS NOT NULL ORDER BY s.id",
    "payments": "SELECT p.payment_id, a.account_number, p.at_s, p.amount_minor, p.method, "
                "p.ref, p.package_code FROM payments p JOIN accounts a ON a.id = p.account_id "
                "ORDER BY p.id",
}
_NAMES = {
    "accounts": ("account_number", "contract_number", "surname", "name", "patronymic",
                 "phone", "email", "kind", "credit_limit_minor", "region", "created_at"),
    "cards": ("serial", "shared_address", "member_position", "status", "region",
              "maturity_limit", "registered_at"),
    "boxes": ("chip_id", "vendor", "model", "firmware_version", "manufactured", "batch",
              "imported_at"),
    "links": ("serial", "account_number", "chip_id"),
    "subscriptions": ("account_number", "package_code", "start", "status", "auto_renew",
                      "paid_until", "period_price_minor", "created_at"),
    "payments": ("payment_id", "account_number", "at", "amount_minor", "method", "ref",
                 "package_code"),
}


def export_file(store: Store, path: Path, kind: str, *, fmt: Format,
                advance: Callable[[int], None] = lambda n: None) -> int:
    """Write every row of ``kind`` to ``path``; the number of rows written."""
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}").with_id(
            "bulk.unknown_kind_one", kind=f"{kind!r}", kinds=", ".join(KINDS))
    names = _NAMES[kind]

    def rows() -> Iterator[dict[str, Value]]:
        with store.read_engine.connect() as conn:
            result = conn.exec_driver_sql(_SQL[kind]).yield_per(10_000)
            for row in result:
                values = dict(zip(names, row, strict=True))
                if "auto_renew" in values:
                    values["auto_renew"] = bool(values["auto_renew"])
                advance(1)
                yield values

    try:
        with path.open("w", encoding="utf-8", newline="") as handle:
            return write_rows(handle, kind, fmt, rows())  # type: ignore[arg-type]
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}").with_id(
            "bulk.cannot_write", path=path, value=exc.strerror or exc) from exc
