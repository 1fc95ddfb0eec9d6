"""``cas emm refresh`` and ``cas emm worker``: a full EMM refresh over several processes or
hosts, coordinated through PostgreSQL (docs/scale.md).

Thin: options → :mod:`cas.headend.emmrefresh`.  Heavy imports stay inside the commands.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from cas.cli.app import Application, pass_app
from cas.cli.common import group


def register(cli: click.Group) -> None:
    emm = group(cli, "emm", "EMM generation for the subscriber base.")
    keys_option = click.option(
        "--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
        help="Operator key file (default: $CAS_OPERATOR_KEY, then the data dir).")

    @emm.command("refresh")
    @click.option("--run", "run", required=True,
                  help="Name of the refresh (1-32 letters, digits, '-'); the same name "
                       "joins or resumes it, a finished one is left as it is.")
    @click.option("--out", "-o", "out", required=True, help="Output FILE.sections.")
    @click.option("--items-dir", help="Directory for the per-item files, shared by every "
                  "worker host (default: OUT.items).")
    @click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
                  help="Processes on this host (more than 1 needs PostgreSQL).")
    @click.option("--chunk", type=click.IntRange(1, 1_000_000), default=20_000,
                  show_default=True, help="Cards per work item.")
    @click.option("--shared-min", type=click.IntRange(0, 256), default=2, show_default=True,
                  help="Fewest group members with identical commands sent as one shared "
                       "EMM (0: unique EMMs only).")
    @click.option("--validity-s", type=click.IntRange(1, 0xFFFF_FFFF), default=7 * 24 * 3600,
                  show_default=True, help="The card ignores an EMM after at + this.")
    @click.option("--at", "at_text", help="Entitlement state at this time (default: the "
                  "store's clock).")
    @keys_option
    @pass_app
    def refresh(app: Application, run: str, out: str, items_dir: str | None, workers: int,
                chunk: int, shared_min: int, validity_s: int, at_text: str | None,
                keys_path: Path | None) -> None:
        """Full refresh split into work items taken by any number of workers."""
        from cas.cli._subscribers import now, open_app_store, parse_when
        from cas.crypto import load_operator_keys
        from cas.errors import UsageError
        from cas.headend.emmgen import EmmSettings
        from cas.headend.emmrefresh import check_run_name, emm_refresh, require_multi_process

        check_run_name(run)
        if shared_min == 1:
            raise UsageError("--shared-min is 0 (off) or at least 2").with_id(
                "cli.shared_min_off_least")
        keys = load_operator_keys(keys_path, data_dir=app.data_dir)
        store = open_app_store(app)
        try:
            if workers > 1:
                require_multi_process(store)
            if at_text:
                at = parse_when(at_text)
            else:
                with store.reader() as s:
                    at = now(s)
            assert isinstance(at, datetime)
            with app.progress(f"EMM refresh {run}, cards", None) as advance:
                report = emm_refresh(
                    store, keys, run=run, at=at, out=out, workers=workers, out_dir=items_dir,
                    settings=EmmSettings(validity_s=validity_s, shared_min_members=shared_min),
                    chunk=chunk, progress=advance)
        finally:
            store.dispose()
        app.output(report.to_json(), lambda: app.print(
            f"refresh {report.run}: {report.unique_emms} unique, {report.shared_emms} shared "
            f"EMMs for {report.cards} cards in {report.items} items → {report.output}"
            + (" (already finished: nothing done)" if report.already_finished else "")))

    @emm.command("worker")
    @click.option("--run", "run", required=True, help="The refresh to work on.")
    @click.option("--no-wait", is_flag=True,
                  help="Stop when no free item is left instead of waiting for the items "
                       "other workers hold.")
    @keys_option
    @pass_app
    def worker(app: Application, run: str, no_wait: bool, keys_path: Path | None) -> None:
        """Join a running refresh (PostgreSQL): take work items until none is left."""
        from cas.cli._subscribers import open_app_store
        from cas.crypto import load_operator_keys
        from cas.headend.emmrefresh import check_run_name, refresh_worker, require_multi_process

        check_run_name(run)
        keys = load_operator_keys(keys_path, data_dir=app.data_dir)
        store = open_app_store(app)
        try:
            require_multi_process(store)
            with app.progress(f"EMM refresh {run} (worker), cards", None) as advance:
                rep = refresh_worker(store, keys, run, progress=advance, wait=not no_wait)
        finally:
            store.dispose()
        app.output({"run": run, "items": rep.items, "cards": rep.cards,
                    "unique_emms": rep.unique_emms, "shared_emms": rep.shared_emms},
                   lambda: app.print(f"worker on {run}: {rep.items} items, {rep.cards} cards, "
                                     f"{rep.unique_emms} unique and {rep.shared_emms} shared "
                                     f"EMMs"))
