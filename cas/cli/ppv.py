"""``cas ppv add|list|book|top-up|import-report``: pay-per-view events and the return path
(docs/ppv.md).  Thin: options → :mod:`cas.billing.ppv`."""

from __future__ import annotations

from pathlib import Path

import click

from cas.cli._subscribers import (
    now,
    parse_serial,
    parse_when,
    reader,
    show,
    table,
    transaction,
)
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.crypto import load_operator_keys
from cas.store.repo import from_s, to_s

_KEYS_OPTION = click.option(
    "--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
    help="Operator key file (default: $CAS_OPERATOR_KEY, then the data dir).")
_EMM_OUT = click.option("--emm-out", type=click.Path(path_type=Path, dir_okay=False),
                        help="Also write the EMM section to this file (it is queued for the "
                             "live carousel either way).")


def register(cli: click.Group) -> None:
    ppv = group(cli, "ppv", "Pay-per-view: events, pre-booking, purses, purchase reports.")
    for cmd in (add_cmd, list_cmd, book_cmd, top_up_cmd, import_report_cmd):
        ppv.add_command(cmd)


@click.command("add")
@click.option("--event", "event_id", required=True, type=click.IntRange(1, 0xFFFFFFFF))
@click.option("--service-id", required=True, type=click.IntRange(1, 0xFFFF),
              help="The channel's service id.")
@click.option("--start", "start_text", required=True, help="ISO date-time (UTC).")
@click.option("--end", "end_text", required=True, help="ISO date-time (UTC).")
@click.option("--price", "price_tokens", required=True, type=click.IntRange(1, 0xFFFF),
              help="Price in tokens (1 token = 1 major unit of the currency).")
@click.option("--title", default="")
@click.option("--prebook-only", is_flag=True, help="Not buyable on the card (no IPPV).")
@pass_app
def add_cmd(app: Application, event_id: int, service_id: int, start_text: str, end_text: str,
            price_tokens: int, title: str, prebook_only: bool) -> None:
    """Add a PPV event to the catalogue; the ECMs of its channel carry it while on air."""
    from cas.billing.ppv import add_event

    start, end = parse_when(start_text), parse_when(end_text)
    with transaction(app) as s:
        row = add_event(s, event_id=event_id, service_id=service_id, start_s=to_s(start),
                        end_s=to_s(end), price_tokens=price_tokens, title=title,
                        impulse=not prebook_only, now_s=to_s(now(s)))
        data = _event_json(row)
    show(app, data, lambda: app.print(
        f"PPV event {event_id} on service {service_id}: {start.isoformat()} – "
        f"{end.isoformat()}, {price_tokens} tokens"))


def _event_json(row: object) -> dict[str, object]:
    from cas.store.models import PpvEvent

    assert isinstance(row, PpvEvent)
    return {"event_id": row.event_id, "service_id": row.service_id, "title": row.title,
            "start": from_s(row.start_s).isoformat(), "end": from_s(row.end_s).isoformat(),
            "price_tokens": row.price_tokens, "impulse": row.impulse}


@click.command("list")
@pass_app
def list_cmd(app: Application) -> None:
    """The PPV event catalogue."""
    from cas.billing.ppv import list_events

    with reader(app) as s:
        data = [_event_json(r) for r in list_events(s)]
    show(app, data, lambda: app.console.print(table(
        "PPV events", ["event", "service", "start", "end", "tokens", "IPPV", "title"],
        [(d["event_id"], d["service_id"], d["start"], d["end"], d["price_tokens"],
          "yes" if d["impulse"] else "pre-book", d["title"]) for d in data])))


@click.command("book")
@click.option("--card", "card_text", required=True, help="Card number.")
@click.option("--event", "event_id", required=True, type=click.IntRange(1, 0xFFFFFFFF))
@_KEYS_OPTION
@_EMM_OUT
@pass_app
def book_cmd(app: Application, card_text: str, event_id: int, keys_path: Path | None,
             emm_out: Path | None) -> None:
    """Pre-book an event for a card: billed now, the right goes to the card by EMM."""
    from cas.billing.ppv import book_event

    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    with transaction(app) as s:
        booking = book_event(s, keys, serial=parse_serial(card_text), event_id=event_id,
                             now_s=to_s(now(s)))
    if emm_out is not None:
        emm_out.write_bytes(booking.emm)
    show(app, {"card": f"{booking.serial:010d}", "event_id": event_id,
               "amount_minor": booking.amount_minor},
         lambda: app.print(f"card {booking.serial:010d} booked event {event_id} "
                           f"({booking.amount_minor} minor units)"))


@click.command("top-up")
@click.option("--card", "card_text", required=True, help="Card number.")
@click.option("--tokens", required=True, type=click.IntRange(0, 0xFFFFFFFF))
@click.option("--credit-limit", "credit_limit", required=True,
              type=click.IntRange(0, 0xFFFFFFFF), help="Tokens the purse may go below zero.")
@_KEYS_OPTION
@_EMM_OUT
@pass_app
def top_up_cmd(app: Application, card_text: str, tokens: int, credit_limit: int,
               keys_path: Path | None, emm_out: Path | None) -> None:
    """Load tokens into a card's IPPV purse and set its credit limit (by EMM)."""
    from cas.billing.ppv import top_up

    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    serial = parse_serial(card_text)
    with transaction(app) as s:
        emm = top_up(s, keys, serial=serial, tokens=tokens, credit_limit_tokens=credit_limit,
                     now_s=to_s(now(s)))
    if emm_out is not None:
        emm_out.write_bytes(emm)
    show(app, {"card": f"{serial:010d}", "tokens": tokens, "credit_limit_tokens": credit_limit},
         lambda: app.print(f"card {serial:010d}: +{tokens} tokens, credit limit "
                           f"{credit_limit} (EMM queued)"))


@click.command("import-report")
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top-up", "top_up_tokens", type=click.IntRange(0, 0xFFFFFFFF), default=0,
              show_default=True, help="Tokens to load with the acknowledgement EMM.")
@_KEYS_OPTION
@_EMM_OUT
@pass_app
def import_report_cmd(app: Application, report: Path, top_up_tokens: int,
                      keys_path: Path | None, emm_out: Path | None) -> None:
    """Verify a card's purchase report (from `stb ppv-report`), bill each purchase once and
    queue the acknowledgement EMM.  A replayed or forged report is refused."""
    from cas.billing.ppv import import_report

    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    data = report.read_bytes()
    with transaction(app) as s:
        res = import_report(s, keys, data, now_s=to_s(now(s)), top_up_tokens=top_up_tokens)
    if emm_out is not None and res.ack_emm is not None:
        emm_out.write_bytes(res.ack_emm)
    show(app, res.to_json(), lambda: app.print(
        f"report {res.report_counter} of card {res.serial:010d}: billed "
        f"{len(res.billed)} purchase(s) ({res.amount_minor} minor units), "
        f"{len(res.already_billed)} already billed"))
