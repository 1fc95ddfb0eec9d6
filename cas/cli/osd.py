"""``cas osd send`` and ``cas osd fingerprint``: on-screen messages and fingerprint orders.

Thin: options → :mod:`cas.headend.osd` (the commands and the sealed EMM).  Without ``--out``
the EMM is queued in the store's EMM outbox, which a running ``cas headend run`` airs at its
next poll: to every card (``--all``) a global EMM (as ``cas headend osd``), to one card
(``--card``) a command EMM (:func:`cas.live.outbox.queue_card_emm`, as the kit's live mode;
PPV bookings are command EMMs too).  With ``--out FILE`` (``.ts``: a TS with the CAT, else sections) it is written for
a playout or ``stb``.  A group (``--group``) always goes to a file: the live carousel has no
group EMMs.  The sequence number is taken from the store either way, so the card accepts the
carousel's next EMM too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import NotFoundError, UsageError
from cas.formats.emm import EmmCommand, FingerprintKind
from cas.headend.emmgen import DEFAULT_EMM_VALIDITY_S, sections_to_ts
from cas.headend.osd import OsdTarget, command_bytes, fingerprint_order, osd_emm, osd_mail
from cas.outpath import check_output_file
from cas.wiretime import MAX_DURATION_S

if TYPE_CHECKING:
    from cas.crypto import OperatorKeys
    from cas.store.engine import Store

_KEYS_HELP = "Operator key file (default: $CAS_OPERATOR_KEY, then the data dir)."


def target_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--validity-s", type=click.IntRange(1, MAX_DURATION_S),
                     default=DEFAULT_EMM_VALIDITY_S, show_default=True,
                     help="Cards ignore the EMM after now + this.")(f)
    f = click.option("--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
                     help=_KEYS_HELP)(f)
    f = click.option("--out", "-o", "out", type=click.Path(path_type=Path, dir_okay=False),
                     help="Write the EMM here (FILE.ts: a TS with the CAT; else the section). "
                          "Without it, --card and --all are queued for the running head-end.")(f)
    f = click.option("--start", "start_text",
                     help="Show from this time (default: as soon as it arrives).")(f)
    f = click.option("--all", "to_all", is_flag=True, help="Every card (global EMM).")(f)
    f = click.option("--member", "members", type=click.IntRange(0, 255), multiple=True,
                     help="With --group: only this member position (repeatable).")(f)
    f = click.option("--group", "group_address", type=click.IntRange(0, 0xFFFFFF),
                     help="Cards of this shared address (shared EMM).")(f)
    f = click.option("--card", "serial", help="One card, by serial (unique EMM).")(f)
    return f


def emm_target(serial: str | None, group_address: int | None, members: tuple[int, ...],
            to_all: bool) -> OsdTarget:
    from cas.cli._subscribers import parse_serial

    chosen = sum((serial is not None, group_address is not None, to_all))
    if chosen != 1:
        raise UsageError("choose one of --card, --group or --all").with_id(
            "cli.choose_one_card_group")
    if members and group_address is None:
        raise UsageError("--member goes with --group").with_id("cli.member_goes_group")
    if serial is not None:
        return OsdTarget(serial=parse_serial(serial))
    if group_address is not None:
        return OsdTarget(shared_address=group_address, positions=tuple(sorted(set(members))))
    return OsdTarget()


def send_emm(app: Application, what: str, target: OsdTarget, commands: Sequence[EmmCommand], *,
          out: Path | None, keys_path: Path | None, validity_s: int) -> None:
    from cas.cli._subscribers import now, open_app_store
    from cas.crypto import load_operator_keys

    if out is None and target.kind == "shared":
        raise UsageError("a message to --group goes to a file: give --out FILE (the live "
                         "carousel has no group EMMs)").with_id("cli.message_group_goes_file")
    if out is not None:
        check_output_file(out, "--out")
    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    store = open_app_store(app)
    try:
        with store.reader() as s:
            at = now(s)
        if out is None:
            _queue(app, store, keys, what, target, commands, at=at, validity_s=validity_s)
            return
        from cas.live.outbox import take_sequence

        seq = take_sequence(store, target.kind, target.address)
    finally:
        store.dispose()
    section = osd_emm(keys, target, commands, seq=seq, at=at, validity_s=validity_s)
    data = sections_to_ts([section], emm_pid=0x0C00) if out.suffix == ".ts" else section
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}").with_id(
            "cli.cannot_write_2", out=out, strerror=exc.strerror) from None
    app.output({"written": str(out), "what": what, "address": target.kind, "seq": seq,
                "bytes": len(data)},
               lambda: app.print(f"{what} EMM ({target.kind}, seq {seq}) → {out}",
                                 markup=False))


def _queue(app: Application, store: Store, keys: OperatorKeys, what: str, target: OsdTarget,
           commands: Sequence[EmmCommand], *, at: datetime, validity_s: int) -> None:
    """Queue the EMM in the store's outbox for a running ``cas headend run`` to air at its
    next poll: to every card a global EMM (as ``cas headend osd``), to one card a command
    EMM with the card's next sequence number (as the kit's live mode does), which the
    carousel airs ``repeat_count`` times and then with the card's rights until it expires."""
    from cas.live.outbox import queue_card_emm, queue_global_emm, seq_of
    from cas.store.models import Card

    if target.serial is None:
        outbox_id = queue_global_emm(store, keys, [command_bytes(commands)], at=at, cause=what,
                                     validity_s=validity_s)
        app.output({"queued": what, "address": "global", "outbox_id": outbox_id,
                    "at": at.isoformat()},
                   lambda: app.print(f"{what} EMM to every card queued (outbox id {outbox_id});"
                                     " a running head-end airs it at its next poll"))
        return
    serial = target.serial
    with store.transaction() as s:
        if s.get(Card, serial) is None:
            raise NotFoundError(f"unknown card {serial:010d}").with_id(
                "unknown_card", card=f"{serial:010d}")
        section = queue_card_emm(s, keys, serial, commands, at=at, cause=what,
                                 validity_s=validity_s)
    seq = seq_of(section)
    app.output({"queued": what, "address": "unique", "card": serial, "seq": seq,
                "at": at.isoformat()},
               lambda: app.print(f"{what} EMM to card {serial:010d} queued (seq {seq}); a "
                                 "running head-end airs it at its next poll"))


def _when(text: str | None) -> datetime | None:
    from cas.cli._subscribers import parse_when

    return parse_when(text) if text else None


def register(cli: click.Group) -> None:
    osd = group(cli, "osd", "On-screen messages and fingerprints (docs/osd.md).")

    @osd.command("send")
    @click.argument("text")
    @click.option("--id", "message_id", type=click.IntRange(1, 0xFFFF), required=True,
                  help="Message id: the box acknowledges it, a repeat is not shown again.")
    @click.option("--priority", type=click.IntRange(0, 255), default=0, show_default=True,
                  help="Higher preempts lower on screen.")
    @click.option("--duration-s", type=click.IntRange(1, 0xFFFF), default=10, show_default=True,
                  help="How long the box shows it.")
    @target_options
    @pass_app
    def send(app: Application, text: str, message_id: int, priority: int, duration_s: int,
             serial: str | None, group_address: int | None, members: tuple[int, ...],
             to_all: bool, start_text: str | None, out: Path | None, keys_path: Path | None,
             validity_s: int) -> None:
        """Send an on-screen message TEXT to one card, a group or every card."""
        target = emm_target(serial, group_address, members, to_all)
        mail = osd_mail(message_id, text, priority=priority, duration_s=duration_s,
                        start=_when(start_text))
        send_emm(app, "osd", target, [mail], out=out, keys_path=keys_path, validity_s=validity_s)

    @osd.command("fingerprint")
    @click.argument("kind", type=click.Choice(["overt", "covert"]))
    @click.option("--duration-s", type=click.IntRange(1, 0xFFFF), default=10, show_default=True,
                  help="How long the box shows it.")
    @click.option("--x", "x_pct", type=click.IntRange(0, 100), default=90, show_default=True,
                  help="Left edge in % of the picture width (covert: nearest corner).")
    @click.option("--y", "y_pct", type=click.IntRange(0, 100), default=90, show_default=True,
                  help="Top edge in % of the picture height (covert: nearest corner).")
    @target_options
    @pass_app
    def fingerprint(app: Application, kind: str, duration_s: int, x_pct: int, y_pct: int,
                    serial: str | None, group_address: int | None, members: tuple[int, ...],
                    to_all: bool, start_text: str | None, out: Path | None,
                    keys_path: Path | None, validity_s: int) -> None:
        """Order a fingerprint (the card serial on screen): OVERT as text, COVERT as a faint
        pattern that `cas diag fingerprint` reads back."""
        target = emm_target(serial, group_address, members, to_all)
        order = fingerprint_order(FingerprintKind[kind.upper()], duration_s=duration_s,
                                  x_pct=x_pct, y_pct=y_pct, start=_when(start_text))
        send_emm(app, "fingerprint", target, [order], out=out, keys_path=keys_path,
              validity_s=validity_s)
