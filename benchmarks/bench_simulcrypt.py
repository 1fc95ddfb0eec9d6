"""SimulCrypt benchmarks: the ECMG under load, and the EMMG's sustained data_provision rate.

Run (about two minutes with the defaults; 127.0.0.1 only)::

    .venv/bin/python benchmarks/bench_simulcrypt.py [--json results.json]

What it does:

1. Starts ``cas ecmg serve`` as its own process (so that the load generator does not share the
   server's interpreter) with a fresh operator key file: real sealed ECMs.
2. **Nominal load**: 500 ECM streams (50 SCS connections × 10 streams) at a 10 s crypto-period,
   each stream sending one CW_provision per period at evenly spread phases, for
   ``--duration-s``.  Latency = CW_provision written → ECM_response read, on the SCS side; the ECMG also
   reports its own compute time (CW_provision read → ECM_response built).
3. **Mid load**: the same 500 streams at a 1 s crypto-period (500 CW_provisions/s), for
   ``--mid-duration-s``.
4. **2,000 streams** (200 SCS connections × 10 streams) at a 1 s crypto-period: 2,000
   CW_provisions/s, for ``--load-duration-s`` (issue 12, item 20).  Reports max and p99 of
   CW_provision → ECM_response against the ``max_comp_time`` the ECMG announces, and the
   requests it shed (answered ``out_of_compute`` because it could not answer in time).
5. **Stress**: the same 500 streams at a 100 ms crypto-period (5 000 CW_provisions/s offered,
   open loop), for ``--stress-duration-s``.  Reports what the ECMG sustained and the latency
   (beyond its capacity the queue, and so the latency, grows for as long as the run lasts).
6. **EMMG**: ``cas mux serve`` as its own process; our EMMG sends 100-byte EMM sections at the
   highest allocatable bandwidth (65 535 kbit/s) over TCP, then over UDP, for
   ``--emmg-duration-s`` each.  Reports EMMs/s and the delivered bit rate.

Goals: p99 CW_provision → ECM_response under 10 ms at 500 streams (issue 7); at 2,000
streams every ECM_response within the announced max_comp_time (issue 12, item 20).
``--only 2000`` runs just that scenario (about 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cas.access import AccessCriteria  # noqa: E402
from cas.crypto import OperatorKeys, generate_cw  # noqa: E402
from cas.formats.simulcrypt import EcmgScsError, build_message  # noqa: E402
from cas.headend.simulcrypt import NEED_DATA, Connection, CpCw, Role  # noqa: E402
from cas.headend.simulcrypt import access_criteria as ac  # noqa: E402
from cas.headend.simulcrypt import ecmgscs as E  # noqa: E402
from cas.headend.simulcrypt.emmg import EmmgClient, EmmgConfig  # noqa: E402
from cas.headend.simulcrypt.outbox import Outbox  # noqa: E402

SUPER = 0xDEAD0000
AC = ac.encode_full(AccessCriteria(channel_id=3001, package_ids=(1, 2, 3), regions=(),
                                   maturity_rating=0))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server died")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- ECMG load --------------------------------------------------------------------------------
@dataclass
class LoadResult:
    name: str
    streams: int
    period_ms: int
    duration_s: float
    sent: int = 0
    answered: int = 0
    errors: int = 0
    shed: int = 0
    max_comp_time_ms: int | None = None
    latencies_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        announced = self.max_comp_time_ms
        return {
            "scenario": self.name, "streams": self.streams, "crypto_period_ms": self.period_ms,
            "duration_s": round(self.duration_s, 1),
            "offered_per_s": round(self.streams * 1000 / self.period_ms, 1),
            "answered_per_s": round(self.answered / self.duration_s, 1),
            "sent": self.sent, "answered": self.answered, "errors": self.errors,
            "shed_out_of_compute": self.shed, "announced_max_comp_time_ms": announced,
            "over_announced": (sum(1 for v in lat if v > announced)
                               if announced is not None else None),
            "p50_ms": round(percentile(lat, 50), 3), "p99_ms": round(percentile(lat, 99), 3),
            "max_ms": round(max(lat), 3) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 3) if lat else None,
            "client_send_lag_p99_ms": round(percentile(self.send_lag_ms, 99), 3),
        }


class LoadConnection:
    """One SCS connection driven straight from the sans-I/O core (little client overhead)."""

    def __init__(self, channel: int, streams: range, result: LoadResult) -> None:
        self.channel = channel
        self.streams = streams
        self.result = result
        self.conn = Connection(Role.SCS)
        self.pending: dict[tuple[int, int], float] = {}
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.seen = 0                       # status answers to our setups
        self.last_cp: dict[int, int] = {}   # stream -> CP of its latest CW_provision
        self.progress = asyncio.Event()

    async def open(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.task = asyncio.create_task(self.read_loop())
        self.writer.write(self.conn.send(E.ChannelSetup(ecm_channel_id=self.channel,
                                                        super_cas_id=SUPER)))
        await self.wait_seen(1)
        for sid in self.streams:
            self.writer.write(self.conn.send(E.StreamSetup(
                ecm_channel_id=self.channel, ecm_stream_id=sid, ecm_id=self.channel * 100 + sid,
                nominal_cp_duration_100ms=max(1, self.result.period_ms // 100))))
        await self.wait_seen(1 + len(self.streams))

    async def wait_seen(self, count: int) -> None:
        while self.seen < count:
            self.progress.clear()
            await asyncio.wait_for(self.progress.wait(), 10)

    async def read_loop(self) -> None:
        while True:
            data = await self.reader.read(65536)
            now = time.perf_counter()
            self.conn.receive_data(data)
            while True:
                event = self.conn.next_event()
                if event is NEED_DATA or not data:
                    break
                if isinstance(event, E.EcmResponse):
                    sent = self.pending.pop((event.ecm_stream_id, event.cp_number), None)
                    if sent is not None:
                        self.result.latencies_ms.append((now - sent) * 1000)
                        self.result.answered += 1
                elif isinstance(event, E.ChannelError | E.StreamError):
                    if event.error_status == (EcmgScsError.OUT_OF_COMPUTE,):   # shed in time
                        self.result.shed += 1
                        if isinstance(event, E.StreamError):
                            self.pending.pop((event.ecm_stream_id, self.last_cp.get(
                                event.ecm_stream_id, -1)), None)
                    else:
                        self.result.errors += 1
                else:
                    if isinstance(event, E.ChannelStatus):
                        self.result.max_comp_time_ms = event.max_comp_time_ms
                    self.seen += 1
                    self.progress.set()
            if not data:
                return

    def provision(self, sid: int, cp: int, scheduled: float) -> None:
        now = time.perf_counter()
        cps = cp & 0xFFFF
        event = E.CwProvision(
            ecm_channel_id=self.channel, ecm_stream_id=sid, cp_number=cps,
            cp_cw_combinations=(CpCw(cp_number=cps, cw=CWS[cp % len(CWS)]),
                                CpCw(cp_number=(cps + 1) & 0xFFFF,
                                     cw=CWS[(cp + 1) % len(CWS)])),
            access_criteria=AC if cp == 0 else None)
        data = build_message(event.to_message(2))   # already validated by the event
        self.pending[(sid, cps)] = time.perf_counter()
        self.last_cp[sid] = cps
        self.writer.write(data)
        self.result.sent += 1
        self.result.send_lag_ms.append((now - scheduled) * 1000)


CWS = [generate_cw(os.urandom) for _ in range(64)]


async def ecmg_load(port: int, *, name: str, channels: int, streams_per_channel: int,
                    period_ms: int, duration_s: float) -> LoadResult:
    result = LoadResult(name=name, streams=channels * streams_per_channel, period_ms=period_ms,
                        duration_s=duration_s)
    conns = [LoadConnection(c, range(1, streams_per_channel + 1), result)
             for c in range(1, channels + 1)]
    for c in conns:
        await c.open(port)
    period = period_ms / 1000
    # Each stream's CW_provisions at phase + k·period; phases spread evenly over one period.
    schedule: list[tuple[float, int, int]] = []
    total = len(conns) * streams_per_channel
    for ci, conn in enumerate(conns):
        for si, sid in enumerate(conn.streams):
            phase = (ci * streams_per_channel + si) / total * period
            k = 0
            while phase + k * period < duration_s:
                schedule.append((phase + k * period, ci, sid))
                k += 1
    schedule.sort()
    start = time.perf_counter() + 0.2
    counters: dict[tuple[int, int], int] = {}
    for offset, ci, sid in schedule:
        at = start + offset
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        cp = counters.get((ci, sid), 0)
        counters[(ci, sid)] = cp + 1
        conns[ci].provision(sid, cp, at)
    # let the answers in (bounded)
    deadline = time.perf_counter() + 10
    while any(c.pending for c in conns) and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    result.duration_s = time.perf_counter() - start
    for c in conns:
        c.writer.write(c.conn.send(E.ChannelClose(ecm_channel_id=c.channel)))
        c.writer.close()
        c.task.cancel()
    return result


# --- EMMG rate --------------------------------------------------------------------------------
def emm_source(size: int) -> Iterator[bytes]:
    body_len = size - 3
    i = 0
    while True:
        yield bytes((0x82, 0x70 | (body_len >> 8), body_len & 0xFF)) + \
            i.to_bytes(4, "big") + bytes(body_len - 4)
        i += 1


async def emmg_rate(port: int, *, udp: bool, duration_s: float,
                    section_size: int) -> dict[str, Any]:
    """Send for ``duration_s`` once data flows; rate from counter snapshots."""
    config = EmmgConfig(host="127.0.0.1", port=port, bandwidth_kbps=0xFFFF, udp=udp,
                        max_datagrams_per_message=32 if not udp else 12,
                        max_message_bytes=8192 if not udp else 1400,
                        confirm_every=32, max_unconfirmed=4096, timeout_s=10)
    client = EmmgClient(config, Outbox(emm_source(section_size)))
    task = asyncio.create_task(client.run())
    while client.stats.datagrams_sent == 0 and not task.done():
        await asyncio.sleep(0.005)
    d0, b0, t0 = client.stats.datagrams_sent, client.stats.bytes_sent, time.perf_counter()
    await asyncio.sleep(duration_s)
    d1, b1, t1 = client.stats.datagrams_sent, client.stats.bytes_sent, time.perf_counter()
    client.stop()
    stats = await task
    elapsed = t1 - t0
    return {"transport": "UDP" if udp else "TCP", "duration_s": round(elapsed, 2),
            "section_bytes": section_size, "allocated_kbps": stats.allocated_kbps,
            "emms_per_s": round((d1 - d0) / elapsed),
            "kbit_per_s": round((b1 - b0) * 8 / elapsed / 1000),
            "sent_total": stats.datagrams_sent, "confirmed_total": stats.confirmed}


# --- main -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--mid-duration-s", type=float, default=10.0)
    parser.add_argument("--stress-duration-s", type=float, default=10.0)
    parser.add_argument("--emmg-duration-s", type=float, default=5.0)
    parser.add_argument("--load-duration-s", type=float, default=20.0,
                        help="Length of the 2,000-stream scenario.")
    parser.add_argument("--only", choices=("nominal", "1s", "2000", "stress", "emmg"),
                        action="append", help="Run only these scenarios (repeat).")
    parser.add_argument("--ecmg-arg", action="append", default=[],
                        help="Extra argument for `cas ecmg serve` (repeat), e.g. "
                        "--ecmg-arg=--max-comp-time-ms=200.")
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--streams-per-channel", type=int, default=10)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CAS_DATA_DIR": tmp, "PYTHONPATH": str(ROOT)}
        keys_path = Path(tmp) / "keys.toml"
        OperatorKeys.generate(os.urandom).save(keys_path)

        chosen = set(args.only or ("nominal", "1s", "2000", "stress", "emmg"))
        base = (args.channels, args.streams_per_channel)
        for name, (channels, per_channel), period_ms, duration in (
                ("nominal", base, 10_000, args.duration_s),
                ("1s", base, 1_000, args.mid_duration_s),
                ("2000", (200, 10), 1_000, args.load_duration_s),
                ("stress", base, 100, args.stress_duration_s)):
            if name not in chosen:
                continue
            # a fresh ECMG per scenario, so that its own compute-time summary is per scenario
            port = free_port()
            ecmg = subprocess.Popen(
                [sys.executable, "-c", "from cas.cli.main import main; main()", "--json",
                 "ecmg", "serve", "--port", str(port), "--keys", str(keys_path),
                 *args.ecmg_arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            wait_listening(port, ecmg)
            cpu_before = cpu_seconds(ecmg.pid)
            try:
                result = asyncio.run(ecmg_load(
                    port, name=name, channels=channels, streams_per_channel=per_channel,
                    period_ms=period_ms, duration_s=duration))
            finally:
                cpu_after = cpu_seconds(ecmg.pid)
                ecmg.send_signal(signal.SIGINT)
                out, _ = ecmg.communicate(timeout=60)
            row = result.summary()
            if cpu_before is not None and cpu_after is not None:
                used = cpu_after - cpu_before
                row["ecmg_cpu_s"] = round(used, 2)
                row["ecmg_cpu_share_of_a_core"] = round(used / result.duration_s, 2)
                row["ecmg_cpu_ms_per_cw_provision"] = round(used * 1000 / max(result.sent, 1), 3)
            ecmg_summary = json.loads(out[out.index(b"{"):])
            row["ecmg_compute"] = ecmg_summary["compute"]
            row["ecmg_read_to_answer"] = ecmg_summary.get("in_ecmg")
            row["ecmg_shed"] = ecmg_summary.get("shed")
            results[f"ecmg_{name}"] = row
            print(json.dumps(row), flush=True)

        results["emmg"] = []
        for udp in (False, True) if "emmg" in chosen else ():
            port = free_port()
            mux = subprocess.Popen(
                [sys.executable, "-c", "from cas.cli.main import main; main()", "--json",
                 "mux", "serve", "--port", str(port), "--output", str(Path(tmp) / "mux.ts"),
                 "--max-bandwidth", "65535"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env)
            wait_listening(port, mux)
            try:
                row = asyncio.run(emmg_rate(port, udp=udp, duration_s=args.emmg_duration_s,
                                            section_size=100))
            finally:
                mux.send_signal(signal.SIGINT)
                out, _ = mux.communicate(timeout=30)
            summary = json.loads(out[out.index(b"{"):])
            row["mux_received"] = summary["datagrams"]
            results["emmg"].append(row)
            print(json.dumps(row), flush=True)
            (Path(tmp) / "mux.ts").unlink(missing_ok=True)
    if "ecmg_nominal" in results:
        goal = results["ecmg_nominal"]["p99_ms"] < 10
        results["goal_p99_under_10ms_at_500_streams"] = goal
        print(f"goal p99 < 10 ms at 500 streams: {'met' if goal else 'NOT met'}")
    if "ecmg_2000" in results:
        row = results["ecmg_2000"]
        kept = row["over_announced"] == 0
        results["goal_2000_streams_within_max_comp_time"] = kept
        print(f"2,000 streams: max {row['max_ms']} ms, p99 {row['p99_ms']} ms, announced "
              f"max_comp_time {row['announced_max_comp_time_ms']} ms, "
              f"{row['shed_out_of_compute']} shed: {'kept' if kept else 'NOT kept'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
