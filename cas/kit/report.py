"""The runner's reports: JUnit XML for CI and an HTML page for people.

JUnit layout (the common schema read by pytest's junitxml, Jenkins and GitLab):
``<testsuites>`` → one ``<testsuite>`` per step → one ``<testcase>`` per (box, channel),
``classname`` = ``KIT.STEP``, ``name`` = ``BOX ch N``; a wrong verdict is a ``<failure>``
whose message names the step, box, channel, expected and seen, and the box's own message
goes to ``<system-out>``.

The HTML report lists the failures first, then every step's table of expected vs seen.
"""

from __future__ import annotations

import html
import socket
import xml.etree.ElementTree as ET
from itertools import groupby
from pathlib import Path

from cas.kit.run import CaseResult, RunResult


def junit_xml(result: RunResult) -> bytes:
    root = ET.Element("testsuites", name=result.kit, tests=str(len(result.cases)),
                      failures=str(len(result.failures)), errors="0",
                      skipped=str(len(result.skipped)),
                      time=f"{result.duration_s:.3f}")
    for (index, name), group in groupby(result.cases, key=lambda c: (c.step, c.step_name)):
        cases = list(group)
        suite = ET.SubElement(root, "testsuite", name=f"{index:02d}-{name}",
                              tests=str(len(cases)),
                              failures=str(sum(not c.ok for c in cases)), errors="0",
                              skipped=str(sum(bool(c.skipped) for c in cases)), time="0",
                              timestamp=result.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
                              hostname=socket.gethostname())
        for c in cases:
            case = ET.SubElement(suite, "testcase", classname=f"{result.kit}.{name}",
                                 name=f"{c.box} {c.check}" if c.check else f"{c.box} ch {c.channel}",
                                 time="0")
            if c.skipped:
                ET.SubElement(case, "skipped", message=c.skipped).text = c.skipped
            if not c.ok:
                failure = ET.SubElement(case, "failure", message=c.failure_text(),
                                        type="WrongVerdict")
                failure.text = c.failure_text()
            if c.message:
                ET.SubElement(case, "system-out").text = c.message
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


_CSS = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}tr.fail{background:#fdd}
tr.pass{background:#efe}tr.skip{background:#eee;color:#555}.summary.fail{color:#a00}.summary.pass{color:#070}"""


def _verdict(c: CaseResult) -> str:
    return "skipped" if c.skipped else "pass" if c.ok else "FAIL"


def _row(c: CaseResult, *, with_step: bool) -> str:
    cls = "skip" if c.skipped else "pass" if c.ok else "fail"
    step = f"<td>{c.step} {html.escape(c.step_name)}</td>" if with_step else ""
    return (f'<tr class="{cls}">{step}<td>{html.escape(c.box)}</td>'
            + (f"<td>{html.escape(c.check)}</td>" if c.check else
               f"<td>{c.channel} {html.escape(c.channel_name)}</td>")
            + f"<td>{html.escape(c.expected)}</td><td>{html.escape(c.seen)}</td>"
            f"<td>{html.escape(c.skipped or c.message)}</td><td>{_verdict(c)}</td></tr>")


def _table(cases: list[CaseResult], *, with_step: bool, table_id: str) -> str:
    head = "<th>step</th>" if with_step else ""
    rows = "".join(_row(c, with_step=with_step) for c in cases)
    return (f'<table id="{table_id}"><thead><tr>{head}<th>box</th><th>channel</th>'
            f"<th>expected</th><th>seen</th><th>box message</th><th>result</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def html_report(result: RunResult) -> str:
    failures = result.failures
    state = "pass" if result.ok else "fail"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<title>Kit {html.escape(result.kit)}: {state}</title><style>{_CSS}</style>"
             f"</head><body><h1>STB conformance kit: {html.escape(result.kit)}</h1>",
             f'<p class="summary {state}">{len(result.cases) - len(failures)} of '
             f"{len(result.cases)} checks pass; {len(failures)} fail"
             + (f" ({len(result.skipped)} skipped)" if result.skipped else "")
             + ". Box: "
             f"<code>{html.escape(result.box_command)}</code></p>"]
    if failures:
        parts.append('<section id="failures"><h2>Failures</h2>'
                     + _table(failures, with_step=True, table_id="failures-table")
                     + "</section>")
    parts.append('<section id="steps"><h2>Steps</h2>')
    for (index, name), group in groupby(result.cases, key=lambda c: (c.step, c.step_name)):
        cases = list(group)
        parts.append(f'<h3 id="step-{index}">Step {index}: {html.escape(name)} — '
                     f"{html.escape(cases[0].step_title)}</h3>"
                     + _table(cases, with_step=False, table_id=f"step-{index}-table"))
    parts.append("</section></body></html>\n")
    return "".join(parts)


def write_reports(result: RunResult, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    junit = out / "junit.xml"
    junit.write_bytes(junit_xml(result))
    page = out / "report.html"
    page.write_text(html_report(result), encoding="utf-8")
    return junit, page
