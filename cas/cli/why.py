"""``cas why --card S [--channel N] [--at TIME]``: the head-end's explanation of a lock, for
one channel, or (without ``--channel``) for every channel of the lineup in one table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from cas.cli._subscribers import (
    now,
    parse_chip_id,
    parse_serial,
    parse_when,
    reader,
    refuse_foreign_number,
)
from cas.cli.app import Application, pass_app
from cas.headend.why import Explanation, WhyState, explain
from cas.i18n import Translator

_COLOUR = {WhyState.OPEN: "green", WhyState.OPEN_IF_PIN: "yellow"}



@click.command("why")
@click.option("--card", "card", required=True, help="Smart-card number (10 digits).")
@click.option("--channel", "channel",
              help="Channel number, 'sid:<service id>' or exact name; without it, every "
                   "channel of the lineup in one table.")
@click.option("--at", "at_text", help="Moment to explain (YYYY-MM-DD or ISO); default: the clock.")
@click.option("--chip-id", "chip_text", help="Chip ID of the box the card sits in (hex).")
@click.option("--pin-ok", is_flag=True,
              help="Assume the parental PIN was entered (the answer is then OPEN_IF_PIN for a "
                   "rated channel: the head-end cannot see the card's PIN counter).")
@pass_app
def why_cmd(app: Application, card: str, channel: str | None, at_text: str | None,
            chip_text: str | None, pin_ok: bool) -> None:
    """Explain, from the head-end's records, why CHANNEL is open or locked on CARD (every
    channel without --channel)."""
    serial = parse_serial(card)
    if channel is not None:
        refuse_foreign_number(channel[4:] if channel.lower().startswith("sid:") else channel,
                              "channel")
    chip_id = parse_chip_id(chip_text) if chip_text else None
    with reader(app) as session:
        at = parse_when(at_text) if at_text else now(session)
        if channel is not None:
            result = explain(session, serial, channel, at, chip_id=chip_id, pin_ok=pin_ok)
        else:
            from cas.billing.catalog import all_access_criteria

            results = [explain(session, serial, ch.number, at, chip_id=chip_id, pin_ok=pin_ok)
                       for ch, _criteria in sorted(all_access_criteria(session),
                                                   key=lambda pair: pair[0].number)]
    if channel is None:
        _all_channels(app, serial, at.isoformat(), results)
        return
    data = result.as_dict(app.lang)
    app.output(data, lambda: _one(app, result, data))


def _moment(at_iso: str, t: Translator, english: str) -> str:
    """The moment explained: ``english`` as the head-end prints it (ISO), other languages
    through Babel ("01.03.2026, 00:00 UTC")."""
    if t.lang == "en":
        return english
    from cas.locale import format_datetime

    return format_datetime(datetime.fromisoformat(at_iso), t.lang)


def _one(app: Application, result: Explanation, data: dict[str, Any]) -> None:
    t = app.t
    colour = _COLOUR.get(result.state, "red")
    table = Table(show_header=False, box=None)
    table.add_row(t("why.row.card"), data["card"])
    table.add_row(t("why.row.channel"), f"{result.channel_number} {result.channel_name}")
    table.add_row(t("why.row.at"), _moment(data["at"], t, data["at"]))
    table.add_row(t("why.row.state"), Text(t(f"state.{result.state.value}"), style=colour))
    if result.state is WhyState.LOCKED:
        table.add_row(t("why.row.reason"), f"{result.reason.value} ({result.screen_code})")
        table.add_row(t("why.row.message"), data["message"])
    if not result.is_open:
        table.add_row(t("why.row.cause"), data["cause"])
        table.add_row(t("why.row.fix"), data["fix"])
    for i, fact in enumerate(data["cannot_know"]):
        table.add_row(t("why.row.cannot_know") if i == 0 else "", fact)
    app.console.print(table)


def _all_channels(app: Application, serial: int, at: str, results: list[Explanation]) -> None:
    t: Translator = app.t
    locked = sum(1 for r in results if r.state is WhyState.LOCKED)
    rows = [r.as_dict(t.lang) for r in results]
    data: dict[str, Any] = {"card": f"{serial:010d}", "at": at, "lang": t.lang,
                            "locked": locked, "channels": rows}

    def render() -> None:
        table = Table(title=t("why.all.title", card=data["card"],
                              at=_moment(at, t, at[:19].replace("T", " ")),
                              n=len(results), locked=locked), title_justify="left")
        for key in ("channel", "name", "state", "code"):
            table.add_column(t(f"why.all.{key}"), no_wrap=True)
        table.add_column(t("why.all.cause"), ratio=1)
        table.add_column(t("why.all.fix"), ratio=1)
        for r, d in zip(results, rows, strict=True):
            table.add_row(str(r.channel_number), r.channel_name,
                          Text(t(f"state.{r.state.value}"), style=_COLOUR.get(r.state, "red")),
                          r.screen_code if r.state is WhyState.LOCKED else "",
                          "" if r.is_open else d["cause"], "" if r.is_open else d["fix"])
        app.console.print(table)
        # What the head-end cannot know is the same for every channel but the PIN counter.
        facts: list[str] = []
        for d in rows:
            facts.extend(f for f in d["cannot_know"] if f not in facts)
        if facts:
            app.console.print(t("why.all.cannot_know") + ":", style="dim")
            for fact in facts:
                app.console.print(f"  • {fact}", style="dim", markup=False)

    app.output(data, render)


def register(cli: click.Group) -> None:
    cli.add_command(why_cmd)
