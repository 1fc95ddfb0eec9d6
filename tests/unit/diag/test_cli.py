"""``cas diag stream``, ``cas diag codes`` and ``cas diag box`` through click, as people and
scripts run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from cas.crypto import Key, wrap_key
from cas.diag.synth import SynthOptions, SynthService, default_services, make_stream
from cas.formats.chipid import ChipIdRecord, build_chip_id_record
from cas.reasons import REASONS
from firmware_stub.chipset import save_vendor_key
from firmware_stub.nvram import LastEcm, LastEmm, Nvram, PairingState, save_nvram
from tests.fixtures.lang import english_in


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input, env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    services = list(default_services(2))
    services[1] = SynthService(**{**{f: getattr(services[1], f)
                                     for f in SynthService.__dataclass_fields__},
                                  "ecm_stop_s": 1.0})
    path = tmp_path_factory.mktemp("s") / "in.ts"
    path.write_bytes(make_stream(services, SynthOptions(duration_s=2.0, bitrate_bps=2_000_000,
                                                        crypto_period_s=0.5)))
    return path


def test_stream_json_and_fail_on_alarm(faulty: Path) -> None:
    code, out, _ = run("diag", "stream", str(faulty), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["kind"] == "stream_probe"
    assert [s["name"] for s in data["services"]] == ["Channel 101", "Channel 102"]
    assert [a["code"] for a in data["alarms"]] == ["ECM_STOPPED"]
    assert data["crypto_period_s"] == pytest.approx(0.5, abs=0.01)
    code, _, _ = run("diag", "stream", str(faulty), "--json", "--fail-on-alarm")
    assert code == 8
    # thresholds are options: a 2 s ECM limit hides the stop of the last second
    code, out, _ = run("diag", "stream", str(faulty), "--json", "--ecm-gap-ms", "2000")
    assert json.loads(out)["alarms"] == []


def test_stream_tables_for_people(faulty: Path) -> None:
    code, out, _ = run("diag", "stream", str(faulty))
    assert code == 0
    for text in ("Services", "Channel 102", "ECM PIDs", "EMM PIDs", "ECM_STOPPED",
                 "Control-word changes"):
        assert text in out


def test_stream_from_stdin_and_errors(faulty: Path, tmp_path: Path) -> None:
    code, out, _ = run("diag", "stream", "-", "--json", input=faulty.read_bytes())
    assert code == 0 and json.loads(out)["source"] == "<stdin>"
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"hello" * 1000)
    code, _, err = run("diag", "stream", str(junk))
    assert code == 8 and "not an MPEG transport stream" in err and "Traceback" not in err
    code, _, err = run("diag", "stream", str(faulty), "--ca-system-id", "zz")
    assert code == 2 and "--ca-system-id" in err


def test_codes_en_ru_json() -> None:
    code, out, _ = run("diag", "codes", "--json")
    data = json.loads(out)
    assert len(data["reasons"]) == len(REASONS)
    fin = next(r for r in data["reasons"] if r["reason"] == "FINANCIAL_BLOCK")
    assert fin["screen_code"] == "E17" and fin["fix"].startswith("top up")
    code, out, _ = run("diag", "codes", "--lang", "ru", "--json")
    fin = next(r for r in json.loads(out)["reasons"] if r["reason"] == "FINANCIAL_BLOCK")
    assert fin["message"].startswith("Недостаточно средств") and fin["fix"].startswith("пополните")
    assert any(a["code"] == "CW_NOT_CHANGING" for a in json.loads(out)["alarms"])
    code, out, _ = run("diag", "codes", "--lang", "ru")
    assert code == 0 and "E30" in out and "Карта привязана" in out
    assert "ECM прекратились до конца потока" in out and english_in(out) == []


@pytest.fixture
def box_files(tmp_path: Path) -> tuple[Path, Path, Path, Key]:
    vendor = Key(bytes(range(16)), label="vendor")
    csk = Key(bytes(range(16, 32)), label="csk")
    rec = ChipIdRecord(chip_id=0x0A00BEEF, vendor="cas-sim chips", model="STB-1",
                       wrapped_csk=wrap_key(vendor, csk), firmware_version=0x01020300,
                       manufactured_s=1_750_000_000)
    chip = tmp_path / "chip.rec"
    chip.write_bytes(build_chip_id_record(rec))
    nvram = tmp_path / "nvram.json"
    save_nvram(nvram, Nvram(
        chip_id=rec.chip_id, boot_count=4, last_channel=24,
        counters={"ecm_sent": 40, "cw_unwrap_failed": 3, "ts_cc_errors": 0},
        last_emm=LastEmm(at_s=1_760_000_000, address_type="unique", sw=0x9811,
                         result="replayed"),
        last_ecm=LastEcm(at_s=1_760_000_000, channel=24, reason="PAIRING_MISMATCH"),
        pairing=PairingState(card_serial=2256884759, chip_id=rec.chip_id,
                             chip_blob=bytes(24))))
    key_file = tmp_path / "vendor.key"
    save_vendor_key(key_file, vendor)
    return chip, nvram, key_file, vendor


def test_box_reads_record_and_nvram(box_files: tuple[Path, Path, Path, Key]) -> None:
    chip, nvram, key_file, _ = box_files
    before = nvram.read_bytes()
    code, out, _ = run("diag", "box", "--chip-record", str(chip), "--nvram", str(nvram),
                       "--json")
    assert code == 0
    data = json.loads(out)
    assert data["chip_id"] == "0A00BEEF" and data["firmware_version"] == "1.2.3.0"
    assert data["last_ecm"]["screen_code"] == "E30"
    assert data["last_emm"]["result"] == "replayed"
    assert data["trouble"] == {"cw_unwrap_failed": 3}
    assert data["chip_ok"] is None
    assert any("paired with another box" in n for n in data["notes"])
    # with the vendor key: the chip is genuine, but the stored pairing blob is not its own
    code, out, _ = run("diag", "box", "--chip-record", str(chip), "--nvram", str(nvram),
                       "--vendor-key", str(key_file), "--json")
    data = json.loads(out)
    assert data["chip_ok"] is True and data["pairing"]["blob_opens_on_this_chip"] is False
    code, out, _ = run("diag", "box", "--chip-record", str(chip), "--nvram", str(nvram))
    assert code == 0 and "cw_unwrap_failed" in out and "PAIRING_MISMATCH" in out
    assert nvram.read_bytes() == before  # read only


def test_box_wrong_vendor_key_and_missing_nvram(box_files: tuple[Path, Path, Path, Key],
                                                tmp_path: Path) -> None:
    chip, _, _, _ = box_files
    other = tmp_path / "other.key"
    save_vendor_key(other, Key(bytes(16), label="other"))
    code, out, _ = run("diag", "box", "--chip-record", str(chip), "--nvram",
                       str(tmp_path / "none.json"), "--vendor-key", str(other), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["chip_ok"] is False and data["nvram_found"] is False
    assert any("does not open" in n for n in data["notes"])


def test_box_in_russian(box_files: tuple[Path, Path, Path, Key]) -> None:
    chip, nvram, key_file, _ = box_files
    code, out, _ = run("diag", "box", "--chip-record", str(chip), "--nvram", str(nvram),
                       "--vendor-key", str(key_file), "--lang", "ru")
    assert code == 0
    assert "приёмник 0A00BEEF" in out and "последний ECM" in out and "счётчики (NVRAM)" in out
    assert "Карта привязана к другому приёмнику" in out and "PAIRING_MISMATCH" in out
    assert english_in(out) == []
    _, english, _ = run("diag", "box", "--chip-record", str(chip), "--nvram", str(nvram),
                        "--vendor-key", str(key_file))
    assert "This card is paired with another receiver" in english


def test_stream_in_russian(faulty: Path) -> None:
    code, out, _ = run("diag", "stream", str(faulty), "--lang", "ru")
    assert code == 0
    assert "Сервисы" in out and "Тревоги" in out and "шкала времени" in out
    # The alarm texts too: "ECMs stopped" in the field engineer's language; states, kinds,
    # the time base and numbers in the Russian form.
    assert "последний ECM на 0.9 с" in out and "ошибка" in out
    assert "скремблирован" in out and "H.264 видео" in out and "PCR на PID" in out
    assert "\u00a0" in out.split("\n")[0]  # grouped like 499 892, not 499,892
    assert english_in(out) == []
    data = json.loads(run("diag", "stream", str(faulty), "--json", "--lang", "ru")[1])
    assert data["alarms"][0]["message"].startswith("PID ECM 3074")
    assert data["alarms"][0]["message_en"].startswith("ECM PID 3074")
    _, english, _ = run("diag", "stream", str(faulty))
    assert "Control-word changes (scrambling parity)" in " ".join(english.split())
