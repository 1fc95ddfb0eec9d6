"""The subscriber CLI end to end through click's CliRunner, on both databases: rich output
for people, ``--json`` for scripts, every command acting at the simulated "now"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from cas.formats.chipid import ChipBatch, ChipIdRecord, build_chip_batch


class Cas:
    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> str:
        r = self.runner.invoke(cli, ["--db-url", self.db_url, *args], catch_exceptions=False)
        assert r.exit_code == code, (args, r.stdout, r.stderr)
        return r.stdout

    def json(self, *args: str) -> Any:
        r = self.runner.invoke(cli, ["--json", "--db-url", self.db_url, *args],
                               catch_exceptions=False)
        assert r.exit_code == 0, (args, r.stdout, r.stderr)
        return json.loads(r.stdout)


@pytest.fixture
def cas(db_url: str) -> Cas:
    return Cas(db_url)


def test_atv_flow_with_json(cas: Cas) -> None:
    out = cas.json("operator", "use", "atvplus", "--clock-start", "2026-03-01")
    assert out["packages"] == 2 and out["channels"] == 153
    acc = cas.json("account", "create", "--surname", "Aliyev", "--name", "Rashad",
                   "--phone", "+994501234567")
    number = acc["account_number"]
    assert len(number) == 12
    card = cas.json("card", "add", "2256884759", "--account", number)
    assert (card["shared_address"], card["member_position"]) == (1, 0)
    cas("pay", "--card", "2256884759", "1", "--method", "terminal")
    p1 = cas.json("pay", "--card", "2256884759", "10", "--method", "payment_card",
                  "--package", "sport", "--payment-id", "atv-1")
    assert (p1["balance_minor"], p1["pending"], p1["activated"]) == (1100, ["sport"], [])
    p2 = cas.json("pay", "--card", "2256884759", "10", "--method", "payment_card",
                  "--package", "sport", "--payment-id", "atv-2")
    assert (p2["balance_minor"], p2["activated"]) == (900, ["sport"])
    subs = cas.json("package", "list", number)
    assert [(s["package_code"], s["status"], s["days_left"]) for s in subs] == [
        ("sport", "active", 30)]
    st = cas.json("statement", number)
    assert st["closing_balance_minor"] == 900 and len(st["lines"]) == 4
    shown = cas.json("card", "show", "2256884759")
    assert shown["rights"]["status"] == "ACTIVE"
    assert [e["package_id"] for e in shown["rights"]["entitlements"]] == [2]
    adv = cas.json("clock", "advance", "--days", "31")
    assert [e["kind"] for e in adv["events"]] == ["reminder", "blocked"]
    assert cas.json("balance", number)["block_cause"] == "unpaid_renewal"
    text = cas("statement", number)
    assert "12.00 AZN" in text and "closing 9.00 AZN" in text


def test_boxes_pairing_and_lookup(cas: Cas, tmp_path: Path) -> None:
    cas("operator", "use", "mts", "--clock-start", "2026-03-01")
    number = cas.json("account", "create", "--surname", "Smirnov", "--name", "Oleg")[
        "account_number"]
    batch = ChipBatch(created_s=1_772_323_200, issuer="AcmeChips", records=tuple(
        ChipIdRecord(chip_id=c, vendor="AcmeChips", model="AC-7", wrapped_csk=bytes([c & 0xFF]) * 24,
                     firmware_version=0x02000001, manufactured_s=1_770_000_000)
        for c in (0x0A0B0C0D, 0x0A0B0C0E)))
    path = tmp_path / "chips.bin"
    path.write_bytes(build_chip_batch(batch))
    imp = cas.json("box", "import", str(path))
    assert (imp["added"], imp["unchanged"]) == (2, 0)
    assert cas.json("box", "import", str(path))["unchanged"] == 2
    cas("card", "add", "1000000001", "--account", number)
    cas("box", "link", "0A0B0C0D", number, "--card", "1000000001")
    boxes = cas.json("box", "list")
    assert [(b["chip_id"], b["paired_card"]) for b in boxes] == [(0x0A0B0C0D, 1000000001),
                                                                  (0x0A0B0C0E, None)]
    assert cas.json("lookup", "--chip-id", "0a0b0c0d", "--card", "1000000001") == {
        "account_number": number}
    r = cas.runner.invoke(cli, ["--db-url", cas.db_url, "lookup", "--chip-id", "0A0B0C0E",
                                "--card", "1000000001"])
    assert r.exit_code == 6 and r.stderr.startswith("error: no account matches")
    assert "AcmeChips" in cas("box", "show", "0A0B0C0D")
    corrupt = bytearray(path.read_bytes())
    corrupt[-1] ^= 1
    path.write_bytes(bytes(corrupt))
    r = cas.runner.invoke(cli, ["--db-url", cas.db_url, "box", "import", str(path)])
    assert r.exit_code == 3  # FormatError: the batch's SHA-256 no longer matches


def test_ntv_sms_suspend_promise_and_text_output(cas: Cas) -> None:
    cas("operator", "use", "ntvplus", "--clock-start", "2026-03-01")
    number = cas.json("account", "create", "--surname", "Petrov", "--name", "Pyotr",
                      "--patronymic", "Petrovich", "--contract", "7701234",
                      "--email", "p@example.ru")["account_number"]
    cas("card", "add", "2256884759")
    cas("card", "link", "2256884759", "7701234")
    out = cas("sms", "ntvplus 2256884759 425", "--payment-id", "sms-1")
    assert "paid 425.00 RUB" in out and f"account {number}" in out
    cas("pay", "--contract", "7701234", "174")
    assert cas.json("package", "subscribe", "7701234", "basic")["status"] == "active"
    sus = cas.json("suspend", "7701234", "--days", "14")
    assert sus["suspended_until"].startswith("2026-03-15")
    assert cas.json("card", "show", "2256884759")["rights"]["status"] == "SUSPENDED"
    assert cas.json("clock", "advance", "--to", "2026-03-20")["events"][0]["kind"] == "resumed"
    assert cas.json("package", "list", "7701234")[0]["end"].startswith("2026-04-14")
    cas("clock", "advance", "--days", "30")
    assert cas.json("balance", "7701234")["block_cause"] == "unpaid_renewal"
    assert cas.json("promise", "7701234")["promised_minor"] == 59900
    assert cas.json("card", "show", "2256884759")["rights"]["status"] == "ACTIVE"
    notes = cas.json("account", "notifications", number)
    assert {n["kind"] for n in notes} >= {"suspended", "resumed", "financial_block", "promise"}
    assert "Petrovich" in cas("account", "show", "2256884759")


def test_tv_devices_kids_region_promo_and_catalog(cas: Cas) -> None:
    cas("operator", "use", "tvplus", "--clock-start", "2026-03-01")
    number = cas.json("account", "create", "--surname", "Abenov", "--name", "Arman")[
        "account_number"]
    cas("card", "add", "2256884759", "--account", number)
    ver = cas.json("account", "verify", number, "--phone", "+77015550101")
    r = cas.runner.invoke(cli, ["--db-url", cas.db_url, "account", "confirm", ver["token"],
                                "000000" if ver["code"] != "000000" else "111111"])
    assert r.exit_code == 7 and "4 attempts left" in r.stderr
    cas("account", "confirm", ver["token"], ver["code"])
    view = cas.json("promo", "redeem", number, "TVPLUS30", "--verification", ver["token"])
    assert (view["package_code"], view["days_left"]) == ("start", 30)
    assert cas.json("promo", "list")[0]["used"] == 1
    assert cas.json("card", "kids", "2256884759", "on")["maturity_limit"] == 12
    cas("card", "region", "2256884759", "643")
    assert cas.json("card", "show", "2256884759")["rights"]["region"] == 643
    logins = [cas.json("account", "login-device", number, d) for d in ("phone", "tv")]
    assert logins[1]["logged_out"] == ["phone"]
    assert cas.json("account", "screens", number, "2")["screens_limit"] == 3
    pkgs = {p["code"]: p for p in cas.json("catalog", "show")}
    assert pkgs["viasat-nature-history"]["name"] == "Viasat Nature/History HD"
    chans = cas.json("catalog", "channels", "--package", "viasat-sport")
    assert [c["name"] for c in chans] == ["Viasat Sport HD"] and chans[0]["regions"] == [398]
    assert {p["key"] for p in cas.json("operator", "list")} == {
        "tvplus", "ntvplus", "atvplus", "mts", "uzonline"}
    assert cas.json("operator", "show")["currency"] == "KZT"
    cas("renewal", "off", number)
    assert cas.json("package", "list", number)[0]["auto_renew"] is False
    r = cas.runner.invoke(cli, ["--db-url", cas.db_url, "card", "kill", "2256884759"])
    assert r.exit_code == 2
    cas("card", "kill", "2256884759", "--yes")
    assert cas.json("card", "list")[0]["status"] == "killed"
    assert cas.json("account", "adjust", number, "-5.50", "--reason", "fee")[
        "balance_minor"] == -550
