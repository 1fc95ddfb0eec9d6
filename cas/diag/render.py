"""Rich rendering of the diagnostics for people (``--json`` gives the same data to machines).

Colours: OPEN green, LOCKED red; alarms red (error) or yellow (warning); clear PIDs dim,
scrambled PIDs cyan.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cas.diag.alarms import ALARM_TEXT, Alarm, AlarmCode, Severity
from cas.diag.probe import ProbeReport
from cas.i18n import Msg, Translator
from cas.reasons import REASONS, Reason, message

STATE_STYLE = {"OPEN": "bold green", "LOCKED": "bold red"}
SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow"}


def bitrate(bps: float) -> str:
    if bps >= 1_000_000:
        return f"{bps / 1_000_000:.2f} Mbit/s"
    if bps >= 1000:
        return f"{bps / 1000:.1f} kbit/s"
    return f"{bps:.0f} bit/s"


def pid_text(pid: int | None) -> str:
    return "-" if pid is None else f"{pid} (0x{pid:04X})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _short_kind(kind: str, t: Translator) -> str:
    for word in ("video", "audio"):
        if word in kind:
            return t(f"probe.kind.{word}")
    return kind_text(kind, t)


#: The English words of a PID's kind (stream types from ISO/IEC 13818-1 table 2-34, the
#: probe's own names); codec and table names stay as they are.
_KIND_WORDS = re.compile(r"\(PIDs beyond the 254th\)|"
                         r"\b(?:video|audio|PES private data|null|unreferenced)\b")


def kind_text(kind: str, t: Translator) -> str:
    """``H.264 video`` -> ``H.264 видео``: a PID's kind in ``t``'s language."""
    return _KIND_WORDS.sub(
        lambda m: t("probe.kind." + re.sub(r"\W+", "_", m[0]).strip("_")), kind)


_PCR_BASE = re.compile(r"PCR on PID (\d+) \((0x[0-9A-F]+)\)")
_PACKET_BASE = re.compile(r"packet position at (\d+) bit/s \(no PCR\)")


def time_base_text(source: str, t: Translator) -> str:
    """The probe's time base (:mod:`cas.diag.timebase` names it in English) in ``t``'s
    language; a form this does not know stays as it is."""
    if m := _PCR_BASE.fullmatch(source):
        return t("probe.base_pcr", pid=m[1], hex=m[2])
    if m := _PACKET_BASE.fullmatch(source):
        return t("probe.base_packets", bps=m[1])
    return source


def moment_text(at_iso: str, t: Translator, english: str | None = None) -> str:
    """A UTC moment without its zone: English ``2026-11-01 12:00:00`` (or ``english``),
    Russian ``01.11.2026, 12:00`` (Babel, CLDR)."""
    if t.lang == "en":
        return english if english is not None else at_iso[:19].replace("T", " ")
    from datetime import datetime

    from cas.locale import format_date, format_time

    at = datetime.fromisoformat(at_iso)
    return f"{format_date(at, t.lang)}, {format_time(at, t.lang)}"


def state_word(state: str, t: Translator) -> str:
    """A service's or PID's scrambling state (``partly scrambled``) in ``t``'s language."""
    return t.word("probe.state", state.replace(" ", "_"))


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def alarm_table(alarms: tuple[Alarm, ...] | list[Alarm], *, title: str = "Alarms",
                t: Translator | None = None) -> Table:
    t = t or Translator("en")
    table = Table(title=t("probe.alarms") if title == "Alarms" else title, title_justify="left")
    for key in ("severity", "code", "pid", "service", "at", "message"):
        table.add_column(t(f"probe.col.{key}"))
    for a in alarms:
        table.add_row(Text(t(f"alarm.severity.{a.severity.value}"),
                           style=SEVERITY_STYLE[a.severity]), a.code.value,
                      pid_text(a.pid), "-" if a.service_id is None else str(a.service_id),
                      _s(a.at_s), a.in_language(t))
    return table


def _columns(table: Table, t: Translator, keys: tuple[str, ...], **kwargs: Any) -> None:
    for key in keys:
        table.add_column(t(f"probe.col.{key}"), **kwargs)


def _render_ca_systems(r: ProbeReport, console: Console, t: Translator) -> None:
    """One row per CA system (SimulCrypt): ECM PIDs and rate, ECM parity per crypto-period,
    how far the ECM parity change runs ahead of the payload's, EMM PIDs and bitrate."""
    table = Table(title=t("probe.ca_systems"), title_justify="left")
    _columns(table, t, ("ca_system", "ecm_pids", "ecm_rate", "every_ms", "periods_matching",
                        "periods_both", "periods_without", "lead_ms", "emm_pids", "emm_rate"))
    for c in r.ca_systems:
        lead = "-" if c.lead_ms is None else "/".join(f"{v:.0f}" for v in c.lead_ms)
        table.add_row(f"0x{c.ca_system_id:04X}" + (" *" if c.ours else ""),
                      ", ".join(pid_text(p) for p in c.ecm_pids) or "-",
                      f"{c.ecm_sections_per_s:.1f}", _ms(c.ecm_interval_ms),
                      f"{c.periods_matching}/{c.periods}", str(c.periods_both_parities),
                      str(c.periods_without_ecm), lead,
                      ", ".join(pid_text(p) for p in c.emm_pids) or "-",
                      bitrate(c.emm_bitrate_bps) if c.emm_pids else "-")
    console.print(table)


def render_probe(report: ProbeReport, console: Console, t: Translator | None = None) -> None:
    """``cas diag stream`` for people, in ``t``'s language (headings; alarm texts and the
    stream's own names stay as they are)."""
    t = t or Translator("en")
    r = report
    console.print(Text(r.source, style="bold"),
                  "  " + t("probe.head", size=t.number(r.size_bytes),
                           packets=t.number(r.packets),
                           duration=f"{r.duration_s:.1f}", bitrate=bitrate(r.bitrate_bps),
                           tsid=r.transport_stream_id if r.transport_stream_id is not None
                           else "-"))
    console.print(t("probe.time_base", time_base=time_base_text(r.time_base, t))
                  + (", " + t("probe.pcr_discontinuities", n=r.pcr_discontinuities)
                     if r.pcr_discontinuities else "")
                  + ("; " + t("probe.crypto_period", s=f"{r.crypto_period_s:.1f}")
                     if r.crypto_period_s else ""), style="dim", markup=False)

    services = Table(title=t("probe.services"), title_justify="left")
    _columns(services, t, ("sid", "name", "provider", "state", "pmt", "pcr", "components",
                           "ecm_pids", "bitrate"))
    for s in r.services:
        style = {"scrambled": "cyan", "clear": "green", "partly scrambled": "yellow"}.get(
            s.state, "red")
        comps = ", ".join(f"{c.pid} {_short_kind(c.kind, t)}" for c in s.streams) or "-"
        ecm_text = ", ".join(f"{c.ca_pid} (0x{c.ca_system_id:04X}"
                             + (f", ES {c.es_pid})" if c.es_pid is not None else ")")
                             for c in s.ca) or "-"
        services.add_row(str(s.service_id), s.name or "-", s.provider or "-",
                         Text(state_word(s.state, t), style=style), "-" if s.pmt_pid is None else str(s.pmt_pid),
                         "-" if s.pcr_pid is None else str(s.pcr_pid), comps, ecm_text,
                         bitrate(s.bitrate_bps))
    console.print(services)

    pids = Table(title="PIDs", title_justify="left")
    for key in ("pid", "kind", "sids", "packets", "bitrate", "scrambling", "even", "odd",
                "cc_errors", "pcrs"):
        pids.add_column(t(f"probe.col.{key}"),
                        justify="right" if key in ("packets", "even", "odd", "cc_errors",
                                                   "pcrs") else "left")
    for p in r.pids:
        if p.pid < 0:
            pids.add_row("…", kind_text(p.kind, t), "", "", "", "", "", "", "", "")
            continue
        pids.add_row(pid_text(p.pid), kind_text(p.kind, t), ",".join(map(str, p.service_ids)) or "-",
                     t.number(p.packets), bitrate(p.bitrate_bps),
                     Text(state_word(p.state, t), style="cyan" if p.scrambled else "dim"),
                     t.number(p.scrambled_even), t.number(p.scrambled_odd),
                     Text(str(p.cc_errors), style="bold red" if p.cc_errors else ""),
                     str(p.pcrs or ""))
    console.print(pids)

    if r.cat:
        console.print("CAT: " + ", ".join(f"CA 0x{c.ca_system_id:04X} → EMM PID {c.ca_pid}"
                                          for c in r.cat))
    if r.ecms:
        ecm = Table(title=t("probe.ecm_pids"), title_justify="left")
        for key in ("pid", "ca", "sids", "sections_new", "bitrate", "every_ms", "max_gap_ms",
                    "last_at_s", "changes", "cp_s", "ch_ids", "key"):
            ecm.add_column(t(f"probe.col.{key}"), no_wrap=key in ("pid", "bitrate"))
        for e in r.ecms:
            ecm.add_row(pid_text(e.pid), f"0x{e.ca_system_id:04X}",
                        ",".join(map(str, e.service_ids)) or "-",
                        f"{e.sections} ({e.distinct_sections})", bitrate(e.bitrate_bps),
                        _ms(e.mean_interval_ms), _ms(e.max_gap_ms), _s(e.last_at_s),
                        str(e.parity_changes), _s(e.crypto_period_s),
                        ",".join(map(str, e.channel_ids)) or "-",
                        ",".join(map(str, e.ecm_key_indexes)) or "-")
        console.print(ecm)
    if r.emms:
        emm = Table(title=t("probe.emm_pids"), title_justify="left")
        _columns(emm, t, ("pid", "ca", "sections", "bitrate", "unique", "shared", "global",
                          "other", "cards", "groups", "table_ids"))
        for m in r.emms:
            emm.add_row(pid_text(m.pid), f"0x{m.ca_system_id:04X}", str(m.sections),
                        bitrate(m.bitrate_bps),
                        *(str(m.by_address.get(k, 0)) for k in ("unique", "shared", "global",
                                                                "other")),
                        str(len(m.unique)), str(len(m.shared)),
                        " ".join(f"0x{tid:02X}×{n}" for tid, n in sorted(m.table_ids.items())))
        console.print(emm)
    if r.scrambling:
        cw = Table(title=t("probe.cw_changes"), title_justify="left")
        _columns(cw, t, ("pid", "sid", "even", "odd", "changes", "crypto_period_s",
                         "longest_s"))
        for c in r.scrambling:
            cw.add_row(pid_text(c.pid), "-" if c.service_id is None else str(c.service_id),
                       t.number(c.even), t.number(c.odd), str(c.parity_changes),
                       _s(c.crypto_period_s), _s(c.longest_same_parity_s))
        console.print(cw)
    if r.ca_systems:
        _render_ca_systems(r, console, t)
    if r.alarms:
        console.print(alarm_table(r.alarms, t=t))
    else:
        console.print(Text(t("probe.no_alarms"), style="bold green"))


def codes_data(lang: str) -> dict[str, Any]:
    return {
        "reasons": [{"reason": i.reason.value, "screen_code": i.screen_code,
                     "message": i.ru if lang == "ru" else i.en, "message_en": i.en,
                     "message_ru": i.ru, "fix": (i.fix_ru or i.fix_en) if lang == "ru"
                     else i.fix_en} for i in REASONS.values()],
        "alarms": [{"code": code.value, "severity": sev.value,
                    "meaning": Translator(lang).word("alarm.meaning", code.value),
                    "meaning_en": text} for code, (sev, text) in ALARM_TEXT.items()],
    }


def codes_markdown() -> str:
    """The reason table as Markdown (for docs/field-guide.md), en and ru side by side."""
    lines = ["| screen | reason | message (en) | message (ru) | fix |",
             "|---|---|---|---|---|"]
    for i in REASONS.values():
        lines.append(f"| {i.screen_code or '—'} | `{i.reason.value}` | {i.en} | {i.ru} | "
                     f"{i.fix_en} |")
    lines += ["", "| alarm | severity | meaning |", "|---|---|---|"]
    for code, (sev, text) in ALARM_TEXT.items():
        lines.append(f"| `{code.value}` | {sev.value} | {text} |")
    return "\n".join(lines) + "\n"


def render_codes(console: Console, lang: str) -> None:
    t = Translator(lang)
    table = Table(title=t("codes.title"), title_justify="left")
    for col in ("code", "reason", "message", "fix"):
        table.add_column(t(f"codes.col.{col}"))
    for i in REASONS.values():
        style = "green" if i.reason is Reason.OPEN else ""
        table.add_row(i.screen_code or "-", Text(i.reason.value, style=style),
                      i.ru if lang == "ru" else i.en,
                      (i.fix_ru or i.fix_en) if lang == "ru" else i.fix_en)
    console.print(table)
    alarms = Table(title=t("codes.alarms_title"), title_justify="left")
    for col in ("alarm", "severity", "meaning"):
        alarms.add_column(t(f"codes.col.{col}"))
    for code, (sev, _text) in ALARM_TEXT.items():
        alarms.add_row(AlarmCode(code).value,
                       Text(t(f"alarm.severity.{sev.value}"), style=SEVERITY_STYLE[sev]),
                       t.word("alarm.meaning", code.value))
    console.print(alarms)


# --- box -------------------------------------------------------------------------------------------
def render_box(data: dict[str, Any], console: Console, t: Translator | None = None) -> None:
    """``cas diag box`` for people (from :meth:`BoxReport.to_json`), in ``t``'s language."""
    t = t or Translator("en")
    head = Table(title=t("diag_box.title", chip=data["chip_id"]), title_justify="left",
                 show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    ok: dict[bool | None, Text] = {True: Text(t("diag_box.yes"), style="green"),
                                   False: Text(t("diag_box.no"), style="bold red"),
                                   None: Text("-")}
    device = t("ticket.set_top_box") if data["device_type"] == "set-top box" \
        else data["device_type"]
    head.add_row(t("diag_box.device"), f"{device}, {data['vendor']} {data['model']}")
    head.add_row(t("diag_box.firmware"), data["firmware_version"])
    head.add_row(t("diag_box.manufactured"), data["manufactured"] or "-")
    head.add_row(t("diag_box.genuine"), ok[data["chip_ok"]])
    head.add_row("NVRAM", f"{data['nvram'] or '-'}" + ("" if data["nvram_found"] else
                                                       " " + t("diag_box.not_found")))
    head.add_row(t("diag_box.boots"), str(data["boot_count"]))
    head.add_row(t("diag_box.last_channel"),
                 str(data["last_channel"] if data["last_channel"] is not None else "-"))
    p = data["pairing"]
    if p is None:
        head.add_row(t("diag_box.pairing"), Text(t("diag_box.none"), style="yellow"))
    else:
        head.add_row(t("diag_box.pairing"), Text.assemble(
            t("diag_box.paired", card=p["card_serial"], chip=p["chip_id"]) + " ",
            ok[p["blob_opens_on_this_chip"]]))
    e = data["last_emm"]
    head.add_row(t("diag_box.last_emm"), "-" if e is None else
                 f"{e['at']}  {t.word('diag_box.emm_address', e['address_type'])}  "
                 f"{t.word('diag_box.emm_result', e['result'])} (SW {e['sw']})")
    c = data["last_ecm"]
    if c is None:
        head.add_row(t("diag_box.last_ecm"), "-")
    else:
        style = "green" if c["reason"] == "OPEN" else "red"
        shown = (message(Reason(c["reason"]), t.lang) if c["reason"] in Reason.__members__
                 else c["message"] or "")
        head.add_row(t("diag_box.last_ecm"), Text.assemble(
            f"{c['at']}  {t('diag_box.channel', channel=c['channel'])}  ", (c["reason"], style),
            f" {c['screen_code'] or ''} {shown}"))
    console.print(head)
    counters = data["counters"]
    if counters:
        table = Table(title=t("diag_box.counters"), title_justify="left")
        table.add_column(t("diag_box.counter"))
        table.add_column(t("diag_box.value"), justify="right")
        for name, value in counters.items():
            style = "bold red" if name in data["trouble"] else ""
            table.add_row(Text(name, style=style), Text(str(value), style=style))
        console.print(table)
    notes = ([t(Msg(m["key"], m["params"])) for m in data["note_messages"]]
             if "note_messages" in data else data["notes"])
    for note in notes:
        console.print(Text(f"• {note}", style="yellow"))


# --- visit -----------------------------------------------------------------------------------------
def _state_cell(v: dict[str, Any], t: Translator) -> Text:
    if v["state"] == "OPEN" and v["at_risk"]:
        return Text(t("state.OPEN") + "!", style="bold yellow")
    return Text(t(f"state.{v['state']}"), style=STATE_STYLE.get(v["state"], ""))


def render_visit(data: dict[str, Any], console: Console, t: Translator | None = None) -> None:
    """``cas diag visit`` for people (from :meth:`VisitReport.to_json`), in ``t``'s
    language (the data's causes and fixes are already in it)."""
    t = t or Translator(data.get("lang", "en"))
    card = data["card"]
    box = data["box"]
    stream = data["stream"]
    he = data["headend"]
    parts = [t("visit.title", at=moment_text(data["at"], t))]
    if "serial" in card:
        parts.append(t("visit.card", serial=card["serial"], status=card["status"]))
    else:
        parts.append(t("visit.card_error", error=card.get("error") or t("visit.no_card")))
    if box is not None:
        parts.append(t("visit.box", chip=box["chip_id"], vendor=box["vendor"], model=box["model"]))
    parts.append(t("visit.stream", source=stream["source"], n=len(stream["services"]),
                   duration=f"{stream['duration_s']:.1f}"))
    console.print(Text(" · ".join(parts), style="bold"))
    if he is not None:
        if he["registered"]:
            line = t("visit.account", account=he["account"] or "-", holder=he["holder"] or "",
                     balance=he["balance"] or "-")
            if he["blocked_since"]:
                line += " · " + t("visit.blocked_since", day=he["blocked_since"])
            line += " · " + t("visit.paired_with", chip=he["paired_chip_id"] or t("visit.no_box"))
            line += " · " + t("visit.emm_seq", issued=he["emm_issued_seq"],
                              card=data["card_emm_seq_after_scan"])
            console.print(Text(line, style="dim"))
        else:
            console.print(Text(t("visit.not_registered"), style="yellow"))
    console.print(Text(t("visit.mode", mode=t.word("visit.modes", data["mode"])),
                       style="dim"))

    roots = [r for r in data["root_causes"] if r["tier"] <= 5 or r["channels"]]
    if roots:
        console.print(Text(t("visit.causes"), style="bold"))
        for n, r in enumerate(roots, start=1):
            where = (t("visit.channels_where", n=len(r["channels"]),
                       list=", ".join(map(str, r["channels"]))) if r["channels"]
                     else t("visit.stream_where"))
            style = "bold red" if r["tier"] <= 3 else ("red" if r["tier"] <= 5 else "yellow")
            console.print(Text.assemble(f"{n:>2}. ", (r["summary"], style), f" ({where})"))
            console.print(Text("     " + t("visit.fix", fix=r["fix"]), style="cyan"))
    else:
        console.print(Text(t("visit.all_open"), style="bold green"))

    table = Table(title=t("visit.channels_title"), title_justify="left")
    for col in ("ch", "name", "state", "code", "box_says", "headend"):
        table.add_column(t(f"visit.col.{col}"), no_wrap=True)
    table.add_column(t("visit.col.cause"), ratio=1)
    for v in data["verdicts"]:
        table.add_row(str(v["channel"]), v["name"], _state_cell(v, t), v["screen_code"] or "",
                      v["reason"], v["headend_reason"] or "-", v["cause"] or "")
    console.print(table)
    for v in data["verdicts"]:
        evidence = [e for f in v["findings"][:1] for e in f["evidence"]]
        if evidence:
            console.print(Text(t("visit.evidence", channel=v["channel"]), style="dim"))
            for e in evidence:
                console.print(Text(f"   {e}", style="dim"))
    alarms = stream["alarms"]
    if alarms:
        table = Table(title=t("visit.alarms_title"), title_justify="left")
        for col in ("severity", "alarm", "pid", "message"):
            table.add_column(t(f"visit.col.{col}"))
        for a in alarms:
            sev = Severity(a["severity"])
            table.add_row(Text(t(f"alarm.severity.{sev.value}"), style=SEVERITY_STYLE[sev]),
                          a["code"],
                          pid_text(a["pid"]), a["message"])
        console.print(table)
    for note in data["notes"]:
        console.print(Text(t("visit.note", note=note), style="yellow"))
