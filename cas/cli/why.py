"""``cas why --card S --channel N [--at TIME]``: the head-end's explanation of a lock."""

from __future__ import annotations

import click
from rich.table import Table

from cas.cli._subscribers import (
    now,
    parse_chip_id,
    parse_serial,
    parse_when,
    reader,
    refuse_foreign_number,
)
from cas.cli.app import Application, pass_app
from cas.headend.why import WhyState, explain


@click.command("why")
@click.option("--card", "card", required=True, help="Smart-card number (10 digits).")
@click.option("--channel", "channel", required=True,
              help="Channel number, 'sid:<service id>' or exact name.")
@click.option("--at", "at_text", help="Moment to explain (YYYY-MM-DD or ISO); default: the clock.")
@click.option("--chip-id", "chip_text", help="Chip ID of the box the card sits in (hex).")
@click.option("--pin-ok", is_flag=True,
              help="Assume the parental PIN was entered (the answer is then OPEN_IF_PIN for a "
                   "rated channel: the head-end cannot see the card's PIN counter).")
@pass_app
def why_cmd(app: Application, card: str, channel: str, at_text: str | None,
            chip_text: str | None, pin_ok: bool) -> None:
    """Explain, from the head-end's records, why CHANNEL is open or locked on CARD."""
    serial = parse_serial(card)
    refuse_foreign_number(channel[4:] if channel.lower().startswith("sid:") else channel,
                          "channel")
    chip_id = parse_chip_id(chip_text) if chip_text else None
    with reader(app) as session:
        at = parse_when(at_text) if at_text else now(session)
        result = explain(session, serial, channel, at, chip_id=chip_id, pin_ok=pin_ok)
    data = result.as_dict()

    def render() -> None:
        colour = {WhyState.OPEN: "green", WhyState.OPEN_IF_PIN: "yellow"}.get(result.state, "red")
        t = Table(show_header=False, box=None)
        t.add_row("card", data["card"])
        t.add_row("channel", f"{result.channel_number} {result.channel_name}")
        t.add_row("at", data["at"])
        t.add_row("state", f"[{colour}]{data['state']}[/{colour}]")
        if result.state is WhyState.LOCKED:
            t.add_row("reason", f"{result.reason.value} ({result.screen_code})")
            t.add_row("message", result.message)
        if not result.is_open:
            t.add_row("cause", result.cause)
            t.add_row("fix", result.fix)
        for i, fact in enumerate(result.cannot_know):
            t.add_row("cannot know" if i == 0 else "", fact)
        app.console.print(t)

    app.output(data, render)


def register(cli: click.Group) -> None:
    cli.add_command(why_cmd)
