"""Test-suite wiring.  Service fixtures (pcscd + vpcd, PostgreSQL, Chromium) live in
``tests/fixtures``; each starts its real service on 127.0.0.1 and stops it after the session."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.postgres", "tests.fixtures.browser"]

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
