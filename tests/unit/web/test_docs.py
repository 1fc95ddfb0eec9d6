"""The committed documents stay true: ``docs/openapi.json`` is what the app serves, and
``docs/web.md`` lists every error code the API can answer with, at its HTTP status."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cas.web.errors import CATEGORY_STATUS, WEB_CODES
from cas.web.openapi import DEFAULT_PATH, render

ROOT = Path(__file__).resolve().parents[3]
WEB_MD = (ROOT / "docs" / "web.md").read_text("utf-8")
#: Exception class -> category (cas.web.errors.classify).
_CLASS_CATEGORY = {"ValidationError": "INVALID_INPUT", "RecordNotFound": "NOT_FOUND",
                   "NotFoundError": "NOT_FOUND", "RecordConflict": "CONFLICT",
                   "ConflictError": "CONFLICT", "BillingError": "RULE_REFUSED"}


def test_committed_openapi_document_is_current() -> None:
    assert DEFAULT_PATH == ROOT / "docs" / "openapi.json"
    assert DEFAULT_PATH.read_text("utf-8") == render(), \
        "docs/openapi.json is stale: run .venv/bin/python -m cas.web.openapi"


def _raised_codes() -> dict[str, set[int]]:
    """Every ``code="..."`` given to one of our error classes in the layers the API calls."""
    found: dict[str, set[int]] = {}
    files = [*(ROOT / "cas" / "billing").rglob("*.py"), *(ROOT / "cas" / "store").rglob("*.py"),
             *(ROOT / "cas" / "web").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in _CLASS_CATEGORY:
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant):
                        status = CATEGORY_STATUS[_CLASS_CATEGORY[node.func.id]]
                        found.setdefault(str(kw.value.value), set()).add(status)
    return found


def _documented() -> dict[str, set[int]]:
    rows: dict[str, set[int]] = {}
    for m in re.finditer(r"^\| `([A-Z_]+)` \| ([0-9 /]+) \|", WEB_MD, re.M):
        rows.setdefault(m.group(1), set()).update(int(x) for x in re.findall(r"\d{3}",
                                                                              m.group(2)))
    return rows


def test_every_domain_error_code_is_documented_with_its_status() -> None:
    documented = _documented()
    raised = _raised_codes()
    assert len(raised) > 60
    missing = sorted(set(raised) - set(documented))
    assert not missing, f"docs/web.md lacks error codes: {missing}"
    wrong = {c: (sorted(raised[c]), sorted(documented[c])) for c in raised
             if not raised[c] <= documented[c]}
    assert not wrong, f"docs/web.md gives the wrong HTTP status for: {wrong}"


def test_every_web_code_is_documented() -> None:
    documented = _documented()
    for code, (category, _meaning) in WEB_CODES.items():
        if code in ("CONFLICT", "RULE_VIOLATION"):
            continue  # fallbacks for domain errors without a code of their own
        assert code in documented, code
        assert CATEGORY_STATUS[category] in documented[code], code
