"""Bulk file formats and the columns of each kind (docs/bulk.md).

A file is CSV (a header line, then one row a line) or JSON lines (one object a line); the
format follows the file name (``.csv``, ``.jsonl``/``.ndjson``) unless given.  Every value
is checked here, before any database work; a bad row is a :class:`RowError` that names the
file, the line and the reason.  Times are ISO 8601 with an explicit UTC offset; money is an
integer of minor units (never a float).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cas.errors import UsageError

Format = Literal["csv", "jsonl"]
Value = str | int | bool | None

KINDS = ("accounts", "cards", "boxes", "links", "subscriptions", "payments")
MAX_U32 = 0xFFFF_FFFF


class BadValue(ValueError):
    """One value of a row is wrong; the message is the reason shown in the report."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that was not imported: where it is and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


# --- value parsers --------------------------------------------------------------------------
def _text(limit: int) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = raw if isinstance(raw, str) else str(raw)
        if len(value) > limit:
            raise BadValue(f"longer than {limit} characters")
        return value
    return parse


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, (bool, float)):
            raise BadValue(f"not an integer: {raw!r}")
        if isinstance(raw, int):
            value = raw
        else:
            text = str(raw).strip()
            if not text or not (text.lstrip("-").isascii() and text.lstrip("-").isdigit()):
                raise BadValue(f"not an integer: {text!r}")
            value = int(text)
        if not lo <= value <= hi:
            raise BadValue(f"{value} is outside {lo}..{hi}")
        return value
    return parse


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise BadValue(f"not a boolean: {raw!r}")


def _time(raw: Any) -> int:
    """An ISO 8601 time with an offset, as seconds since 1970 UTC (the store's ``*_s``)."""
    text = str(raw).strip()
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadValue(f"not an ISO 8601 time: {text!r}") from None
    if at.tzinfo is None:
        raise BadValue(f"time without a UTC offset: {text!r}")
    return int(at.timestamp())


def _choice(*values: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip()
        if text not in values:
            raise BadValue(f"{text!r} is not one of {', '.join(values)}")
        return text
    return parse


def format_time(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    parse: Callable[[Any], Value]
    required: bool = False
    default: Value = None
    is_time: bool = False


def _c(name: str, parse: Callable[[Any], Any], *, required: bool = False,
       default: Value = None) -> Column:
    return Column(name, parse, required, default, is_time=parse is _time)


#: The columns of each kind, in file order.  The first column is the natural key.
COLUMNS: dict[str, tuple[Column, ...]] = {
    "accounts": (
        _c("account_number", _text(32), required=True),
        _c("contract_number", _text(32), required=True),
        _c("surname", _text(128), required=True),
        _c("name", _text(128), required=True),
        _c("patronymic", _text(128)),
        _c("phone", _text(32)),
        _c("email", _text(256)),
        _c("kind", _choice("prepaid", "postpaid"), default="prepaid"),
        _c("credit_limit_minor", _int(0, 2**62), default=0),
        _c("region", _int(0, 0xFFFF), default=0),
        _c("created_at", _time, required=True),
    ),
    "cards": (
        _c("serial", _int(1, MAX_U32), required=True),
        _c("shared_address", _int(0, 0xFF_FFFF)),
        _c("member_position", _int(0, 255)),
        _c("status", _choice("active", "killed", "blocked"), default="active"),
        _c("region", _int(0, 0xFFFF), default=0),
        _c("maturity_limit", _int(0, 0xFF), default=0xFF),
        _c("registered_at", _time, required=True),
    ),
    "boxes": (
        _c("chip_id", _int(1, MAX_U32), required=True),
        _c("vendor", _text(64), default=""),
        _c("model", _text(64), default=""),
        _c("firmware_version", _text(32), default=""),
        _c("manufactured", _text(32), default=""),
        _c("batch", _text(128), default=""),
        _c("imported_at", _time, required=True),
    ),
    "links": (
        _c("serial", _int(1, MAX_U32), required=True),
        _c("account_number", _text(32)),
        _c("chip_id", _int(1, MAX_U32)),
    ),
    "subscriptions": (
        _c("account_number", _text(32), required=True),
        _c("package_code", _text(64), required=True),
        _c("start", _time, required=True),
        _c("status", _choice("pending", "active", "blocked", "expired", "closed"),
           default="active"),
        _c("auto_renew", _bool, default=True),
        _c("paid_until", _time),
        _c("period_price_minor", _int(0, 2**62), default=0),
        _c("created_at", _time, required=True),
    ),
    "payments": (
        _c("payment_id", _text(64), required=True),
        _c("account_number", _text(32), required=True),
        _c("at", _time, required=True),
        _c("amount_minor", _int(1, 2**62), required=True),
        _c("method", _text(16), default="bulk"),
        _c("ref", _text(32), default=""),
        _c("package_code", _text(64)),
    ),
}


@dataclass(slots=True)
class Row:
    """One checked row: its line in the file and its values by column name (times in s)."""

    line: int
    values: dict[str, Value]


def guess_format(path: Path, given: str | None) -> Format:
    if given in ("csv", "jsonl"):
        return given  # type: ignore[return-value]
    if given is not None:
        raise UsageError(f"unknown bulk format {given!r}: use csv or jsonl").with_id(
            "bulk.unknown_bulk_format_csv", given=f"{given!r}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise UsageError(f"cannot tell the format of {path.name}: name it .csv or .jsonl, "
                     "or give --format").with_id("bulk.cannot_tell_format_name", name=path.name)


def _raw_rows(text: io.TextIOBase, fmt: Format, columns: tuple[Column, ...],
              name: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, raw values) per data line, or (line, reason) for a line that does not parse."""
    known = {c.name for c in columns}
    if fmt == "csv":
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        unknown = [h for h in header if h not in known]
        if unknown:
            raise UsageError(f"{name}:1: unknown column(s) {', '.join(unknown)}; "
                             f"the columns are {', '.join(c.name for c in columns)}").with_id(
                "bulk.unknown_column_columns", name=name, unknown=", ".join(unknown),
                value=", ".join(c.name for c in columns))
        for fields in reader:
            line = reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                yield line, f"{len(fields)} fields, the header has {len(header)}"
                continue
            yield line, {h: v for h, v in zip(header, fields, strict=True) if v != ""}
        return
    for number, line_text in enumerate(text, start=1):
        if not line_text.strip():
            continue
        try:
            obj = json.loads(line_text)
        except json.JSONDecodeError as exc:
            yield number, f"not JSON: {exc.msg}"
            continue
        if not isinstance(obj, dict):
            yield number, "not a JSON object"
            continue
        extra = sorted(set(obj) - known)
        if extra:
            yield number, f"unknown field(s) {', '.join(extra)}"
            continue
        yield number, {k: v for k, v in obj.items() if v is not None and v != ""}


def check_row(raw: dict[str, Any], columns: tuple[Column, ...]) -> dict[str, Value]:
    """The typed values of one row (defaults filled in); :class:`BadValue` if one is wrong."""
    out: dict[str, Value] = {}
    for col in columns:
        if col.name not in raw:
            if col.required:
                raise BadValue(f"{col.name}: missing")
            out[col.name] = col.default
            continue
        try:
            out[col.name] = col.parse(raw[col.name])
        except BadValue as exc:
            raise BadValue(f"{col.name}: {exc}") from None
    return out


def read_rows(path: Path, kind: str, fmt: Format) -> Iterator[Row | RowError]:
    """Every data line of ``path`` as a checked :class:`Row` or a :class:`RowError`."""
    columns = COLUMNS[kind]
    try:
        handle = path.open("r", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}").with_id(
            "bulk.cannot_read", path=path, value=exc.strerror or exc) from exc
    with handle:
        try:
            for line, raw in _raw_rows(handle, fmt, columns, path.name):  # type: ignore[arg-type]
                if isinstance(raw, str):
                    yield RowError(path.name, line, raw)
                    continue
                try:
                    yield Row(line, check_row(raw, columns))
                except BadValue as exc:
                    yield RowError(path.name, line, str(exc))
        except UnicodeDecodeError:
            raise UsageError(f"{path.name}: not UTF-8 text").with_id(
                "bulk.not_utf_text", name=path.name) from None
        except csv.Error as exc:
            raise UsageError(f"{path.name}: bad CSV: {exc}").with_id(
                "bulk.bad_csv", name=path.name, exc=exc) from None


def write_rows(handle: io.TextIOBase, kind: str, fmt: Format,
               rows: Iterator[dict[str, Value]]) -> int:
    """Write ``rows`` (store values, times in s) in ``fmt``; the number written."""
    columns = COLUMNS[kind]
    names = [c.name for c in columns]
    times = {c.name for c in columns if c.is_time}
    count = 0
    writer = csv.writer(handle, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(names)
    for row in rows:
        out = {n: (format_time(row[n]) if n in times else row[n])  # type: ignore[arg-type]
               for n in names}
        if writer is not None:
            writer.writerow(["" if out[n] is None else
                             ("true" if out[n] is True else "false" if out[n] is False
                              else out[n]) for n in names])
        else:
            handle.write(json.dumps({k: v for k, v in out.items() if v is not None},
                                    ensure_ascii=False) + "\n")
        count += 1
    return count
