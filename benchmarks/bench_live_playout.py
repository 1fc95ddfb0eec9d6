"""Live playout: the most scrambled bitrate played out in real time on one core, and the PCR
arrival jitter a receiver sees.

The sender is the head-end's own playout loop (:class:`cas.live.playout.RealTime`: a file
loop with CC/PCR/PTS rewriting, CSA2 or CISSA scrambling with a new CW pair per crypto-period,
ECMs sealed by our generator and repeated every 100 ms, PAT/PMT/CAT/SDT), paced by PCR into
7-packet datagrams over UDP to 127.0.0.1.  It is pinned to CPU 0.  The receiver is another
process pinned to CPU 1: it stamps every datagram on arrival (CLOCK_MONOTONIC, shared by the
two processes), then counts continuity errors and computes the PCR arrival jitter.

* **ramp**: for each algorithm, rising bitrates (until the sender's core is full): a step
  passes with zero late datagrams (> 5 ms behind schedule) and zero CC errors at the
  receiver.  The summary gives the highest passing step and the highest step with under 0.1%
  late datagrams (on a shared machine, other jobs' time slices make a few datagrams late at
  any rate).
* **capacity**: the producer alone (multiplex, scrambling, ECMs; no pacing, no socket), as
  Mbit/s of stream per second of its thread's CPU time: the ceiling a quiet core would give.
* **jitter**: CSA2 at 40 Mbit/s for ``--jitter-seconds`` (60 by default, the drift window):
  per PCR, ``e = (arrival - arrival_0) - (PCR - PCR_0) / 27 MHz``; the drift is the slope of a
  least-squares line through ``e``, the jitter is ``|e - line|`` (p50/p99).
* each step also prints CPU 0's ``steal`` time (/proc/stat): time the hypervisor gave that
  vCPU to someone else, which no scheduling inside the VM can win back.

The clear streams are made, and the receiver starts, under normal scheduling (the receiver
on CPU 1), so that no real-time work on CPU 0 uses up the kernel's real-time budget
(``sched_rt_runtime_us``) just before a step.

The clear stream is synthetic (random payloads: the cipher's cost does not depend on them):
one program, a 25 fps PES rhythm with PTS/DTS, PCR every 20 ms, 2 s long and looped.
Run: ``.venv/bin/python benchmarks/bench_live_playout.py [--seconds 8] [--jitter-seconds 60]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import socket
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys
from cas.formats import psi
from cas.headend.ecmgen import EcmGenerator
from cas.headend.scrambler import Algorithm
from cas.live.outputs import UdpOutput
from cas.live.pacer import Pacer
from cas.live.playout import LiveService, Multiplexer, RealTime
from cas.live.psi import MuxSettings, PsiSchedule, ServiceLayout, build_tables
from cas.live.scrambling import CryptoSchedule, InternalEcms, new_cipher
from cas.live.sources import FileLoop

PKT = 188
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
VIDEO, AUDIO = 0x100, 0x101
LOOP_S = 2.0


# --- the clear stream ------------------------------------------------------------------------

def _crc32(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def _section(table_id: int, ext: int, body: bytes) -> bytes:
    length = 9 + len(body)
    data = bytes((table_id, 0xB0 | (length >> 8), length & 0xFF)) + struct.pack(
        ">HBBB", ext, 0xC1, 0, 0) + body
    return data + _crc32(data).to_bytes(4, "big")


def _ts_field(prefix: int, v: int) -> bytes:
    return bytes(((prefix << 4) | (((v >> 30) & 7) << 1) | 1, (v >> 22) & 0xFF,
                  (((v >> 15) & 0x7F) << 1) | 1, (v >> 7) & 0xFF, ((v & 0x7F) << 1) | 1))


def make_clear(path: Path, bitrate_bps: int) -> None:
    """A synthetic SPTS of LOOP_S seconds at ``bitrate_bps`` (see the module docstring)."""
    pps = bitrate_bps / (PKT * 8)
    n = int(LOOP_S * pps)
    rnd = random.Random(1)
    noise = rnd.randbytes(184 * 64)
    pat = _section(0, 1, struct.pack(">HH", 1, 0xE000 | 0x1000))
    pmt = _section(2, 1, struct.pack(">HH", 0xE000 | VIDEO, 0xF000)
                   + bytes((0x02, 0xE1, 0x00, 0xF0, 0, 0x03, 0xE1, 0x01, 0xF0, 0)))
    cc = {0: 0, 0x1000: 0, VIDEO: 0, AUDIO: 0}
    pcr_every = max(1, int(0.02 * pps))
    frame_every = max(1, int(pps / 25))
    out = bytearray()
    next_pcr = next_frame = 0
    for i in range(n):
        t27 = round(i * 27e6 / pps)
        if i % int(pps / 10 + 1) in (0, 1):  # PAT + PMT ten times a second
            pid, sec = (0, pat) if i % int(pps / 10 + 1) == 0 else (0x1000, pmt)
            body = b"\x00" + sec
            out += bytes((0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | cc[pid])) + body + b"\xff" * (184 - len(body))
            cc[pid] = (cc[pid] + 1) & 15
            continue
        pid = AUDIO if i % 16 == 5 else VIDEO
        af = b""
        if pid == VIDEO and i >= next_pcr:
            next_pcr += pcr_every
            base, ext = divmod(t27, 300)
            af = bytes((7, 0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF,
                        (base >> 1) & 0xFF, ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF))
        pusi = False
        if pid == VIDEO and i >= next_frame:
            next_frame += frame_every
            pusi = True
        elif pid == AUDIO and i % (16 * 8) == 5:
            pusi = True
        head = b""
        if pusi:
            pts = (t27 // 300 + 18000) % (1 << 33)
            head = (b"\x00\x00\x01\xe0\x00\x00\x80\xc0\x0a" + _ts_field(3, pts)
                    + _ts_field(1, pts - 3600)) if pid == VIDEO else (
                b"\x00\x00\x01\xc0\x00\x00\x80\x80\x05" + _ts_field(2, pts))
        room = 184 - len(af) - len(head)
        start = (i * 37) % (len(noise) - 184)
        out += bytes((0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF,
                      (0x30 if af else 0x10) | cc[pid])) + af + head + noise[start : start + room]
        cc[pid] = (cc[pid] + 1) & 15
    path.write_bytes(out)


# --- the receiver (its own process, CPU 1) -------------------------------------------------------

def _receiver(port_q: Any, result_q: Any, cpu: int, rt: bool) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    if rt:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, 64 * 1024 * 1024)  # SO_RCVBUFFORCE (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    port_q.put(sock.getsockname()[1])
    # Arrival times from the kernel (SO_TIMESTAMPNS), not from when this loop got to the
    # datagram: the receiver's own scheduling must not count as jitter.
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(20)
    got: list[tuple[float, bytes]] = []
    space = socket.CMSG_SPACE(16)
    recvmsg = sock.recvmsg
    try:
        while True:
            data, ancdata, _, _ = recvmsg(2048, space)
            stamp = 0.0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    stamp = sec + nsec * 1e-9
            got.append((stamp, data))
            sock.settimeout(1.0)
    except TimeoutError:
        pass
    sock.close()
    last: dict[int, int] = {}
    cc_errors = 0
    pcrs: list[tuple[float, int]] = []
    packets = 0
    for arrival, data in got:
        for off in range(0, len(data), PKT):
            packets += 1
            b1, b2, b3 = data[off + 1], data[off + 2], data[off + 3]
            pid = ((b1 & 0x1F) << 8) | b2
            if b3 & 0x10:
                c = b3 & 0x0F
                prev = last.get(pid)
                if prev is not None and c != (prev + 1) & 0x0F:
                    cc_errors += 1
                last[pid] = c
            if pid == VIDEO and b3 & 0x20 and data[off + 4] >= 7 and data[off + 5] & 0x10:
                base = int.from_bytes(data[off + 6 : off + 10], "big") << 1 | data[off + 10] >> 7
                pcrs.append((arrival, base * 300 + ((data[off + 10] & 1) << 8 | data[off + 11])))
    result_q.put({"datagrams": len(got), "packets": packets, "cc_errors": cc_errors,
                  "jitter": _jitter(pcrs)})


def _jitter(pcrs: list[tuple[float, int]]) -> dict[str, float]:
    # The last 0.2 s are left out: at the stop, what was multiplexed leaves at once.
    if pcrs:
        end = pcrs[-1][1] - int(0.2 * 27e6)
        pcrs = [e for e in pcrs if e[1] <= end]
    if len(pcrs) < 10:
        return {}
    a0, p0 = pcrs[0]
    xs = [(p - p0) / 27e6 for _, p in pcrs]
    es = [(a - a0) - x for (a, _), x in zip(pcrs, xs, strict=True)]
    mx, me = statistics.fmean(xs), statistics.fmean(es)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (e - me) for x, e in zip(xs, es, strict=True)) / sxx if sxx else 0.0
    dev = sorted(abs(e - (me + slope * (x - mx))) for x, e in zip(xs, es, strict=True))
    return {"p50_ms": dev[len(dev) // 2] * 1000, "p99_ms": dev[int(len(dev) * 0.99)] * 1000,
            "max_ms": dev[-1] * 1000, "drift_ppm": slope * 1e6, "span_s": xs[-1],
            "pcrs": float(len(pcrs))}


# --- the sender (this process, CPU 0) ---------------------------------------------------------

def _mux(clear: Path, algorithm: Algorithm) -> tuple[Multiplexer, CryptoSchedule]:
    source = FileLoop(clear)
    source.set_pid_map({VIDEO: VIDEO, AUDIO: AUDIO})
    layout = ServiceLayout(service_id=1, channel_number=1, name="bench", pmt_pid=0x1000,
                           pcr_pid=VIDEO,
                           streams=(psi.PmtStream(stream_type=2, elementary_pid=VIDEO),
                                    psi.PmtStream(stream_type=3, elementary_pid=AUDIO)),
                           scrambled=True, ecm_pid=0x0C10)
    r = random.Random(2)
    keys = OperatorKeys.generate(lambda k: r.randbytes(k))
    ecms = InternalEcms(EcmGenerator(keys), AccessCriteria(channel_id=1, package_ids=(1,)),
                        cw_length=algorithm.cw_length, timestamp_s=lambda: int(time.time()))
    crypto = CryptoSchedule({1: ecms}, crypto_period_s=1.0, first_cp=0)
    mux = Multiplexer([LiveService(layout=layout, source=source, cipher=new_cipher(algorithm))],
                      psi=PsiSchedule(build_tables([layout], MuxSettings(
                          ca_system_id=0xDEAD, emm_pid=0x0C00, algorithm=algorithm))),
                      crypto=crypto, ecm_repetition_s=0.1, emm_pid=0x0C00)
    return mux, crypto


def _steal_ms(cpu: int) -> float:
    """Time the hypervisor took CPU ``cpu`` away from this VM so far (``steal`` in
    /proc/stat), in ms; 0 where that is not available."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                f = line.split()
                if f[0] == f"cpu{cpu}" and len(f) > 8:
                    return int(f[8]) * 1000 / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    return 0.0


def play(clear: Path, algorithm: Algorithm, seconds: float, port: int) -> dict[str, Any]:
    mux, crypto = _mux(clear, algorithm)
    out = UdpOutput("127.0.0.1", port)
    late_at: list[float] = []
    pacer = Pacer(out.send, on_late=lambda late_s: late_at.append(pacer.now_s()))
    stop = threading.Event()
    crypto.keys(0)
    cpu0 = time.process_time()
    steal0 = _steal_ms(0)
    rt = RealTime(mux, pacer, stop)
    threads = rt.threads()
    for t in threads:
        t.start()
    time.sleep(seconds + 0.1)
    stop.set()
    for t in threads:
        t.join()
    cpu = time.process_time() - cpu0
    steal = _steal_ms(0) - steal0
    out.close()
    crypto.close()
    return {"late": pacer.stats.late, "max_late_ms": pacer.stats.max_late_s * 1000,
            "late_seconds": sorted({int(t) for t in late_at}),
            "sent_packets": pacer.stats.packets, "cpu_s": cpu, "steal_ms": steal}


def capacity(algorithm: Algorithm, tmp: str, rate_mbps: int = 200,
             stream_s: float = 6.0) -> float:
    """Mbit/s of stream the multiplex produces per second of CPU (no pacing, no socket)."""
    clear = clear_file(tmp, rate_mbps)
    mux, crypto = _mux(clear, algorithm)
    try:
        mux.window(0.0, 0.02, 0.0)
        t0 = time.thread_time()
        a, packets = 0.02, 0
        while a < stream_s:
            packets += len(mux.window(a, a + 0.02, a))
            a += 0.02
        cpu = time.thread_time() - t0
    finally:
        crypto.close()
    return packets * PKT * 8 / cpu / 1e6


def clear_file(tmp: str, rate_mbps: int) -> Path:
    """The clear stream of ``rate_mbps``, made once under normal scheduling: seconds of CPU
    under SCHED_RR would use up the real-time budget of the kernel's period
    (``sched_rt_runtime_us``, 95%), and the throttle (~50 ms) would fall on the first second
    of the playout that follows."""
    clear = Path(tmp) / f"{rate_mbps}.ts"
    if clear.exists():
        return clear
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    if policy != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    try:
        make_clear(clear, rate_mbps * 1_000_000)
    finally:
        if policy != os.SCHED_OTHER:
            os.sched_setscheduler(0, policy, param)
    return clear


def run_one(clear: Path, algorithm: Algorithm, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    port_q, result_q = ctx.Queue(), ctx.Queue()
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    rx = ctx.Process(target=_receiver, args=(port_q, result_q, 1, policy != os.SCHED_OTHER))
    # The receiver's interpreter starts (imports, about a second of CPU) on CPU 1 under normal
    # scheduling: on CPU 0 under SCHED_RR it would use up the kernel's real-time budget
    # (sched_rt_runtime_us, 95% of each second) and the throttle (~50 ms) would fall on the
    # first second of the playout.
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    if policy != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    try:
        rx.start()
    finally:
        os.sched_setaffinity(0, affinity)
        if policy != os.SCHED_OTHER:
            os.sched_setscheduler(0, policy, param)
    port = port_q.get(timeout=30)
    sent = play(clear, algorithm, seconds, port)
    result = result_q.get(timeout=300)
    rx.join()
    return {**sent, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per ramp step")
    parser.add_argument("--jitter-seconds", type=float, default=60.0)
    parser.add_argument("--rates", default="20,50,100,150,200,250,300",
                        help="Mbit/s steps of the ramp")
    parser.add_argument("--algorithms", default="csa2,cissa")
    parser.add_argument("--skip-jitter", action="store_true")
    parser.add_argument("--rt", action="store_true",
                        help="real-time scheduling (SCHED_RR 10; needs root/CAP_SYS_NICE)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the sender to CPU 0 (the receiver stays on CPU 1)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and not args.no_pin:
        os.sched_setaffinity(0, {0})
    if args.rt:
        # SCHED_RR for this process's threads (and the receiver it spawns): what
        # CPUSchedulingPolicy=rr does for the systemd unit (docs/live.md).
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
    print(f"load average before: {os.getloadavg()[0]:.2f}; scheduling "
          f"{'SCHED_RR' if args.rt else 'normal'}, sender on "
          f"{'any CPU' if args.no_pin else 'CPU 0'}, receiver on CPU 1")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_jitter:
            clear = clear_file(tmp, 40)
            res = run_one(clear, Algorithm.CSA2, args.jitter_seconds)
            j = res["jitter"]
            print(f"jitter csa2 40 Mbit/s {args.jitter_seconds:g} s: PCR arrival jitter "
                  f"p50 {j['p50_ms']:.3f} ms, p99 {j['p99_ms']:.3f} ms, max {j['max_ms']:.3f} ms, "
                  f"drift {j['drift_ppm']:+.2f} ppm over {j['span_s']:.1f} s; late {res['late']}, "
                  f"CC errors {res['cc_errors']}, CPU {res['cpu_s'] / args.jitter_seconds:.0%}, "
                  f"CPU 0 stolen by the hypervisor {res['steal_ms']:.0f} ms")
        for name in args.algorithms.split(","):
            algorithm = Algorithm(name)
            zero_late = 0
            near = 0
            for rate in (int(x) for x in args.rates.split(",")):
                clear = clear_file(tmp, rate)
                res = run_one(clear, algorithm, args.seconds)
                datagrams = max(1, res["datagrams"])
                late_share = res["late"] / datagrams
                achieved = res["packets"] * PKT * 8 / args.seconds / 1e6
                ok = res["late"] == 0 and res["cc_errors"] == 0 and res["packets"] > 0
                if ok:
                    zero_late = rate
                if late_share < 0.001 and res["cc_errors"] == 0 and achieved > 0.95 * rate:
                    near = rate
                print(f"{name:5} {rate:4} Mbit/s: {'pass' if ok else 'MISS'}  late "
                      f"{res['late']} ({late_share:.2%} of {datagrams}, max "
                      f"{res['max_late_ms']:.1f} ms), CC errors {res['cc_errors']}, received "
                      f"{achieved:.0f} Mbit/s, sender CPU {res['cpu_s'] / args.seconds:.0%}, "
                      f"PCR jitter p50/p99 {res['jitter'].get('p50_ms', float('nan')):.3f}/"
                      f"{res['jitter'].get('p99_ms', float('nan')):.3f} ms, CPU 0 stolen by "
                      f"the hypervisor {res['steal_ms']:.0f} ms"
                      + (f", late in seconds {res['late_seconds']}" if res["late"] else ""),
                      flush=True)
                if res["cpu_s"] / args.seconds > 0.98:
                    break  # the core is full: higher rates cannot be real time
            print(f"{name}: most scrambled bitrate in real time on one core: {zero_late} Mbit/s "
                  f"with zero late datagrams; {near} Mbit/s with under 0.1% late", flush=True)
            cap = capacity(algorithm, tmp)
            print(f"{name}: playout CPU cost without pacing: {cap:.0f} Mbit/s per core "
                  "(multiplex + scrambling + ECMs, the producer thread alone)", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
