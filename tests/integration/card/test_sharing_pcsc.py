"""Card sharing, the classic way, through real PC/SC (docs/sharing.md): one card served by
``cas card serve`` (pcscd + vpcd), several ``stb watch`` processes reading that one reader
through pyscard at the same time, each on its own channel.

* A normal 2-tuner box first (``stb scan`` of a two-channel stream): the card's own check
  (GET DATA 30 through pyscard) and ``cas diag sharing`` on the card's ECM log both say
  normal.
* Four boxes on four channels at once: the card raises its flag, ``cas diag card`` shows it,
  ``cas diag sharing`` flags the card from its log.
* ``cas diag sharing --block`` queues the block; the EMM run's EMM reaches the card through a
  box, which then shows every channel CARD_KILLED; ``cas card unblock`` and the next EMM take
  the card back (its status ACTIVE, its flag gone).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cas.access import AccessCriteria
from cas.card.client import CardClient
from cas.card.eeprom import write_image_atomic
from cas.card.pcsc import PcscTransport
from cas.card.personalise import default_slot, personalise_card
from cas.formats.chipid import build_chip_id_record
from cas.formats.emm import SetSharing
from cas.formats.records import build_card_record
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.sharing import SharingPolicy, SharingRule
from cas.store.engine import open_store
from cas.store.models import EmmSequence
from firmware_stub.chipset import save_vendor_key
from tests.fixtures.pcsc import PcscService
from tests.integration.card.conftest import CardServer, cas_env, run_cas
from tests.integration.firmware_stub.headend import (
    DAY_S,
    START_S,
    Card,
    HeadEnd,
    emm_packets,
    insert_after,
)

pytestmark = pytest.mark.pcsc

EMM_PID = 0x0BFF
SERIAL = 3_600_000_001
CHANNELS = (501, 502, 503, 504)
STB = [str(Path(sys.executable).with_name("stb"))]


def _stream(he: HeadEnd, d: Path, name: str, channels: tuple[int, ...], emms: list[bytes], *,
            start_s: int) -> Path:
    """A scrambled stream of ``channels`` (all in package 1, 1 s crypto-periods, ECMs from
    ``start_s``) with ``emms`` right after the first CAT."""
    clear = d / f"clear-{name}"
    make_test_stream([TestService(service_id=ch, name=f"Ch{ch}") for ch in channels], clear,
                     TestStreamOptions(duration_s=3.0))
    scrambled, _ = he.scramble(clear.read_bytes(), {
        ch: AccessCriteria(channel_id=ch, package_ids=(1,)) for ch in channels},
        emm_pid=EMM_PID, crypto_period_ms=1000, start_s=start_s)
    path = d / name
    path.write_bytes(insert_after(scrambled, emm_packets(EMM_PID, emms), pid=1)
                     if emms else scrambled)
    return path


@pytest.fixture
def bench(tmp_path: Path, pcscd: PcscService) -> Iterator[dict[str, Any]]:
    he = HeadEnd(seed=47)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    he.keys.save(data_dir / "operator-keys.toml")
    image = tmp_path / "card.img"
    write_image_atomic(image, build_card_record(personalise_card(
        he.keys, default_slot(SERIAL), now_s=START_S - DAY_S, pin="1357")))
    home = he.chip(0x5EA00001)
    (tmp_path / "home.rec").write_bytes(build_chip_id_record(home))
    save_vendor_key(tmp_path / "vendor.key", he.vendor_key)
    card = Card(serial=SERIAL, applet=None, transport=None, client=None)  # type: ignore[arg-type]
    # pairing, rights, and the card's sharing check for these 1 s crypto-periods
    emms = [he.pair_emm(card, home), he.activate_emm(card, [1]),
            he.emm(card, [SetSharing(policy=SharingPolicy.FLAG, tuners=2, rate_tolerance=1,
                                     window_s=1)])]
    two = _stream(he, tmp_path, "two.ts", CHANNELS[:2], emms, start_s=START_S)
    four = _stream(he, tmp_path, "four.ts", CHANNELS, [], start_s=START_S + 60)
    env = cas_env(pcscd, data_dir)
    log = tmp_path / "ecm.jsonl"
    server = CardServer([image], pcscd.slots, env, tmp_path / "serve.log",
                        extra_args=["--ecm-log", str(log)])
    server.start()
    try:
        yield {"he": he, "dir": tmp_path, "env": env, "reader": pcscd.slots[0].reader,
               "two": two, "four": four, "log": log}
    finally:
        server.stop()


def _box(bench: dict[str, Any], name: str, *args: str) -> subprocess.Popen[str]:
    """One stub box (its own NVRAM, the home chip) on the served card's reader."""
    d = bench["dir"]
    return subprocess.Popen(
        [*STB, "--json", *args, "--reader", bench["reader"], "--chip-record",
         str(d / "home.rec"), "--vendor-key", str(d / "vendor.key"), "--nvram",
         str(d / f"{name}.json")],
        env=bench["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _reports(*procs: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert "Traceback" not in stderr, stderr[-3000:]
        out.append(json.loads(stdout))
    return out


def _sharing_of_card(reader: str) -> Any:
    """GET DATA 30 through pyscard."""
    with PcscTransport(reader, wait_s=10) as transport:
        return CardClient(transport).sharing()


def _log_part(log: Path, start: int, out: Path) -> int:
    lines = log.read_text().splitlines()
    out.write_text("".join(line + "\n" for line in lines[start:]))
    return len(lines)


def _diag_sharing(bench: dict[str, Any], log: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_cas(["--json", "diag", "sharing", str(log), "--window", "1", *args],
                   bench["env"], check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _sections(data: bytes) -> list[bytes]:
    """Split concatenated short sections (3-byte header, 12-bit section_length)."""
    out, pos = [], 0
    while pos < len(data):
        length = ((data[pos + 1] & 0x0F) << 8) | data[pos + 2]
        out.append(data[pos:pos + 3 + length])
        pos += 3 + length
    return out


def _scan_with_emms(bench: dict[str, Any], sections_file: Path, name: str) -> dict[str, Any]:
    """``stb scan`` of the two-channel stream with the EMM run's sections spliced in."""
    d: Path = bench["dir"]
    stream = insert_after(bench["two"].read_bytes(),
                          emm_packets(EMM_PID, _sections(sections_file.read_bytes())), pid=1)
    path = d / f"{name}.ts"
    path.write_bytes(stream)
    (report,) = _reports(_box(bench, name, "scan", str(path)))
    return report


def test_one_card_serving_four_boxes_is_caught_and_blocked(bench: dict[str, Any]) -> None:
    d: Path = bench["dir"]
    env = bench["env"]
    # --- a normal 2-tuner box ---------------------------------------------------------------
    (normal,) = _reports(_box(bench, "normal", "scan", str(bench["two"])))
    assert {c["channel"]: c["reason"] for c in normal["channels"]} == {
        CHANNELS[0]: "OPEN", CHANNELS[1]: "OPEN"}
    info = _sharing_of_card(bench["reader"])
    assert info is not None and not info.flagged and info.window_services == 2
    seen = _log_part(bench["log"], 0, d / "normal.jsonl")
    assert seen > 0
    code, data = _diag_sharing(bench, d / "normal.jsonl")
    assert code == 0 and data["flagged"] == []

    # --- four boxes on one card, at the same time ------------------------------------------
    boxes = [_box(bench, f"box{ch}", "watch", str(bench["four"]), "-c", str(ch), "-o",
                  str(d / f"out{ch}.ts")) for ch in CHANNELS]
    for report in _reports(*boxes):
        assert report["status"]["reason"] == "OPEN", report["status"]  # FLAG: still answered
    info = _sharing_of_card(bench["reader"])
    assert info is not None and info.flagged
    assert SharingRule.SERVICES in info.rules and info.flag_services >= 3
    card = json.loads(run_cas(["--json", "diag", "card", "--reader", bench["reader"]],
                              env).stdout)
    assert card["sharing"]["flagged"] and card["sharing"]["policy"] == "FLAG"
    _log_part(bench["log"], seen, d / "shared.jsonl")
    code, data = _diag_sharing(bench, d / "shared.jsonl")
    assert code == 7 and data["flagged"] == [SERIAL]

    # --- the head-end blocks it by EMM ---------------------------------------------------------
    run_cas(["operator", "use", "tvplus", "--clock-start", "2025-06-15"], env)
    number = json.loads(run_cas(["--json", "account", "create", "--surname", "Aliyev",
                                 "--name", "Rashad"], env).stdout)["account_number"]
    run_cas(["card", "add", str(SERIAL), "--account", number], env)
    store = open_store(data_dir=Path(env["CAS_DATA_DIR"]))
    try:  # the test head-end sent this card seq 1..3: the store's EMMs follow them
        with store.transaction() as s:
            s.add(EmmSequence(address_kind="unique", address=SERIAL, next_seq=10,
                              sent_rights_version=0))
    finally:
        store.dispose()
    code, data = _diag_sharing(bench, d / "shared.jsonl", "--block")
    assert code == 7 and data["blocked"] == [SERIAL]
    run_cas(["emm", "generate", "--incremental", "--shared-min", "0", "-o",
             str(d / "block.sections")], env)
    blocked = _scan_with_emms(bench, d / "block.sections", "after-block")
    assert {c["reason"] for c in blocked["channels"]} == {"CARD_KILLED"}

    # --- and takes it back ---------------------------------------------------------------------
    run_cas(["card", "unblock", str(SERIAL)], env)
    run_cas(["emm", "generate", "--incremental", "--shared-min", "0", "-o",
             str(d / "unblock.sections")], env)
    back = _scan_with_emms(bench, d / "unblock.sections", "after-unblock")
    assert "CARD_KILLED" not in {c["reason"] for c in back["channels"]}
    card = json.loads(run_cas(["--json", "diag", "card", "--reader", bench["reader"]],
                              env).stdout)
    assert card["status"] == "ACTIVE" and not card["sharing"]["flagged"]
