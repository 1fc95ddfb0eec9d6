"""The README's tour, command by command, through the installed `cas` and `stb` scripts:
keys → operator → boxes → cards → account → payment → EMMs → stream → box → `cas why`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, cwd: Path, env: dict[str, str], ok: bool = True
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / tool), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, f"{tool} {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_tour(tmp_path: Path) -> None:
    env = {**os.environ, "CAS_DATA_DIR": str(tmp_path / "data")}
    env.pop("CAS_DB_URL", None)
    env.pop("CAS_OPERATOR_KEY", None)

    def cas(*a: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run("cas", *a, cwd=tmp_path, env=env, ok=ok)

    cas("keys", "init")
    assert (tmp_path / "data" / "operator-keys.toml").stat().st_mode & 0o077 == 0
    assert cas("keys", "init", ok=False).returncode != 0  # never overwritten silently
    cas("operator", "use", "tvplus", "--clock-start", "2026-11-01")
    cas("box", "manufacture", "--count", "2", "--out", "boxes")
    cas("box", "import", "boxes/chip-ids.bin")
    cards = json.loads(cas("--json", "card", "personalise", "--count", "2", "--start-serial",
                           "2256884759", "--out", "cards").stdout)["cards"]
    serial = cards[0]["serial"]
    acc = json.loads(cas("--json", "account", "create", "--surname", "Abenov", "--name",
                         "Nurlan", "--phone", "+77015550101").stdout)["account_number"]
    cas("card", "link", serial, acc)
    cas("box", "link", "5A100001", acc)
    cas("card", "pair", serial, "5A100001")
    cas("emm", "generate", "--full", "-o", "before.sections")
    cas("stream", "make-test-stream", "--channels", "3", "--duration", "3", "-o", "clear.ts")
    cas("stream", "scramble", "clear.ts", "before.ts", "--emm", "before.sections",
        "--crypto-period-s", "1")
    cas("keys", "export", "--vendor-key", "vendor.key", "--rom-key", "rom.key")
    assert (tmp_path / "rom.key").stat().st_mode & 0o077 == 0
    box_args = ["--card-image", f"cards/{serial}.img", "--rom-key-file", "rom.key",
                "--chip-record", "boxes/5A100001.chip", "--vendor-key", "vendor.key",
                "--nvram", "box.nvram", "--json"]

    def channel_reasons(stream: str) -> dict[int, str]:
        report = json.loads(run("stb", "scan", stream, *box_args, cwd=tmp_path, env=env).stdout)
        return {c["channel"]: c["reason"] for c in report["channels"]}

    assert set(channel_reasons("before.ts").values()) == {"NOT_SUBSCRIBED"}
    why = json.loads(cas("--json", "why", "--card", serial, "--channel", "1").stdout)
    assert why["reason"] == "NOT_SUBSCRIBED"

    cas("pay", "5000", "--card", serial, "--payment-id", "p1")
    assert cas("pay", "5000", "--card", serial, "--payment-id", "p1", ok=False).returncode != 0
    cas("package", "subscribe", acc, "start")
    cas("emm", "generate", "--incremental", "-o", "after.sections")
    cas("stream", "scramble", "clear.ts", "after.ts", "--emm", "after.sections",
        "--crypto-period-s", "1")
    assert set(channel_reasons("after.ts").values()) == {"OPEN"}
    why = json.loads(cas("--json", "why", "--card", serial, "--channel", "1").stdout)
    assert why["state"] == "OPEN"
    statement = json.loads(cas("--json", "statement", acc).stdout)
    assert statement  # the payment and the debit are ledger rows
