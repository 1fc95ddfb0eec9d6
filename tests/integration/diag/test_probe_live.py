"""``cas diag stream`` on a live UDP input: the head-end's scrambled stream played to a real
socket on 127.0.0.1 by a plain sender in the test; the report must be the one the same bytes
give from a file (same services, PIDs, counts, alarms)."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.diag.liveprobe import probe_live
from cas.diag.probe import probe_bytes
from cas.errors import StreamError
from cas.formats.emm import EmmHeader, SetStatus, UniqueAddress
from cas.messages import seal_emm
from firmware_stub.udpin import UdpInput, parse_input
from tests.fixtures.net import free_udp_port, wait_udp_bound
from tests.integration.live.boxproc import datagrams, port_of, udp_send

START_S = 1_790_000_000


@pytest.fixture(scope="module")
def scrambled(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Two channels of the TV+ lineup, made and scrambled by the head-end's own commands
    (``cas stream make-test-stream``, ``cas stream scramble``, 1 s crypto-periods, a
    unique EMM on the EMM PID)."""
    d = tmp_path_factory.mktemp("probe-live")
    r = random.Random(7)
    keys = OperatorKeys.generate(lambda n: r.randbytes(n), now_s=START_S)
    keys.save(d / "operator-keys.toml")
    emm = seal_emm(keys.cuk(2_000_000_001), EmmHeader(
        address=UniqueAddress(serial=2_000_000_001), seq=1, not_after_s=START_S + 86400),
        [SetStatus(status=1)], r.randbytes(12))
    (d / "emm.bin").write_bytes(emm)
    runner = CliRunner()
    made = runner.invoke(cli, ["--data-dir", str(d), "stream", "make-test-stream", "--lineup",
                               "tvplus.toml", "--channels", "2", "--duration", "4",
                               "-o", str(d / "clear.ts")])
    assert made.exit_code == 0, made.output
    done = runner.invoke(cli, ["--data-dir", str(d), "stream", "scramble", str(d / "clear.ts"),
                               str(d / "scrambled.ts"), "--lineup", "tvplus.toml", "--keys",
                               str(d / "operator-keys.toml"), "--crypto-period-s", "1",
                               "--emm", str(d / "emm.bin"), "--at", "2026-09-22"])
    assert done.exit_code == 0, done.output
    return (d / "scrambled.ts").read_bytes()


def _summary(report: dict[str, object]) -> dict[str, object]:
    keep = ("packets", "services", "pids", "ecm", "emm", "scrambling", "alarms", "cat",
            "crypto_period_s", "transport_stream_id", "sync_losses")
    return {k: report[k] for k in keep}


def test_live_probe_gives_the_file_report(scrambled: bytes) -> None:
    source = UdpInput(parse_input("udp://127.0.0.1:0"))
    stop = threading.Event()

    def play() -> None:
        udp_send(port_of(source.url), datagrams(scrambled), seconds=1.0)
        time.sleep(0.5)
        stop.set()

    sender = threading.Thread(target=play)
    sender.start()
    try:
        report, stats = probe_live(source, duration_s=None, stop=stop)
    finally:
        sender.join()
        source.close()
    assert stats.bytes == len(scrambled) and stats.bad_datagrams == 0
    file_report = probe_bytes(scrambled)
    assert report.source == source.url
    assert _summary(report.to_json()) == _summary(file_report.to_json())
    assert report.alarms == ()
    assert len(report.services) == 2
    assert all(s.state == "scrambled" for s in report.services)


def test_live_probe_raises_cc_alarm_for_a_lost_datagram(scrambled: bytes) -> None:
    """Alarms come as for a file: a datagram lost on the way is a continuity error."""
    source = UdpInput(parse_input("udp://127.0.0.1:0"))
    stop = threading.Event()
    chunks = datagrams(scrambled)
    del chunks[len(chunks) // 2]

    def play() -> None:
        udp_send(port_of(source.url), chunks, seconds=1.0)
        time.sleep(0.5)
        stop.set()

    sender = threading.Thread(target=play)
    sender.start()
    try:
        report, _ = probe_live(source, duration_s=None, stop=stop)
    finally:
        sender.join()
        source.close()
    assert "CC_ERROR" in {a.code for a in report.alarms}


def test_live_probe_with_nothing_received_is_an_error() -> None:
    source = UdpInput(parse_input("udp://127.0.0.1:0"))
    try:
        with pytest.raises(StreamError, match="nothing received"):
            probe_live(source, duration_s=0.3, stop=threading.Event())
    finally:
        source.close()


def test_cli_probes_a_udp_input_for_a_duration(scrambled: bytes, tmp_path: Path) -> None:
    port = free_udp_port()
    sender = threading.Thread(target=lambda: (wait_udp_bound(port, 30.0),
                                              udp_send(port, datagrams(scrambled, rtp=True),
                                                       seconds=1.0)))
    sender.start()
    try:
        result = CliRunner().invoke(cli, ["diag", "stream", f"rtp://127.0.0.1:{port}",
                                          "--duration", "3", "--json"])
    finally:
        sender.join()
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["input"]["url"] == f"rtp://127.0.0.1:{port}"
    assert data["input"]["rtp_datagrams"] == data["input"]["datagrams"] > 0
    assert _summary(data) == _summary(probe_bytes(scrambled).to_json())


def test_cli_duration_is_for_live_inputs_only(tmp_path: Path) -> None:
    f = tmp_path / "x.ts"
    f.write_bytes(b"\x47" + bytes(187))
    result = CliRunner().invoke(cli, ["diag", "stream", str(f), "--duration", "3"])
    assert result.exit_code == 2
    assert "--duration and --interface are for udp://" in result.output
