"""``cas diag stream`` on a 10-minute 20 Mbit/s stream (goal: under 10 s).

The stream is made by :mod:`cas.diag.synth` into a temporary file (or ``--stream FILE``, kept
with ``--keep``): 4 scrambled services (video + audio each, CSA2 parity bits changing every
10 s crypto-period), a PCR every 40 ms, an ECM per service every 100 ms, PAT/CAT/PMT/SDT every
100 ms, an EMM carousel (unique, shared, global) at 64 kbit/s — 1.5 GB, 7,978,723 packets.

Timed, best of ``--repeat`` runs each:

* **cas diag stream FILE --json** — the real command in a fresh process (interpreter start,
  imports, reading the file, the report), wall time;
* **probe_file()** — the probe in this process (no start-up, no JSON);
* **read only** — reading the file in the probe's 12 MB chunks and nothing else (the floor).

Run:  .venv/bin/python benchmarks/bench_diag.py [--minutes 10] [--mbps 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cas.diag.probe import CHUNK_PACKETS, probe_file
from cas.diag.synth import SynthOptions, default_services, write_stream

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 10.0


def make(path: Path, minutes: float, mbps: float) -> None:
    t0 = time.perf_counter()
    with path.open("wb") as out:
        summary = write_stream(out, default_services(4), SynthOptions(
            duration_s=minutes * 60, bitrate_bps=int(mbps * 1_000_000), emm_bitrate_bps=64_000))
    print(f"made {path}: {summary.bytes:,} bytes, {summary.packets:,} packets, "
          f"{summary.ecm_sections:,} ECMs, {summary.emm_sections:,} EMMs, {summary.pcrs:,} PCRs "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)


def best(repeat: int, fn: object) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--mbps", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stream", type=Path, help="use (or make, if missing) this file")
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    args = ap.parse_args()

    tmpdir = None
    if args.stream is not None:
        path = args.stream
    else:
        tmpdir = tempfile.mkdtemp(prefix="bench-diag-")
        path = Path(tmpdir) / "stream.ts"
    if not path.exists():
        make(path, args.minutes, args.mbps)
    size = path.stat().st_size
    cas = ROOT / ".venv" / "bin" / "cas"
    try:
        def read_only() -> None:
            with path.open("rb", buffering=0) as f:
                while f.read(CHUNK_PACKETS * 188):
                    pass

        out: dict[str, object] = {}

        def command() -> None:
            res = subprocess.run([str(cas), "diag", "stream", str(path), "--json"],
                                 check=True, capture_output=True)
            out["report"] = json.loads(res.stdout)

        read_only()  # warm the page cache once
        t_read = best(args.repeat, read_only)
        t_probe = best(args.repeat, lambda: probe_file(path))
        t_cmd = best(args.repeat, command)
        report = out["report"]
        assert isinstance(report, dict)
        packets = int(report["packets"])
        duration = float(report["duration_s"])
        print(f"\n{platform.processor() or platform.machine()}, Python "
              f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}, "
              f"best of {args.repeat}")
        print(f"stream: {size / 1e9:.2f} GB, {packets:,} packets, {duration:.0f} s, "
              f"alarms {len(report['alarms'])}")
        rows = [("cas diag stream --json (new process)", t_cmd),
                ("probe_file() in process", t_probe), ("read only (12 MB chunks)", t_read)]
        print("| operation | time | µs/packet | MB/s | × real time |")
        print("|---|---:|---:|---:|---:|")
        for name, t in rows:
            print(f"| {name} | {t:.2f} s | {t / packets * 1e6:.2f} | {size / t / 1e6:,.0f} | "
                  f"{duration / t:,.0f}× |")
        ok = t_cmd < GOAL_S
        print(f"\ngoal: cas diag stream under {GOAL_S:.0f} s -> "
              f"{'met' if ok else 'NOT met'} ({t_cmd:.2f} s)")
        return 0 if ok else 1
    finally:
        if tmpdir is not None and not args.keep:
            path.unlink(missing_ok=True)
            os.rmdir(tmpdir)
        elif tmpdir is not None:
            print(f"kept {path}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
