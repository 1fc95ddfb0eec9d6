"""``[[ca_system]]`` tables of the head-end's TOML file: other CA systems' ECMGs, read and
checked once, every mistake a one-line ConfigError naming the table and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.errors import ConfigError
from cas.live.config import LiveConfig, load_config
from cas.live.config_simulcrypt import AcMode

BASE = """
[output]
url = "udp://127.0.0.1:5000"
[[service]]
channel = 1
source = "loop:clear.ts"
[[service]]
channel = 2
source = "loop:clear.ts"
"""

TWO = BASE + """
[[ca_system]]
ca_system_id = 0x4AD0
ecmg = "127.0.0.1:2100"
backup_ecmg = "10.0.0.2:2100"
super_cas_id = 0x4AD00002
ecm_pid_base = 0x0E00
private_data = "01 02 a0"
access_criteria = "reference"
protocol_version = 3

[[ca_system]]
ca_system_id = 0x0B00
ecmg = "ecmg.lab:3337"
"""


def _load(tmp_path: Path, text: str) -> LiveConfig:
    (tmp_path / "clear.ts").write_bytes(b"\x47" + bytes(187))
    path = tmp_path / "headend.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_two_ca_systems(tmp_path: Path) -> None:
    cfg = _load(tmp_path, TWO)
    one, two = cfg.ca_systems
    assert (one.ca_system_id, one.ecmg_host, one.ecmg_port) == (0x4AD0, "127.0.0.1", 2100)
    assert one.has_backup and (one.backup_host, one.backup_port) == ("10.0.0.2", 2100)
    assert one.super_cas_id == 0x4AD00002
    assert [one.ecm_pid(k) for k in range(2)] == [0x0E00, 0x0E01]
    assert one.private_data == bytes([1, 2, 0xA0])
    assert one.access_criteria is AcMode.REFERENCE and one.protocol_version == 3
    # defaults: Super_CAS_id from the id, the second table's PIDs after the first's default
    assert not two.has_backup and two.super_cas_id == 0x0B000001
    assert two.ecm_pid(0) == 0x0D20 and two.private_data == b""
    assert two.access_criteria is AcMode.FULL and two.protocol_version == 2
    assert (two.reconnect_min_s, two.reconnect_max_s) == (0.5, 10.0)


def test_no_ca_system_is_the_default(tmp_path: Path) -> None:
    assert _load(tmp_path, BASE).ca_systems == ()


def test_access_criteria_as_hex(tmp_path: Path) -> None:
    cfg = _load(tmp_path, BASE + '[[ca_system]]\nca_system_id = 0x100\necmg = "h:1"\n'
                'access_criteria = "hex:c0ffee"\n')
    assert cfg.ca_systems[0].access_criteria is AcMode.HEX
    assert cfg.ca_systems[0].access_criteria_hex == bytes.fromhex("c0ffee")


ONE = BASE + '[[ca_system]]\nca_system_id = 0x4AD0\necmg = "127.0.0.1:2100"\n'


MISTAKES = [
    (BASE + "[[ca_system]]\necmg = \"h:1\"\n", "[ca_system.1].ca_system_id: required"),
    (BASE + "[[ca_system]]\nca_system_id = 0x4AD0\n", "[ca_system.1].ecmg: required"),
    (BASE + '[[ca_system]]\nca_system_id = 0xDEAD\necmg = "h:1"\n',
     "[ca_system.1].ca_system_id: 0xdead is our own CA system"),
    (ONE + '[[ca_system]]\nca_system_id = 0x4AD0\necmg = "h:2"\n',
     "[ca_system.2].ca_system_id: 0x4ad0 is already [ca_system.1]"),
    (ONE.replace('"127.0.0.1:2100"', '"127.0.0.1"'),
     "[ca_system.1].ecmg: '127.0.0.1': expected HOST:PORT"),
    (ONE + 'backup_ecmg = "127.0.0.1:2100"\n', "[ca_system.1].backup_ecmg: is the same"),
    (ONE + "super_cas_id = 0x12340001\n", "[ca_system.1].super_cas_id: 0x12340001: the top"),
    (ONE + 'private_data = "xyz"\n', "[ca_system.1].private_data: 'xyz' is not hex"),
    (ONE + f'private_data = "{"00" * 252}"\n', "[ca_system.1].private_data: 252 bytes"),
    (ONE + "ecm_pid_base = 0x1FFE\n", "[ca_system.1].ecm_pid_base: 0x1ffe + 2 services"),
    (ONE + "ecm_pid_base = 0x0C00\n", "[ca_system.1].ecm_pid_base: 0xc00 is also [emm].pid"),
    (ONE + '[[ca_system]]\nca_system_id = 0x4AD1\necmg = "h:2"\necm_pid_base = 0x0D01\n',
     "[ca_system.2].ecm_pid_base: 0xd01 is also an ECM PID of [ca_system.1]"),
    (ONE + 'access_criteria = "all"\n', "[ca_system.1].access_criteria: 'all' is not"),
    (ONE + 'access_criteria = "hex:zz"\n', "[ca_system.1].access_criteria: 'hex:zz'"),
    (ONE + "protocol_version = 4\n", "[ca_system.1].protocol_version: 4 outside 1..3"),
    (ONE + "reconnect_min_s = 5\nreconnect_max_s = 1\n",
     "[ca_system.1].reconnect_max_s: 1 is below"),
    (ONE + "ecm_pid = 0x100\n", "[ca_system.1].ecm_pid: unknown key"),
    (BASE + "[ca_system]\nca_system_id = 1\n", "[[ca_system]]: expected an array of tables"),
]


@pytest.mark.parametrize("text,message", MISTAKES)
def test_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    assert message in _error(tmp_path, text)


@pytest.mark.parametrize("text", [text for text, _message in MISTAKES])
def test_mistakes_are_said_in_russian(tmp_path: Path, text: str) -> None:
    """Each mistake names its catalogue message: English as raised, Russian with no English
    sentence left (README, "Errors")."""
    from cas.i18n import Translator
    from tests.fixtures.lang import english_in

    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    exc = info.value
    assert exc.message_id is not None, str(exc)
    assert Translator("en").error(exc.message_id, exc.message_params) == str(exc)
    ru = Translator("ru").error(exc.message_id, exc.message_params)
    assert ru is not None and english_in(ru) == [], ru
