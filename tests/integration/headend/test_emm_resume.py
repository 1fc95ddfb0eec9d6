"""A full refresh killed with SIGKILL half-way, then re-run: same final card state, every card
exactly once, no sequence number used twice or skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from cas.billing.state import card_state_at
from cas.formats.emm import UniqueAddress, parse_emm
from cas.formats.sections import iter_sections
from cas.headend.emmrun import RUN_KEY, RunState
from cas.store.models import EmmSequence
from cas.store.repo import get_setting
from tests.integration.headend.conftest import T0, Base, feed, make_card

CARDS = 600


def _cli(data_dir: Path, key_file: Path, out: Path, env: dict[str, str]) -> list[str]:
    return [sys.executable, "-c", "from cas.cli.main import main; main()",
            "--data-dir", str(data_dir), "emm", "generate", "--full", "--out", str(out),
            "--keys", str(key_file), "--workers", "1", "--chunk", "25", "--shared-min", "0",
            "--at", (T0 + timedelta(hours=1)).isoformat()]


def test_killed_full_refresh_resumes_without_duplicate_or_missing_seq(
        base_factory: Callable[..., Base], tmp_path: Path) -> None:
    base = base_factory(cards=CARDS, subscribe_every=25)
    key_file = tmp_path / "keys.toml"
    base.keys.save(key_file)
    out = tmp_path / "full.sections"
    partial = Path(str(out) + ".emm-partial")
    data_dir = tmp_path / "store"
    # Slow enough per committed chunk that the watcher sees the run mid-way even on a
    # loaded machine (24 chunks: the whole run takes ~7 s, the kill comes after 5).
    env = {**os.environ, "CAS_EMM_THROTTLE_S": "0.3"}
    proc = subprocess.Popen(_cli(data_dir, key_file, out, env), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state: RunState | None = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            with base.store.reader() as s:
                raw = get_setting(s, RUN_KEY)
            if raw is not None:
                state = RunState.from_json(raw)
                if state.cards >= 5 * 25:
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert state is not None and 0 < state.cards < CARDS
    assert partial.exists() and not out.exists()

    # Re-run: it resumes and finishes.
    env.pop("CAS_EMM_THROTTLE_S")
    done = subprocess.run(_cli(data_dir, key_file, out, env), env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    assert out.exists() and not partial.exists()
    with base.store.reader() as s:
        assert get_setting(s, RUN_KEY) is None

    sections = list(iter_sections(out.read_bytes()))
    headers = [parse_emm(sec).header for sec in sections]
    per_card = Counter(h.address.serial for h in headers
                       if isinstance(h.address, UniqueAddress))
    assert sorted(per_card) == base.serials and set(per_card.values()) == {1}
    assert {h.seq for h in headers} == {1}
    with base.store.reader() as s:
        rows = s.execute(select(EmmSequence.address, EmmSequence.next_seq).where(
            EmmSequence.address_kind == "unique")).all()
        next_seqs = {address: seq for address, seq in rows}
    assert next_seqs == dict.fromkeys(base.serials, 2)

    # The cards that got their EMM before and after the kill hold the store's state.
    sample = base.serials[:3] + base.serials[CARDS // 2 : CARDS // 2 + 3] + base.serials[-3:]
    sample += [s for s in base.accounts][:4]
    for serial in sample:
        card = make_card(base.keys, base.slots[serial])
        assert feed(card, sections) == 1
        with base.store.reader() as s:
            want = card_state_at(s, serial, T0 + timedelta(hours=1)).rights
        assert card.entitlements() == want.entitlements
        assert int(card.status().status) == int(want.status)
