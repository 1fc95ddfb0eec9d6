"""``cas card add|link|unlink|list|show|pair|kids|region|kill|unblock|sharing-policy``: smart cards in the subscriber
store (``cas card personalise``/``serve`` live in ``cas/cli/card.py``)."""

from __future__ import annotations

from typing import Any

import click

from cas.cli._subscribers import (
    account_number_of,
    day,
    echo_kv,
    now,
    parse_chip_id,
    parse_serial,
    parse_when,
    reader,
    show,
    table,
    transaction,
    when,
)
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.cli.sharing_policy import sharing_policy_cmd
from cas.errors import UsageError


def register(cli: click.Group) -> None:
    card = group(cli, "card", "Smart cards: personalise, serve over PC/SC (vpcd).")
    for cmd in (add_cmd, link_cmd, unlink_cmd, list_cmd, show_cmd, pair_cmd, kids_cmd,
                region_cmd, kill_cmd, unblock_cmd, sharing_policy_cmd):
        card.add_command(cmd)


@click.command("add")
@click.argument("serial")
@click.option("--shared-address", type=click.IntRange(0, 0xFFFFFF),
              help="Group (u24); default: the next free slot.")
@click.option("--position", type=click.IntRange(0, 255), help="Member position in the group.")
@click.option("--account", "ref", help="Link to this account at once.")
@pass_app
def add_cmd(app: Application, serial: str, shared_address: int | None, position: int | None,
            ref: str | None) -> None:
    """Register card SERIAL (10 digits) in the store."""
    from cas.billing.accounts import link_card
    from cas.store.repo import register_card

    number = parse_serial(serial)
    with transaction(app) as s:
        at = now(s)
        slot = register_card(s, number, shared_address, position, at=at)
        if ref:
            link_card(s, serial=number, account_number=account_number_of(s, ref), at=at)
    data = {"serial": number, "shared_address": slot.shared_address,
            "member_position": slot.member_position, "account": ref}
    show(app, data, lambda: app.print(
        f"card {number:010d}: group {slot.shared_address} position {slot.member_position}"
        + (f", account {ref}" if ref else "")))


@click.command("link")
@click.argument("serial")
@click.argument("ref")
@pass_app
def link_cmd(app: Application, serial: str, ref: str) -> None:
    """Link card SERIAL to the account REF (account or contract number)."""
    from cas.billing.accounts import link_card

    number = parse_serial(serial)
    with transaction(app) as s:
        account = account_number_of(s, ref)
        link_card(s, serial=number, account_number=account, at=now(s))
    show(app, {"serial": number, "account_number": account},
         lambda: app.print(f"card {number:010d} linked to account {account}"))


@click.command("unlink")
@click.argument("serial")
@pass_app
def unlink_cmd(app: Application, serial: str) -> None:
    """Take card SERIAL off its account (and its box pairing)."""
    from cas.billing.accounts import unlink_card

    number = parse_serial(serial)
    with transaction(app) as s:
        unlink_card(s, serial=number, at=now(s))
    show(app, {"serial": number, "account_number": None},
         lambda: app.print(f"card {number:010d} unlinked"))


@click.command("list")
@click.option("--account", "ref", help="Only this account's cards.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@pass_app
def list_cmd(app: Application, ref: str | None, limit: int, offset: int) -> None:
    """Cards with their group slot, account, status and pairing."""
    from cas.billing.accounts import list_cards

    with reader(app) as s:
        views = list_cards(s, account_number=account_number_of(s, ref) if ref else None,
                           limit=limit, offset=offset)
    show(app, views, lambda: app.print(table(
        "Cards", ["serial", "group", "pos", "account", "status", "region", "maturity", "box"],
        [[f"{v.serial:010d}", v.shared_address, v.member_position, v.account_number or "-",
          v.status, v.region, v.maturity_limit,
          f"{v.paired_chip_id:08X}" if v.paired_chip_id is not None else "-"] for v in views])))


@click.command("show")
@click.argument("serial")
@click.option("--at", "at_text", help="Rights at this time (default: the clock's now).")
@pass_app
def show_cmd(app: Application, serial: str, at_text: str | None) -> None:
    """A card and the rights it should hold (the EMM generator's input)."""
    from cas.billing.accounts import card_view
    from cas.billing.state import card_state_at
    from cas.store.repo import from_s, get_card

    number = parse_serial(serial)
    with reader(app) as s:
        at = parse_when(at_text) if at_text else now(s)
        v = card_view(s, get_card(s, number))
        st = card_state_at(s, number, at)
    rights = st.rights
    data: dict[str, Any] = {"card": v, "at": at, "rights": {
        "status": rights.status.name, "region": rights.region,
        "maturity_limit": rights.maturity_limit,
        "entitlements": [{"package_id": e.package_id, "start": from_s(e.start_s),
                          "end": from_s(e.end_s), "valid": e.covers(int(at.timestamp()))}
                         for e in rights.entitlements]}}

    def render() -> None:
        t = app.t
        echo_kv(app, [(t(f"subscriber.label.{k}"), x) for k, x in [
            ("card", f"{v.serial:010d}"), ("group", f"{v.shared_address} / {v.member_position}"),
            ("account", v.account_number or "-"),
            ("card_status", t.word("subscriber.card_status", v.status)),
            ("rights_status", t.word("subscriber.rights_status", rights.status.name)),
            ("region", rights.region), ("maturity_limit", rights.maturity_limit),
            ("paired_box", f"{v.paired_chip_id:08X}" if v.paired_chip_id is not None else "-"),
            ("rights_version", v.rights_version), ("registered", day(v.registered_at)),
            ("as_of", when(at))]])
        app.print(table(t("subscriber.entitlements"),
                        [t(f"subscriber.col.{c}") for c in ("package", "start", "end",
                                                            "valid_now")],
                        [[e["package_id"], when(e["start"]), when(e["end"]),
                          t("subscriber.yes") if e["valid"] else t("subscriber.no")]
                         for e in data["rights"]["entitlements"]]))

    show(app, data, render)


@click.command("pair")
@click.argument("serial")
@click.argument("chip_id")
@pass_app
def pair_cmd(app: Application, serial: str, chip_id: str) -> None:
    """Pair card SERIAL with the box CHIP_ID (8 hex digits)."""
    from cas.billing.accounts import pair_card

    number, chip = parse_serial(serial), parse_chip_id(chip_id)
    with transaction(app) as s:
        pair_card(s, serial=number, chip_id=chip, at=now(s))
    show(app, {"serial": number, "chip_id": f"{chip:08X}"},
         lambda: app.print(f"card {number:010d} paired with box {chip:08X}"))


@click.command("kids")
@click.argument("serial")
@click.argument("state", type=click.Choice(["on", "off"]))
@pass_app
def kids_cmd(app: Application, serial: str, state: str) -> None:
    """Kids profile on/off: hides channels rated above the profile's kids limit."""
    from cas.billing.accounts import set_kids_profile

    number = parse_serial(serial)
    with transaction(app) as s:
        limit = set_kids_profile(s, serial=number, on=state == "on", at=now(s))
    show(app, {"serial": number, "maturity_limit": limit},
         lambda: app.print(f"card {number:010d}: maturity limit {limit}"))


@click.command("region")
@click.argument("serial")
@click.argument("region", type=click.IntRange(0, 0xFFFF))
@pass_app
def region_cmd(app: Application, serial: str, region: int) -> None:
    """Set where the card is installed (region code, e.g. 398 = Kazakhstan)."""
    from cas.billing.accounts import set_card_region

    number = parse_serial(serial)
    with transaction(app) as s:
        set_card_region(s, serial=number, region=region, at=now(s))
    show(app, {"serial": number, "region": region},
         lambda: app.print(f"card {number:010d}: region {region}"))


@click.command("kill")
@click.argument("serial")
@click.option("--yes", is_flag=True, help="Confirm: a killed card never works again.")
@pass_app
def kill_cmd(app: Application, serial: str, yes: bool) -> None:
    """Kill a lost or stolen card for good."""
    from cas.billing.accounts import kill_card

    if not yes:
        raise UsageError("killing a card is final: add --yes").with_id("cli.killing_card_final_add")
    number = parse_serial(serial)
    with transaction(app) as s:
        kill_card(s, serial=number, at=now(s))
    show(app, {"serial": number, "status": "killed"},
         lambda: app.print(f"card {number:010d} killed"))


@click.command("unblock")
@click.argument("serial")
@pass_app
def unblock_cmd(app: Application, serial: str) -> None:
    """Take back a card blocked for sharing (cas diag sharing --block); the next EMM run
    carries it to the card."""
    from cas.billing.cards import unblock_card

    number = parse_serial(serial)
    with transaction(app) as s:
        unblock_card(s, serial=number, at=now(s))
    show(app, {"serial": number, "status": "active"},
         lambda: app.print(f"card {number:010d} unblocked: the next EMM run carries it"))
