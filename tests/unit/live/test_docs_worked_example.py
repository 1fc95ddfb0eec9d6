"""The worked example of docs/simulcrypt.md §11 is a configuration the head-end accepts, with
the other CA system's ECMG and EMMG where the text says they are."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from cas.errors import ConfigError
from cas.live.config import parse_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "simulcrypt.md"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## 11.", 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None, "§11 has no TOML block"
    return match.group(1)


def test_the_worked_example_parses_with_both_sides_of_the_other_ca_system(tmp_path: Path
                                                                         ) -> None:
    cfg = parse_config(tomllib.loads(_example()), file="simulcrypt.md §11", base=tmp_path)
    (ca,) = cfg.ca_systems
    assert ca.ca_system_id == 0x4ADB
    assert (ca.ecmg_host, ca.ecmg_port, ca.backup_host) == ("10.0.0.20", 2222, "10.0.0.21")
    assert ca.ecm_pid_base == 0x0D00 and ca.private_data == b"\x01\x02"
    assert cfg.mux is not None
    (client,) = cfg.mux.clients
    assert (client.client_id, client.pid, client.ca_system_id) == (0x4ADB0001, 0x0C40, 0x4ADB)
    assert client.max_bandwidth_kbps == 200 and client.private_data == b"\xa1\xb2"


def test_a_mux_client_on_another_ca_systems_ecm_pid_is_refused(tmp_path: Path) -> None:
    data = tomllib.loads(_example().replace("pid = 0x0C40", "pid = 0x0D00"))
    with pytest.raises(ConfigError, match=r"\[mux.client.1\].pid: 0xd00 is also an ECM PID of "
                                          r"\[ca_system.1\]"):
        parse_config(data, file="x.toml", base=tmp_path)
