"""``cas emm generate``: EMMs for the subscriber base (full refresh or incremental feed).

Thin: options → :func:`cas.headend.emmrun.emm_run`.  A run that was killed is resumed by
running the same command again (docs/headend.md, "Resumable runs").
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

import cas
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.crypto import load_operator_keys
from cas.errors import UsageError
from cas.formats.emm import FingerprintKind
from cas.headend.emmgen import (
    DEFAULT_EMM_VALIDITY_S,
    EmmSettings,
    ecm_key_update_command,
    osd_command,
)
from cas.headend.emmrun import emm_run
from cas.headend.osd import command_bytes, fingerprint_order, osd_mail
from cas.text import parse_int_auto
from cas.wiretime import MAX_DURATION_S

if TYPE_CHECKING:
    from cas.store.engine import Store


def _int_auto(text: str) -> int:
    value = parse_int_auto(text)
    if value is None:
        raise click.BadParameter(f"{text!r} is not a number (ASCII digits, or hex with 0x)")
    return value


def _card_count(store: Store) -> int:
    from sqlalchemy import func, select

    from cas.store.models import Card

    with store.reader() as s:
        return int(s.execute(select(func.count()).select_from(Card)).scalar_one())


def register(cli: click.Group) -> None:
    emm = group(cli, "emm", "EMM generation for the subscriber base.")

    @emm.command("generate")
    @click.option("--full", "mode", flag_value="full", help="Every card's complete rights.")
    @click.option("--incremental", "mode", flag_value="incremental",
                  help="Only cards whose rights changed since they were last sent.")
    @click.option("--global-only", "mode", flag_value="global",
                  help="Only the global EMMs given by --osd / --fingerprint / --ecm-key.")
    @click.option("--out", "-o", "out", default="-", show_default=True,
                  help="FILE.sections, FILE.ts (a TS with the EMM PID in the CAT), or - for "
                       "stdout (sections, or TS with --format ts).")
    @click.option("--format", "out_format", type=click.Choice(["auto", "sections", "ts"]),
                  default="auto", show_default=True, help="auto: by the file extension.")
    @click.option("--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
                  help="Operator key file (default: $CAS_OPERATOR_KEY, then the data dir).")
    @click.option("--at", "at_text", help="Entitlement state at this time (default: the "
                  "store's clock).")
    @click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
    @click.option("--chunk", type=click.IntRange(1, 1_000_000), default=20_000,
                  show_default=True, help="Cards per committed batch.")
    @click.option("--shared-min", type=click.IntRange(0, 256), default=2, show_default=True,
                  help="Fewest group members with identical commands sent as one shared "
                       "EMM (0: unique EMMs only).")
    @click.option("--validity-s", type=click.IntRange(1, MAX_DURATION_S),
                  default=DEFAULT_EMM_VALIDITY_S,
                  show_default=True, help="The card ignores an EMM after at + this.")
    @click.option("--osd", "osd", help="Also send this on-screen message to all cards.")
    @click.option("--osd-id", "osd_id", type=click.IntRange(1, 0xFFFF),
                  help="With --osd: a mailbox message with this id (shown once, acknowledged; "
                       "docs/osd.md) instead of the plain message.")
    @click.option("--osd-priority", type=click.IntRange(0, 255), default=0, show_default=True,
                  help="With --osd-id: higher preempts lower on screen.")
    @click.option("--osd-duration-s", type=click.IntRange(1, 0xFFFF), default=10,
                  show_default=True, help="With --osd-id: how long the box shows it.")
    @click.option("--fingerprint", "fingerprint", type=click.Choice(["overt", "covert"]),
                  help="Also order a fingerprint on every card's screen (docs/osd.md).")
    @click.option("--fingerprint-duration-s", type=click.IntRange(1, 0xFFFF), default=10,
                  show_default=True, help="With --fingerprint: how long it is shown.")
    @click.option("--ecm-key", "ecm_key", type=click.IntRange(0, 255), multiple=True,
                  help="Also send ECM key INDEX to all cards (global EMM; repeatable).")
    @click.option("--emm-pid", default="0x0C00", show_default=True, callback=lambda c, p, v:
                  _int_auto(v), help="EMM PID for TS output.")
    @click.option("--ca-system-id", default=hex(cas.DEFAULT_CA_SYSTEM_ID), show_default=True,
                  callback=lambda c, p, v: _int_auto(v), help="CA_system_ID in the CAT.")
    @pass_app
    def generate(app: Application, mode: str | None, out: str, out_format: str,
                 keys_path: Path | None, at_text: str | None, workers: int, chunk: int,
                 shared_min: int, validity_s: int, osd: str | None, osd_id: int | None,
                 osd_priority: int, osd_duration_s: int, fingerprint: str | None,
                 fingerprint_duration_s: int, ecm_key: tuple[int, ...],
                 emm_pid: int, ca_system_id: int) -> None:
        """Write EMMs: --full, --incremental or --global-only.  Re-run a killed run to resume."""
        from cas.cli._subscribers import now, open_app_store, parse_when

        if mode is None:
            raise UsageError("choose --full, --incremental or --global-only").with_id(
                "cli.choose_full_incremental_global")
        if shared_min == 1:
            raise UsageError("--shared-min is 0 (off) or at least 2").with_id(
                "cli.shared_min_off_least")
        fmt = out_format
        if fmt == "auto":
            fmt = "ts" if out.endswith(".ts") else "sections"
        keys = load_operator_keys(keys_path, data_dir=app.data_dir)
        commands = [ecm_key_update_command(i, keys.ecm_key(i)) for i in ecm_key]
        if osd_id is not None and not osd:
            raise UsageError("--osd-id goes with --osd TEXT").with_id("cli.osd_id_goes_osd")
        if osd and osd_id is not None:
            commands.append(command_bytes([osd_mail(osd_id, osd, priority=osd_priority,
                                                    duration_s=osd_duration_s)]))
        elif osd:
            commands.append(osd_command(osd))
        if fingerprint:
            commands.append(command_bytes([fingerprint_order(
                FingerprintKind[fingerprint.upper()], duration_s=fingerprint_duration_s)]))
        store = open_app_store(app)
        try:
            if at_text:
                at = parse_when(at_text)
            else:
                with store.reader() as s:
                    at = now(s)
            assert isinstance(at, datetime)
            total = _card_count(store) if mode == "full" else None
            with app.progress(f"EMMs ({mode}), cards", total) as advance:
                report = emm_run(
                    store, keys, mode=mode, at=at, out=None if out == "-" else out,
                    out_format=fmt, settings=EmmSettings(validity_s=validity_s,
                                                         shared_min_members=shared_min),
                    workers=workers, chunk=chunk, global_commands=commands,
                    ca_system_id=ca_system_id, emm_pid=emm_pid, progress=advance)
        finally:
            store.dispose()
        data = report.to_json()
        if out == "-":
            # stdout carries the EMMs; the summary goes to stderr
            app.err_console.print(
                f"{report.unique_emms} unique, {report.shared_emms} shared, "
                f"{report.global_emms} global EMMs for {report.cards} cards"
                + (" (resumed)" if report.resumed else ""), markup=False)
            return
        app.output(data, lambda: app.print(
            f"{report.unique_emms} unique, {report.shared_emms} shared, "
            f"{report.global_emms} global EMMs for {report.cards} cards → {report.output} "
            f"({report.bytes} bytes)" + (" — resumed an interrupted run" if report.resumed
                                         else "")))
