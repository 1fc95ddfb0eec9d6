"""``open_store(create=False)``: a place without a store is refused, and left as it was
(issue 12, item 16)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cas.errors import StoreError
from cas.store.engine import open_store
from cas.store.errors import StoreMissing


def test_missing_data_dir_is_refused_and_not_created(tmp_path: Path) -> None:
    d = tmp_path / "typo"
    with pytest.raises(StoreMissing) as exc:
        open_store(data_dir=d, create=False)
    assert isinstance(exc.value, StoreError) and exc.value.exit_code == 6
    assert exc.value.code == "NO_STORE"
    assert str(d) in str(exc.value) and "cas operator use" in str(exc.value)
    assert not d.exists()


def test_data_dir_without_the_file_and_file_without_tables(tmp_path: Path) -> None:
    (tmp_path / "operator-keys.toml").write_text("")
    with pytest.raises(StoreMissing, match=r"no cas\.sqlite"):
        open_store(data_dir=tmp_path, create=False)
    assert not (tmp_path / "cas.sqlite").exists()
    sqlite3.connect(tmp_path / "cas.sqlite").close()
    with pytest.raises(StoreMissing, match="no cas-sim tables"):
        open_store(data_dir=tmp_path, create=False)
    with pytest.raises(StoreMissing):
        open_store(data_dir=tmp_path, create=False, migrate=False)


def test_an_existing_store_opens_and_create_makes_one(tmp_path: Path) -> None:
    open_store(data_dir=tmp_path / "d", create=True).dispose()
    st = open_store(data_dir=tmp_path / "d", create=False)
    st.dispose()
    st = open_store(data_dir=tmp_path / "d", create=False, migrate=False)
    st.dispose()
