"""``cas card sharing-policy``: the card's own sharing check, set by EMM (docs/sharing.md).

Thin: options → an EMM with ``SET_SHARING`` (or ``CLEAR_SHARING`` with ``--clear``), sent as
``cas osd send`` sends its EMMs (:func:`cas.cli.osd.send_emm`): one card or a group to a file,
every card to a file or queued for the running head-end.
"""

from __future__ import annotations

from pathlib import Path

import click

from cas.cli.app import Application, pass_app
from cas.cli.osd import emm_target, send_emm
from cas.headend.emmgen import DEFAULT_EMM_VALIDITY_S
from cas.headend.osd import sharing_commands
from cas.sharing import DEFAULT_RATE_TOLERANCE, DEFAULT_TUNERS, DEFAULT_WINDOW_S, SharingPolicy
from cas.wiretime import MAX_DURATION_S

_POLICIES = {p.name.lower(): p for p in SharingPolicy}


@click.command("sharing-policy")
@click.argument("policy", type=click.Choice(list(_POLICIES)))
@click.option("--tuners", type=click.IntRange(1, 255), default=DEFAULT_TUNERS,
              show_default=True, help="Tuners of the subscriber's box.")
@click.option("--rate-tolerance", type=click.IntRange(0, 255), default=DEFAULT_RATE_TOLERANCE,
              show_default=True, help="Extra ECM requests per tuner per window.")
@click.option("--window-s", type=click.IntRange(1, 255), default=int(DEFAULT_WINDOW_S),
              show_default=True, help="Window in seconds (one crypto-period).")
@click.option("--clear", "clear_flag", is_flag=True,
              help="Also clear the card's sharing flag and ECM record.")
@click.option("--card", "serial", help="One card, by serial (unique EMM).")
@click.option("--group", "group_address", type=click.IntRange(0, 0xFFFFFF),
              help="Cards of this shared address (shared EMM).")
@click.option("--member", "members", type=click.IntRange(0, 255), multiple=True,
              help="With --group: only this member position (repeatable).")
@click.option("--all", "to_all", is_flag=True, help="Every card (global EMM).")
@click.option("--out", "-o", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the EMM here (FILE.ts: a TS with the CAT; else the section). "
                   "Without it, --all is queued for the running head-end.")
@click.option("--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Operator key file (default: $CAS_OPERATOR_KEY, then the data dir).")
@click.option("--validity-s", type=click.IntRange(1, MAX_DURATION_S),
              default=DEFAULT_EMM_VALIDITY_S, show_default=True,
              help="Cards ignore the EMM after now + this.")
@pass_app
def sharing_policy_cmd(app: Application, policy: str, tuners: int, rate_tolerance: int,
                       window_s: int, clear_flag: bool, serial: str | None,
                       group_address: int | None, members: tuple[int, ...], to_all: bool,
                       out: Path | None, keys_path: Path | None, validity_s: int) -> None:
    """Set what cards do when they answer ECMs for more than one box: OFF, FLAG (record the
    flag, GET DATA 30) or REFUSE (E60 beyond one box's channels and requests)."""
    target = emm_target(serial, group_address, members, to_all)
    commands = sharing_commands(_POLICIES[policy], tuners=tuners,
                                rate_tolerance=rate_tolerance, window_s=window_s,
                                clear=clear_flag)
    send_emm(app, "sharing-policy", target, commands, out=out, keys_path=keys_path,
             validity_s=validity_s)
