"""``cas card personalise`` / ``cas card serve`` argument handling through click's CliRunner
(the store is real SQLite in a temporary data dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.card.eeprom import load_card_image, load_image
from cas.card.personalise import check_record_keys
from cas.cli.main import cli
from cas.formats.cardstate import DEFAULT_CARD_STATE
from cas.formats.records import parse_card_batch
from cas.sharing import SharingPolicy
from cas.store.engine import open_store

from .helpers import KEYS, make_client


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CAS_OPERATOR_KEY", raising=False)
    monkeypatch.delenv("CAS_DB_URL", raising=False)
    d = tmp_path / "data"
    d.mkdir()
    KEYS.save(d / "operator-keys.toml")
    return d


@pytest.fixture
def store_dir(data_dir: Path) -> Path:
    """The data dir with a store: card personalise registers cards in an existing store
    (only set-up commands create one)."""
    open_store(data_dir=data_dir, create=True).dispose()
    return data_dir


def invoke(data_dir: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])


def test_personalise_registers_and_writes_images_and_batch(store_dir: Path) -> None:
    data_dir = store_dir
    out = data_dir / "cards"
    result = invoke(data_dir, "--json", "card", "personalise", "-n", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    serials = [int(c["serial"]) for c in doc["cards"]]
    assert serials == [1_000_000_001, 1_000_000_002, 1_000_000_003]
    # the store gave them consecutive slots in one group
    assert [(c["shared_address"], c["member_position"]) for c in doc["cards"]] == \
        [(1, 0), (1, 1), (1, 2)]
    batch = parse_card_batch(Path(doc["batch"]).read_bytes())
    assert [r.serial for r in batch.records] == serials
    for card, rec in zip(doc["cards"], batch.records, strict=True):
        assert load_image(card["image"]) == rec
        check_record_keys(rec, KEYS.transport_key())
    # next run continues after the highest registered serial
    again = invoke(data_dir, "--json", "card", "personalise", "-n", "1", "--out", str(out))
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["cards"][0]["serial"] == "1000000004"
    assert (data_dir / "cas.sqlite").exists()


def test_personalise_without_store_uses_serial_groups(data_dir: Path) -> None:
    result = invoke(data_dir, "--json", "card", "personalise", "-n", "2", "--start-serial",
                    "513", "--no-register", "--out", str(data_dir / "c"))
    assert result.exit_code == 0, result.output
    cards = json.loads(result.output)["cards"]
    assert [(c["shared_address"], c["member_position"]) for c in cards] == [(2, 1), (2, 2)]
    assert not (data_dir / "cas.sqlite").exists()


@pytest.mark.parametrize("args", [
    ["card", "personalise", "--out", "x"],  # neither --count nor --batch
    ["card", "personalise", "-n", "1", "--batch", __file__, "--out", "x"],
    ["card", "personalise", "-n", "1", "--pin", "12", "--no-register", "--out", "x"],
])
def test_personalise_usage_errors(data_dir: Path, args: list[str]) -> None:
    result = invoke(data_dir, *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_personalise_refuses_to_overwrite_a_card(data_dir: Path) -> None:
    args = ["card", "personalise", "-n", "1", "--start-serial", "700", "--no-register",
            "--out", str(data_dir / "c")]
    assert invoke(data_dir, *args).exit_code == 0
    second = invoke(data_dir, *args)
    assert second.exit_code == 2 and "already exists" in second.output
    assert invoke(data_dir, *args, "--force").exit_code == 0


def test_personalise_without_keys_fails_cleanly(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAS_OPERATOR_KEY", raising=False)
    result = invoke(tmp_path, "card", "personalise", "-n", "1", "--no-register",
                    "--out", str(tmp_path / "c"))
    assert result.exit_code == 4 and "cas keys init" in result.output


def test_serve_bad_endpoint(data_dir: Path) -> None:
    result = invoke(data_dir, "card", "personalise", "-n", "1", "--no-register", "--out",
                    str(data_dir / "c"))
    image = json.loads(invoke(data_dir, "--json", "card", "personalise", "-n", "1",
                              "--start-serial", "900", "--no-register", "--out",
                              str(data_dir / "c")).output)["cards"][0]["image"]
    assert result.exit_code == 0
    bad = invoke(data_dir, "card", "serve", "--image", image, "--vpcd", "localhost:notaport")
    assert bad.exit_code == 2 and "port must be a number" in bad.output


def test_personalise_sets_the_sharing_check_in_the_images(tmp_path: Path,
                                                          data_dir: Path) -> None:
    out = tmp_path / "cards"
    result = invoke(data_dir, "--json", "card", "personalise", "-n", "1", "--out", str(out),
                    "--no-register", "--sharing-policy", "refuse", "--tuners", "3")
    assert result.exit_code == 0, result.output
    (card,) = json.loads(result.output)["cards"]
    _record, state = load_card_image(card["image"])
    assert (state.sharing.policy, state.sharing.tuners) == (SharingPolicy.REFUSE, 3)
    default = invoke(data_dir, "--json", "card", "personalise", "-n", "1", "--out",
                     str(tmp_path / "plain"), "--no-register")
    (plain,) = json.loads(default.output)["cards"]
    assert load_card_image(plain["image"])[1] == DEFAULT_CARD_STATE  # the record alone


def test_sharing_policy_emm_reaches_a_card(tmp_path: Path, store_dir: Path) -> None:
    out = tmp_path / "policy.sections"
    r = invoke(store_dir, "--json", "card", "sharing-policy", "refuse", "--tuners", "4",
               "--clear", "--card", "1000000001", "--out", str(out))
    assert r.exit_code == 0, r.output
    applet, client = make_client()
    client.process_emm(out.read_bytes())
    state = applet.eeprom.state
    assert (state.sharing.policy, state.sharing.tuners) == (SharingPolicy.REFUSE, 4)
    # without --out the EMM is queued for a running head-end: only for a card in the store
    bad = invoke(store_dir, "card", "sharing-policy", "refuse", "--card", "1000000001")
    assert bad.exit_code == 6 and "1000000001" in bad.output, bad.output
    assert "Traceback" not in bad.output


def test_personalise_without_images_then_an_image_on_request(store_dir: Path) -> None:
    data_dir = store_dir
    out = data_dir / "cards"
    result = invoke(data_dir, "--json", "card", "personalise", "-n", "5", "--no-images",
                    "--workers", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [c["image"] for c in doc["cards"]] == [None] * 5
    assert not list(out.glob("*.img"))
    batch = parse_card_batch(Path(doc["batch"]).read_bytes())
    wanted = batch.records[3]
    got = invoke(data_dir, "--json", "card", "image", "--batch", doc["batch"],
                 "--serial", str(wanted.serial), "--out", str(out))
    assert got.exit_code == 0, got.output
    path = json.loads(got.output)["images"][0]["image"]
    assert load_image(path) == wanted
    again = invoke(data_dir, "card", "image", "--batch", doc["batch"],
                   "--serial", str(wanted.serial), "--out", str(out))
    assert again.exit_code == 2 and "already exists" in again.output
    missing = invoke(data_dir, "card", "image", "--batch", doc["batch"], "--serial", "42",
                     "--out", str(out))
    assert missing.exit_code == 2 and "card 0000000042 is not in" in missing.output
    empty = data_dir / "empty.casb"
    empty.write_bytes(b"")
    bad = invoke(data_dir, "card", "image", "--batch", str(empty), "--serial", "42",
                 "--out", str(out))
    assert bad.exit_code != 0 and "Traceback" not in bad.output
