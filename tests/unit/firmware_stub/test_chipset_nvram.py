"""Chipset key handling and the NVRAM record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cas.crypto import Key, chip_blob, wrap_cws, wrap_key
from cas.errors import AuthenticationError, ConfigError
from cas.formats.chipid import ChipBatch, ChipIdRecord, build_chip_batch, build_chip_id_record
from firmware_stub.chipset import (
    Chipset,
    load_chip_record,
    load_vendor_key,
    save_vendor_key,
)
from firmware_stub.errors import ChipsetError, NvramError, PairingError
from firmware_stub.nvram import LastEcm, LastEmm, Nvram, PairingState, load_nvram, save_nvram

VENDOR = Key(bytes(range(16)), label="vendor")
CSK = Key(bytes(range(16, 32)), label="csk")
CWPK = Key(bytes(range(32, 48)), label="cwpk")


def _record(chip_id: int = 0x1234ABCD, csk: Key = CSK) -> ChipIdRecord:
    return ChipIdRecord(chip_id=chip_id, vendor="v", model="m",
                        wrapped_csk=wrap_key(VENDOR, csk))


def test_chipset_opens_its_record_and_the_card_cws() -> None:
    chip = Chipset.from_record(_record(), VENDOR)
    assert not chip.paired
    with pytest.raises(PairingError):
        chip.unwrap_cws(wrap_cws(CWPK, b"\x01" * 8, b"\x02" * 8))
    chip.load_pairing(chip_blob(CSK, CWPK))
    assert chip.paired and chip.chip_blob == chip_blob(CSK, CWPK)
    assert chip.unwrap_cws(wrap_cws(CWPK, b"\x01" * 8, b"\x02" * 8)) == (b"\x01" * 8,
                                                                          b"\x02" * 8)
    even, odd = chip.unwrap_cws(wrap_cws(CWPK, b"\x03" * 16, b"\x04" * 16))
    assert (even, odd) == (b"\x03" * 16, b"\x04" * 16)
    # CWs wrapped for another pairing key: the card belongs to another box
    other = Key(bytes(16), label="other")
    with pytest.raises(PairingError):
        chip.unwrap_cws(wrap_cws(other, b"\x01" * 8, b"\x02" * 8))


def test_wrong_vendor_key_and_foreign_blob_are_refused() -> None:
    with pytest.raises(ChipsetError) as err:
        Chipset.from_record(_record(), Key(bytes(16), label="wrong"))
    assert isinstance(err.value, AuthenticationError)
    assert "1234ABCD" in str(err.value)
    chip = Chipset.from_record(_record(), VENDOR)
    another_csk = Key(b"\x55" * 16, label="csk2")
    with pytest.raises(PairingError):
        chip.load_pairing(chip_blob(another_csk, CWPK))
    assert not chip.paired


def test_no_key_bytes_in_repr() -> None:
    chip = Chipset.from_record(_record(), VENDOR)
    chip.load_pairing(chip_blob(CSK, CWPK))
    text = repr(chip)
    assert CSK.raw().hex() not in text and CWPK.raw().hex() not in text
    assert "1234ABCD" in text


def test_vendor_key_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "vendor.key"
    save_vendor_key(path, VENDOR)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_vendor_key(path) == VENDOR
    raw = tmp_path / "raw.key"
    raw.write_bytes(VENDOR.raw())
    assert load_vendor_key(raw) == VENDOR
    bad = tmp_path / "bad.key"
    bad.write_text("not hex at all")
    with pytest.raises(ChipsetError):
        load_vendor_key(bad)


def test_chip_record_from_record_or_batch(tmp_path: Path) -> None:
    one = tmp_path / "one.rec"
    one.write_bytes(build_chip_id_record(_record()))
    assert load_chip_record(one).chip_id == 0x1234ABCD
    with pytest.raises(ConfigError):
        load_chip_record(one, 0x1)
    batch = tmp_path / "batch.bin"
    batch.write_bytes(build_chip_batch(ChipBatch(created_s=0, issuer="v", records=(
        _record(1), _record(2), _record(3)))))
    assert load_chip_record(batch, 2).chip_id == 2
    with pytest.raises(ConfigError, match="--chip-id"):
        load_chip_record(batch)
    with pytest.raises(ConfigError):
        load_chip_record(batch, 9)


def test_nvram_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "nvram.json"
    assert load_nvram(path, chip_id=7) == Nvram(chip_id=7)
    nv = Nvram(chip_id=7, boot_count=3, last_channel=101,
               last_emm=LastEmm(at_s=5, address_type="unique", sw=0x9000, result="applied"),
               last_ecm=LastEcm(at_s=6, channel=101, reason="OPEN"),
               pairing=PairingState(card_serial=42, chip_id=7, chip_blob=b"\xaa" * 24)
               ).with_counters({"ecm_sent": 4, "zero": 0})
    save_nvram(path, nv)
    assert load_nvram(path, chip_id=7) == nv
    assert nv.with_counters({"ecm_sent": 1}).counters["ecm_sent"] == 5
    assert "zero" not in nv.counters
    assert [p.name for p in path.parent.iterdir()] == ["nvram.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["chip_id"] == "00000007" and doc["pairing"]["chip_blob"] == "aa" * 24


def test_nvram_of_another_chip_or_damaged(tmp_path: Path) -> None:
    path = tmp_path / "nvram.json"
    save_nvram(path, Nvram(chip_id=7))
    with pytest.raises(NvramError, match="belongs to chip 00000007"):
        load_nvram(path, chip_id=8)
    path.write_text("{not json")
    with pytest.raises(NvramError):
        load_nvram(path, chip_id=7)
    path.write_text(json.dumps({"format": "cas-sim-stb-nvram", "version": 1,
                                "chip_id": "zz"}))
    with pytest.raises(NvramError, match="damaged"):
        load_nvram(path, chip_id=7)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(NvramError):
        load_nvram(path, chip_id=7)
