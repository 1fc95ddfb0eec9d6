"""The conformance kit: time to build and to grade the whole shipped scenario library.

What is measured (``benchmarks/kit.md``):

* **build**: ``build_kit`` for every shipped scenario (head-end store in a temporary
  directory, cards, Chip ID records, one ffmpeg test stream per scenario, EMMs and CSA2
  scrambling per step), wall time and process CPU time;
* **grade**: ``run_kit`` with our stub (``--box stub``): one ``stb scan`` process per step and
  box, wall time, and the number of box runs it took;
* the baseline in the same run: one bare ``stb --version`` process start, times the number
  of box runs — what starting the processes alone costs;
* with ``--live``, **live**: ``run_kit_live`` — the store rebuilt, ``cas headend
  run`` started, one ``stb scan udp://…`` per box, every step graded when it has settled (at
  least ``MIN_DWELL_S`` each), wall time per scenario.

Run: ``.venv/bin/python benchmarks/bench_kit.py`` (``--only NAME`` for one scenario,
``--live`` to grade live as well).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cas.kit.build import build_kit  # noqa: E402
from cas.kit.library import shipped_scenarios  # noqa: E402
from cas.kit.live import run_kit_live  # noqa: E402
from cas.kit.run import run_kit, stub_command  # noqa: E402
from cas.kit.scenario import load_scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one shipped scenario")
    parser.add_argument("--live", action="store_true", help="grade through the live head-end too")
    args = parser.parse_args()
    live_rows: list[tuple[str, int, int, int, float]] = []
    paths = [p for p in shipped_scenarios() if args.only in (None, p.stem)]
    rows = []
    total_build = total_cpu = total_grade = 0.0
    box_runs = checks = 0
    with tempfile.TemporaryDirectory(prefix="bench-kit-") as tmp:
        for path in paths:
            sc = load_scenario(path)
            out = Path(tmp) / sc.name
            c0, t0 = time.process_time(), time.perf_counter()
            result = build_kit(sc, out)
            build_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
            t0 = time.perf_counter()
            graded = run_kit(out, "stub")
            grade_s = time.perf_counter() - t0
            runs = result.steps * result.boxes
            if not graded.ok:
                raise SystemExit(f"{sc.name}: the stub failed {len(graded.failures)} checks")
            rows.append((sc.name, result.steps, result.boxes, len(graded.cases), build_s, cpu_s,
                         grade_s))
            if args.live:
                t0 = time.perf_counter()
                live = run_kit_live(out, "stub")
                if not live.ok:
                    raise SystemExit(f"{sc.name} live: the stub failed {len(live.failures)} "
                                     "checks")
                live_rows.append((sc.name, result.steps, len(live.cases), len(live.skipped),
                                  time.perf_counter() - t0))
            total_build += build_s
            total_cpu += cpu_s
            total_grade += grade_s
            box_runs += runs
            checks += len(graded.cases)
    t0 = time.perf_counter()
    starts = 5
    for _ in range(starts):
        subprocess.run([stub_command()[0], "--version"], check=True, capture_output=True)
    start_s = (time.perf_counter() - t0) / starts
    print(f"{'scenario':22} {'steps':>5} {'boxes':>5} {'checks':>6} {'build s':>8} "
          f"{'cpu s':>6} {'grade s':>8}")
    for name, steps, boxes, n, b, c, g in rows:
        print(f"{name:22} {steps:5d} {boxes:5d} {n:6d} {b:8.2f} {c:6.2f} {g:8.2f}")
    print(f"{'total':22} {'':5} {'':5} {checks:6d} {total_build:8.2f} {total_cpu:6.2f} "
          f"{total_grade:8.2f}")
    print(f"grading: {box_runs} box runs, {total_grade / box_runs:.2f} s each; "
          f"a bare `stb --version` start: {start_s:.2f} s "
          f"({start_s * box_runs:.1f} s of the grading is process starts)")
    if live_rows:
        print(f"\n{'live':22} {'steps':>5} {'checks':>6} {'skipped':>7} {'live s':>8} "
              f"{'s/step':>6}")
        for name, steps, n, skipped, live_s in live_rows:
            print(f"{name:22} {steps:5d} {n:6d} {skipped:7d} {live_s:8.2f} "
                  f"{live_s / steps:6.2f}")
        print(f"{'total':22} {sum(r[1] for r in live_rows):5d} "
              f"{sum(r[2] for r in live_rows):6d} {sum(r[3] for r in live_rows):7d} "
              f"{sum(r[4] for r in live_rows):8.2f}")


if __name__ == "__main__":
    main()
