"""``cas box import|list|link|show``: set-top boxes, from the chipset vendor's Chip ID file."""

from __future__ import annotations

from pathlib import Path

import click

from cas.cli._subscribers import (
    account_number_of,
    echo_kv,
    now,
    parse_chip_id,
    parse_serial,
    reader,
    show,
    table,
    transaction,
    when,
)
from cas.cli.app import Application, pass_app
from cas.cli.common import group


def register(cli: click.Group) -> None:
    box = group(cli, "box", "Set-top boxes (Chip IDs from the chipset vendor).")
    for cmd in (import_cmd, list_cmd, link_cmd, show_cmd):
        box.add_command(cmd)


@click.command("import")
@click.argument("chipfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_app
def import_cmd(app: Application, chipfile: Path) -> None:
    """Import the boxes of a vendor's Chip ID batch file (checked: header, SHA-256, CRCs).

    Re-importing a file is harmless; a known Chip ID with different data is refused and the
    whole file is rejected."""
    from cas.billing.accounts import import_boxes
    from cas.formats.chipid import parse_chip_batch

    batch = parse_chip_batch(chipfile.read_bytes())
    with transaction(app) as s:
        rep = import_boxes(s, batch.records, at=now(s), batch=f"{batch.issuer}:{chipfile.name}")
    data = {"file": str(chipfile), "issuer": batch.issuer, "records": len(batch.records),
            "added": rep.added, "unchanged": rep.unchanged}
    show(app, data, lambda: app.print(
        f"{chipfile.name} ({batch.issuer}): {len(batch.records)} Chip IDs, {rep.added} new, "
        f"{rep.unchanged} already known"))


@click.command("list")
@click.option("--account", "ref", help="Only this account's boxes.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@pass_app
def list_cmd(app: Application, ref: str | None, limit: int, offset: int) -> None:
    """Boxes with vendor, model, firmware, account and paired card."""
    from cas.billing.accounts import list_boxes

    with reader(app) as s:
        views = list_boxes(s, account_number=account_number_of(s, ref) if ref else None,
                           limit=limit, offset=offset)
    show(app, views, lambda: app.print(table(
        "Boxes", ["chip id", "vendor", "model", "firmware", "made", "account", "card"],
        [[f"{v.chip_id:08X}", v.vendor, v.model, v.firmware_version, v.manufactured,
          v.account_number or "-",
          f"{v.paired_card:010d}" if v.paired_card is not None else "-"] for v in views])))


@click.command("link")
@click.argument("chip_id")
@click.argument("ref")
@click.option("--card", help="Also pair this card with the box.")
@pass_app
def link_cmd(app: Application, chip_id: str, ref: str, card: str | None) -> None:
    """Give box CHIP_ID to the account REF (and pair it with --card)."""
    from cas.billing.accounts import link_box, pair_card

    chip = parse_chip_id(chip_id)
    serial = parse_serial(card) if card else None
    with transaction(app) as s:
        number = account_number_of(s, ref)
        at = now(s)
        link_box(s, chip_id=chip, account_number=number, at=at)
        if serial is not None:
            pair_card(s, serial=serial, chip_id=chip, at=at)
    show(app, {"chip_id": f"{chip:08X}", "account_number": number,
               "paired_card": serial},
         lambda: app.print(f"box {chip:08X} linked to account {number}"
                           + (f", paired with card {serial:010d}" if serial else "")))


@click.command("show")
@click.argument("chip_id")
@pass_app
def show_cmd(app: Application, chip_id: str) -> None:
    """One box."""
    from cas.billing.accounts import get_box

    chip = parse_chip_id(chip_id)
    with reader(app) as s:
        v = get_box(s, chip)
    show(app, v, lambda: echo_kv(app, [
        ("chip id", f"{v.chip_id:08X}"), ("vendor", v.vendor), ("model", v.model),
        ("firmware", v.firmware_version), ("manufactured", v.manufactured),
        ("account", v.account_number or "-"),
        ("paired card", f"{v.paired_card:010d}" if v.paired_card is not None else "-"),
        ("imported", when(v.imported_at))]))
