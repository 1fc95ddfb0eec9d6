"""The head-end's TOML file: every section read, every mistake a one-line error naming the
file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.errors import ConfigError
from cas.headend.scrambler import Algorithm
from cas.live.config import (
    EcmSource,
    LiveConfig,
    LogFormat,
    OutputKind,
    SourceKind,
    load_config,
)

FULL = """
[headend]
data_dir = "data"
db_url = "postgresql+psycopg://u@h/db"
ca_system_id = 0xBEEF
provider = "TV+"

[output]
url = "udp://239.1.1.1:1234"
ttl = 4
interface = "127.0.0.1"
packets_per_datagram = 7

[scrambling]
algorithm = "cissa"
crypto_period_s = 2.5
ecm_repetition_ms = 200
ecm_source = "simulcrypt"
ecmg = "127.0.0.1:2000"
super_cas_id = 0xBEEF0001
cw_log = "cw.jsonl"

[[service]]
channel = 1
source = "loop:clear.ts"

[[service]]
channel = 2
source = "lavfi:testsrc"
scrambled = false

[[service]]
channel = 3
source = "udp://@239.2.2.2:6000"
ecm_pid = 0x0D00
program = 1003

[emm]
pid = 0x0C01
repeat_count = 5
repeat_window_s = 3.0
cycle_bitrate_bps = 50000
poll_interval_s = 0.25
mux = "emmg://127.0.0.1:3000"
client_id = 7
data_id = 2
bandwidth_kbps = 64

[ops]
listen = "127.0.0.1:0"
log = "text"
"""

MINIMAL = """
[output]
url = "udp://127.0.0.1:5000"
[[service]]
channel = 1
source = "loop:clear.ts"
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


def test_full_file(tmp_path: Path) -> None:
    cfg = _load(tmp_path, FULL)
    assert cfg.headend.data_dir == tmp_path / "data"
    assert cfg.headend.ca_system_id == 0xBEEF
    assert cfg.output.kind is OutputKind.UDP and cfg.output.multicast
    assert (cfg.output.host, cfg.output.port, cfg.output.ttl) == ("239.1.1.1", 1234, 4)
    sc = cfg.scrambling
    assert sc.algorithm is Algorithm.CISSA and sc.crypto_period_ms == 2500
    assert sc.ecm_source is EcmSource.SIMULCRYPT and (sc.ecmg_host, sc.ecmg_port) == (
        "127.0.0.1", 2000)
    assert sc.cw_log == tmp_path / "cw.jsonl"
    kinds = [s.source.kind for s in cfg.services]
    assert kinds == [SourceKind.LOOP, SourceKind.LAVFI, SourceKind.UDP]
    assert cfg.services[0].source.path == tmp_path / "clear.ts"
    assert cfg.services[1].scrambled is False
    assert (cfg.services[2].source.host, cfg.services[2].source.port) == ("239.2.2.2", 6000)
    assert cfg.services[2].ecm_pid == 0x0D00 and cfg.services[2].program == 1003
    assert cfg.emm.pid == 0x0C01 and cfg.emm.external_mux
    assert (cfg.emm.mux_host, cfg.emm.mux_port, cfg.emm.client_id) == ("127.0.0.1", 3000, 7)
    assert cfg.ops.listen_port == 0 and cfg.ops.log is LogFormat.TEXT
    assert sc.super_cas_id == 0xBEEF0001


def test_super_cas_id_follows_the_ca_system_id(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "[headend]\nca_system_id = 0x1234\n" + MINIMAL)
    assert cfg.scrambling.super_cas_id == 0x12340001


def test_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path, MINIMAL)
    assert cfg.output.packets_per_datagram == 7
    assert cfg.output.wake_interval_us == 200
    assert cfg.scrambling.algorithm is Algorithm.CSA2
    assert cfg.scrambling.crypto_period_ms == 10_000 and cfg.scrambling.ecm_repetition_ms == 100
    assert cfg.scrambling.ecm_source is EcmSource.INTERNAL
    assert cfg.services[0].scrambled is True
    assert cfg.emm.repeat_count == 3 and not cfg.emm.external_mux
    assert (cfg.ops.listen_host, cfg.ops.listen_port) == ("127.0.0.1", 9100)


@pytest.mark.parametrize("url,kind", [
    ("rtp://127.0.0.1:5000", OutputKind.RTP), ("-", OutputKind.STDOUT),
    ("file:///tmp/x.ts", OutputKind.FILE), ("file://rel.ts", OutputKind.FILE)])
def test_output_kinds(tmp_path: Path, url: str, kind: OutputKind) -> None:
    cfg = _load(tmp_path, MINIMAL.replace("udp://127.0.0.1:5000", url))
    assert cfg.output.kind is kind


@pytest.mark.parametrize("change,expected", [
    (("source = \"loop:clear.ts\"", "source = \"rtsp://x\""),
     "headend.toml: [service.1].source: unknown source kind 'rtsp'"),
    (("source = \"loop:clear.ts\"", "source = \"loop:missing.ts\""),
     "[service.1].source: "),
    (("channel = 1", "channel = \"one\""), "[service.1].channel: expected an integer"),
    (("url = \"udp://127.0.0.1:5000\"", "url = \"udp://127.0.0.1\""),
     "[output].url: 'udp://127.0.0.1': expected udp://HOST:PORT"),
    (("url = \"udp://127.0.0.1:5000\"", "url = \"http://x:1\""), "[output].url: "),
    (("[output]", "[output]\npackets_per_datagram = 8"),
     "[output].packets_per_datagram: 8 outside 1..7"),
    (("[output]", "[output]\nttl = 0"), "[output].ttl: 0 outside 1..255"),
    (("[output]", "[output]\nwake_interval_us = 6000"),
     "[output].wake_interval_us: 6000 outside 0..5000"),
    (("[output]", "[output]\nbogus = 1"), "[output].bogus: unknown key"),
    (("[output]", "[scrambling]\nalgorithm = \"des\"\n[output]"),
     "[scrambling].algorithm: 'des' is not one of 'csa2', 'cissa'"),
    (("[output]", "[scrambling]\ncrypto_period_s = 1.05\n[output]"),
     "[scrambling].crypto_period_s: 1.05 is not a multiple of 0.1 s"),
    (("[output]", "[scrambling]\ncrypto_period_s = 1\necm_repetition_ms = 2000\n[output]"),
     "[scrambling].ecm_repetition_ms: 2000 ms is longer than the crypto-period"),
    (("[output]", "[scrambling]\necm_source = \"simulcrypt\"\n[output]"),
     "[scrambling].ecmg: required"),
    (("[output]", "[emm]\nmux = \"tcp://x:1\"\n[output]"), "[emm].mux: "),
    (("[output]", "[ops]\nlisten = \"nowhere\"\n[output]"), "[ops].listen: "),
    (("[output]", "[ops]\nlog = \"xml\"\n[output]"), "[ops].log: 'xml' is not one of"),
    (("[output]", "[nonsense]\n[output]"), "[nonsense]: unknown section"),
    (("[[service]]", "[[service]]\nchannel = 1\nsource = \"lavfi:testsrc\"\n[[service]]"),
     "[service.2].channel: channel 1 is already [service.1]"),
    (("[output]", "[emm]\npid = 0x0C10\n[output]"), None),
])
def test_errors_name_the_key(tmp_path: Path, change: tuple[str, str],
                             expected: str | None) -> None:
    text = MINIMAL.replace(change[0], change[1], 1)
    if expected is None:  # a valid variation
        _load(tmp_path, text)
        return
    assert expected in _error(tmp_path, text)


def test_emm_pid_clashing_with_an_ecm_pid(tmp_path: Path) -> None:
    text = MINIMAL + "ecm_pid = 0x0C00\n"
    assert "[emm].pid: 0xc00 is also the ECM PID of [service.1]" in _error(tmp_path, text)


def test_no_service(tmp_path: Path) -> None:
    assert "[[service]]: at least one service" in _error(
        tmp_path, "[output]\nurl = \"-\"\n")


def test_no_output(tmp_path: Path) -> None:
    assert "[output]: required" in _error(
        tmp_path, "[[service]]\nchannel = 1\nsource = \"loop:clear.ts\"\n")


def test_not_toml(tmp_path: Path) -> None:
    assert "headend.toml: not valid TOML" in _error(tmp_path, "[output\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_a_config_error_in_russian(tmp_path: Path) -> None:
    """The same file, table and key, the problem in Russian (README, "Errors")."""
    from cas.i18n import Translator

    (tmp_path / "clear.ts").write_bytes(b"\x47" + bytes(187))
    path = tmp_path / "headend.toml"
    path.write_text(FULL.replace('url = "udp://', 'url = 5\nx_url = "udp://'), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message_id is not None
    ru = Translator("ru").error(info.value.message_id, info.value.message_params)
    assert ru is not None and ru.endswith("[output].url: ожидается строка, получено int"), ru


def test_backup_ecmg_of_our_own_ca_system(tmp_path: Path) -> None:
    """``[scrambling] backup_ecmg``: our ECMG's backup, as a ``[[ca_system]]`` has one."""
    cfg = _load(tmp_path, FULL.replace('ecmg = "127.0.0.1:2000"\n',
                                       'ecmg = "127.0.0.1:2000"\nbackup_ecmg = "10.0.0.2:2001"\n'))
    assert (cfg.scrambling.backup_host, cfg.scrambling.backup_port) == ("10.0.0.2", 2001)
    assert _load(tmp_path, FULL).scrambling.backup_host == ""


@pytest.mark.parametrize("scrambling,expected", [
    ('backup_ecmg = "127.0.0.1:2001"',
     '[scrambling].backup_ecmg: needs ecm_source = "simulcrypt"'),
    ('ecm_source = "simulcrypt"\necmg = "127.0.0.1:2000"\nbackup_ecmg = "127.0.0.1:2000"',
     "[scrambling].backup_ecmg: is the same address as ecmg"),
    ('ecm_source = "simulcrypt"\necmg = "127.0.0.1:2000"\nbackup_ecmg = "nowhere"',
     "[scrambling].backup_ecmg: "),
])
def test_backup_ecmg_errors(tmp_path: Path, scrambling: str, expected: str) -> None:
    text = MINIMAL.replace("[output]", f"[scrambling]\n{scrambling}\n[output]", 1)
    assert expected in _error(tmp_path, text)


def test_backup_ecmg_error_in_russian(tmp_path: Path) -> None:
    from cas.i18n import Translator

    (tmp_path / "clear.ts").write_bytes(b"\x47" + bytes(187))
    path = tmp_path / "headend.toml"
    path.write_text(MINIMAL.replace("[output]", '[scrambling]\nbackup_ecmg = "h:1"\n[output]', 1),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message_id is not None
    ru = Translator("ru").error(info.value.message_id, info.value.message_params)
    assert ru is not None and ru.endswith('ecm_source = "simulcrypt"') and "требует" in ru, ru
