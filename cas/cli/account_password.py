"""``cas account password REF``: set or reset a subscriber's personal-account (portal)
password from the command line.

The password is read from a hidden prompt (typed twice) or, for scripts, one line of
standard input (``--password-stdin``); it never appears in the process list or the shell
history.  ``--reset`` sets a random one-time password and prints it once for the support
agent to read to the subscriber, who then sets their own in the portal (Password page).
Only the argon2id hash is stored (:mod:`cas.web.credentials`); the change is written to the
audit log in the same transaction, without the password.
"""

from __future__ import annotations

import getpass
import os
import secrets
import sys
import time

import click

from cas.cli._subscribers import account_number_of, now, transaction
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import UsageError

#: Letters and digits nobody confuses when reading aloud or typing (no 0/O, 1/l/I).
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def one_time_password(groups: int = 3, size: int = 4) -> str:
    """``k7pm-x3qa-9ter``: 12 random characters of a 31-letter alphabet (about 59 bits)."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(size))
                    for _ in range(groups))




@click.command("password")
@click.argument("ref")
@click.option("--password-stdin", is_flag=True,
              help="Read the new password from one line of standard input (for scripts).")
@click.option("--reset", is_flag=True,
              help="Set a random one-time password and print it once.")
@pass_app
def password_cmd(app: Application, ref: str, password_stdin: bool, reset: bool) -> None:
    """Set (prompt or --password-stdin) or reset (--reset) the portal password of the
    account REF (account, contract or card number)."""
    from cas.web.audit import Actor, record
    from cas.web.credentials import set_portal_password
    from cas.web.security import check_password_policy

    if reset and password_stdin:
        raise UsageError("--reset and --password-stdin exclude each other").with_id(
            "cli.reset_password_stdin_exclude")
    if reset:
        password = one_time_password()
    elif password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to prompt on: give --password-stdin or --reset").with_id(
                "cli.no_terminal_prompt_give")
        password = getpass.getpass(app.t("account.password_prompt") + ": ")
        if getpass.getpass(app.t("account.password_repeat") + ": ") != password:
            raise UsageError("the two passwords differ").with_id("cli.two_passwords_differ")
    check_password_policy(password)
    with transaction(app) as s:
        number = account_number_of(s, ref)
        set_portal_password(s, account_number=number, password=password,
                            wall_s=int(time.time()))
        actor = Actor(kind="cli", name=_os_user())
        record(s, actor, "password_reset" if reset else "password_set", number,
               wall_s=int(time.time()), sim_at=now(s))
    data: dict[str, object] = {"account": number, "password_set": True, "reset": reset}
    if reset:
        data["one_time_password"] = password

    def render() -> None:
        if reset:
            app.print(app.t("account.password_reset", account=number), markup=False)
            app.console.print(password, markup=False, highlight=False)
        else:
            app.print(app.t("account.password_set", account=number), markup=False)

    app.output(data, render)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "cli"


def register(cli: click.Group) -> None:
    acc = group(cli, "account", "Personal accounts: holders, devices, verification.")
    acc.add_command(password_cmd)
