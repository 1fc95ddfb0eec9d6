"""JUnit XML in the common schema (testsuites/testsuite/testcase/failure) and the HTML page
with the failures first."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

from cas.kit.report import html_report, junit_xml
from cas.kit.run import CaseResult, RunResult


def _result() -> RunResult:
    r = RunResult(kit="tiny", box_command="mybox --x")
    for step, name in ((1, "paid"), (2, "later")):
        for ch, expected, seen in ((1, "OPEN", "OPEN"), (27, "MATURITY_LOCKED",
                                                          "OPEN" if step == 2 else
                                                          "MATURITY_LOCKED")):
            r.cases.append(CaseResult(step=step, step_name=name, step_title=f"t{step}",
                                      box="kids", channel=ch, channel_name=f"ch<{ch}>",
                                      expected=expected, seen=seen, message=f"msg & {ch}"))
    return r


def test_junit_structure_counts_and_failure_text() -> None:
    root = ET.fromstring(junit_xml(_result()))
    assert root.tag == "testsuites"
    assert root.get("tests") == "4" and root.get("failures") == "1"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["01-paid", "02-later"]
    for s in suites:
        assert {"name", "tests", "failures", "errors", "skipped", "time", "timestamp",
                "hostname"} <= set(s.attrib)
        assert len(s.get("timestamp", "")) == 19  # ISO 8601 without zone, as the XSD wants
        for case in s:
            assert case.tag == "testcase"
            assert {"classname", "name", "time"} <= set(case.attrib)
            assert {c.tag for c in case} <= {"failure", "system-out"}
    failures = root.findall("./testsuite/testcase/failure")
    assert len(failures) == 1
    assert failures[0].get("message") == (
        "step 2 'later', box kids, channel 27: expected MATURITY_LOCKED, seen OPEN")
    assert suites[1].get("failures") == "1" and suites[0].get("failures") == "0"


def test_html_lists_failures_first_and_escapes() -> None:
    page = html_report(_result())
    assert page.index('id="failures"') < page.index('id="steps"')
    assert "ch&lt;27&gt;" in page and "msg &amp; 27" in page
    assert "3 of 4 checks pass; 1 fail" in page


def test_html_of_a_passing_run_has_no_failure_section() -> None:
    r = _result()
    r.cases = [c for c in r.cases if c.ok]
    assert 'id="failures"' not in html_report(r)


JUNIT_XSD = Path(__file__).with_name("junit.xsd")


def _with_skip() -> RunResult:
    r = _result()
    r.cases.append(CaseResult(step=2, step_name="later", step_title="t2", box="kids",
                              channel=30, channel_name="ch30", expected="OPEN", seen="",
                              message="", skipped="live mode: tamper-emm is not played"))
    return r


def test_junit_validates_against_the_common_junit_schema(tmp_path: Path) -> None:
    schema = xmlschema.XMLSchema(JUNIT_XSD)
    for result in (_result(), _with_skip()):
        path = tmp_path / "junit.xml"
        path.write_bytes(junit_xml(result))
        schema.validate(str(path))  # raises XMLSchemaValidationError with the path and why
        assert schema.is_valid(str(path))


def test_the_schema_refuses_what_ci_tools_refuse(tmp_path: Path) -> None:
    """The check can fail: a testcase without classname, a suite without its timestamp."""
    schema = xmlschema.XMLSchema(JUNIT_XSD)
    good = junit_xml(_result()).decode()
    for bad in (good.replace('classname="tiny.paid" ', "", 1),
                re.sub(r' timestamp="[^"]*"', "", good, count=1),
                good.replace('failures="1"', 'failures="one"', 1)):
        path = tmp_path / "bad.xml"
        path.write_text(bad, encoding="utf-8")
        assert bad != good
        assert not schema.is_valid(str(path))


def test_a_skipped_check_is_skipped_not_failed() -> None:
    r = _with_skip()
    root = ET.fromstring(junit_xml(r))
    assert root.get("skipped") == "1" and root.get("failures") == "1"
    (skip,) = root.findall("./testsuite/testcase/skipped")
    assert skip.get("message") == "live mode: tamper-emm is not played"
    page = html_report(r)
    assert "(1 skipped)" in page and 'class="skip"' in page
