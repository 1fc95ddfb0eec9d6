"""The support ticket: a visit's findings plus the account's verification data, in one file.

The seed operators' support desks ask for the same things before they take a ticket (seed
000, TV+: "your verification number, the city, the type and model of the device, a
description of the error, the date and time"); the ticket carries them next to everything
the visit found — verdicts and causes, card, box, head-end records, stream probe — so the
second line of support does not have to ask again.

``FILE.json``: one JSON document.  ``FILE.html``: one self-contained page (inline stylesheet,
no script, no external resource) with the same content and the full JSON at the end.
``FILE.txt``: the same as plain text (the verification data, then what ``cas diag visit``
prints).  HTML and text speak the ticket's language (``--lang``: headings, causes, fixes);
the JSON carries ``lang`` and the lock messages in both languages.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cas.billing.statement import ledger_text
from cas.diag.render import moment_text, state_word, time_base_text
from cas.diag.visit import VisitReport
from cas.errors import UsageError
from cas.i18n import Translator


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """What the support desk asks the subscriber (seed 000)."""

    account_number: str | None
    city: str | None
    device_type: str
    device_model: str | None
    complaint: str | None
    at: datetime
    card_serial: str | None
    chip_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"account_number": self.account_number, "city": self.city,
                "device_type": self.device_type, "device_model": self.device_model,
                "complaint": self.complaint, "time": self.at.astimezone(UTC).isoformat(),
                "card_serial": self.card_serial, "chip_id": self.chip_id}


def verification_for(visit: VisitReport, *, complaint: str | None = None,
                     city: str | None = None, account: str | None = None,
                     device: str | None = None) -> Verification:
    """The ticket's header: from the visit (head-end account, box model) unless given."""
    he = visit.headend
    box = visit.box
    model = device or (f"{box.chip.vendor} {box.chip.model}" if box is not None else None)
    return Verification(
        account_number=account or (he.account_number if he is not None else None),
        city=city, device_type="set-top box" if box is not None or device else "smart card",
        device_model=model, complaint=complaint, at=visit.at,
        card_serial=None if visit.serial is None else f"{visit.serial:010d}",
        chip_id=None if box is None else f"{box.chip_id:08X}")


def ticket(visit: VisitReport, verification: Verification, lang: str = "en") -> dict[str, Any]:
    return {**visit.to_json(lang), "kind": "support_ticket",
            "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "verification": verification.to_json()}


def write_report(path: Path, visit: VisitReport, verification: Verification,
                 lang: str = "en") -> str:
    """Write the ticket as JSON, HTML or text (by ``path``'s extension) in ``lang``;
    returns the format."""
    suffix = path.suffix.lower()
    data = ticket(visit, verification, lang)
    if suffix == ".json":
        text, fmt = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "json"
    elif suffix in (".html", ".htm"):
        text, fmt = render_html(data, Translator(lang)), "html"
    elif suffix == ".txt":
        text, fmt = render_text(data, Translator(lang)), "text"
    else:
        raise UsageError(f"{path}: the report is FILE.json, FILE.html or FILE.txt").with_id(
            "report_format", path=str(path))
    _write_atomic(path, text)
    return fmt


def _write_atomic(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}").with_id(
            "diag.cannot_write", path=path, strerror=exc.strerror) from exc


# --- HTML -------------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}
.OPEN{color:#0a7d28;font-weight:bold}.LOCKED{color:#c0161d;font-weight:bold}
.RISK{color:#b36b00;font-weight:bold}.error{color:#c0161d}.warning{color:#b36b00}
.fix{color:#155e9c}.dim{color:#777}ol li{margin:.3em 0}pre{background:#f7f7f7;padding:1em;
overflow:auto;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None or value == "" else str(value))


def _kv(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                               for k, v in rows) + "</table>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    """``rows`` hold HTML (already escaped)."""
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def _verification_rows(v: dict[str, Any], t: Translator) -> list[tuple[str, Any]]:
    device = {"set-top box": t("ticket.set_top_box"),
              "smart card": t("ticket.smart_card_device")}.get(v["device_type"], v["device_type"])
    return [(t("ticket.account"), v["account_number"]), (t("ticket.city"), v["city"]),
            (t("ticket.device_type"), device), (t("ticket.device_model"), v["device_model"]),
            (t("ticket.complaint"), v["complaint"]),
            (t("ticket.time"), v["time"] and moment_text(v["time"], t, v["time"])),
            (t("ticket.smart_card"), v["card_serial"]), (t("ticket.chip_id"), v["chip_id"])]


def render_text(data: dict[str, Any], t: Translator) -> str:
    """The ticket as plain text: the verification data, then the visit as people read it."""
    from rich.console import Console

    from cas.diag.render import render_visit

    v = data["verification"]
    console = Console(record=True, width=120, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    try:
        console.print(t("ticket.heading", card=v["card_serial"] or "-",
                        account=v["account_number"] or "-"), markup=False)
        console.print("")
        console.print(t("ticket.verification"), markup=False)
        for key, value in _verification_rows(v, t):
            console.print(f"  {key}: {'-' if value in (None, '') else value}", markup=False)
        console.print("")
        render_visit(data, console, t)
        return console.export_text()
    finally:
        console.file.close()


def render_html(data: dict[str, Any], t: Translator | None = None) -> str:
    t = t or Translator(data.get("lang", "en"))
    v = data["verification"]
    card = data["card"]
    box = data["box"]
    he = data["headend"]
    stream = data["stream"]
    out: list[str] = [
        f"<!DOCTYPE html><html lang='{t.lang}'><head><meta charset='utf-8'>",
        f"<title>{_e(t('ticket.title', card=v['card_serial'] or '-'))}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(t('ticket.heading', card=v['card_serial'] or '-', account=v['account_number'] or '-'))}</h1>",
        f"<h2>{_e(t('ticket.verification'))}</h2>",
        _kv(_verification_rows(v, t)),
        f"<h2>{_e(t('ticket.causes'))}</h2>",
    ]
    roots = data["root_causes"]
    if roots:
        out.append("<ol>")
        for r in roots:
            cls = "error" if r["tier"] <= 5 else "warning"
            where = (t("visit.channels_where", n=len(r["channels"]),
                       list=", ".join(map(str, r["channels"]))) if r["channels"]
                     else t("visit.stream_where"))
            out.append(f"<li><span class='{cls}'>{_e(r['summary'])}</span> "
                       f"<span class='dim'>({_e(where)})</span><br>"
                       f"<span class='fix'>{_e(t('visit.fix', fix=r['fix']))}</span></li>")
        out.append("</ol>")
    else:
        out.append(f"<p class='OPEN'>{_e(t('ticket.all_open'))}</p>")
    out.append(f"<h2>{_e(t('ticket.channels'))}</h2>")
    other = "message_ru" if t.lang != "ru" else "message"
    own = "message_ru" if t.lang == "ru" else "message"
    rows = []
    for ch in data["verdicts"]:
        state = "RISK" if ch["at_risk"] else ch["state"]
        label = t("state.at_risk") if ch["at_risk"] else t(f"state.{ch['state']}")
        evidence = "<br>".join(_e(e) for f in ch["findings"][:1] for e in f["evidence"])
        second = ("<br><span class='dim'>" + _e(ch[other]) + "</span>") if t.lang != "ru" else ""
        rows.append([_e(ch["channel"]), _e(ch["name"]),
                     f"<span class='{state}'>{_e(label)}</span>",
                     _e(ch["screen_code"]), _e(ch[own]) + second, _e(ch["headend_reason"]),
                     _e(ch["cause"]), f"<span class='fix'>{_e(ch['fix'])}</span>",
                     f"<span class='dim'>{evidence}</span>"])
    out.append(_table([t("visit.col.ch"), t("visit.col.name"), t("visit.col.state"),
                       t("visit.col.code"), t("ticket.on_screen"), t("visit.col.headend"),
                       t("visit.col.cause"), t("ticket.fix"), t("ticket.evidence")], rows))
    out.append(f"<h2>{_e(t('ticket.card_section'))}</h2>")
    if "serial" in card:
        out.append(_kv([(t("ticket.serial"), card["serial"]), (t("ticket.status"), card["status"]),
                        (t("ticket.group"), f"{card['shared_address']} / "
                                            f"{card['member_position']}"),
                        (t("ticket.region"), card["region"]),
                        (t("ticket.maturity"), card["maturity_limit"]),
                        (t("ticket.paired"), card["pairing"]["chip_id"]),
                        (t("ticket.emm_sequence"),
                         "/".join(str(card["emm_sequence"][k])
                                  for k in ("unique", "shared", "global"))),
                        (t("ticket.card_clock"), card["card_clock"]),
                        (t("ticket.reader"), card["reader"])]))
        ents = card["entitlements"]
        if ents:
            out.append(_table([t("ticket.package"), t("ticket.start"), t("ticket.end"),
                               t("ticket.status")],
                              [[_e(e["package_id"]), _e(e["start"]), _e(e["end"]),
                                _e(t.word("ticket.ent_state", e["state"].replace(" ", "_")))]
                               for e in ents]))
    else:
        out.append(f"<p class='error'>{_e(card.get('error') or t('ticket.no_card'))}</p>")
    if box is not None:
        out.append(f"<h2>{_e(t('ticket.box_section'))}</h2>")
        out.append(_kv([(t("ticket.chip_id"), box["chip_id"]),
                        (t("ticket.vendor_model"), f"{box['vendor']} {box['model']}"),
                        (t("ticket.firmware"), box["firmware_version"]),
                        (t("ticket.manufactured"), box["manufactured"]),
                        (t("ticket.boots"), box["boot_count"]),
                        (t("ticket.last_channel"), box["last_channel"]),
                        (t("ticket.pairing_nvram"), None if box["pairing"] is None
                         else f"{t('why.row.card')} {box['pairing']['card_serial']}"),
                        (t("ticket.last_emm"), None if box["last_emm"] is None
                         else f"{box['last_emm']['at']} "
                              f"{t.word('diag_box.emm_result', box['last_emm']['result'])}"),
                        (t("ticket.last_ecm"), None if box["last_ecm"] is None
                         else f"{box['last_ecm']['at']} {t('why.row.channel')} {box['last_ecm']['channel']} "
                              f"{box['last_ecm']['reason']}"),
                        (t("ticket.defects"), ", ".join(f"{k} {n}"
                                                        for k, n in box["trouble"].items()))]))
    if he is not None:
        out.append(f"<h2>{_e(t('ticket.headend_section'))}</h2>")
        out.append(_kv([(t("ticket.account"), he["account"]), (t("ticket.holder"), he["holder"]),
                        (t("ticket.kind"), he["account_kind"] and
                         t.word("ticket.account_kind", he["account_kind"])),
                        (t("ticket.balance"), he["balance"]),
                        (t("ticket.blocked_since"), he["blocked_since"]),
                        (t("ticket.suspended"), None if not he["suspended_from"] else
                         f"{he['suspended_from']} .. {he['suspended_until']}"),
                        (t("ticket.paired"), he["paired_chip_id"]),
                        (t("ticket.emm_sequence"), he["emm_issued_seq"]),
                        (t("ticket.rights_changed"), he["rights_changed"])]))
        if he["subscriptions"]:
            out.append(_table([t("ticket.package"), t("ticket.status"), t("ticket.start"),
                               t("ticket.paid_until"), t("ticket.renewal"), t("ticket.price")],
                              [[_e(s["package"]), _e(t.word("ticket.sub_status", s["status"])),
                                _e(s["start"]),
                                _e(s["paid_until"]),
                                _e(t("ticket.on") if s["auto_renew"] else t("ticket.off")),
                                _e(s["price"])] for s in he["subscriptions"]]))
        if he["ledger"]:
            out.append(f"<p>{_e(t('ticket.ledger'))}</p>")
            out.append(_table([t("ticket.date"), t("ticket.kind"), t("ticket.amount"),
                               t("ticket.balance_after"), t("ticket.description")],
                              [[_e(x["at"]), _e(t.word("ticket.ledger_kind", x["kind"])),
                                _e(x["amount"]), _e(x["balance_after"]),
                                _e(ledger_text(x["description"], t))]
                               for x in he["ledger"]]))
    out.append(f"<h2>{_e(t('ticket.stream_section'))}</h2>")
    out.append("<p>" + _e(t("ticket.stream_line", source=stream["source"], n=stream["packets"],
                            packets=t.number(stream["packets"]),
                            duration=f"{stream['duration_s']:.1f}",
                            mbps=f"{stream['bitrate_bps'] / 1e6:.2f}",
                            time_base=time_base_text(stream["time_base"], t))) + "</p>")
    out.append(_table(["SID", t("visit.col.name"), t("visit.col.state"), t("ticket.ecm_pids")],
                      [[_e(s["service_id"]), _e(s["name"]), _e(state_word(s["state"], t)),
                        _e(", ".join(str(c["ca_pid"]) for c in s["ca_descriptors"]))]
                       for s in stream["services"]]))
    if stream["alarms"]:
        out.append(_table([t("visit.col.severity"), t("visit.col.alarm"), t("visit.col.message")],
                          [[f"<span class='{a['severity']}'>{_e(t('alarm.severity.' + a['severity']))}</span>",
                            _e(a["code"]), _e(a["message"])] for a in stream["alarms"]]))
    else:
        out.append(f"<p class='OPEN'>{_e(t('ticket.no_alarms'))}</p>")
    for note in data["notes"]:
        out.append(f"<p class='warning'>{_e(t('visit.note', note=note))}</p>")
    out.append(f"<h2>{_e(t('ticket.data'))}</h2><details><summary>JSON</summary><pre>")
    out.append(html.escape(json.dumps(data, indent=2, ensure_ascii=False, default=str)))
    out.append("</pre></details></body></html>\n")
    return "\n".join(out)
