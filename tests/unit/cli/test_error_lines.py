"""Error lines in Russian from the real ``cas`` and ``stb`` programs (a process each, as a
field engineer runs them): click's usage messages and our typed errors on the common paths —
arguments, dates, the store's rules, a file that does not parse, a box input — say it in
Russian, never "(сообщение пока без перевода)", and keep the English under ``--json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.lang import english_in

BIN = Path(sys.executable).parent
#: The shipped scenarios' names (an unknown scenario's error lists them).
SCENARIOS = ("card-and-box", "operator-atvplus", "operator-mts", "operator-ntvplus",
             "operator-tvplus", "operator-uzonline", "renewal-and-blocks", "stream-events")
UNTRANSLATED = "пока без перевода"

pytestmark = pytest.mark.slow  # a process per command line


def _run(program: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CAS_LANG", "CAS_DB_URL")}
    env.update(LC_ALL="C.UTF-8", CAS_DATA_DIR=str(cwd / "data"), COLUMNS="200")
    return subprocess.run([str(BIN / program), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60, check=False)


def _russian_line(result: subprocess.CompletedProcess[str], *, code: int,
                  allow: tuple[str, ...] = ()) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    line = result.stderr.strip()
    assert line.startswith("ошибка: ") and "\n" not in line, line
    assert UNTRANSLATED not in line, line
    assert english_in(line, allow=allow) == [], line
    return line


@pytest.mark.parametrize(("args", "code", "expected"), [
    (["account", "show", "--nosuch", "x"], 2, "нет такого параметра '--nosuch'"),
    (["account", "list", "--limi", "3"], 2, "может быть, '--limit'?"),
    (["acount"], 2, "нет такой команды 'acount'"),
    (["account", "show"], 2, "не указан аргумент 'REF'"),
    (["account", "show", "a", "b"], 2, "лишние аргументы (b)"),
    (["account", "list", "--limit", "0"], 2, "вне диапазона"),
    (["account", "list", "--limit", "abc"], 2, "не целое число"),
    (["account", "create", "--kind", "x", "--surname", "a", "--name", "b"], 2,
     "не одно из 'prepaid', 'postpaid'"),
])
def test_click_usage_errors_in_russian(tmp_path: Path, args: list[str], code: int,
                                       expected: str) -> None:
    line = _russian_line(_run("cas", "--lang", "ru", *args, cwd=tmp_path), code=code)
    assert expected in line


def test_click_usage_errors_stay_english_in_english(tmp_path: Path) -> None:
    english = _run("cas", "account", "list", "--limi", "3", cwd=tmp_path).stderr
    assert english == ("error: No such option '--limi'. Did you mean '--limit'? "
                       "(try 'cas account list --help')\n")


def test_our_errors_on_the_common_paths_in_russian(tmp_path: Path) -> None:
    db = ["--db-url", f"sqlite:///{tmp_path / 'cas.sqlite'}"]
    assert _run("cas", *db, "operator", "use", "ntvplus", cwd=tmp_path).returncode == 0
    cases = [
        ((*db, "clock", "set", "1st of March"), 2, "неверная дата '1st of March'"),
        ((*db, "account", "show", "999"), 6, "по номеру '999' ничего не найдено"),
        ((*db, "account", "show", "１０"), 2,
         "номер лицевого счёта, договора или карты '１０': пишите числа цифрами ASCII 0-9"),
        ((*db, "account", "create", "--surname", " ", "--name", "Ivan"), 7,
         "фамилия: обязательное значение"),
        ((*db, "card", "kill", "2256884759"), 2, "уничтожение карты необратимо: добавьте --yes"),
        (("decode", "--as", "ecm", "80"), 3, "ecm: в секции не меньше 3 байт, получено 1"),
        (("kit", "build", "nosuch", "-o", str(tmp_path / "kit")), 2,
         "нет файла сценария 'nosuch'"),
    ]
    for args, code, expected in cases:
        line = _russian_line(_run("cas", "--lang", "ru", *args, cwd=tmp_path), code=code,
                             allow=SCENARIOS)
        assert expected in line, line


def test_the_box_errors_in_russian(tmp_path: Path) -> None:
    line = _russian_line(_run("stb", "--lang", "ru", "scan", "/nonexistent/in.ts",
                              "--chip-record", "/nonexistent/chip.bin", cwd=tmp_path), code=2)
    assert "'/nonexistent/chip.bin' не существует" in line


def test_under_json_the_russian_message_keeps_its_english(tmp_path: Path) -> None:
    result = _run("cas", "--lang", "ru", "--json", "decode", "--as", "ecm", "80", cwd=tmp_path)
    doc = json.loads(result.stderr)["error"]
    assert doc == {"code": "FORMAT_ERROR", "exit_code": 3,
                   "message": "ecm: в секции не меньше 3 байт, получено 1",
                   "message_en": "ecm: a section has at least 3 bytes, got 1"}
