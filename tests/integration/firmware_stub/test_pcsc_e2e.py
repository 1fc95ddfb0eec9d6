"""The box end to end through real PC/SC: pcscd + vsmartcard-vpcd + ``cas card serve`` +
pyscard, with the same scrambled stream and EMMs as the in-process tests.

The card runs in its own process (``cas card serve``), reached by the box only through
pyscard → pcscd → vpcd; the box is the library (:class:`firmware_stub.box.Box`) and, once,
the real ``stb`` console script.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.access import AccessCriteria
from cas.card.client import CardClient
from cas.card.eeprom import write_image_atomic
from cas.card.pcsc import PcscTransport
from cas.card.personalise import default_slot, personalise_card
from cas.formats.chipid import build_chip_id_record
from cas.formats.records import build_card_record
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.reasons import Reason
from firmware_stub.box import Box
from firmware_stub.chipset import save_vendor_key
from tests.fixtures.pcsc import PcscService
from tests.integration.card.conftest import CardServer, cas_env
from tests.integration.firmware_stub.headend import (
    DAY_S,
    START_S,
    Card,
    HeadEnd,
    emm_packets,
    es_payloads,
    insert_after,
)

pytestmark = pytest.mark.pcsc

EMM_PID = 0x0BFF
STB = [str(Path(sys.executable).with_name("stb"))]


@pytest.fixture
def bench(tmp_path: Path, pcscd: PcscService) -> Iterator[dict[str, object]]:
    he = HeadEnd(seed=31)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    he.keys.save(data_dir / "operator-keys.toml")  # `cas card serve` takes the ROM key from it
    serial = 3_500_000_001
    record = personalise_card(he.keys, default_slot(serial), now_s=START_S - DAY_S, pin="1357")
    image = tmp_path / "card.img"
    write_image_atomic(image, build_card_record(record))
    home, other = he.chip(0x50C00001), he.chip(0x50C00002)
    clear = tmp_path / "clear.ts"
    make_test_stream([TestService(service_id=401, name="Uno"),
                      TestService(service_id=402, name="Dos"),
                      TestService(service_id=403, name="Tres")], clear,
                     TestStreamOptions(duration_s=2.0))
    card = Card(serial=serial, applet=None, transport=None, client=None)  # type: ignore[arg-type]
    emms = [he.pair_emm(card, home), he.activate_emm(card, [1], maturity=12)]
    scrambled, _ = he.scramble(clear.read_bytes(), {
        401: AccessCriteria(channel_id=401, package_ids=(1,)),
        402: AccessCriteria(channel_id=402, package_ids=(2,)),
        403: AccessCriteria(channel_id=403, package_ids=(1,), maturity_rating=16),
    }, emm_pid=EMM_PID)
    stream = insert_after(scrambled, emm_packets(EMM_PID, emms), pid=1)
    (tmp_path / "in.ts").write_bytes(stream)
    (tmp_path / "home.rec").write_bytes(build_chip_id_record(home))
    save_vendor_key(tmp_path / "vendor.key", he.vendor_key)
    env = cas_env(pcscd, data_dir)
    server = CardServer([image], pcscd.slots, env, tmp_path / "serve.log")
    server.start()
    try:
        yield {"he": he, "home": home, "other": other, "stream": stream,
               "clear": clear.read_bytes(), "reader": pcscd.slots[0].reader, "dir": tmp_path,
               "env": env}
    finally:
        server.stop()


def _boot(bench: dict[str, object], chip_key: str, nvram: Path) -> tuple[Box, PcscTransport]:
    transport = PcscTransport(str(bench["reader"]), wait_s=10)
    he = bench["he"]
    assert isinstance(he, HeadEnd)
    box = Box.boot(bench[chip_key], nvram, vendor_key=he.vendor_key,  # type: ignore[arg-type]
                   card=CardClient(transport), reader=transport.reader)
    return box, transport


def test_box_through_pcsc(bench: dict[str, object], tmp_path: Path) -> None:
    box, transport = _boot(bench, "home", tmp_path / "home.json")
    try:
        stream = bench["stream"]
        assert isinstance(stream, bytes)
        report = box.scan(stream)
        assert report.reasons() == {401: Reason.OPEN, 402: Reason.CHANNEL_NOT_IN_PACKAGE,
                                    403: Reason.MATURITY_LOCKED}
        assert report.card.reader == bench["reader"]
        assert box.scan(stream, pin="1357").channel(403).reason is Reason.OPEN
        out = io.BytesIO()
        result = box.watch(stream, 401, out)
        assert result.status is not None and result.status.open
        clear = bench["clear"]
        assert isinstance(clear, bytes)
        got, want = es_payloads(out.getvalue(), 0x100), es_payloads(clear, 0x100)
        assert got and got == want[len(want) - len(got):]
    finally:
        transport.close()
    # the same card in another box: the CWs do not open there
    moved, transport = _boot(bench, "other", tmp_path / "other.json")
    try:
        stream = bench["stream"]
        assert isinstance(stream, bytes)
        reasons = moved.scan(stream).reasons()
        assert reasons[401] is Reason.PAIRING_MISMATCH
    finally:
        transport.close()


def test_stb_command_with_a_pcsc_reader(bench: dict[str, object]) -> None:
    d = bench["dir"]
    assert isinstance(d, Path)
    env = bench["env"]
    assert isinstance(env, dict)
    proc = subprocess.run(
        [*STB, "--json", "scan", str(d / "in.ts"), "--reader", str(bench["reader"]),
         "--chip-record", str(d / "home.rec"), "--vendor-key", str(d / "vendor.key"),
         "--nvram", str(d / "stb.json")],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {c["channel"]: c["reason"] for c in data["channels"]} == {
        401: "OPEN", 402: "CHANNEL_NOT_IN_PACKAGE", 403: "MATURITY_LOCKED"}
    assert data["card"]["reader"] == bench["reader"]
    # no card in that reader any more: the reader name that matches nothing is NO_CARD
    proc = subprocess.run(
        [*STB, "--json", "scan", str(d / "in.ts"), "--reader", "No Such Reader",
         "--chip-record", str(d / "home.rec"), "--vendor-key", str(d / "vendor.key"),
         "--nvram", str(d / "stb.json")],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {c["reason"] for c in json.loads(proc.stdout)["channels"]} == {"NO_CARD"}
