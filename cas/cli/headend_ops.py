"""``cas headend osd TEXT`` and ``cas headend ecm-key INDEX``: a global EMM on demand.

The EMM is sealed with the next global sequence number and queued in the store's EMM outbox
(:func:`cas.live.outbox.queue_global_emm`); a running head-end's carousel picks it up at its
next poll and airs it (repeated, then in the background cycle), so this works while
``cas headend run`` is running, from any machine that reaches the store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.headend.emmgen import DEFAULT_EMM_VALIDITY_S, ecm_key_update_command, osd_command

if TYPE_CHECKING:
    from cas.crypto import OperatorKeys

_KEYS_HELP = "Operator key file (default: $CAS_OPERATOR_KEY, then the data dir)."


def _queue(app: Application, keys_path: Path | None, what: str, validity_s: int,
           build: Callable[[OperatorKeys], list[bytes]]) -> None:
    from cas.cli._subscribers import now, open_app_store
    from cas.crypto import load_operator_keys
    from cas.live.outbox import queue_global_emm

    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    commands = build(keys)
    store = open_app_store(app)
    try:
        with store.reader() as s:
            at = now(s)
        outbox_id = queue_global_emm(store, keys, commands, at=at, cause=what,
                                     validity_s=validity_s)
    finally:
        store.dispose()
    app.output({"queued": what, "outbox_id": outbox_id, "at": at.isoformat()},
               lambda: app.print(f"{what} EMM queued (outbox id {outbox_id}); a running "
                                 "head-end airs it at its next poll"))


def register(cli: click.Group) -> None:
    headend = group(cli, "headend", "The live head-end: scrambled playout over IP.")

    @headend.command("osd")
    @click.argument("text")
    @click.option("--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
                  help=_KEYS_HELP)
    @click.option("--validity-s", type=click.IntRange(1, 2**31), default=DEFAULT_EMM_VALIDITY_S,
                  show_default=True, help="Cards ignore the EMM after now + this.")
    @pass_app
    def osd(app: Application, text: str, keys_path: Path | None, validity_s: int) -> None:
        """Queue an on-screen message to every card (global EMM) for the running head-end."""
        command = osd_command(text)  # checks the length before touching keys or store
        _queue(app, keys_path, "osd", validity_s, lambda _keys: [command])

    @headend.command("ecm-key")
    @click.argument("index", type=click.IntRange(0, 255))
    @click.option("--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
                  help=_KEYS_HELP)
    @click.option("--validity-s", type=click.IntRange(1, 2**31), default=DEFAULT_EMM_VALIDITY_S,
                  show_default=True, help="Cards ignore the EMM after now + this.")
    @pass_app
    def ecm_key(app: Application, index: int, keys_path: Path | None, validity_s: int) -> None:
        """Queue ECM key INDEX to every card (a rollover's global EMM) for the running
        head-end."""
        _queue(app, keys_path, "ecm-key", validity_s,
               lambda keys: [ecm_key_update_command(index, keys.ecm_key(index))])
