"""``cas diag visit`` on the command line: a card image, a box's files, a stream capture and
the head-end's database; the verdicts as JSON and as tables; the support ticket as JSON and
self-contained HTML."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from tests.fixtures.lang import english_in
from tests.integration.diag.bench import SPORT, DiagBench, Home, two_channel_home


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[DiagBench, Home, Path]:
    return two_channel_home(tmp_path_factory.mktemp("visit-cli"))


def args(bench: DiagBench, home: Home, stream: Path, *extra: str) -> list[str]:
    rom, vendor = bench.key_files()
    return ["diag", "visit", "--stream", str(stream), "--card-image", str(home.image),
            "--rom-key-file", str(rom), "--chip-record", str(home.chip_path), "--nvram",
            str(home.nvram), "--vendor-key", str(vendor), "--db", bench.db_url, *extra]


def run(argv: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, argv, env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


def test_visit_json(setup: tuple[DiagBench, Home, Path]) -> None:
    bench, home, stream = setup
    image = home.image.read_bytes()
    code, out, err = run(args(bench, home, stream, "--json"))
    assert code == 0, err
    data = json.loads(out)
    assert data["kind"] == "visit" and data["mode"] == "box"
    by_ch = {v["channel"]: v for v in data["verdicts"]}
    assert by_ch[1]["state"] == "OPEN" and by_ch[1]["findings"] == []
    assert by_ch[SPORT]["state"] == "LOCKED" and by_ch[SPORT]["screen_code"] == "E16B"
    assert by_ch[SPORT]["cause"] == "package 'Viasat Sport HD' not connected: subscribe"
    assert data["root_causes"][0]["cause"] == "CHANNEL_NOT_IN_PACKAGE"
    assert data["headend"]["account"] == home.account
    assert data["card"]["serial"] == f"{home.serial:010d}"
    assert data["card_at_arrival"]["status"] == "INACTIVE"  # the image as personalised
    assert data["card"]["status"] == "ACTIVE"  # after the stream's EMMs
    assert home.image.read_bytes() == image  # the image on disk is not changed


def test_visit_for_people(setup: tuple[DiagBench, Home, Path]) -> None:
    bench, home, stream = setup
    code, out, _ = run(args(bench, home, stream))
    assert code == 0
    assert "Causes, most likely first" in out
    assert "package 'Viasat Sport HD' not connected: subscribe" in out
    assert re.search(r"24\s+│\s+Viasat Sport HD\s+│\s+LOCKED", out)


def test_support_ticket_json_and_html(setup: tuple[DiagBench, Home, Path],
                                      tmp_path: Path) -> None:
    bench, home, stream = setup
    complaint = "channel 24 says E16B since yesterday <evening>"
    code, out, err = run(args(bench, home, stream, "--json", "--report",
                              str(tmp_path / "t.json"), "--complaint", complaint,
                              "--city", "Almaty"))
    assert code == 0, err
    assert json.loads(out)["report"] == {"path": str(tmp_path / "t.json"), "format": "json"}
    ticket = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert ticket["kind"] == "support_ticket"
    assert ticket["verification"] == {
        "account_number": home.account, "city": "Almaty", "device_type": "set-top box",
        "device_model": "cas-sim chips STB-1", "complaint": complaint,
        "time": "2026-11-01T12:00:00+00:00", "card_serial": f"{home.serial:010d}",
        "chip_id": f"{home.chip_id:08X}"}
    assert ticket["root_causes"][0]["summary"].startswith("package 'Viasat Sport HD'")
    assert ticket["stream"]["services"] and ticket["headend"]["subscriptions"]

    code, _, err = run(args(bench, home, stream, "--report", str(tmp_path / "t.html"),
                            "--complaint", complaint, "--city", "Almaty"))
    assert code == 0, err
    page = (tmp_path / "t.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"(src|href)\s*=|<script|<link", page)  # self-contained
    assert "channel 24 says E16B since yesterday &lt;evening&gt;" in page  # escaped
    assert "Almaty" in page and home.account in page and "E16B" in page
    assert "Канал не входит в подключённые пакеты" in page
    assert "package &#x27;Viasat Sport HD&#x27; not connected: subscribe" in page

    code, _, err = run(args(bench, home, stream, "--report", str(tmp_path / "t.pdf")))
    assert code == 2 and "FILE.json, FILE.html or FILE.txt" in err


def _english_in(text: str) -> list[str]:
    return english_in(text)


def test_visit_in_russian_holds_no_english_sentence(setup: tuple[DiagBench, Home, Path]) -> None:
    bench, home, stream = setup
    code, out, err = run(args(bench, home, stream, "--lang", "ru"))
    assert code == 0, err
    assert "Причины, самые вероятные первыми" in out
    assert "пакет 'Viasat Sport HD' не подключён: подключите" in out
    assert "режим: приёмник" in out and "канал входит в: Viasat Sport HD" in out
    assert re.search(r"24\s+│\s+Viasat Sport HD\s+│\s+ЗАКРЫТ", out)
    assert _english_in(out) == []
    # The same visit in English does hold them: the check can fail.
    _, english, _ = run(args(bench, home, stream, "--lang", "en"))
    assert "Causes, most likely first" in _english_in(english)
    # --lang before the command, CAS_LANG and the locale choose it too.
    for argv, env in ((["--lang", "ru", *args(bench, home, stream)], {}),
                      (args(bench, home, stream), {"CAS_LANG": "ru"}),
                      (args(bench, home, stream), {"LC_ALL": "ru_RU.UTF-8", "CAS_LANG": ""})):
        result = CliRunner().invoke(cli, argv, env={"COLUMNS": "250", **env})
        assert "Причины, самые вероятные первыми" in result.stdout, env
    data = json.loads(run(args(bench, home, stream, "--json", "--lang", "ru"))[1])
    by_ch = {v["channel"]: v for v in data["verdicts"]}
    assert data["lang"] == "ru"
    assert by_ch[SPORT]["cause"] == "пакет 'Viasat Sport HD' не подключён: подключите"


def test_ticket_in_russian_holds_no_english_sentence(setup: tuple[DiagBench, Home, Path],
                                                     tmp_path: Path) -> None:
    bench, home, stream = setup
    for name in ("t.html", "t.txt"):
        code, out, err = run(args(bench, home, stream, "--lang", "ru", "--report",
                                  str(tmp_path / name), "--city", "Алматы"))
        assert code == 0, err
        assert "заявка в поддержку записана" in out
        text = (tmp_path / name).read_text(encoding="utf-8")
        visible = text.split("<details>")[0]  # the HTML ends with the data as JSON
        assert "Данные для проверки" in visible and "Алматы" in visible
        assert "Заявка в поддержку — карта" in visible
        assert "пакет 'Viasat Sport HD' не подключён: подключите" in html.unescape(visible)
        assert _english_in(visible) == [], name
    page = (tmp_path / "t.html").read_text(encoding="utf-8")
    assert "<html lang='ru'>" in page
    # Money, days, states and the ledger follow the language (they were "2490.00 KZT",
    # "2026-11-01", "active", "payment by account ...").
    visible = html.unescape(page.split("<details>")[0])
    assert "2\u00a0490,00\u00a0₸" in visible and "0,00\u00a0₸" in visible
    assert "01.11.2026" in visible and "01.12.2026" in visible
    assert "01.11.2026, 12:00" in visible  # the visit's moment and the verification time
    assert "2026-11-01</td>" not in page.split("<details>")[0]
    assert "активна" in visible and "списание за пакет" in visible
    assert f"оплата по номеру (лицевой счёт) {home.account} (онлайн)" in visible
    assert "приёмник: CHANNEL_NOT_IN_PACKAGE — карта: SW 980B" in visible
    run(args(bench, home, stream, "--report", str(tmp_path / "en.txt")))
    assert "Verification data" in _english_in((tmp_path / "en.txt").read_text(encoding="utf-8"))


def test_visit_usage_errors(setup: tuple[DiagBench, Home, Path]) -> None:
    _, home, stream = setup
    code, _, err = run(["diag", "visit", "--stream", str(stream)])
    assert code == 2 and "--reader NAME or --card-image" in err
    code, _, err = run(["diag", "visit", "--stream", str(stream), "--card-image",
                        str(home.image)])
    assert code == 2 and "--rom-key-file" in err
