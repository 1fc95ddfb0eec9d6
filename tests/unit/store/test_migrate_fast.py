"""Opening a store already at the shipped migration head skips Alembic (start-up of every
``cas`` command); a store behind the head is still migrated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from cas.store.engine import Store, current_revision, open_store, shipped_head, upgrade


def _alembic_head() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", "cas.store:migrations")
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_shipped_head_read_from_the_files_is_alembics_head() -> None:
    assert shipped_head() is not None
    assert shipped_head() == _alembic_head()


def test_a_store_behind_the_head_is_migrated(db_url: str) -> None:
    store = Store.open(db_url, migrate=False)
    try:
        upgrade(store.engine, "0001")
        assert current_revision(store.engine) == "0001"
        upgrade(store.engine)
        assert current_revision(store.engine) == _alembic_head()
    finally:
        store.dispose()


def test_opening_a_store_at_the_head_does_not_import_alembic(tmp_path: Path) -> None:
    open_store(data_dir=tmp_path).dispose()
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from cas.store.engine import open_store\n"
            f"open_store(data_dir=Path({str(tmp_path)!r}), create=False).dispose()\n"
            "print('alembic' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
