"""The personalisation batch written as its chunks come (``BatchFileWriter``) is the file
``write_batch_records`` writes at once, and nothing is left of it on an error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cas.card.personalise import BatchFileWriter, default_slot, write_batch_records
from cas.card.personalise_fast import Factory, personalise_records
from cas.errors import CardError
from cas.formats.records import parse_card_batch

from .helpers import KEYS

FACTORY = Factory(now_s=1_790_000_000)


def _chunks() -> list[bytes]:
    slots = [default_slot(70_000 + i) for i in range(25)]
    return [personalise_records(KEYS, slots[:10], FACTORY),
            personalise_records(KEYS, slots[10:], FACTORY)]


def test_streamed_batch_equals_the_batch_written_at_once(tmp_path: Path) -> None:
    chunks = _chunks()
    reference = write_batch_records(chunks, 25, tmp_path / "ref.casb", now_s=7).read_bytes()
    with BatchFileWriter(tmp_path / "out" / "b.casb", 25, now_s=7) as batch:
        for chunk in chunks:
            batch.write(chunk)
        path = batch.commit()
    assert path.read_bytes() == reference
    assert len(parse_card_batch(reference).records) == 25
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.casb"]


def test_a_batch_not_committed_leaves_nothing(tmp_path: Path) -> None:
    chunks = _chunks()
    with pytest.raises(RuntimeError, match="registration failed"), \
            BatchFileWriter(tmp_path / "b.casb", 25, now_s=7) as batch:
        batch.write(chunks[0])
        raise RuntimeError("registration failed")
    assert list(tmp_path.iterdir()) == []
    with BatchFileWriter(tmp_path / "b.casb", 25, now_s=7) as batch:
        batch.write(chunks[0])
        with pytest.raises(ValueError, match="fewer records"):
            batch.commit()
        with pytest.raises(ValueError, match="more records"):
            batch.write(chunks[0] + chunks[0])
    assert list(tmp_path.iterdir()) == []


def test_a_batch_that_cannot_be_written_is_a_one_line_card_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CardError, match="cannot write the batch file"):
        BatchFileWriter(tmp_path / "file" / "b.casb", 25, now_s=7)
