"""Web settings: the cookie secret and the tenant list."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cas.errors import ConfigError, UsageError
from cas.web.settings import SECRET_ENV, Tenant, Tenants, WebSettings, load_secret


def test_secret_file_is_created_once_with_mode_0600(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    path = tmp_path / "sub" / "web-secret"
    first = load_secret(path)
    assert len(first) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(path) == first
    path.write_bytes(b"short")
    with pytest.raises(ConfigError):
        load_secret(path)
    assert load_secret(None) != load_secret(None)


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SECRET_ENV, "ab" * 32)
    assert load_secret(tmp_path / "unused") == bytes.fromhex("ab" * 32)
    monkeypatch.setenv(SECRET_ENV, "zz")
    with pytest.raises(ConfigError):
        load_secret(None)
    monkeypatch.setenv(SECRET_ENV, "ab" * 8)
    with pytest.raises(ConfigError):
        load_secret(None)


def test_settings_refuse_a_short_secret() -> None:
    with pytest.raises(ConfigError):
        WebSettings(secret_key=b"x" * 31)
    assert WebSettings(secret_key=b"x" * 32, wall_clock=lambda: 12.9).now_s() == 12


def test_two_stores_with_the_same_operator_are_refused() -> None:
    store: object = object()
    a = Tenant(key="mts", name="MTS", store=store)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Tenants([a, a])
    assert Tenants([a]).get("mts") is a and Tenants([a]).get("atvplus") is None
