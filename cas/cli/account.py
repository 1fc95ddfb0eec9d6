"""``cas account``: personal accounts — create, show, list, update, balance corrections,
devices and screens, phone verification, notifications.

REF anywhere below is an account number, a contract number or a card number.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from cas.billing.accounts import AccountView
from cas.cli._subscribers import (
    account_number_of,
    day,
    echo_kv,
    now,
    reader,
    show,
    table,
    transaction,
    when,
)
from cas.cli.app import Application, Exit, pass_app
from cas.cli.common import group
from cas.errors import BillingError
from cas.words import count


def register(cli: click.Group) -> None:
    acc = group(cli, "account", "Personal accounts: holders, devices, verification.")
    for cmd in (create_cmd, show_cmd, list_cmd, update_cmd, adjust_cmd, devices_cmd,
                login_device_cmd, logout_device_cmd, screens_cmd, verify_cmd, confirm_cmd,
                end_session_cmd, notifications_cmd):
        acc.add_command(cmd)


def _money(session: Any) -> Any:
    from cas.billing.txn import current_profile
    from cas.cli.formats import money_formatter

    return money_formatter(current_profile(session))


def _render_account(app: Application, m: Any, v: AccountView, subs: list[Any]) -> None:
    t = app.t
    holder = " ".join(x for x in (v.surname, v.name, v.patronymic) if x)
    pairs: list[tuple[str, Any]] = [
        ("account", v.account_number), ("contract", v.contract_number), ("holder", holder),
        ("phone", v.phone or "-"), ("email", v.email or "-"),
        ("kind", t.word("ticket.account_kind", v.kind)),
        ("balance", m(v.balance_minor)), ("region", v.region), ("screens", v.screens_limit),
        ("cards", ", ".join(f"{c:010d}" for c in v.cards) or "-"),
        ("boxes", ", ".join(f"{c:08X}" for c in v.boxes) or "-"),
        ("opened", day(v.created_at)),
    ]
    if v.kind == "postpaid":
        pairs.append(("credit_limit", m(v.credit_limit_minor)))
    if v.blocked_since:
        pairs.append(("blocked_since", when(v.blocked_since)))
    if v.suspended_from:
        pairs.append(("suspended", t("subscriber.suspended_range", start=when(v.suspended_from),
                                     end=when(v.suspended_until))))
    echo_kv(app, [(t(f"subscriber.label.{k}"), x) for k, x in pairs])
    if subs:
        app.print(table(t("subscriber.subscriptions"),
                        [t(f"subscriber.col.{c}") for c in ("code", "status", "renewal",
                                                            "activated", "ends", "days_left")],
                        [[x.package_code, t.word("ticket.sub_status", x.status),
                          t("subscriber.on") if x.auto_renew else t("subscriber.off"),
                          day(x.activated_at), day(x.end), x.days_left] for x in subs]))


@click.command("create")
@click.option("--surname", required=True)
@click.option("--name", required=True)
@click.option("--patronymic")
@click.option("--phone")
@click.option("--email")
@click.option("--kind", type=click.Choice(["prepaid", "postpaid"]))
@click.option("--contract", help="Contract number (default: the next free one).")
@click.option("--credit-limit", help="Postpaid credit limit (major units).")
@click.option("--region", type=click.IntRange(0, 0xFFFF), help="Region code (default: the "
              "operator's country).")
@click.option("--again", is_flag=True, help="Open another account even though the same holder "
              "(names, no differing phone or e-mail) already has one.")
@pass_app
def create_cmd(app: Application, surname: str, name: str, patronymic: str | None,
               phone: str | None, email: str | None, kind: str | None, contract: str | None,
               credit_limit: str | None, region: int | None, again: bool) -> None:
    """Open a personal account (the account number is assigned once, here).  The same
    holder twice is refused unless --again."""
    from cas.billing.accounts import create_account, same_holder_accounts
    from cas.billing.money import parse_amount
    from cas.billing.txn import current_profile

    with transaction(app) as s:
        m = _money(s)
        limit = (parse_amount(credit_limit, current_profile(s).minor_per_major, allow_zero=True)
                 if credit_limit is not None else None)
        same = same_holder_accounts(s, surname=surname, name=name, patronymic=patronymic,
                                    phone=phone, email=email)
        if same and not again:
            # A repeated command must not silently open a second account for one person.
            holder = " ".join(x for x in (surname, name, patronymic) if x)
            raise BillingError(
                f"{holder} already holds account {', '.join(same)}: use it, or give --again "
                "to open another account for the same holder", code="SAME_HOLDER").with_id(
                "cli.already_holds_account_give", holder=holder, same=", ".join(same))
        v = create_account(s, surname=surname, name=name, patronymic=patronymic, phone=phone,
                           email=email, kind=kind, contract_number=contract,
                           credit_limit_minor=limit, region=region, at=now(s))
    show(app, v, lambda: _render_account(app, m, v, []))


@click.command("show")
@click.argument("ref")
@pass_app
def show_cmd(app: Application, ref: str) -> None:
    """An account: holder, balance, cards, boxes, subscriptions."""
    from cas.billing.accounts import get_account
    from cas.billing.service import subscriptions

    with reader(app) as s:
        m = _money(s)
        number = account_number_of(s, ref)
        v = get_account(s, number)
        subs = subscriptions(s, account_number=number, at=now(s))
    show(app, {"account": v, "subscriptions": subs}, lambda: _render_account(app, m, v, subs))


@click.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@pass_app
def list_cmd(app: Application, limit: int, offset: int) -> None:
    """Accounts, oldest first."""
    from cas.billing.accounts import list_accounts

    with reader(app) as s:
        m = _money(s)
        views = list_accounts(s, limit=limit, offset=offset)
    show(app, views, lambda: app.print(table(
        "Accounts", ["account", "contract", "holder", "kind", "balance", "cards", "state"],
        [[v.account_number, v.contract_number, f"{v.surname} {v.name}", v.kind,
          m(v.balance_minor), len(v.cards),
          "blocked" if v.blocked_since else ("suspended" if v.suspended_from else "ok")]
         for v in views])))


@click.command("update")
@click.argument("ref")
@click.option("--phone")
@click.option("--email")
@click.option("--surname")
@click.option("--name")
@click.option("--patronymic")
@click.option("--sms/--no-sms", "notify_sms", default=None, help="Notifications by SMS.")
@click.option("--mail/--no-mail", "notify_email", default=None, help="Notifications by e-mail.")
@pass_app
def update_cmd(app: Application, ref: str, phone: str | None, email: str | None,
               surname: str | None, name: str | None, patronymic: str | None,
               notify_sms: bool | None, notify_email: bool | None) -> None:
    """Change contact data and notification choices (the account number never changes)."""
    from cas.billing.accounts import update_account

    with transaction(app) as s:
        m = _money(s)
        v = update_account(s, account_number=account_number_of(s, ref), at=now(s), phone=phone,
                           email=email, surname=surname, name=name, patronymic=patronymic,
                           notify_sms=notify_sms, notify_email=notify_email)
    show(app, v, lambda: _render_account(app, m, v, []))


@click.command("adjust", context_settings={"ignore_unknown_options": True})
@click.argument("ref")
@click.argument("amount")
@click.option("--reason", required=True, help="Why (kept in the ledger).")
@pass_app
def adjust_cmd(app: Application, ref: str, amount: str, reason: str) -> None:
    """Correct a balance by AMOUNT (may be negative, e.g. -5.00); booked in the ledger."""
    from cas.billing.money import parse_amount
    from cas.billing.service import adjust_balance
    from cas.billing.txn import current_profile

    text = amount.strip()
    sign = -1 if text.startswith("-") else 1
    with transaction(app) as s:
        m = _money(s)
        minor = sign * parse_amount(text.lstrip("+-"), current_profile(s).minor_per_major)
        number = account_number_of(s, ref)
        bal = adjust_balance(s, account_number=number, amount_minor=minor, reason=reason, at=now(s))
    show(app, {"account_number": number, "balance_minor": bal},
         lambda: app.print(f"account {number}: balance {m(bal)}"))


@click.command("devices")
@click.argument("ref")
@pass_app
def devices_cmd(app: Application, ref: str) -> None:
    """Devices logged in to the account, and the screen limit."""
    from cas.billing.accounts import screens_limit
    from cas.billing.txn import account_by_number, current_profile
    from cas.store.models import Device
    from cas.store.repo import from_s

    with reader(app) as s:
        acc = account_by_number(s, account_number_of(s, ref))
        limit = screens_limit(s, current_profile(s), acc)
        rows: list[dict[str, Any]] = [{"device_id": d.device_id, "label": d.label,
                 "logged_in": from_s(d.logged_in_at_s),
                 "logged_out": from_s(d.logged_out_at_s) if d.logged_out_at_s else None,
                 "reason": d.logout_reason}
                for d in s.execute(select(Device).where(Device.account_id == acc.id)
                                   .order_by(Device.logged_in_at_s)).scalars()]
    data = {"screens_limit": limit, "devices": rows}
    show(app, data, lambda: app.print(table(
        f"Devices (limit {limit})", ["device", "label", "logged in", "logged out", "reason"],
        [[r["device_id"], r["label"], when(r["logged_in"]), when(r["logged_out"]),
          r["reason"] or ""] for r in rows])))


@click.command("login-device")
@click.argument("ref")
@click.argument("device_id")
@click.option("--label", default="")
@pass_app
def login_device_cmd(app: Application, ref: str, device_id: str, label: str) -> None:
    """A device logs in; devices beyond the screen limit are logged out."""
    from cas.billing.accounts import device_login

    with transaction(app) as s:
        r = device_login(s, account_number=account_number_of(s, ref), device_id=device_id,
                         at=now(s), label=label)

    def render() -> None:
        app.print(f"{r.device_id} logged in ({len(r.active_devices)}/{r.screens_limit} screens)")
        if r.logged_out:
            app.print(f"logged out (limit): {', '.join(r.logged_out)}")

    show(app, r, render)


@click.command("logout-device")
@click.argument("ref")
@click.argument("device_id")
@pass_app
def logout_device_cmd(app: Application, ref: str, device_id: str) -> None:
    """Log a device out."""
    from cas.billing.accounts import device_logout

    with transaction(app) as s:
        device_logout(s, account_number=account_number_of(s, ref), device_id=device_id, at=now(s))
    show(app, {"device_id": device_id, "logged_out": True},
         lambda: app.print(f"{device_id} logged out"))


@click.command("screens")
@click.argument("ref")
@click.argument("extra", type=click.IntRange(0, 100))
@pass_app
def screens_cmd(app: Application, ref: str, extra: int) -> None:
    """Set the extra screens bought on top of the tariff (TV+: up to 5 in total)."""
    from cas.billing.accounts import set_extra_screens

    with transaction(app) as s:
        limit = set_extra_screens(s, account_number=account_number_of(s, ref), extra=extra,
                                  at=now(s))
    show(app, {"screens_limit": limit}, lambda: app.print(f"screen limit now {limit}"))


@click.command("verify")
@click.argument("ref")
@click.option("--phone", required=True, help="Phone number the code is sent to.")
@pass_app
def verify_cmd(app: Application, ref: str, phone: str) -> None:
    """Start a phone verification: prints the session token and the simulated SMS code."""
    from cas.billing.accounts import start_verification

    with transaction(app) as s:
        ch = start_verification(s, account_number=account_number_of(s, ref), phone=phone,
                                at=now(s))
    show(app, ch, lambda: echo_kv(app, [("session", ch.token), ("SMS to", ch.phone),
                                        ("code", ch.code),
                                        ("session ends", when(ch.expires_at))]))


@click.command("confirm")
@click.argument("token")
@click.argument("code")
@pass_app
def confirm_cmd(app: Application, token: str, code: str) -> None:
    """Confirm a verification session with the SMS code."""
    from cas.billing.accounts import confirm_verification

    with transaction(app) as s:
        r = confirm_verification(s, token=token, code=code, at=now(s))
    if not r.verified:
        # The attempt was counted and committed above; now report the refusal.
        left = count(r.attempts_left, "attempt", "attempts")
        app.err_console.print(f"error: wrong confirmation code ({left} left)",
                              markup=False)
        raise SystemExit(int(Exit.RULE))
    show(app, r, lambda: app.print("phone confirmed for this session"))


@click.command("end-session")
@click.argument("token")
@pass_app
def end_session_cmd(app: Application, token: str) -> None:
    """End a verification session (its code stops being valid)."""
    from cas.billing.accounts import end_verification

    with transaction(app) as s:
        end_verification(s, token=token, at=now(s))
    show(app, {"ended": True}, lambda: app.print("session ended"))


@click.command("notifications")
@click.argument("ref")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_app
def notifications_cmd(app: Application, ref: str, limit: int) -> None:
    """The SMS and e-mails the account was sent (reminders, blocks, activations)."""
    from cas.billing.txn import account_by_number
    from cas.store.models import Notification
    from cas.store.repo import from_s

    with reader(app) as s:
        acc = account_by_number(s, account_number_of(s, ref))
        rows: list[dict[str, Any]] = [{"at": from_s(n.at_s), "channel": n.channel, "kind": n.kind, "text": n.text}
                for n in s.execute(select(Notification).where(Notification.account_id == acc.id)
                                   .order_by(Notification.id.desc()).limit(limit)).scalars()]
    show(app, rows, lambda: app.print(table("Notifications", ["time", "via", "kind", "text"],
                                            [[when(r["at"]), r["channel"], r["kind"], r["text"]]
                                             for r in rows])))

