"""Start-up of the command lines: ``cas --version``, ``cas --help``, a real ``cas why`` on a
small store and ``stb --version``, against a bare ``python -c pass`` (goal: ``cas --version``
≤ 0.25 s wall).

Every case is a fresh process, run the way an operator runs it (the ``cas`` / ``stb``
console scripts of this interpreter's environment), ``--repeat`` times, interleaved so a
burst of load from other jobs hits every case alike; the table gives the median and the
best wall time and the median's ratio to ``python -c pass`` of the same run.

``--source DIR`` runs a second checkout of the package beside this one (``PYTHONPATH=DIR``,
same interpreter and libraries): ``git worktree`` or ``git archive <rev> | tar -x -C DIR``
of an older revision gives a before/after in the same run.

The store for ``cas why`` is made first (not timed) in a temporary data dir: operator
``tvplus``, one account with a card, a payment and the ``maximum`` package.

Run:  .venv/bin/python benchmarks/bench_startup.py [--repeat 15] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 0.25
BIN = Path(sys.executable).parent
CARD = "2256884759"


def _cas(data_dir: Path, *args: str) -> str:
    return subprocess.run([str(BIN / "cas"), "--data-dir", str(data_dir), *args], check=True,
                          capture_output=True, text=True).stdout


def make_store(data_dir: Path) -> None:
    _cas(data_dir, "operator", "use", "tvplus", "--clock-start", "2026-03-01")
    number = json.loads(_cas(data_dir, "--json", "account", "create", "--surname", "Aliyev",
                             "--name", "Rashad"))["account_number"]
    _cas(data_dir, "card", "add", CARD, "--account", number)
    _cas(data_dir, "pay", "--account", number, "4990")
    _cas(data_dir, "package", "subscribe", number, "maximum")


def cases(data_dir: Path) -> dict[str, list[str]]:
    cas, stb = str(BIN / "cas"), str(BIN / "stb")
    why = [cas, "--data-dir", str(data_dir), "why", "--card", CARD]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "cas --version": [cas, "--version"],
        "cas --help": [cas, "--help"],
        "cas why --card C --channel 1": [*why, "--channel", "1"],
        "cas --json why --card C (every channel)": [cas, "--json", *why[1:]],
        "stb --version": [stb, "--version"],
        "stb --help": [stb, "--help"],
    }


def run_once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--source", type=Path, action="append", default=[],
                    help="another checkout to time beside this one (PYTHONPATH)")
    args = ap.parse_args()

    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CAS_DB_URL")}
    base_env["COLUMNS"] = "120"
    envs = {"this": base_env}
    for src in args.source:
        envs[src.name] = {**base_env, "PYTHONPATH": str(src.resolve())}

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        data_dir = Path(tmp) / "store"
        make_store(data_dir)
        table = cases(data_dir)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):
            for label, env in envs.items():
                for name, argv in table.items():
                    if name == "python -c pass" and label != "this":
                        continue
                    times.setdefault((label, name), []).append(run_once(argv, env))

    bare = statistics.median(times[("this", "python -c pass")])
    print(f"# {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{args.repeat} runs each")
    print("| code | command | median | best | × python -c pass |")
    print("|---|---|---:|---:|---:|")
    for (label, name), ts in times.items():
        med = statistics.median(ts)
        print(f"| {label} | {name} | {med:.3f} s | {min(ts):.3f} s | {med / bare:.1f}× |")
    version = statistics.median(times[("this", "cas --version")])
    print(f"\ncas --version median {version:.3f} s: goal ≤ {GOAL_S} s "
          f"{'met' if version <= GOAL_S else 'NOT met'}")
    return 0 if version <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
