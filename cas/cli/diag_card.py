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
                              f"{', '.join(states) or 'none'})").with_id(
                                  "no_card_in_readers", readers=', '.join(states) or '-')
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
    t = app.t
    data = report.to_json()
    atr = data["atr"]
    head = Table(title=t("diag_card.title", serial=data["serial"], reader=report.reader),
                 show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    atr_text = atr["hex"]
    if report.atr is not None:
        atr_text += "\n" + t("diag_card.atr", convention=report.atr.convention,
                             protocols="/".join(atr["protocols"]),
                             name=atr["card_name"] or "?", os=atr["card_os_version"] or "?")
        if report.atr.tck_ok not in (True, None):
            atr_text += ", " + t("diag_card.tck_wrong")
    status_style = "green" if data["status"] == "ACTIVE" else "red"
    pairing = data["pairing"]
    rows = [
        ("ATR", atr_text),
        (t("diag_card.serial"), data["serial"]),
        (t("diag_card.group"), f"{data['shared_address']} / {data['member_position']}"),
        (t("diag_card.ca_system"), f"{data['ca_system_id']} / {data['operator_id']}"),
        (t("diag_card.status"), f"[{status_style}]{data['status']}[/]"),
        (t("diag_card.region"), str(data["region"])),
        (t("diag_card.maturity"), t("diag_card.none") if data["maturity_limit"] == 0xFF
         else str(data["maturity_limit"])),
        ("PIN", t("diag_card.pin_verified") if data["pin_verified"]
         else t("diag_card.pin_tries", n=data["pin_tries_left"], max=data["pin_tries_max"])),
        (t("diag_card.pairing"), t("diag_card.paired", chip=pairing["chip_id"])
         if pairing["paired"] else f"[red]{t('diag_card.not_paired')}[/]"),
        (t("diag_card.emm_sequence"), t("diag_card.emm_seq", **data["emm_sequence"])),
        (t("diag_card.clock"), data["card_clock"] or t("diag_card.no_ecm_seen")),
        (t("diag_card.ecm_keys"), ", ".join(map(str, data["ecm_key_indexes"]))
         or t("diag_card.none")),
        (t("diag_card.osd"), data["osd_message"] or "-"),
    ]
    sharing = data["sharing"]
    if sharing is not None:
        text = t("diag_card.sharing_policy", policy=sharing["policy"], tuners=sharing["tuners"],
                 max=sharing["max_requests"], window=sharing["window_s"])
        if sharing["flagged"]:
            rules = ", ".join(t(f"sharing.rule.{r}") for r in sharing["rules"])
            text += "\n[bold red]" + t(
                "diag_card.sharing_flagged", rules=rules, at=sharing["flag_window"],
                services=sharing["flag_services"], requests=sharing["flag_requests"],
                trips=sharing["flag_trips"]) + "[/]"
        rows.append((t("diag_card.sharing"), text))
    for field, value in rows:
        head.add_row(field, value)
    app.print(head)
    ents = Table(title=t("diag_card.entitlements", n=len(data["entitlements"]),
                         at=data["checked_at"]))
    for col in ("package", "start", "end", "state"):
        ents.add_column(t(f"diag_card.col.{col}"))
    for e in data["entitlements"]:
        style = {"expired": "red", "not yet valid": "yellow"}.get(e["state"], "green")
        state = t("diag_card.state." + e["state"].replace(" ", "_"))
        ents.add_row(str(e["package_id"]), e["start"], e["end"], f"[{style}]{state}[/]")
    app.print(ents)
