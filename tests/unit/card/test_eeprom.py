"""EEPROM image persistence: atomic replacement, integrity on load, no half-applied state."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.access import CardStatus
from cas.card.applet import Applet
from cas.card.eeprom import Eeprom, EepromError, load_image, write_image_atomic
from cas.card.service import ImageInUseError, lock_image
from cas.errors import ChecksumError, FormatError, StatusWordError
from cas.formats.emm import SetRegion, SetStatus
from cas.formats.records import build_card_record

from .helpers import KEYS, SERIAL, HeadEnd, make_client, make_record


def test_write_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    write_image_atomic(path, b"one")
    write_image_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.img"]


def test_a_leftover_temp_file_from_a_crash_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    rec = make_record()
    path.write_bytes(build_card_record(rec))
    (tmp_path / ".card.img.tmp").write_bytes(b"half a reco")  # killed mid-write
    assert load_image(path) == rec
    write_image_atomic(path, build_card_record(rec))
    assert load_image(path) == rec


def test_corrupt_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    data = bytearray(build_card_record(make_record()))
    data[40] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        load_image(path)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(FormatError):
        load_image(path)
    with pytest.raises(EepromError):
        load_image(tmp_path / "missing.img")


def test_every_change_is_on_disk_before_the_answer(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    path.write_bytes(build_card_record(make_record()))
    applet = Applet(Eeprom.open(path), rom_key=KEYS.transport_key())
    _, client = make_client(applet)
    client.process_emm(HeadEnd().unique(SERIAL, SetStatus(status=CardStatus.ACTIVE),
                                        SetRegion(region=3)))
    on_disk = load_image(path)
    assert on_disk.status is CardStatus.ACTIVE and on_disk.region == 3
    assert on_disk == applet.record


def test_failed_write_keeps_the_old_state_and_answers_an_error(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    path.write_bytes(build_card_record(make_record()))
    applet = Applet(Eeprom.open(path), rom_key=KEYS.transport_key())
    _, client = make_client(applet)
    applet.eeprom.path = tmp_path / "not-a-dir" / "card.img"  # parent does not exist
    with pytest.raises(StatusWordError) as info:
        client.process_emm(HeadEnd().unique(SERIAL, SetRegion(region=3)))
    assert info.value.sw == 0x6F00
    assert applet.record.region == 0 and applet.record.emm_seq_unique == 0


def test_wrong_rom_key_is_refused_at_start() -> None:
    from cas.crypto import Key
    from cas.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        Applet(Eeprom(make_record()), rom_key=Key(bytes(16), label="wrong"))


def test_an_image_is_served_by_one_process_only(tmp_path: Path) -> None:
    from contextlib import ExitStack

    path = tmp_path / "card.img"
    path.write_bytes(build_card_record(make_record()))
    with ExitStack() as first:
        lock_image(path, first)
        with ExitStack() as second, pytest.raises(ImageInUseError):
            lock_image(path, second)
    with ExitStack() as third:  # released with the first holder
        lock_image(path, third)
