"""The live head-end as a MUX (``[mux]``): external EMMGs — our ``cas emmg run`` client, a
separate process — connect to ``cas headend run`` over real TCP/UDP on 127.0.0.1, and their
EMMs are on air in the head-end's UDP output, each exactly once, in order, on the client's
PID, within the allocated bandwidth; refusals reach the client with the right error_status;
the CAT on air has a CA_descriptor per EMM client; the metrics and the log lines say so.

One head-end runs for the whole module (the tests share it, each on its own client and PID);
a thread here captures its output.  The bandwidth check is functional and bounded: it is
measured on the stream's own time line (the service's PCR), not on arrival times.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cas.billing.setup import use_profile
from cas.crypto import OperatorKeys
from cas.crypto.keys import default_key_path
from cas.formats import psi, ts
from cas.formats.simulcrypt import EmmgMuxError as ME
from cas.headend.simulcrypt import Connection, Role
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.connection import NEED_DATA
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.store.engine import open_store
from cas.store.repo import register_card
from tests.fixtures.net import free_tcp_port, free_udp_port

CAS = str(Path(sys.executable).parent / "cas")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PACKET = 188
PAYLOAD = 184

TCP_CLIENT, TCP_PID, TCP_KBPS = 0x4ADB0001, 0x0C40, 64
UDP_CLIENT, UDP_PID, UDP_KBPS = 0x4ADC0001, 0x0C41, 48
FLOOD_CLIENT, FLOOD_PID, FLOOD_KBPS = 0x4ADD0001, 0x0C42, 16
TS_CLIENT, TS_PID, TS_KBPS = 0x4ADE0001, 0x0C43, 64
#: Our own carousel through the same interface (``own_emm``), on [emm].pid.
OWN_CLIENT, OWN_PID = 0xDEAD0001, 0x0C00
PRIVATE_DATA = bytes.fromhex("a1b2c3")
#: What the head-end may put on a client's PID over any second of stream time: the
#: allocation in payload bytes, plus the TS headers (188/184), plus 10 % for one burst of the
#: lane's bucket (40 ms) and the PCR granularity of this measurement (≤ 40 ms), plus the one
#: packet of credit the bucket may hold beyond its burst.
RATE_TOLERANCE = 1.10


def section(client: int, i: int, size: int = 100) -> bytes:
    body = client.to_bytes(4, "big") + i.to_bytes(4, "big") + bytes(size - 11)
    return bytes((0x88, 0x70 | (len(body) >> 8), len(body) & 0xFF)) + body


def numbers(sections: list[bytes]) -> list[tuple[int, int]]:
    return [(int.from_bytes(s[3:7], "big"), int.from_bytes(s[7:11], "big")) for s in sections]


# --- the head-end and its captured output ------------------------------------------------------

@dataclass
class Capture:
    sock: socket.socket
    data: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            with self.lock:
                self.data += chunk

    def packets(self) -> list[bytes]:
        with self.lock:
            data = bytes(self.data)
        return [data[i:i + PACKET] for i in range(0, len(data) - len(data) % PACKET, PACKET)]


@dataclass
class Headend:
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    capture: Capture
    mux_port: int
    ops_port: int

    def log_events(self) -> list[dict[str, object]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def metric(self, name: str, client_id: int) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=5).text
        label = f'{{client_id="0x{client_id:08X}"}}'
        for line in text.splitlines():
            if line.startswith(f"cas_live_{name}{label} "):
                return float(line.split()[-1])
        return 0.0

    def emmg(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
        return subprocess.run([CAS, "emmg", "run", "--mux", f"127.0.0.1:{self.mux_port}",
                               "--connect-attempts", "3", *args], capture_output=True, text=True,
                              timeout=timeout_s, env=env, cwd=self.root, check=False)


CONFIG = """
[headend]
data_dir = "data"
[output]
url = "udp://127.0.0.1:{out_port}"
[scrambling]
crypto_period_s = 2
[[service]]
channel = 1
source = "loop:clear.ts"
[ops]
listen = "127.0.0.1:0"
log = "json"
[emm]
client_id = 0x{own:08X}
bandwidth_kbps = 40
cycle_bitrate_bps = 20000
[mux]
listen = "127.0.0.1:{mux_port}"
idle_timeout_s = 30
own_emm = true
[[mux.client]]
client_id = 0x{tcp:08X}
pid = 0x{tcp_pid:04X}
max_bandwidth_kbps = {tcp_kbps}
data_ids = [1]
private_data = "{private}"
[[mux.client]]
client_id = 0x{udp:08X}
pid = 0x{udp_pid:04X}
max_bandwidth_kbps = {udp_kbps}
data_ids = [2]
[[mux.client]]
client_id = 0x{ts:08X}
pid = 0x{ts_pid:04X}
max_bandwidth_kbps = {ts_kbps}
[[mux.client]]
client_id = 0x{flood:08X}
pid = 0x{flood_pid:04X}
max_bandwidth_kbps = {flood_kbps}
"""


def _wait(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def headend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Headend]:
    root = tmp_path_factory.mktemp("live-mux")
    data = root / "data"
    data.mkdir()
    rng = random.Random(19)
    OperatorKeys.generate(lambda n: rng.randbytes(n)).save(default_key_path(data))
    store = open_store(data_dir=data)
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=T0)
        for serial in range(2_256_900_001, 2_256_900_004):  # start-up EMMs for own_emm
            register_card(s, serial, at=T0)
    store.dispose()
    make_test_stream([TestService(service_id=1001, name="ch1")], root / "clear.ts",
                     TestStreamOptions(duration_s=2.0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", free_udp_port()))
    out_port = sock.getsockname()[1]
    mux_port = free_tcp_port()
    (root / "headend.toml").write_text(CONFIG.format(
        out_port=out_port, mux_port=mux_port, tcp=TCP_CLIENT, tcp_pid=TCP_PID,
        tcp_kbps=TCP_KBPS, private=PRIVATE_DATA.hex(), udp=UDP_CLIENT, udp_pid=UDP_PID,
        udp_kbps=UDP_KBPS, own=OWN_CLIENT, ts=TS_CLIENT, ts_pid=TS_PID,
        ts_kbps=TS_KBPS, flood=FLOOD_CLIENT, flood_pid=FLOOD_PID, flood_kbps=FLOOD_KBPS))
    capture = Capture(sock)
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    log = root / "headend.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    with log.open("wb") as handle:
        proc = subprocess.Popen([CAS, "headend", "run", "headend.toml"], cwd=root, env=env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started: list[dict[str, object]] = []

        def up() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")
            started[:] = [e for e in Headend(root, proc, log, capture, mux_port, 0).log_events()
                          if e.get("event") == "head-end started"]
            return bool(started)

        _wait(up, 60, "the head-end to start")
        ops_port = started[0]["ops_port"]
        assert isinstance(ops_port, int) and started[0]["mux_port"] == mux_port
        yield Headend(root, proc, log, capture, mux_port, ops_port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        capture.stop.set()
        thread.join(timeout=5)
        sock.close()


# --- reading the output ----------------------------------------------------------------------------

def _pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def _pcr_s(packet: bytes) -> float | None:
    if not packet[3] & 0x20 or packet[4] < 7 or not packet[5] & 0x10:
        return None
    base = int.from_bytes(packet[6:10], "big") << 1 | packet[10] >> 7
    return (base * 300 + ((packet[10] & 1) << 8 | packet[11])) / 27_000_000


def on_pid(packets: list[bytes], pid: int) -> tuple[list[bytes], list[float]]:
    """The packets of ``pid`` and, for each, the stream time (the last PCR before it)."""
    out: list[bytes] = []
    times: list[float] = []
    now: float | None = None
    for p in packets:
        pcr = _pcr_s(p)
        if pcr is not None:
            now = pcr
        if _pid(p) == pid and now is not None:
            out.append(p)
            times.append(now)
    return out, times


def sections_on(packets: list[bytes], pid: int) -> tuple[list[bytes], ts.SectionReassembler]:
    r = ts.SectionReassembler(pid, check_crc=False)
    return r.feed_many(p for p in packets if _pid(p) == pid), r


def check_bandwidth(times: list[float], kbps: int, total_payload: int) -> None:
    """Bytes on the PID over any second of stream time stay within the allocation (with
    RATE_TOLERANCE), and the whole run took at least what the allocation allows."""
    rate = kbps * 1000 / 8  # payload bytes per second
    limit = rate * PACKET / PAYLOAD * RATE_TOLERANCE + PACKET
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        assert (i - j + 1) * PACKET <= limit, f"{(i - j + 1) * PACKET} bytes in 1 s at {t:.2f} s"
    span = times[-1] - times[0]
    assert span >= total_payload / rate * 0.9 - 0.1, (span, total_payload / rate)


def _emm_file(path: Path, client: int, count: int, size: int = 100) -> list[bytes]:
    sent = [section(client, i, size) for i in range(count)]
    path.write_bytes(b"".join(sent))
    return sent


def _aired(headend: Headend, pid: int, expected: int) -> list[bytes]:
    got: list[bytes] = []

    def enough() -> bool:
        got[:] = sections_on(headend.capture.packets(), pid)[0]
        return len(got) >= expected

    _wait(enough, 60, f"{expected} sections on PID {pid:#x}")
    time.sleep(0.5)  # anything doubled would show up now
    return sections_on(headend.capture.packets(), pid)[0]


# --- the tests -------------------------------------------------------------------------------------

def test_external_emmg_over_tcp_every_emm_on_air_once_in_order_within_bandwidth(
        headend: Headend) -> None:
    sent = _emm_file(headend.root / "tcp.sections", TCP_CLIENT, 150)
    run = headend.emmg("--client-id", f"0x{TCP_CLIENT:08X}", "--data-id", "1",
                       "--bandwidth", "100", "--input", "tcp.sections")
    assert run.returncode == 0, run.stderr
    aired = _aired(headend, TCP_PID, len(sent))
    assert numbers(aired) == numbers(sent)          # none lost, none doubled, in order
    assert aired == sent
    packets, times = on_pid(headend.capture.packets(), TCP_PID)
    _, reassembler = sections_on(packets, TCP_PID)
    assert not reassembler.counts                   # continuity counters and pointers clean
    # asked 100 kbit/s, the client's maximum is 64: allocated 64, aired within it
    check_bandwidth(times, TCP_KBPS, sum(map(len, sent)))
    assert headend.metric("mux_sections_total", TCP_CLIENT) == len(sent)
    assert headend.metric("mux_bytes_total", TCP_CLIENT) == sum(map(len, sent))
    assert headend.metric("mux_dropped_total", TCP_CLIENT) == 0
    allocations = [e for e in headend.log_events() if e.get("event") == "mux bandwidth allocated"
                   and e.get("client_id") == f"0x{TCP_CLIENT:08X}"]
    assert allocations and allocations[0]["allocated_kbps"] == TCP_KBPS
    assert allocations[0]["asked_kbps"] == 100


def test_external_emmg_with_udp_data_every_emm_on_air_once_in_order_within_bandwidth(
        headend: Headend) -> None:
    sent = _emm_file(headend.root / "udp.sections", UDP_CLIENT, 120, size=90)
    run = headend.emmg("--client-id", f"0x{UDP_CLIENT:08X}", "--data-id", "2",
                       "--bandwidth", str(UDP_KBPS), "--input", "udp.sections", "--udp",
                       "--protocol-version", "3")
    assert run.returncode == 0, run.stderr
    aired = _aired(headend, UDP_PID, len(sent))
    assert numbers(aired) == numbers(sent)
    _, times = on_pid(headend.capture.packets(), UDP_PID)
    check_bandwidth(times, UDP_KBPS, sum(map(len, sent)))
    assert headend.metric("mux_sections_total", UDP_CLIENT) == len(sent)


def test_external_emmg_sending_ts_packets_gets_them_on_its_pid(headend: Headend) -> None:
    sent = [section(TS_CLIENT, i) for i in range(60)]
    packetizer = ts.Packetizer(0x0999)  # the EMMG's own PID: the head-end puts them on TS_PID
    (headend.root / "emm.ts").write_bytes(b"".join(p for s in sent for p in packetizer.packetize(s)))
    run = headend.emmg("--client-id", f"0x{TS_CLIENT:08X}", "--data-id", "4", "--ts-packets",
                       "--bandwidth", str(TS_KBPS), "--input", "emm.ts")
    assert run.returncode == 0, run.stderr
    aired = _aired(headend, TS_PID, len(sent))
    assert aired == sent
    packets, times = on_pid(headend.capture.packets(), TS_PID)
    assert not sections_on(packets, TS_PID)[1].counts  # our continuity counter, no gap
    check_bandwidth(times, TS_KBPS, len(packets) * PACKET)


def test_unknown_client_and_unknown_data_id_are_refused_with_their_error_status(
        headend: Headend) -> None:
    _emm_file(headend.root / "x.sections", 0x12340001, 3)
    run = headend.emmg("--client-id", "0x12340001", "--input", "x.sections")
    assert run.returncode != 0
    assert "0x000E inv_client_id" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    run = headend.emmg("--client-id", f"0x{TCP_CLIENT:08X}", "--data-id", "9",
                       "--input", "x.sections")
    assert run.returncode != 0
    assert "0x0010 inv_data_id" in run.stderr, run.stderr
    refused = [e for e in headend.log_events() if str(e.get("event", "")).endswith("refused")]
    assert {(e["client_id"], e["error_status"]) for e in refused} >= {
        ("0x12340001", "0x000E inv_client_id"),
        (f"0x{TCP_CLIENT:08X}", "0x0010 inv_data_id")}


async def _flood(port: int) -> list[M.StreamError]:
    """A client that ignores its allocation: sends 24 kB at once to a 16 kbit/s client."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = Connection(Role.EMMG, version=2)
    errors: list[M.StreamError] = []

    async def expect(kind: type) -> object:
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(4096), 10))
                continue
            if isinstance(event, M.StreamError):
                errors.append(event)
            if isinstance(event, kind):
                return event

    ch = dict(client_id=FLOOD_CLIENT, data_channel_id=1)
    writer.write(conn.send(M.ChannelSetup(**ch, section_tspkt_flag=0)))
    await expect(M.ChannelStatus)
    writer.write(conn.send(M.StreamSetup(**ch, data_stream_id=1, data_id=5, data_type=0)))
    await expect(M.StreamStatus)
    writer.write(conn.send(M.StreamBwRequest(**ch, data_stream_id=1, bandwidth_kbps=1000)))
    allocation = await expect(M.StreamBwAllocation)
    assert getattr(allocation, "bandwidth_kbps", None) == FLOOD_KBPS
    for n in range(6):
        writer.write(conn.send(M.DataProvision(
            **ch, data_stream_id=1, data_id=5,
            datagrams=tuple(section(FLOOD_CLIENT, n * 20 + i, 200) for i in range(20)))))
    await writer.drain()
    if not errors:
        await expect(M.StreamError)
    writer.write(conn.send(M.ChannelClose(**ch)))
    await writer.drain()
    writer.close()
    return errors


def test_a_client_overrunning_its_allocation_gets_exceeded_bw_and_drops_are_counted(
        headend: Headend) -> None:
    errors = asyncio.run(_flood(headend.mux_port))
    assert [e.error_status for e in errors][:1] == [(ME.EXCEEDED_BW,)]
    dropped = headend.metric("mux_dropped_total", FLOOD_CLIENT)
    kept = headend.metric("mux_sections_total", FLOOD_CLIENT)
    assert dropped > 0 and dropped + kept == 120
    assert any(e.get("event") == "mux client overran its queue: datagrams dropped"
               and e.get("client_id") == f"0x{FLOOD_CLIENT:08X}" for e in headend.log_events())
    # what was kept goes on air, in order, once, and nothing else (the queue drains while the
    # burst arrives, so a few later sections may have found room after the first drops)
    aired = _aired(headend, FLOOD_PID, int(kept))
    got = [i for client, i in numbers(aired) if client == FLOOD_CLIENT]
    assert len(got) == len(aired) == kept
    assert got[:20] == list(range(20)) and got == sorted(set(got))
    # the burst it sent at once went on air at its allocation: here the mux is the limit
    _, times = on_pid(headend.capture.packets(), FLOOD_PID)
    check_bandwidth(times, FLOOD_KBPS, sum(map(len, aired)))


def test_cat_on_air_has_a_ca_descriptor_per_emm_client(headend: Headend) -> None:
    cats, _ = sections_on(headend.capture.packets()[-20_000:], 0x0001)
    assert cats
    cat = psi.parse_cat(cats[-1])
    assert len(cat.descriptors) == 5  # our own carousel (own_emm) is not announced twice
    assert set(cat.descriptors) == {
        psi.CaDescriptor(ca_system_id=0xDEAD, ca_pid=0x0C00),
        psi.CaDescriptor(ca_system_id=TCP_CLIENT >> 16, ca_pid=TCP_PID,
                         private_data=PRIVATE_DATA),
        psi.CaDescriptor(ca_system_id=UDP_CLIENT >> 16, ca_pid=UDP_PID),
        psi.CaDescriptor(ca_system_id=TS_CLIENT >> 16, ca_pid=TS_PID),
        psi.CaDescriptor(ca_system_id=FLOOD_CLIENT >> 16, ca_pid=FLOOD_PID)}


def test_connections_are_logged_and_counted(headend: Headend) -> None:
    names = [e.get("event") for e in headend.log_events()]
    assert "mux listening" in names
    assert names.count("mux client connected") >= 3
    _wait(lambda: all(headend.metric("mux_clients_connected", c) == 0
                      for c in (TCP_CLIENT, UDP_CLIENT, FLOOD_CLIENT)), 10,
          "every client to be disconnected")
    assert names.count("mux client disconnected") >= 2


def test_our_own_carousel_runs_through_the_same_interface(headend: Headend) -> None:
    assert headend.metric("mux_clients_connected", OWN_CLIENT) == 1
    assert any(e.get("event") == "mux client connected"
               and e.get("client_id") == f"0x{OWN_CLIENT:08X}" for e in headend.log_events())
    _wait(lambda: headend.metric("mux_sections_total", OWN_CLIENT) > 0, 30,
          "our carousel's EMMs through the mux")
    sections, _ = sections_on(headend.capture.packets(), OWN_PID)
    assert sections and all(0x82 <= s[0] <= 0x8F for s in sections)


def test_a_mux_port_in_use_is_one_line_and_exit_2(headend: Headend) -> None:
    # the same file again: its [mux].listen is the running head-end's (it fails before
    # sending anything)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    run = subprocess.run([CAS, "headend", "run", "headend.toml", "--duration", "5"],
                         cwd=headend.root, env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 2, run.stderr
    assert f"[mux].listen: cannot listen on 127.0.0.1:{headend.mux_port}" in run.stderr
    assert "Traceback" not in run.stderr
