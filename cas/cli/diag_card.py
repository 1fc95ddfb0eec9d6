"""``cas diag card``: read a card through PC/SC and say what it holds.

ATR decoded, serial, status, region, maturity, PIN counter, pairing, EMM sequence counters,
the card's clock, and the entitlement table with start/end, expired ones flagged — as a
table, or ``--json``.  ``--trace`` prints every APDU exchanged (PINs masked) on stderr.
"""

from __future__ import annotations

import time

import click
from rich.table import Table

from cas.card.atr import is_our_card
from cas.card.client import CardClient
from cas.card.diag import CardReport, read_report
from cas.card.transport import ApduTracer
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import NoCardError


def register(cli: click.Group) -> None:
    diag = group(cli, "diag", "Field diagnostics: cards, boxes, streams.")
    diag.add_command(diag_card_cmd)


def _pick_reader(reader: str | None, wait_s: float) -> str:
    """The reader to use: ``reader`` if given, else the first one holding one of our cards."""
    from cas.card import pcsc

    if reader is not None:
        return pcsc.wait_for_card(reader, timeout_s=wait_s)
    deadline = time.monotonic() + wait_s
    while True:
        states = pcsc.card_states()
        ours = [name for name, atr in states.items() if atr and is_our_card(atr)]
        if ours:
            return ours[0]
        if time.monotonic() >= deadline:
            any_card = [name for name, atr in states.items() if atr]
            if any_card:
                return any_card[0]
            raise NoCardError("no card in any reader (readers: "
                              f"{', '.join(states) or 'none'})")
        time.sleep(0.05)


@click.command("card")
@click.option("--reader", help="PC/SC reader name (or part of it); default: the first with our card.")
@click.option("--json", "json_flag", is_flag=True, help="Machine-readable JSON output.")
@click.option("--trace", is_flag=True, help="Print every APDU exchanged (on stderr).")
@click.option("--wait", "wait_s", type=float, default=3.0, show_default=True,
              help="Seconds to wait for a card.")
@pass_app
def diag_card_cmd(app: Application, reader: str | None, json_flag: bool, trace: bool,
                  wait_s: float) -> None:
    """Read a card over PC/SC: ATR, identity, status, pairing, counters, entitlements."""
    from cas.card.pcsc import PcscTransport

    if json_flag:
        app.json_mode = True
    name = _pick_reader(reader, wait_s)
    with PcscTransport(name) as transport:
        if trace:
            transport.add_observer(ApduTracer(
                lambda line: app.err_console.print(line, markup=False, highlight=False)))
        client = CardClient(transport)
        report = read_report(client, reader=transport.reader, now_s=int(time.time()))
    app.output(report.to_json(), lambda: _render(app, report))


def _render(app: Application, report: CardReport) -> None:
    data = report.to_json()
    atr = data["atr"]
    head = Table(title=f"card {data['serial']} in {report.reader}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    atr_text = atr["hex"]
    if report.atr is not None:
        atr_text += (f"\n{report.atr.convention} convention, "
                     f"{'/'.join(atr['protocols'])}, card {atr['card_name'] or '?'} "
                     f"OS {atr['card_os_version'] or '?'}"
                     + ("" if report.atr.tck_ok in (True, None) else ", TCK WRONG"))
    status_style = "green" if data["status"] == "ACTIVE" else "red"
    pairing = data["pairing"]
    rows = [
        ("ATR", atr_text),
        ("serial", data["serial"]),
        ("group / position", f"{data['shared_address']} / {data['member_position']}"),
        ("CA system / operator", f"{data['ca_system_id']} / {data['operator_id']}"),
        ("status", f"[{status_style}]{data['status']}[/]"),
        ("region", str(data["region"])),
        ("maturity limit", "none" if data["maturity_limit"] == 0xFF
         else str(data["maturity_limit"])),
        ("PIN", "verified in this session" if data["pin_verified"]
         else f"{data['pin_tries_left']} of {data['pin_tries_max']} tries left"),
        ("pairing", f"paired with chip {pairing['chip_id']}" if pairing["paired"]
         else "[red]not paired[/]"),
        ("EMM sequence", "unique {unique}, shared {shared}, global {global}".format(
            **data["emm_sequence"])),
        ("card clock", data["card_clock"] or "never saw an ECM"),
        ("ECM keys", ", ".join(map(str, data["ecm_key_indexes"])) or "none"),
        ("OSD message", data["osd_message"] or "-"),
    ]
    for field, value in rows:
        head.add_row(field, value)
    app.print(head)
    ents = Table(title=f"entitlements ({len(data['entitlements'])}) at {data['checked_at']}")
    for col in ("package", "start", "end", "state"):
        ents.add_column(col)
    for e in data["entitlements"]:
        style = {"expired": "red", "not yet valid": "yellow"}.get(e["state"], "green")
        ents.add_row(str(e["package_id"]), e["start"], e["end"], f"[{style}]{e['state']}[/]")
    app.print(ents)
