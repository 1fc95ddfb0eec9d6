"""Every operation of the OpenAPI document is called by the API tests (a static check of the
test sources: a call ``.<method>("/api/v1/...")`` whose path fits the operation's template)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TESTS = ROOT / "tests" / "integration" / "web"
_CALL = re.compile(r"\.(get|post|put|patch|delete)\(\s*f?\"(/api/v1[^\"]*)\"")


def _calls() -> set[tuple[str, str]]:
    found = set()
    for path in TESTS.glob("test_api_*.py"):
        for method, url in _CALL.findall(path.read_text("utf-8")):
            found.add((method.upper(), re.sub(r"\{[^}]*\}", "{}", url.split("?")[0])))
    return found


def test_every_operation_has_an_api_test() -> None:
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text("utf-8"))
    calls = _calls()
    missing = []
    for template, item in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]*\\\}", r"[^/]+", re.escape(template)) + "$")
        for method in item:
            if not any(m == method.upper() and pattern.match(u.replace("{}", "X"))
                       for m, u in calls):
                missing.append(f"{method.upper()} {template}")
    assert not missing, f"operations without an API test: {missing}"
