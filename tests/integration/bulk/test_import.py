"""Issue 16, item 1: bulk import and export on SQLite and on PostgreSQL (``db_url``).

10,000 rows with 3 bad ones in both error modes (all-or-nothing writes nothing and names
the 3 rows; skip writes the 9,997 others), a re-run that changes nothing, an export that
imports back into a fresh store unchanged, and the ``cas bulk`` command's report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from cas.bulk.dump import export_file
from cas.bulk.load import BulkRowsRefused, import_file
from cas.bulk.rows import KINDS
from cas.cli.main import cli
from cas.store.engine import Store

N = 10_000
T0 = "2026-11-01T00:00:00Z"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    st = Store.open(db_url)
    yield st
    st.dispose()


def _snapshot(store: Store) -> dict[str, object]:
    """Everything an import may touch, to compare before and after a re-run."""
    out: dict[str, object] = {}
    with store.engine.connect() as conn:
        for table, order in (("accounts", "id"), ("cards", "serial"), ("card_groups",
                             "shared_address"), ("payments", "id"), ("ledger_entries", "id"),
                             ("rights_changes", "id"), ("boxes", "chip_id"),
                             ("subscriptions", "id")):
            out[table] = [tuple(r) for r in conn.execute(
                text(f"SELECT * FROM {table} ORDER BY {order}"))]
    return out


def _accounts_csv(path: Path, bad: bool = True) -> Path:
    lines = ["account_number,contract_number,surname,name,phone,region,created_at"]
    for i in range(N - 3 if bad else N):
        lines.append(f"{700000000000 + i},K-{i},Petrov,Pyotr,+7900{i:07d},{i % 7},{T0}")
    if bad:
        lines.append("700000999990,K-x1,Bad,Time,,1,2026-11-01 00:00")  # no UTC offset
        lines.append(f"700000000005,K-x2,Dup,Key,,1,{T0}")  # key earlier in the file
        lines.append(f"700000999992,K-x3,Bad,Region,,70000,{T0}")  # region not u16
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_all_or_nothing_writes_nothing_and_names_every_bad_row(store: Store,
                                                             tmp_path: Path) -> None:
    path = _accounts_csv(tmp_path / "accounts.csv")
    with pytest.raises(BulkRowsRefused) as info:
        import_file(store, path, "accounts", fmt="csv", mode="all", chunk=1000)
    report = info.value.report
    assert report.bad == 3
    assert [e.line for e in report.errors] == [N - 1, N, N + 1]
    assert all(e.file == "accounts.csv" for e in report.errors)
    reasons = [e.reason for e in report.errors]
    assert "created_at" in reasons[0] and "offset" in reasons[0]
    assert "earlier in the file" in reasons[1]
    assert "region" in reasons[2]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM accounts")).scalar_one() == 0


def test_skip_writes_the_good_rows_and_a_rerun_changes_nothing(store: Store,
                                                               tmp_path: Path) -> None:
    path = _accounts_csv(tmp_path / "accounts.csv")
    report = import_file(store, path, "accounts", fmt="csv", mode="skip", chunk=1000)
    assert (report.read, report.written, report.unchanged, report.bad) == (N, N - 3, 0, 3)
    assert [e.line for e in report.errors] == [N - 1, N, N + 1]
    before = _snapshot(store)
    assert len(before["accounts"]) == N - 3  # type: ignore[arg-type]
    again = import_file(store, path, "accounts", fmt="csv", mode="skip", chunk=1000)
    assert (again.written, again.unchanged, again.bad) == (0, N - 3, 3)
    assert _snapshot(store) == before


def _cards_jsonl(path: Path) -> Path:
    rows: list[object] = [{"serial": 1_000_000 + i, "registered_at": T0} for i in range(N - 3)]
    rows.append({"serial": 0, "registered_at": T0})  # serial out of range
    rows.append({"serial": 2_000_000, "shared_address": 1, "member_position": 0,
                 "registered_at": T0})  # slot taken by the first card
    rows.append("not an object")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["all", "skip"])
def test_cards_both_modes_and_rerun(store: Store, tmp_path: Path, mode: str) -> None:
    path = _cards_jsonl(tmp_path / "cards.jsonl")
    if mode == "all":
        with pytest.raises(BulkRowsRefused) as info:
            import_file(store, path, "cards", fmt="jsonl", mode="all", chunk=2500)
        assert [e.line for e in info.value.report.errors] == [N - 2, N - 1, N]
        assert "taken by card 0001000000" in info.value.report.errors[1].reason
        assert _snapshot(store)["cards"] == []
        return
    report = import_file(store, path, "cards", fmt="jsonl", mode="skip", chunk=2500)
    assert (report.written, report.bad) == (N - 3, 3)
    before = _snapshot(store)
    slots = [(c[1], c[2]) for c in before["cards"]]  # type: ignore[attr-defined]
    assert len(set(slots)) == N - 3  # every card has its own slot
    assert len(before["rights_changes"]) == N - 3  # type: ignore[arg-type]
    # 9,997 cards fill groups 1..39 (256 each) and 13 places of group 40.
    assert before["card_groups"][-1] == (40, (N - 3) - 39 * 256)  # type: ignore[index]
    again = import_file(store, path, "cards", fmt="jsonl", mode="skip", chunk=2500)
    assert (again.written, again.unchanged) == (0, N - 3)
    assert _snapshot(store) == before


def test_payments_post_to_the_ledger_once(store: Store, tmp_path: Path) -> None:
    import_file(store, _accounts_csv(tmp_path / "a.csv", bad=False), "accounts", fmt="csv")
    lines = ["payment_id,account_number,at,amount_minor,method"]
    for i in range(N - 3):
        lines.append(f"PAY-{i},{700000000000 + i % 100},2026-11-02T10:00:00Z,{100 + i},bank")
    lines.append(f"PAY-x,799999999999,{T0},100,bank")  # no such account
    lines.append(f"PAY-y,700000000001,{T0},1.5,bank")  # money is never a float
    lines.append(f"PAY-1,700000000001,{T0},100,bank")  # payment id earlier in the file
    path = tmp_path / "payments.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BulkRowsRefused):
        import_file(store, path, "payments", fmt="csv", mode="all")
    report = import_file(store, path, "payments", fmt="csv", mode="skip")
    assert (report.written, report.bad) == (N - 3, 3)
    assert [e.reason.split(":")[0] for e in report.errors][1] == "amount_minor"
    before = _snapshot(store)
    with store.engine.connect() as conn:
        total = conn.execute(text("SELECT SUM(balance_minor) FROM accounts")).scalar_one()
        assert total == sum(100 + i for i in range(N - 3))
        mismatched = conn.execute(text(
            "SELECT COUNT(*) FROM accounts a WHERE a.balance_minor <> (SELECT "
            "COALESCE(SUM(amount_minor), 0) FROM ledger_entries e WHERE e.account_id = a.id)"
        )).scalar_one()
        assert mismatched == 0
    import_file(store, path, "payments", fmt="csv", mode="skip")
    assert _snapshot(store) == before


def _fill(store: Store, tmp: Path) -> None:
    """A store with every kind of row, through bulk imports."""
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO packages (id, code, name, kind, price_minor, "
                          "period_days, retired) VALUES (1, 'base', 'Base', 'base', 29900, "
                          "30, false)"))
    import_file(store, _accounts_csv(tmp / "a.csv", bad=False), "accounts", fmt="csv")
    (tmp / "boxes.csv").write_text("chip_id,vendor,model,imported_at\n" + "".join(
        f"{5000 + i},Vendor,M{i % 3},{T0}\n" for i in range(300)), encoding="utf-8")
    import_file(store, tmp / "boxes.csv", "boxes", fmt="csv")
    (tmp / "cards.csv").write_text("serial,region,registered_at\n" + "".join(
        f"{1_000_000 + i},{i % 4},{T0}\n" for i in range(600)), encoding="utf-8")
    import_file(store, tmp / "cards.csv", "cards", fmt="csv")
    (tmp / "links.jsonl").write_text("".join(json.dumps(
        {"serial": 1_000_000 + i, "account_number": str(700000000000 + i),
         **({"chip_id": 5000 + i} if i < 300 else {})}) + "\n" for i in range(500)),
        encoding="utf-8")
    import_file(store, tmp / "links.jsonl", "links", fmt="jsonl")
    (tmp / "subs.csv").write_text("account_number,package_code,start,paid_until,created_at\n"
                                  + "".join(f"{700000000000 + i},base,{T0},"
                                            f"2026-12-01T00:00:00Z,{T0}\n" for i in range(200)),
                                  encoding="utf-8")
    import_file(store, tmp / "subs.csv", "subscriptions", fmt="csv")
    (tmp / "pay.jsonl").write_text("".join(json.dumps(
        {"payment_id": f"P{i}", "account_number": str(700000000000 + i),
         "at": T0, "amount_minor": 5000}) + "\n" for i in range(400)), encoding="utf-8")
    import_file(store, tmp / "pay.jsonl", "payments", fmt="jsonl")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_imports_back_unchanged(db_url: str, tmp_path: Path, fmt: str) -> None:
    source = Store.open(db_url)
    target = Store.open(f"sqlite:///{tmp_path / 'target.sqlite'}")
    try:
        _fill(source, tmp_path)
        with target.engine.begin() as conn:
            conn.execute(text("INSERT INTO packages (id, code, name, kind, price_minor, "
                              "period_days, retired) VALUES (1, 'base', 'Base', 'base', 29900,"
                              " 30, false)"))
        first: dict[str, str] = {}
        for kind in KINDS:
            out = tmp_path / f"{kind}.out.{fmt}"
            assert export_file(source, out, kind, fmt=fmt) > 0  # type: ignore[arg-type]
            first[kind] = out.read_text(encoding="utf-8")
            report = import_file(target, out, kind, fmt=fmt)  # type: ignore[arg-type]
            assert report.bad == 0 and report.written > 0
        for kind in KINDS:
            again = tmp_path / f"{kind}.again.{fmt}"
            export_file(target, again, kind, fmt=fmt)  # type: ignore[arg-type]
            assert again.read_text(encoding="utf-8") == first[kind], kind
        # Importing the export into the store it came from changes nothing.
        before = _snapshot(source)
        for kind in KINDS:
            import_file(source, tmp_path / f"{kind}.out.{fmt}", kind,
                        fmt=fmt)  # type: ignore[arg-type]
        assert _snapshot(source) == before
    finally:
        source.dispose()
        target.dispose()


def test_cli_reports_each_bad_row_and_refuses(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAS_DB_URL", raising=False)
    Store.open(f"sqlite:///{tmp_path / 'cas.sqlite'}").dispose()
    path = _accounts_csv(tmp_path / "accounts.csv")
    errors = tmp_path / "errors.csv"
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "bulk", "import",
                                      "accounts", str(path), "--errors", str(errors)])
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    assert f"accounts.csv:{N - 1}: created_at" in result.output
    assert "error: 3 bad row(s), nothing imported" in result.output
    assert errors.read_text(encoding="utf-8").splitlines()[0] == "file,line,reason"
    assert len(errors.read_text(encoding="utf-8").splitlines()) == 4
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "--json", "bulk", "import",
                                      "accounts", str(path), "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["written"], data["bad"]) == (N - 3, 3)
