"""Operator set-up, payments and packages, the seed operators' self-care actions, and the
simulation clock.

``cas operator use atvplus`` · ``cas catalog show`` · ``cas pay --card N 10 --package sport``
· ``cas sms "ntvplus 2256884759 425"`` · ``cas package subscribe|switch|extend|list`` ·
``cas suspend|resume`` · ``cas renewal on|off`` · ``cas promise`` · ``cas promo redeem`` ·
``cas statement`` · ``cas balance`` · ``cas lookup --chip-id … --card …`` ·
``cas clock show|set|advance``.

Every command acts at the store's simulated "now" (``cas clock``).  Amounts are in major
units (``12``, ``12.50``) and exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import click
from sqlalchemy.orm import Session

from cas.billing.service import BalanceView, PaymentResult, SubscriptionView
from cas.cli._subscribers import (
    account_number_of,
    day,
    echo_kv,
    now,
    parse_chip_id,
    parse_serial,
    parse_when,
    reader,
    refuse_foreign_number,
    require_one,
    show,
    table,
    transaction,
    when,
)
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import UsageError
from cas.words import count

Money = Callable[[int], str]


def _money(session: Session) -> Money:
    """The profile's money formatter, usable after the session is closed."""
    from cas.billing.txn import current_profile
    from cas.cli.formats import money_formatter

    return money_formatter(current_profile(session))


def register(cli: click.Group) -> None:
    op = group(cli, "operator", "The operator profile this store runs (the seed rules).")
    op.add_command(operator_list)
    op.add_command(operator_use)
    op.add_command(operator_show)
    cat = group(cli, "catalog", "Channels and packages (lineup files).")
    cat.add_command(catalog_show)
    cat.add_command(catalog_channels)
    cat.add_command(catalog_load)
    cli.add_command(pay_cmd)
    cli.add_command(sms_cmd)
    pkg = group(cli, "package", "Subscribe to, switch, extend and list packages.")
    pkg.add_command(package_subscribe)
    pkg.add_command(package_switch)
    pkg.add_command(package_extend)
    pkg.add_command(package_list)
    cli.add_command(suspend_cmd)
    cli.add_command(resume_cmd)
    cli.add_command(renewal_cmd)
    cli.add_command(promise_cmd)
    promo = group(cli, "promo", "Promo codes.")
    promo.add_command(promo_redeem)
    promo.add_command(promo_list)
    cli.add_command(statement_cmd)
    cli.add_command(balance_cmd)
    cli.add_command(lookup_cmd)
    clock = group(cli, "clock", "The simulation clock: show, set, advance (runs what falls due).")
    clock.add_command(clock_show)
    clock.add_command(clock_set)
    clock.add_command(clock_advance)


# --- operator / catalog ------------------------------------------------------------------------
@click.command("list")
@pass_app
def operator_list(app: Application) -> None:
    """The shipped operator profiles."""
    from cas.billing.profile import load_profile, shipped_profiles

    profiles = [load_profile(n) for n in shipped_profiles()]
    data = [{"key": p.key, "name": p.name, "country": p.country, "currency": p.currency}
            for p in profiles]
    show(app, data, lambda: app.print(table("Operator profiles", ["key", "name", "country",
                                                                  "currency"],
                                            [list(d.values()) for d in data])))


@click.command("use")
@click.argument("profile")
@click.option("--lineup", help="Lineup file (default: the profile's shipped sample lineup).")
@click.option("--clock-start", help="Start the simulation clock at this date (YYYY-MM-DD).")
@pass_app
def operator_use(app: Application, profile: str, lineup: str | None,
                 clock_start: str | None) -> None:
    """Run PROFILE's rules in this store (tvplus, ntvplus, atvplus, mts, uzonline, or a file)
    and install its lineup."""
    from cas.billing.setup import use_profile

    start = parse_when(clock_start) if clock_start else None
    # The one command that sets up a store: every other opens only an existing one.
    with transaction(app, create=True) as s:
        installed = use_profile(s, profile, lineup=lineup, clock_start=start)
        clock = now(s)
    p = installed.profile
    data = {"profile": p.key, "name": p.name, "lineup": installed.lineup.name,
            "channels": len(installed.lineup.channels),
            "packages": len(installed.lineup.packages), "clock": clock}
    show(app, data, lambda: app.print(
        f"{p.name}: {len(installed.lineup.channels)} channels, "
        f"{len(installed.lineup.packages)} packages; clock {when(clock)} UTC"))


@click.command("show")
@pass_app
def operator_show(app: Application) -> None:
    """The profile in use and its rules."""
    import dataclasses

    from cas.billing.txn import current_profile

    with reader(app) as s:
        p = current_profile(s)
    data = dataclasses.asdict(p)
    show(app, data, lambda: echo_kv(app, [(k, v) for k, v in data.items()]))


@click.command("show")
@pass_app
def catalog_show(app: Application) -> None:
    """Packages: kind, price, period, screens, channel count."""
    from cas.billing.catalog import channel_counts, list_packages
    from cas.billing.txn import current_profile

    with reader(app) as s:
        pkgs = list_packages(s)
        counts = channel_counts(s, [p.id for p in pkgs])
        rows = [{"id": p.id, "code": p.code, "name": p.name, "kind": p.kind,
                 "price_minor": p.price_minor, "price": current_profile(s).money(p.price_minor),
                 "period_days": p.period_days, "screens": p.max_screens,
                 "channels": counts[p.id]} for p in pkgs]
    show(app, rows, lambda: app.print(table(
        "Packages", ["id", "code", "name", "kind", "price", "days", "screens", "channels"],
        [[r["id"], r["code"], r["name"], r["kind"], r["price"], r["period_days"], r["screens"],
          r["channels"]] for r in rows])))


@click.command("channels")
@click.option("--package", help="Only this package's channels.")
@pass_app
def catalog_channels(app: Application, package: str | None) -> None:
    """Channels with their service id, maturity rating, regions and packages."""
    from sqlalchemy import select

    from cas.billing.catalog import access_criteria, get_package, package_channels
    from cas.store.models import Channel

    with reader(app) as s:
        if package:
            chans = package_channels(s, get_package(s, package).id)
        else:
            chans = list(s.execute(select(Channel).order_by(Channel.number)).scalars())
        rows: list[dict[str, Any]] = []
        for ch in chans:
            c = access_criteria(s, ch)
            rows.append({"number": ch.number, "name": ch.name, "service_id": ch.service_id,
                         "maturity": ch.maturity_rating, "regions": list(c.regions),
                         "packages": list(c.package_ids)})
    show(app, rows, lambda: app.print(table(
        "Channels", ["no", "name", "service id", "maturity", "regions", "packages"],
        [[r["number"], r["name"], r["service_id"], r["maturity"],
          ",".join(map(str, r["regions"])) or "all", ",".join(map(str, r["packages"]))]
         for r in rows])))


@click.command("load")
@click.argument("lineup")
@pass_app
def catalog_load(app: Application, lineup: str) -> None:
    """Replace the catalog with LINEUP (a file, or a shipped lineup name)."""
    from cas.billing.setup import load_catalog

    with transaction(app) as s:
        cat = load_catalog(s, lineup)
    data = {"lineup": cat.name, "channels": len(cat.channels), "packages": len(cat.packages)}
    show(app, data, lambda: app.print(
        f"{cat.name}: {len(cat.channels)} channels, {len(cat.packages)} packages"))


# --- payments ----------------------------------------------------------------------------------
def _payment_output(app: Application, m: Money, result: PaymentResult) -> None:
    bal = m(result.balance_minor)
    paid = m(result.amount_minor)

    def render() -> None:
        app.print(f"paid {paid} to account {result.account_number} "
                  f"(payment {result.payment_id}); balance {bal}")
        if result.switched_to:
            app.print(f"switched to {result.switched_to}")
        if result.activated:
            app.print(f"activated: {', '.join(result.activated)}")
        if result.note:
            app.print(result.note)

    show(app, result, render)


@click.command("pay", context_settings={"ignore_unknown_options": True})
@click.argument("amount")
@click.option("--card", help="Pay by smart-card number.")
@click.option("--contract", help="Pay by contract number.")
@click.option("--account", help="Pay by personal account number.")
@click.option("--payment-id", help="The payment system's unique id (default: a new UUID).")
@click.option("--method", default="online", show_default=True,
              type=click.Choice(["online", "terminal", "payment_card", "bank", "cash"]),
              help="payment_card: an operator payment card (fixed denominations).")
@click.option("--package", help="Choose this package with the payment (ATV+).")
@pass_app
def pay_cmd(app: Application, amount: str, card: str | None, contract: str | None,
            account: str | None, payment_id: str | None, method: str,
            package: str | None) -> None:
    """Top up an account: AMOUNT in major units (e.g. 10 or 10.50)."""
    from cas.billing.money import parse_amount
    from cas.billing.service import pay
    from cas.billing.txn import current_profile

    by, ref = require_one(card=card, contract=contract, account=account)
    refuse_foreign_number(amount, "amount")
    if by == "card":
        ref = str(parse_serial(ref))
    refuse_foreign_number(ref, f"{by} number")
    with transaction(app) as s:
        profile = current_profile(s)
        amount_minor = parse_amount(amount, profile.minor_per_major)
        result = pay(s, by=by, ref=ref, amount_minor=amount_minor,
                     payment_id=payment_id or uuid.uuid4().hex, at=now(s), method=method,
                     package=package)
    _payment_output(app, profile.money, result)


@click.command("sms")
@click.argument("text")
@click.option("--payment-id", help="The SMS gateway's message id (default: a new UUID).")
@pass_app
def sms_cmd(app: Application, text: str, payment_id: str | None) -> None:
    """Pay by SMS: "ntvplus <card-or-contract-number> <amount>" (NTV Plus)."""
    from cas.billing.service import pay_by_sms

    with transaction(app) as s:
        m = _money(s)
        result = pay_by_sms(s, text=text, payment_id=payment_id or uuid.uuid4().hex, at=now(s))
    _payment_output(app, m, result)


# --- packages ----------------------------------------------------------------------------------
def _subs_render(app: Application, m: Money, views: Sequence[SubscriptionView]) -> None:
    rows = []
    for v in views:
        rows.append([v.package_code, v.package_name, v.kind, v.status,
                     "on" if v.auto_renew else "off", day(v.activated_at), day(v.end),
                     v.days_left, m(v.next_price_minor)])
    app.print(table("Subscriptions", ["code", "package", "kind", "status", "renewal",
                                      "activated", "ends", "days left", "next price"], rows))


@click.command("subscribe")
@click.argument("ref")
@click.argument("package")
@click.option("--verification", help="Verified phone session token (profiles that need one).")
@pass_app
def package_subscribe(app: Application, ref: str, package: str, verification: str | None) -> None:
    """Choose PACKAGE for the account REF (account, contract or card number)."""
    from cas.billing.service import subscribe

    with transaction(app) as s:
        m = _money(s)
        view = subscribe(s, account_number=account_number_of(s, ref), package=package,
                         at=now(s), verification=verification)
    show(app, view, lambda: _subs_render(app, m, [view]))


@click.command("switch")
@click.argument("ref")
@click.argument("package")
@pass_app
def package_switch(app: Application, ref: str, package: str) -> None:
    """Switch the base package (at most once per the profile's lock days)."""
    from cas.billing.service import switch_package

    with transaction(app) as s:
        m = _money(s)
        r = switch_package(s, account_number=account_number_of(s, ref), package=package, at=now(s))

    def render() -> None:
        text = (f"switched {r.from_package} -> {r.to_package}: "
                f"{count(r.unused_days, 'unused day', 'unused days')} credited "
                f"{m(r.credited_minor)}, charged {m(r.charged_minor)}; balance "
                f"{m(r.balance_minor)}")
        if r.next_switch_from is not None:  # operators without a switch lock have no date
            text += f"; next switch from {day(r.next_switch_from)}"
        app.print(text)

    show(app, r, render)


@click.command("extend")
@click.argument("ref")
@click.argument("package")
@click.option("--periods", type=click.IntRange(1, 24), default=1, show_default=True)
@pass_app
def package_extend(app: Application, ref: str, package: str, periods: int) -> None:
    """Prepay more periods of an active package."""
    from cas.billing.service import extend

    with transaction(app) as s:
        m = _money(s)
        view = extend(s, account_number=account_number_of(s, ref), package=package, at=now(s),
                      periods=periods)
    show(app, view, lambda: _subs_render(app, m, [view]))


@click.command("list")
@click.argument("ref")
@click.option("--all", "include_closed", is_flag=True, help="Include switched-away packages.")
@pass_app
def package_list(app: Application, ref: str, include_closed: bool) -> None:
    """The account's subscriptions with activation date, end date and days left."""
    from cas.billing.service import subscriptions

    with reader(app) as s:
        m = _money(s)
        views = subscriptions(s, account_number=account_number_of(s, ref), at=now(s),
                              include_closed=include_closed)
    show(app, views, lambda: _subs_render(app, m, list(views)))


# --- suspension, renewal, promise, promo ---------------------------------------------------------
def _balance_render(app: Application, m: Money, b: BalanceView) -> None:
    pairs: list[tuple[str, object]] = [("account", b.account_number),
                                       ("balance", m(b.balance_minor))]
    if b.blocked_since:
        pairs.append(("financial block since", f"{when(b.blocked_since)} ({b.block_cause})"))
    if b.suspended_from:
        pairs.append(("suspended", f"{when(b.suspended_from)} until {when(b.suspended_until)}"))
    if b.promised_minor:
        pairs.append(("promised payment", f"{m(b.promised_minor)} due "
                                          f"{when(b.promised_due)}"))
    echo_kv(app, pairs)


@click.command("suspend")
@click.argument("ref")
@click.option("--until", "until_text", help="Resume automatically at this date.")
@click.option("--days", type=click.IntRange(0, 3660), help="Resume automatically after N days.")
@pass_app
def suspend_cmd(app: Application, ref: str, until_text: str | None, days: int | None) -> None:
    """Suspend the service temporarily (holiday)."""
    from datetime import timedelta

    from cas.billing.service import suspend

    if until_text and days is not None:
        raise UsageError("give --until or --days, not both").with_id("cli.give_until_days_not")
    with transaction(app) as s:
        m = _money(s)
        at = now(s)
        until = parse_when(until_text) if until_text else (
            at + timedelta(days=days) if days is not None else None)
        b = suspend(s, account_number=account_number_of(s, ref), at=at, until=until)
    show(app, b, lambda: _balance_render(app, m, b))


@click.command("resume")
@click.argument("ref")
@pass_app
def resume_cmd(app: Application, ref: str) -> None:
    """Resume a suspended service now (the paid days left are kept)."""
    from cas.billing.service import resume

    with transaction(app) as s:
        m = _money(s)
        b = resume(s, account_number=account_number_of(s, ref), at=now(s))
    show(app, b, lambda: _balance_render(app, m, b))


@click.command("renewal")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.argument("ref")
@click.option("--package", help="Only this package (default: all).")
@pass_app
def renewal_cmd(app: Application, state: str, ref: str, package: str | None) -> None:
    """Turn auto-renewal on or off (no prepaid day is lost either way)."""
    from cas.billing.service import set_renewal

    with transaction(app) as s:
        m = _money(s)
        views = set_renewal(s, account_number=account_number_of(s, ref), on=state == "on",
                            at=now(s), package=package)
    show(app, views, lambda: _subs_render(app, m, list(views)))


@click.command("promise", context_settings={"ignore_unknown_options": True})
@click.argument("ref")
@click.option("--amount", help="Amount (default: what the due packages need, up to the maximum).")
@pass_app
def promise_cmd(app: Application, ref: str, amount: str | None) -> None:
    """Take a promised payment (short credit)."""
    from cas.billing.money import parse_amount
    from cas.billing.service import promise
    from cas.billing.txn import current_profile

    with transaction(app) as s:
        m = _money(s)
        amount_minor = parse_amount(amount, current_profile(s).minor_per_major) if amount else None
        b = promise(s, account_number=account_number_of(s, ref), at=now(s),
                    amount_minor=amount_minor)
    show(app, b, lambda: _balance_render(app, m, b))


@click.command("redeem")
@click.argument("ref")
@click.argument("code")
@click.option("--verification", help="Verified phone session token (profiles that need one).")
@pass_app
def promo_redeem(app: Application, ref: str, code: str, verification: str | None) -> None:
    """Redeem a promo code for the account REF."""
    from cas.billing.service import redeem_promo

    with transaction(app) as s:
        m = _money(s)
        view = redeem_promo(s, account_number=account_number_of(s, ref), code=code, at=now(s),
                            verification=verification)
    show(app, view, lambda: _subs_render(app, m, [view]))


@click.command("list")
@pass_app
def promo_list(app: Application) -> None:
    """Promo codes: package, days, uses."""
    from sqlalchemy import select

    from cas.store.models import Package, PromoCode
    from cas.store.repo import from_s

    with reader(app) as s:
        rows: list[dict[str, Any]] = [{"code": p.code, "package": pk.code, "days": p.days, "used": p.used_count,
                 "max_uses": p.max_uses,
                 "valid_until": from_s(p.valid_until_s) if p.valid_until_s else None}
                for p, pk in s.execute(select(PromoCode, Package).join(
                    Package, Package.id == PromoCode.package_id).order_by(PromoCode.code))]
    show(app, rows, lambda: app.print(table(
        "Promo codes", ["code", "package", "days", "used", "max", "valid until"],
        [[r["code"], r["package"], r["days"], r["used"], r["max_uses"] or "-",
          when(r["valid_until"])] for r in rows])))


# --- statement, balance, lookup -----------------------------------------------------------------
@click.command("statement")
@click.argument("ref")
@click.option("--since", help="From this date (YYYY-MM-DD).")
@click.option("--until", "until_text", help="Before this date (YYYY-MM-DD).")
@pass_app
def statement_cmd(app: Application, ref: str, since: str | None, until_text: str | None) -> None:
    """The payment statement: every balance change, with opening and closing balances."""
    from cas.billing.service import statement
    from cas.billing.statement import ledger_text

    with reader(app) as s:
        m = _money(s)
        st = statement(s, account_number=account_number_of(s, ref),
                       since=parse_when(since) if since else None,
                       until=parse_when(until_text) if until_text else None)

    def render() -> None:
        t = app.t
        app.print(t("statement.opening", account=st.account_number,
                    amount=m(st.opening_balance_minor)))
        app.print(table(None, [t(f"statement.col.{c}") for c in ("time", "kind", "amount",
                                                                 "balance", "ref",
                                                                 "description")],
                        [[when(x.at), x.kind if t.lang == "en" else t.word("ticket.ledger_kind", x.kind),
                          m(x.amount_minor),
                          m(x.balance_after_minor), x.ref, ledger_text(x.description, t)]
                         for x in st.lines]))
        app.print(t("statement.closing", amount=m(st.closing_balance_minor)))

    show(app, st, render)


@click.command("balance")
@click.argument("ref")
@pass_app
def balance_cmd(app: Application, ref: str) -> None:
    """Balance, financial block, suspension and open promised payment."""
    from cas.billing.service import balance

    with reader(app) as s:
        m = _money(s)
        b = balance(s, account_number=account_number_of(s, ref))
    show(app, b, lambda: _balance_render(app, m, b))


@click.command("lookup")
@click.option("--chip-id", required=True, help="The box's Chip ID (8 hex digits).")
@click.option("--card", required=True, help="The smart-card number.")
@pass_app
def lookup_cmd(app: Application, chip_id: str, card: str) -> None:
    """Find the personal account number from the box's Chip ID and the card number (MTS)."""
    from cas.billing.service import lookup_by_chip_and_card

    with reader(app) as s:
        number = lookup_by_chip_and_card(s, chip_id=parse_chip_id(chip_id),
                                         card_serial=parse_serial(card))
    show(app, {"account_number": number}, lambda: app.print(f"personal account {number}"))


# --- clock --------------------------------------------------------------------------------------
@click.command("show")
@pass_app
def clock_show(app: Application) -> None:
    """The simulated "now"."""
    with reader(app) as s:
        t = now(s)
    show(app, {"now": t}, lambda: app.print(f"{when(t)} UTC"))


@click.command("set")
@click.argument("date")
@pass_app
def clock_set(app: Application, date: str) -> None:
    """Set the clock without running anything due (never backwards)."""
    from cas.billing.clock import set_clock

    with transaction(app) as s:
        t = set_clock(s, parse_when(date))
    show(app, {"now": t}, lambda: app.print(f"{when(t)} UTC"))


@click.command("advance")
@click.option("--days", type=click.IntRange(0, 36600), help="Advance by N days.")
@click.option("--hours", type=click.IntRange(0, 878400), help="Advance by N hours.")
@click.option("--to", "to_text", help="Advance to this date (YYYY-MM-DD or ISO time).")
@pass_app
def clock_advance(app: Application, days: int | None, hours: int | None,
                  to_text: str | None) -> None:
    """Advance the clock, running renewals, reminders, expiries and blocks in time order."""
    from cas.billing.clock import advance_clock

    if to_text and (days is not None or hours is not None):
        raise UsageError("give --to or --days/--hours, not both").with_id("cli.give_days_hours_not")
    with transaction(app) as s:
        rep = advance_clock(s, to=parse_when(to_text) if to_text else None, days=days,
                            hours=hours)

    def render() -> None:
        app.print(f"clock {when(rep.start)} -> {when(rep.end)} UTC, {len(rep.events)} events")
        if rep.events:
            app.print(table(None, ["time", "account", "event", "detail"],
                            [[when(e.at), e.account_number, e.kind, e.detail]
                             for e in rep.events]))

    show(app, rep, render)
