"""Two CA systems on one live service (SimulCrypt, docs/simulcrypt.md §9), all real processes
on 127.0.0.1: ``cas headend run`` with our own CA system (internal ECMs) and a
``[[ca_system]]`` whose ECMG is a separate ``cas ecmg serve`` under another CA_system_ID with
keys of its own, plus a backup ECMG of that system; our box (``stb scan``) on the UDP output.

The head-end plays to a tee in the test, which hands every datagram to the box and keeps a
copy.  Shown:

* the box opens the service with our card;
* the PMT names both CA systems (CA_system_ID, ECM PID, private data);
* the other system's ECMs are on air at their PID, open with that system's ECM key (not
  ours), carry the CWs the head-end scrambled with (its CW log) and the parity of their
  period;
* the primary ECMG killed: the backup takes over (its ECMs appear again on the PID), the
  switch and the failure are in the log and the metrics;
* the backup killed too: that system's ECMs stop, the failure shows, and the service and our
  CA system go on (the box stays OPEN, our ECMs keep coming).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cas.billing import payments
from cas.billing.clock import clock_now
from cas.crypto import OperatorKeys
from cas.errors import CasError
from cas.messages import open_ecm
from tests.integration.live.boxproc import StbProcess, port_of
from tests.integration.live.world import (
    CAS,
    CHANNEL,
    PACKAGE,
    PRICE_MINOR,
    SERVICE_ID,
    Proc,
    World,
    build_world,
    free_tcp_port,
    headend_config,
    start,
    start_headend,
)
from tests.unit.headend.helpers import payload_start, sections_on

pytestmark = pytest.mark.slow
OTHER_ID = 0x4AD0
OTHER_PID = 0x0D00
OUR_PID = 0x0C10
PRIVATE = bytes.fromhex("c0ffee01")
CP_S = 2.0
#: The other system's ECMG asks for its ECMs every 200 ms (ours: every 100 ms).
OTHER_REP_MS = 200
FIRST_STATE_S = 120.0
WAIT_S = 60.0
PACKET = 188


class Tee:
    """Receives the head-end's datagrams, forwards each to the box and keeps a copy."""

    def __init__(self, box_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.box = ("127.0.0.1", box_port)
        self.data = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not self._stop.is_set():
            try:
                d = self.sock.recv(65536)
            except TimeoutError:
                continue
            out.sendto(d, self.box)
            with self._lock:
                self.data += d
        out.close()

    def mark(self) -> int:
        with self._lock:
            return len(self.data)

    def since(self, mark: int) -> bytes:
        with self._lock:
            return bytes(self.data[mark:])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _ecmg(world: World, keys: Path, port: int, name: str) -> Proc:
    proc = start([CAS, "ecmg", "serve", "--keys", str(keys), "--ca-system-id", hex(OTHER_ID),
                  "--port", str(port), "--rep-period-ms", str(OTHER_REP_MS)], world, name)
    return listening(proc, port)


def listening(proc: Proc, port: int) -> Proc:
    """``proc`` once it accepts connections on ``port`` (an ECMG just started)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        assert proc.alive(), proc.tail()
        time.sleep(0.1)
    raise AssertionError(f"ECMG on {port} did not listen: {proc.tail()}")


def _log_lines(proc: Proc) -> list[dict[str, object]]:
    out = []
    for line in proc.tail(10_000_000).splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _wait_log(proc: Proc, match: Callable[[dict[str, object]], bool],
              timeout_s: float = WAIT_S) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in _log_lines(proc):
            if match(entry):
                return entry
        assert proc.alive(), proc.tail()
        time.sleep(0.2)
    raise AssertionError(f"no such log line in {timeout_s} s: {proc.tail()}")


def _metrics(ops_port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("cas_live_ecmg") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _label(name: str) -> str:
    return f'cas_live_{name}{{ca_system_id="0x{OTHER_ID:04X}"}}'


def _pmt_ca(data: bytes) -> dict[int, tuple[int, bytes]]:
    """CA_system_ID -> (ECM PID, private data) of the service's PMT (PID 0x1000)."""
    pmt = next(sec for _, sec in sections_on(data, 0x1000) if sec[0] == 0x02)
    info_len = int.from_bytes(pmt[10:12], "big") & 0x0FFF
    out = {}
    pos = 12
    while pos < 12 + info_len:
        tag, length = pmt[pos], pmt[pos + 1]
        if tag == 0x09:
            body = pmt[pos + 2 : pos + 2 + length]
            out[int.from_bytes(body[0:2], "big")] = (int.from_bytes(body[2:4], "big") & 0x1FFF,
                                                     body[4:])
        pos += 2 + length
    return out


def _parity_at_ecms(data: bytes, ecm_pid: int, video_pid: int) -> list[tuple[int, int]]:
    """(ECM table_id parity, parity of the next scrambled video packet) for every ECM."""
    pkts = [data[i : i + PACKET] for i in range(0, len(data) - PACKET + 1, PACKET)]
    nxt: list[int | None] = [None] * len(pkts)
    last: int | None = None
    for i in range(len(pkts) - 1, -1, -1):
        p = pkts[i]
        pid = ((p[1] & 0x1F) << 8) | p[2]
        if pid == video_pid and p[3] >> 6 in (2, 3) and PACKET - payload_start(p) >= 8:
            last = p[3] >> 6 & 1
        nxt[i] = last
    out = []
    for i, p in enumerate(pkts):
        pid = ((p[1] & 0x1F) << 8) | p[2]
        if pid == ecm_pid and p[1] & 0x40 and nxt[i] is not None:
            table_id = p[5 + p[4]]
            parity = nxt[i]
            assert parity is not None
            out.append((table_id & 1, parity))
    return out


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build_world(tmp_path, db_url=None)
    with w.store.transaction() as s:  # paid before the head-end starts: the box opens
        payments.pay(s, by="card", ref=str(w.serial), amount_minor=PRICE_MINOR,
                     payment_id="ca-systems-1", at=clock_now(s), package=PACKAGE)
    try:
        yield w
    finally:
        w.close()


def test_two_ca_systems_on_one_service_with_failover(world: World, tmp_path: Path) -> None:
    other_keys = OperatorKeys.generate()
    other_path = tmp_path / "other-cas.key"
    other_keys.save(other_path)
    ours = world.keys
    primary_port, backup_port = free_tcp_port(), free_tcp_port()
    procs: list[Proc] = []
    box = StbProcess.start("scan", "udp://127.0.0.1:0", world.box, cwd=world.root)
    tee = Tee(port_of(box.started()))
    try:
        primary = _ecmg(world, other_path, primary_port, "ecmg-primary.log")
        procs.append(primary)
        backup = _ecmg(world, other_path, backup_port, "ecmg-backup.log")
        procs.append(backup)
        cw_log = tmp_path / "cw.jsonl"
        config = headend_config(world, tee.port, crypto_period_s=CP_S)
        text = config.read_text().replace(
            "[scrambling]\n", f'[scrambling]\ncw_log = "{cw_log}"\n')
        text += (f"\n[[ca_system]]\nca_system_id = {OTHER_ID:#x}\n"
                 f'ecmg = "127.0.0.1:{primary_port}"\nbackup_ecmg = "127.0.0.1:{backup_port}"\n'
                 f'ecm_pid_base = {OTHER_PID:#x}\nprivate_data = "{PRIVATE.hex()}"\n'
                 "reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n")
        config.write_text(text)
        headend = start_headend(world, config)
        procs.append(headend)
        started = _wait_log(headend, lambda e: e.get("event") == "head-end started")
        ops_port = int(str(started["ops_port"]))
        up = _wait_log(headend, lambda e: e.get("event") == "ECMG up")
        assert up["ecmg"] == f"127.0.0.1:{primary_port}" and up["lead_cw"] == 1
        assert up["rep_period_ms"] == OTHER_REP_MS

        # our box opens the service with our card, beside the other CA system
        try:
            opened = box.channel_event(CHANNEL, state="OPEN", timeout_s=FIRST_STATE_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhead-end: {headend.tail()}") from None
        time.sleep(3 * CP_S)
        before_kill = tee.mark()
        data = tee.since(0)
        assert _pmt_ca(data) == {0xDEAD: (OUR_PID, b""), OTHER_ID: (OTHER_PID, PRIVATE)}
        cws = _cw_log(cw_log)
        opened_ecms = _check_other_ecms(data, other_keys, cws)
        assert opened_ecms > 10
        with pytest.raises(CasError):  # their ECMs are not ours to open
            _, sec = next(iter(sections_on(data, OTHER_PID)))
            open_ecm(ours.ecm_key(0), sec)
        pairs = _parity_at_ecms(data, OTHER_PID, 0x0100)
        agree = sum(1 for a, b in pairs if a == b)
        assert pairs and agree >= 0.95 * len(pairs), (agree, len(pairs))
        _check_diag(data, tmp_path / "two-cas.ts")

        # the primary dies: the backup takes over on the same PID
        primary.kill9()
        switched = _wait_log(headend, lambda e: e.get("event") == "ECMG switched")
        assert switched["ecmg"] == f"127.0.0.1:{backup_port}"
        assert switched["ca_system_id"] == f"0x{OTHER_ID:04X}"
        failed = _wait_log(headend, lambda e: e.get("event") in ("ECMG failed",
                                                                 "ECMG unavailable"))
        assert failed["ca_system_id"] == f"0x{OTHER_ID:04X}"
        time.sleep(2 * CP_S)
        after_switch = tee.since(before_kill)
        cws = _cw_log(cw_log)
        assert _check_other_ecms(after_switch, other_keys, cws) > 5
        m = _metrics(ops_port)
        assert m[_label("ecmg_switches_total")] >= 1
        assert m[_label("ecmg_failures_total")] >= 1
        assert m[_label("ecmg_up")] == 1

        # the backup dies too: that system's ECMs stop, ours and the service go on
        backup.kill9()
        _wait_log(headend, lambda e: e.get("event") in ("ECMG failed", "ECMG unavailable")
                  and e.get("ecmg") == f"127.0.0.1:{backup_port}")
        time.sleep(2 * CP_S)  # what was prepared before the failure runs out
        quiet = tee.mark()
        time.sleep(3 * CP_S)
        silent = tee.since(quiet)
        assert not list(sections_on(silent, OTHER_PID))
        assert len(list(sections_on(silent, OUR_PID))) >= 3 * CP_S / 0.1 * 0.8
        m = _metrics(ops_port)
        assert m[_label("ecmg_up")] == 0
        assert m[_label("ecmg_failures_total")] >= 2
        assert headend.alive()
        health = httpx.get(f"http://127.0.0.1:{ops_port}/health", timeout=10).json()
        assert health["ca_systems"][0]["up"] is False
        later = [e for e in box.channel_events(CHANNEL) if box.events.index(e)
                 > box.events.index(opened)]
        assert all(e["state"] == "OPEN" for e in later), later
        report = box.stop(signal.SIGINT)
    finally:
        box.kill()
        tee.close()
        for p in reversed(procs):
            p.stop()
    assert {c["channel"]: c["state"] for c in report["channels"]}[CHANNEL] == "OPEN"
    assert report["stream"]["ts_cc_errors"] == 0


def _check_diag(data: bytes, path: Path) -> None:
    """``cas diag stream --json`` on the capture: one entry per CA system, ECM parity right in
    every whole crypto-period, the ECM parity change at the payload's switch."""
    path.write_bytes(data[: len(data) // PACKET * PACKET])
    run = subprocess.run([CAS, "diag", "stream", str(path), "--json"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    systems = {c["ca_system_id"]: c for c in json.loads(run.stdout)["ca_systems"]}
    assert set(systems) == {"0xDEAD", f"0x{OTHER_ID:04X}"}
    other, ours = systems[f"0x{OTHER_ID:04X}"], systems["0xDEAD"]
    assert other["ecm_pids"] == [OTHER_PID] and ours["ecm_pids"] == [OUR_PID]
    assert not other["ours"] and ours["ours"] and ours["emm_pids"] == [0x0C00]
    for c in (other, ours):
        assert c["periods"] >= 2 and c["periods_matching"] == c["periods"], c
        assert c["periods_without_ecm"] == 0
        assert c["switches_aligned"] == c["switches"] >= 3
        assert abs(c["lead_ms"]["min"]) < 60, c  # ECM(n) from the boundary of n
    # each system at its own repetition period: ours 100 ms, the other ECMG's 200 ms
    assert abs(ours["ecm_interval_ms"] - 100) < 10 and abs(other["ecm_interval_ms"] - 200) < 20
    # both systems switch their ECMs at the same boundary (a payload switch is read at its
    # first scrambled packet, which a pause in the source can delay: compare, not absolute)
    assert abs(other["lead_ms"]["median"] - ours["lead_ms"]["median"]) < 50


def _cw_log(path: Path) -> dict[int, bytes]:
    return {int(e["cp"]) & 0xFFFF: bytes.fromhex(e["cw"])
            for e in (json.loads(line) for line in path.read_text().splitlines())
            if e["service_id"] == SERVICE_ID}


def _check_other_ecms(data: bytes, keys: OperatorKeys, cws: dict[int, bytes]) -> int:
    """Every ECM on the other system's PID opens with its key and names our service;
    those of logged periods carry the head-end's CW(cp) and CW(cp+1) in their parity slots."""
    checked = 0
    for _, section in sections_on(data, OTHER_PID):
        assert section[0] in (0x80, 0x81)
        header, body = open_ecm(keys.ecm_key(0), section)
        assert header.channel_id == SERVICE_ID
        cp = body.crypto_period
        assert section[0] & 1 == cp & 1  # the ECM's parity is its period's
        slots = (body.cw_even, body.cw_odd)
        if cp in cws and cp + 1 in cws:
            assert slots[cp & 1] == cws[cp]
            assert slots[(cp + 1) & 1] == cws[cp + 1]
            checked += 1
    return checked
