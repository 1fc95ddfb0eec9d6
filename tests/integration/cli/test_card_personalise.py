"""``cas card personalise --count N`` with registration, through the installed script, on
SQLite and PostgreSQL: the cards get the store's slots (as runs), the batch holds exactly the
per-card path's records for those slots, and a re-run changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from cas.card.personalise import CardSlot
from cas.card.personalise_fast import Factory
from cas.crypto import OperatorKeys
from cas.formats.batch import BATCH_HEADER_SIZE
from cas.formats.records import build_card_record
from cas.formats.records.card_batch import read_card_batch_header
from cas.formats.records.declaration import CARD_RECORD_SIZE
from cas.store.engine import Store

CAS = Path(sys.executable).parent / "cas"
FIRST = 3_000_000_000


def _personalise(data: Path, url: str, out: Path) -> dict[str, object]:
    proc = subprocess.run(
        [str(CAS), "--data-dir", str(data), "--db-url", url, "--json", "card", "personalise",
         "--count", "700", "--start-serial", str(FIRST), "--out", str(out), "--no-images",
         "--workers", "2", "--region", "5"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _rows(store: Store) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with store.engine.connect() as conn:
        return ([tuple(r) for r in conn.execute(text("SELECT * FROM cards ORDER BY serial"))],
                [tuple(r) for r in conn.execute(text(
                    "SELECT id, card_serial, at_s, cause FROM rights_changes ORDER BY id"))])


def test_personalise_registers_and_the_batch_has_the_per_card_records(
        db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    keys = OperatorKeys.generate(now_s=1_790_000_000)
    keys.save(data / "operator-keys.toml")
    store = Store.open(db_url)
    try:
        from cas.bulk.register import register_serials

        register_serials(store, 10, 3)  # group 1 is open: the new cards fill it first
        out = _personalise(data, db_url, tmp_path / "cards")
        cards = out["cards"]
        assert isinstance(cards, list) and len(cards) == 700
        slots = [CardSlot(serial=int(c["serial"]), shared_address=c["shared_address"],
                          member_position=c["member_position"]) for c in cards]
        assert [(s.shared_address, s.member_position) for s in slots[:2]] == [(1, 3), (1, 4)]
        assert (slots[253].shared_address, slots[253].member_position) == (2, 0)
        cards_rows, changes = _rows(store)
        assert [(r[0], r[1], r[2]) for r in cards_rows[3:]] == [
            (s.serial, s.shared_address, s.member_position) for s in slots]
        assert len(changes) == 703
        batch = Path(str(out["batch"])).read_bytes()
        header = read_card_batch_header(batch)
        factory = Factory(now_s=header.created_s, region=5)
        for n in (0, 252, 253, 699):
            at = BATCH_HEADER_SIZE + n * CARD_RECORD_SIZE
            assert batch[at:at + CARD_RECORD_SIZE] == build_card_record(
                factory.record(keys, slots[n]))
        # A re-run: the same slots, nothing written.
        again = _personalise(data, db_url, tmp_path / "again")
        assert again["cards"] == cards
        assert _rows(store) == (cards_rows, changes)
    finally:
        store.dispose()
