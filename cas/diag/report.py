"""The support ticket: a visit's findings plus the account's verification data, in one file.

The seed operators' support desks ask for the same things before they take a ticket (seed
000, TV+: "your verification number, the city, the type and model of the device, a
description of the error, the date and time"); the ticket carries them next to everything
the visit found — verdicts and causes, card, box, head-end records, stream probe — so the
second line of support does not have to ask again.

``FILE.json``: one JSON document.  ``FILE.html``: one self-contained page (inline stylesheet,
no script, no external resource) with the same content and the full JSON at the end.
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

from cas.diag.visit import VisitReport
from cas.errors import UsageError


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


def ticket(visit: VisitReport, verification: Verification) -> dict[str, Any]:
    return {**visit.to_json(), "kind": "support_ticket",
            "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "verification": verification.to_json()}


def write_report(path: Path, visit: VisitReport, verification: Verification) -> str:
    """Write the ticket as JSON or HTML (by ``path``'s extension); returns the format."""
    suffix = path.suffix.lower()
    data = ticket(visit, verification)
    if suffix == ".json":
        text, fmt = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "json"
    elif suffix in (".html", ".htm"):
        text, fmt = render_html(data), "html"
    else:
        raise UsageError(f"{path}: the report is FILE.json or FILE.html")
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
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


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


def render_html(data: dict[str, Any]) -> str:
    v = data["verification"]
    card = data["card"]
    box = data["box"]
    he = data["headend"]
    stream = data["stream"]
    out: list[str] = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Support ticket {_e(v['card_serial'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Support ticket — card {_e(v['card_serial'])}, account "
        f"{_e(v['account_number'])}</h1>",
        "<h2>Verification data</h2>",
        _kv([("account (verification number)", v["account_number"]), ("city", v["city"]),
             ("device type", v["device_type"]), ("device model", v["device_model"]),
             ("error description", v["complaint"]), ("date and time (UTC)", v["time"]),
             ("smart card", v["card_serial"]), ("Chip ID", v["chip_id"])]),
        "<h2>Causes, most likely first</h2>",
    ]
    roots = data["root_causes"]
    if roots:
        out.append("<ol>")
        for r in roots:
            cls = "error" if r["tier"] <= 5 else "warning"
            where = (f"channels {', '.join(map(str, r['channels']))}" if r["channels"]
                     else "stream")
            out.append(f"<li><span class='{cls}'>{_e(r['summary'])}</span> "
                       f"<span class='dim'>({_e(where)})</span><br>"
                       f"<span class='fix'>fix: {_e(r['fix'])}</span></li>")
        out.append("</ol>")
    else:
        out.append("<p class='OPEN'>Every channel open; nothing wrong found.</p>")
    out.append("<h2>Channels</h2>")
    rows = []
    for ch in data["verdicts"]:
        state = "RISK" if ch["at_risk"] else ch["state"]
        label = "OPEN (at risk)" if ch["at_risk"] else ch["state"]
        evidence = "<br>".join(_e(e) for f in ch["findings"][:1] for e in f["evidence"])
        rows.append([_e(ch["channel"]), _e(ch["name"]), f"<span class='{state}'>{label}</span>",
                     _e(ch["screen_code"]), _e(ch["message"]) + "<br><span class='dim'>"
                     + _e(ch["message_ru"]) + "</span>", _e(ch["headend_reason"]),
                     _e(ch["cause"]), f"<span class='fix'>{_e(ch['fix'])}</span>",
                     f"<span class='dim'>{evidence}</span>"])
    out.append(_table(["ch", "name", "state", "code", "on screen", "head-end", "cause", "fix",
                       "evidence"], rows))
    out.append("<h2>Smart card</h2>")
    if "serial" in card:
        out.append(_kv([("serial", card["serial"]), ("status", card["status"]),
                        ("group / position", f"{card['shared_address']} / "
                                             f"{card['member_position']}"),
                        ("region", card["region"]), ("maturity limit", card["maturity_limit"]),
                        ("paired with", card["pairing"]["chip_id"]),
                        ("EMM sequence (unique/shared/global)",
                         "/".join(str(card["emm_sequence"][k])
                                  for k in ("unique", "shared", "global"))),
                        ("card clock", card["card_clock"]), ("reader", card["reader"])]))
        ents = card["entitlements"]
        if ents:
            out.append(_table(["package", "start", "end", "state"],
                              [[_e(e["package_id"]), _e(e["start"]), _e(e["end"]),
                                _e(e["state"])] for e in ents]))
    else:
        out.append(f"<p class='error'>{_e(card.get('error') or 'no card')}</p>")
    if box is not None:
        out.append("<h2>Set-top box</h2>")
        out.append(_kv([("Chip ID", box["chip_id"]), ("vendor / model",
                                                      f"{box['vendor']} {box['model']}"),
                        ("firmware", box["firmware_version"]),
                        ("manufactured", box["manufactured"]), ("boots", box["boot_count"]),
                        ("last channel", box["last_channel"]),
                        ("pairing (NVRAM)", None if box["pairing"] is None
                         else f"card {box['pairing']['card_serial']}"),
                        ("last EMM", None if box["last_emm"] is None
                         else f"{box['last_emm']['at']} {box['last_emm']['result']}"),
                        ("last ECM", None if box["last_ecm"] is None
                         else f"{box['last_ecm']['at']} channel {box['last_ecm']['channel']} "
                              f"{box['last_ecm']['reason']}"),
                        ("defect counters", ", ".join(f"{k} {n}"
                                                      for k, n in box["trouble"].items()))]))
    if he is not None:
        out.append("<h2>Head-end records</h2>")
        out.append(_kv([("account", he["account"]), ("holder", he["holder"]),
                        ("kind", he["account_kind"]), ("balance", he["balance"]),
                        ("blocked since", he["blocked_since"]),
                        ("suspended", None if not he["suspended_from"] else
                         f"{he['suspended_from']} .. {he['suspended_until']}"),
                        ("card paired with", he["paired_chip_id"]),
                        ("EMM sequence issued", he["emm_issued_seq"]),
                        ("rights changed", he["rights_changed"])]))
        if he["subscriptions"]:
            out.append(_table(["package", "status", "start", "paid until", "renewal", "price"],
                              [[_e(s["package"]), _e(s["status"]), _e(s["start"]),
                                _e(s["paid_until"]), "on" if s["auto_renew"] else "off",
                                _e(s["price"])] for s in he["subscriptions"]]))
        if he["ledger"]:
            out.append("<p>Last ledger entries</p>")
            out.append(_table(["date", "kind", "amount", "balance after", "description"],
                              [[_e(x["at"]), _e(x["kind"]), _e(x["amount"]),
                                _e(x["balance_after"]), _e(x["description"])]
                               for x in he["ledger"]]))
    out.append("<h2>Stream</h2>")
    out.append(f"<p>{_e(stream['source'])}: {stream['packets']:,} packets, "
               f"{stream['duration_s']:.1f} s, {stream['bitrate_bps'] / 1e6:.2f} Mbit/s; "
               f"{_e(stream['time_base'])}</p>")
    out.append(_table(["SID", "name", "state", "ECM PIDs"],
                      [[_e(s["service_id"]), _e(s["name"]), _e(s["state"]),
                        _e(", ".join(str(c["ca_pid"]) for c in s["ca_descriptors"]))]
                       for s in stream["services"]]))
    if stream["alarms"]:
        out.append(_table(["severity", "alarm", "message"],
                          [[f"<span class='{a['severity']}'>{_e(a['severity'])}</span>",
                            _e(a["code"]), _e(a["message"])] for a in stream["alarms"]]))
    else:
        out.append("<p class='OPEN'>no stream alarms</p>")
    for note in data["notes"]:
        out.append(f"<p class='warning'>note: {_e(note)}</p>")
    out.append("<h2>Everything, as data</h2><details><summary>JSON</summary><pre>")
    out.append(html.escape(json.dumps(data, indent=2, ensure_ascii=False, default=str)))
    out.append("</pre></details></body></html>\n")
    return "\n".join(out)
