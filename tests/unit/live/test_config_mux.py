"""``[mux]`` and ``[[mux.client]]``: the head-end as a MUX for external EMMGs/PDGs; every
mistake a one-line ConfigError naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cas.errors import ConfigError
from cas.live.config import LiveConfig, parse_config
from cas.live.config_simulcrypt import MuxDataType

BASE = """
[output]
url = "udp://127.0.0.1:5000"
[[service]]
channel = 1
source = "lavfi:testsrc"
"""

MUX = """
[mux]
listen = "0.0.0.0:4567"
udp = false
idle_timeout_s = 30
queue_s = 1.5
[[mux.client]]
client_id = 0x4ADB0001
pid = 0x0C40
max_bandwidth_kbps = 200
data_ids = [1, 2]
private_data = "01 ff"
[[mux.client]]
client_id = 0x00000007
pid = 0x0C41
max_bandwidth_kbps = 50
data_type = "private"
"""


def _parse(text: str) -> LiveConfig:
    return parse_config(tomllib.loads(text), file="h.toml", base=Path("/nonexistent"))


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_full_mux_section() -> None:
    mux = _parse(BASE + MUX).mux
    assert mux is not None
    assert (mux.host, mux.port, mux.udp, mux.idle_timeout_s, mux.queue_s, mux.own_emm) == (
        "0.0.0.0", 4567, False, 30.0, 1.5, False)
    emmg, pdg = mux.clients
    assert (emmg.client_id, emmg.pid, emmg.max_bandwidth_kbps, emmg.data_type) == (
        0x4ADB0001, 0x0C40, 200, MuxDataType.EMM)
    assert emmg.data_ids == {1, 2} and emmg.private_data == b"\x01\xff"
    assert emmg.ca_system_id == 0x4ADB  # the client_id's upper 16 bits
    assert pdg.data_type is MuxDataType.PRIVATE and pdg.data_ids == frozenset()


def test_no_mux_section_means_no_mux() -> None:
    assert _parse(BASE).mux is None


def test_own_emm_adds_our_carousel_as_a_client() -> None:
    text = BASE + "[emm]\nclient_id = 0xDEAD0009\ndata_id = 3\nbandwidth_kbps = 80\n" \
        "[mux]\nlisten = \"127.0.0.1:0\"\nown_emm = true\n"
    mux = _parse(text).mux
    assert mux is not None and mux.own_emm
    (own,) = mux.clients
    assert own.own and (own.client_id, own.pid, own.data_ids, own.max_bandwidth_kbps,
                        own.ca_system_id) == (0xDEAD0009, 0x0C00, {3}, 80, 0xDEAD)


CLIENT = "[mux]\nlisten = \"127.0.0.1:4567\"\n[[mux.client]]\nclient_id = 0x4ADB0001\n" \
         "pid = 0x0C40\nmax_bandwidth_kbps = 100\n"


MISTAKES = [
    ("[mux]\n", "[mux].listen: required"),
    ("[mux]\nlisten = \"4567\"\n[[mux.client]]\n", "[mux].listen: '4567': expected HOST:PORT"),
    ("[mux]\nlisten = \"127.0.0.1:1\"\n", "[mux].client: at least one [[mux.client]]"),
    (CLIENT.replace("pid = 0x0C40", "pid = 0x1FFF"), "[mux.client.1].pid: 8191 outside"),
    (CLIENT.replace("pid = 0x0C40\n", ""), "[mux.client.1].pid: required"),
    (CLIENT.replace("max_bandwidth_kbps = 100", "max_bandwidth_kbps = 70000"),
     "[mux.client.1].max_bandwidth_kbps: 70000 outside 1..65535"),
    (CLIENT + "data_ids = []\n", "[mux.client.1].data_ids: [] : expected".replace(" :", ":")),
    (CLIENT + "data_ids = [70000]\n", "[mux.client.1].data_ids: [70000]: expected"),
    (CLIENT + "private_data = \"xyz\"\n", "[mux.client.1].private_data: 'xyz': expected hex"),
    (CLIENT + f"private_data = \"{'00' * 252}\"\n",
     "[mux.client.1].private_data: 252 bytes, at most 251"),
    (CLIENT + "data_type = \"ecm\"\n", "[mux.client.1].data_type: 'ecm' is not one of"),
    (CLIENT + "data_type = \"private\"\nprivate_data = \"01\"\n",
     "[mux.client.1].private_data: only for data_type = \"emm\""),
    (CLIENT.replace("0x4ADB0001", "0x00000001"), "[mux.client.1].ca_system_id: 0x0000: "),
    (CLIENT + "colour = 1\n", "[mux.client.1].colour: unknown key"),
    (CLIENT + "[[mux.client]]\nclient_id = 0x4ADB0001\npid = 0x0C41\nmax_bandwidth_kbps = 1\n",
     "[mux.client.2].client_id: 0x4ADB0001 is already [mux.client.1]"),
    (CLIENT + "[[mux.client]]\nclient_id = 0x4ADB0002\npid = 0x0C40\nmax_bandwidth_kbps = 1\n",
     "[mux.client.2].pid: 0xc40 is already the PID of [mux.client.1]"),
    (CLIENT.replace("0x0C40", "0x0C00"), "[mux.client.1].pid: 0xc00 is also [emm].pid"),
    (CLIENT.replace("[mux]\n", "[mux]\nown_emm = true\n") + "[emm]\nmux = \"emmg://h:1\"\n",
     "[mux].own_emm: and [emm].mux both set"),
    (CLIENT.replace("[mux]\n", "[mux]\nqueue_s = 0\n"), "[mux].queue_s: 0 outside"),
    ("ecm_pid = 0x0C40\n" + CLIENT, "[mux.client.1].pid: 0xc40 is also the ECM PID of "
                                    "[service.1]"),
]


@pytest.mark.parametrize(("extra", "expected"), MISTAKES)
def test_errors_name_the_key(extra: str, expected: str) -> None:
    assert expected in _error(BASE + extra)


@pytest.mark.parametrize("extra", [extra for extra, _expected in MISTAKES])
def test_errors_are_said_in_russian(extra: str) -> None:
    """Each mistake names its catalogue message: English as raised, Russian with no English
    sentence left (README, "Errors")."""
    from cas.i18n import Translator
    from tests.fixtures.lang import english_in

    with pytest.raises(ConfigError) as info:
        _parse(BASE + extra)
    exc = info.value
    assert exc.message_id is not None, str(exc)
    assert Translator("en").error(exc.message_id, exc.message_params) == str(exc)
    ru = Translator("ru").error(exc.message_id, exc.message_params)
    assert ru is not None and english_in(ru) == [], ru


def test_client_pid_clashing_with_an_ecm_pid() -> None:
    text = BASE + "ecm_pid = 0x0C40\n" + CLIENT
    assert "[mux.client.1].pid: 0xc40 is also the ECM PID of [service.1]" in _error(text)
