"""``cas bulk``: import and export accounts, cards, boxes, links, subscriptions and payments
in bulk (CSV or JSON lines; docs/bulk.md).

* ``cas bulk import KIND FILE [--on-error all|skip] [--errors OUT.csv]`` — all-or-nothing by
  default: one bad row and nothing is written (exit 3); ``skip`` writes the good rows.  The
  bad rows are listed as ``file:line: reason``.  A re-run of the same file changes nothing.
* ``cas bulk export KIND FILE`` — the same columns, so the file imports back.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import click

from cas.cli.app import Application, pass_app
from cas.cli.common import group

_KINDS = ("accounts", "cards", "boxes", "links", "subscriptions", "payments")
#: Bad rows listed on the terminal; ``--errors FILE`` has them all.
_SHOWN_ERRORS = 20


def register(cli: click.Group) -> None:
    bulk = group(cli, "bulk", "Bulk import and export (CSV, JSON lines).")
    bulk.add_command(import_cmd)
    bulk.add_command(export_cmd)


def _write_errors(path: Path, errors: Sequence[object]) -> None:
    from cas.errors import UsageError

    try:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["file", "line", "reason"])
            for e in errors:
                writer.writerow([e.file, e.line, e.reason])  # type: ignore[attr-defined]
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}").with_id(
            "cli.cannot_write", path=path, value=exc.strerror or exc) from exc


@click.command("import")
@click.argument("kind", type=click.Choice(_KINDS))
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]),
              help="File format (default: from the name, .csv or .jsonl).")
@click.option("--on-error", "mode", type=click.Choice(["all", "skip"]), default="all",
              show_default=True,
              help="all: any bad row and nothing is imported; skip: import the good rows.")
@click.option("--errors", "errors_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every bad row (file, line, reason) to this CSV file.")
@click.option("--chunk", type=click.IntRange(100, 1_000_000), default=10_000,
              show_default=True, help="Rows per database round.")
@pass_app
def import_cmd(app: Application, kind: str, path: Path, fmt: str | None, mode: str,
               errors_out: Path | None, chunk: int) -> None:
    """Import a file of KIND rows into the store."""
    from cas.bulk.load import BulkRowsRefused, import_file
    from cas.bulk.rows import guess_format
    from cas.cli._subscribers import open_app_store

    file_format = guess_format(path, fmt)
    store = open_app_store(app)
    try:
        with app.progress(f"importing {kind}", total=None) as advance:
            try:
                report = import_file(store, path, kind, fmt=file_format,
                                     mode=mode, chunk=chunk,  # type: ignore[arg-type]
                                     advance=advance)
            except BulkRowsRefused as exc:
                _show_errors(app, exc.report.errors, exc.report.bad, errors_out)
                raise
    finally:
        store.dispose()
    if errors_out is not None:
        _write_errors(errors_out, list(report.errors))
    data = {"kind": kind, "file": str(path), "read": report.read, "written": report.written,
            "unchanged": report.unchanged, "bad": report.bad,
            "errors": [{"file": e.file, "line": e.line, "reason": e.reason}
                       for e in report.errors]}

    def render() -> None:
        app.print(f"{kind}: {report.read} row(s) read, {report.written} written, "
                  f"{report.unchanged} already there, {report.bad} bad (skipped)")
        for e in report.errors[:_SHOWN_ERRORS]:
            app.print(f"  {e}", markup=False, highlight=False)
        if report.bad > _SHOWN_ERRORS:
            app.print(f"  ... and {report.bad - _SHOWN_ERRORS} more")

    app.output(data, render)


def _show_errors(app: Application, errors: Sequence[object], bad: int,
                 errors_out: Path | None) -> None:
    if errors_out is not None:
        _write_errors(errors_out, errors)
    for e in errors[:_SHOWN_ERRORS]:
        app.err_console.print(f"  {e}", markup=False, highlight=False)
    if bad > _SHOWN_ERRORS:
        app.err_console.print(f"  ... and {bad - _SHOWN_ERRORS} more", markup=False)


@click.command("export")
@click.argument("kind", type=click.Choice(_KINDS))
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]),
              help="File format (default: from the name, .csv or .jsonl).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_app
def export_cmd(app: Application, kind: str, path: Path, fmt: str | None, force: bool) -> None:
    """Export every KIND row of the store to a file."""
    from cas.bulk.dump import export_file
    from cas.bulk.rows import guess_format
    from cas.cli._subscribers import open_app_store
    from cas.errors import UsageError
    from cas.outpath import check_output_file

    file_format = guess_format(path, fmt)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to overwrite)").with_id(
            "cli.already_exists_force_overwrite", path=path)
    check_output_file(path, "PATH")
    store = open_app_store(app)
    try:
        with app.progress(f"exporting {kind}", total=None) as advance:
            count = export_file(store, path, kind, fmt=file_format, advance=advance)
    finally:
        store.dispose()
    app.output({"kind": kind, "file": str(path), "rows": count},
               lambda: app.print(f"{kind}: {count} row(s) written to {path}"))
