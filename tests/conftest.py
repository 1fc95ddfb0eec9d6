"""Test-suite wiring.  Service fixtures (pcscd + vpcd, PostgreSQL, Chromium) live in
``tests/fixtures``; each starts its real service on 127.0.0.1 and stops it after the session
(under pytest-xdist: one of each per worker, on that worker's own ports, tests/fixtures/net.py).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.fixtures.order import load_table, longest_files_first

pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.postgres", "tests.fixtures.browser"]

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # In an xdist worker only (every worker sorts the same way): files longest first, so the
    # workers finish together (tests/fixtures/order.py).  One process keeps file order.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = longest_files_first(items, load_table())
