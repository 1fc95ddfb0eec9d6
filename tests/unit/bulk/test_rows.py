"""The bulk file formats: values are checked per column, a bad line is a RowError with the
file and line, money is never a float, times need a UTC offset."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cas.bulk.rows import (
    COLUMNS,
    BadValue,
    Row,
    RowError,
    check_row,
    guess_format,
    read_rows,
    write_rows,
)
from cas.errors import UsageError


def test_money_is_an_integer_of_minor_units() -> None:
    cols = COLUMNS["payments"]
    base = {"payment_id": "p", "account_number": "1", "at": "2026-11-01T00:00:00Z"}
    assert check_row({**base, "amount_minor": "250"}, cols)["amount_minor"] == 250
    for bad in ("2.5", 2.5, "", "0", True, "１２"):
        with pytest.raises(BadValue, match="amount_minor"):
            check_row({**base, "amount_minor": bad}, cols)


def test_times_need_an_offset_and_are_stored_as_utc_seconds() -> None:
    cols = COLUMNS["boxes"]
    row = check_row({"chip_id": "1", "imported_at": "2026-11-01T03:00:00+03:00"}, cols)
    assert row["imported_at"] == 1_793_491_200  # 2026-11-01T00:00:00Z
    with pytest.raises(BadValue, match="offset"):
        check_row({"chip_id": "1", "imported_at": "2026-11-01T00:00:00"}, cols)


def test_csv_rows_carry_their_line(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text("chip_id,imported_at\n1,2026-11-01T00:00:00Z\n\n"
                    "x,2026-11-01T00:00:00Z\n2,2026-11-01T00:00:00Z,extra\n", encoding="utf-8")
    out = list(read_rows(path, "boxes", "csv"))
    assert isinstance(out[0], Row) and out[0].line == 2
    assert out[1] == RowError("boxes.csv", 4, "chip_id: not an integer: 'x'")
    assert isinstance(out[2], RowError) and out[2].line == 5 and "fields" in out[2].reason


def test_jsonl_unknown_field_is_a_bad_row_and_unknown_csv_column_refuses(tmp_path: Path) -> None:
    path = tmp_path / "links.jsonl"
    path.write_text(json.dumps({"serial": 5, "colour": "red"}) + "\n{oops\n", encoding="utf-8")
    out = list(read_rows(path, "links", "jsonl"))
    assert [(e.line, e.reason.split(" ")[0]) for e in out  # type: ignore[union-attr]
            ] == [(1, "unknown"), (2, "not")]
    csv_path = tmp_path / "links.csv"
    csv_path.write_text("serial,colour\n5,red\n", encoding="utf-8")
    with pytest.raises(UsageError, match="unknown column"):
        list(read_rows(csv_path, "links", "csv"))


def test_format_from_name() -> None:
    assert guess_format(Path("a.CSV"), None) == "csv"
    assert guess_format(Path("a.ndjson"), None) == "jsonl"
    with pytest.raises(UsageError):
        guess_format(Path("a.txt"), None)


def test_written_rows_read_back() -> None:
    handle = io.StringIO()
    rows = [{"serial": 7, "account_number": None, "chip_id": 9}]
    assert write_rows(handle, "links", "csv", iter(rows)) == 1  # type: ignore[arg-type]
    assert handle.getvalue() == "serial,account_number,chip_id\n7,,9\n"
