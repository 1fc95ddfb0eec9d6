"""Schemathesis against our OpenAPI document, in-process on the ASGI app with real seeded
SQLite stores: for every operation, generated requests — valid ones and invalid ones, a bounded
number each — must never get a server error, and every answer must be declared by the
document, in the declared shape and media type.

(Operations are listed from the committed document at collection time and driven one by one
with ``APIOperation.as_strategy``, which works with any pytest version.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cas.store.engine import Store
from cas.web.app import create_app
from cas.web.settings import WebSettings, tenant_of
from tests.integration.web.seed import seed_operator

pytestmark = pytest.mark.slow

_DOC = json.loads((Path(__file__).resolve().parents[3] / "docs" / "openapi.json").read_text())
OPERATIONS = sorted((m.upper(), p) for p, item in _DOC["paths"].items() for m in item
                    if m in ("get", "post", "put", "patch", "delete"))
#: Examples per operation: random valid input, the same with the path naming real seeded
#: records (so the handlers past the look-up run too), and invalid input.
EXAMPLES = {"positive": 8, "known-ids": 8, "negative": 6}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("schemathesis")
    ops = ("atvplus", "mts")
    stores = [Store.open(f"sqlite:///{root / (op + '.sqlite')}") for op in ops]
    seeded = [seed_operator(st, op) for st, op in zip(stores, ops, strict=True)]
    app = create_app([tenant_of(st) for st in stores], WebSettings(secret_key=os.urandom(32)))
    a1, a2 = seeded[0].accounts["a1"], seeded[0].accounts["a2"]
    known = {"account_number": a1.account_number, "serial": a1.card,
             "chip_id": f"{a2.chip_id:08X}", "package": "sport", "payment_id": "none-yet",
             "token": "0" * 32}
    # POST /ppv/reports verifies reports under the operator keys (docs/ppv.md)
    saved_key = os.environ.get("CAS_OPERATOR_KEY")
    os.environ["CAS_OPERATOR_KEY"] = os.urandom(16).hex()
    try:
        yield (schemathesis.openapi.from_asgi("/api/v1/openapi.json", app), seeded[0].api_key,
               known)
    finally:
        if saved_key is None:
            os.environ.pop("CAS_OPERATOR_KEY", None)
        else:
            os.environ["CAS_OPERATOR_KEY"] = saved_key
        for st in stores:
            st.dispose()


def test_the_operations_cover_the_document() -> None:
    assert len(OPERATIONS) >= 35


@pytest.mark.parametrize("mode", list(EXAMPLES))
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_errors_and_declared_answers(api: tuple[Any, str, dict[str, Any]],
                                               method: str, path: str, mode: str) -> None:
    schema, key, known = api
    operation = schema[path][method]
    checks = [not_a_server_error, content_type_conformance, response_schema_conformance]
    if mode == "negative":
        strategy = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    else:
        checks.append(status_code_conformance)
        names = [p["name"] for p in _DOC["paths"][path][method.lower()].get("parameters", [])
                 if p["in"] == "path"]
        fixed = {n: known[n] for n in names} if mode == "known-ids" else None
        strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE,
                                         path_parameters=fixed)
    calls: list[int] = []

    @given(case=strategy)
    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers={"X-API-Key": key}, checks=checks)
        calls.append(response.status_code)

    run()
    assert calls and all(code < 500 for code in calls)
