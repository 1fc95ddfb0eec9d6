"""Restart semantics with a real SIGKILL: the carousel runs in a subprocess writing what it
airs to a file; payments are committed through the billing service; the process is killed
while EMMs are still in their repeat window, another change is committed while it is down,
and a new process takes over.  Every committed change reaches the cards, each EMM was
generated once (one byte string per sequence number), the pending ones are re-aired with the
same bytes, and an in-process card refuses the re-airing as a replay (9811)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from cas.billing.clock import set_clock
from cas.billing.state import card_state_at
from cas.formats.emm import parse_emm
from cas.formats.sections import iter_sections
from cas.store.models import EmmOutbox
from tests.integration.live.test_carousel import (
    T0,
    Base,
    make_base,
    make_card,
    make_keys,
    offer,
    pay_and_subscribe,
)

ROOT = Path(__file__).resolve().parents[3]


def run_carousel(db_url: str, key_file: str, out_path: str) -> None:
    """The subprocess: poll + take in a loop, appending every aired section to ``out_path``."""
    from cas.crypto import OperatorKeys
    from cas.live.carousel import CarouselSettings, EmmCarousel
    from cas.store.engine import open_store

    store = open_store(db_url=db_url)
    settings = CarouselSettings(repeat_count=3, repeat_window_s=6.0, cycle_bitrate_bps=0,
                                poll_interval_s=0.1)
    carousel = EmmCarousel(store, OperatorKeys.load(key_file), settings)
    with open(out_path, "ab", buffering=0) as out:
        while True:
            carousel.poll()
            for section in carousel.take(time.monotonic(), 1 << 16):
                out.write(section)
            time.sleep(0.05)


def _sections(path: Path) -> list[bytes]:
    return list(iter_sections(path.read_bytes())) if path.exists() else []


def _seqs(sections: list[bytes], serial: int) -> list[int]:
    return [parse_emm(s).header.seq for s in sections
            if s[0] == 0x82 and int.from_bytes(s[3:7], "big") == serial]


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str,
          proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"carousel process exited ({proc.returncode}): "
                                 f"{proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start(db_url: str, key_file: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.live.test_carousel_restart", db_url,
         str(key_file), str(out)], cwd=ROOT, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def _queued(base: Base) -> int:
    with base.store.reader() as s:
        return len(s.execute(select(EmmOutbox.id).where(EmmOutbox.status == "queued")).all())


def test_sigkill_mid_run_then_restart(db_url: str, tmp_path: Path) -> None:
    keys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    base = make_base(db_url, keys, cards=5)
    first_out, second_out = tmp_path / "aired-1.sections", tmp_path / "aired-2.sections"
    paid = base.serials[:3]
    late = base.serials[4]

    proc = _start(db_url, key_file, first_out)
    try:
        _wait(lambda: all(_seqs(_sections(first_out), s) for s in base.serials), 30,
              "the start-up EMMs", proc)
        with base.store.transaction() as s:
            set_clock(s, T0 + timedelta(minutes=1))
        for i, serial in enumerate(paid):
            pay_and_subscribe(base, serial, at=T0 + timedelta(minutes=1), payment_id=f"k{i}")
        # kill while the payments' EMMs are in their repeat window (3 airings over 6 s)
        _wait(lambda: all(2 in _seqs(_sections(first_out), s) for s in paid), 30,
              "the payments' EMMs", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _queued(base) >= len(paid)  # repeats were pending at the kill

    # a change committed while the head-end is down
    pay_and_subscribe(base, late, at=T0 + timedelta(minutes=1), payment_id="while-down")

    proc = _start(db_url, key_file, second_out)
    try:
        _wait(lambda: 2 in _seqs(_sections(second_out), late) and _queued(base) == 0, 30,
              "the restarted carousel to air everything", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    before, after = _sections(first_out), _sections(second_out)
    # the pending EMMs were re-aired with the same bytes (same sequence numbers)
    for serial in paid:
        assert {s for s in before if _seqs([s], serial) == [2]} & set(after), serial
    # generated once: one byte string per (card, sequence number)
    for serial in base.serials:
        mine = {s for s in before + after if _seqs([s], serial)}
        assert len(mine) == len({parse_emm(s).header.seq for s in mine}), serial
    # every committed change reached the cards, each applied once
    for serial in base.serials:
        card = make_card(keys, base.slots[serial])
        applied, replayed = offer(card, before + after)
        assert applied == len(set(_seqs(before + after, serial))), serial
        assert replayed > 0
        with base.store.reader() as s:
            want = card_state_at(s, serial, T0 + timedelta(minutes=1)).rights
        assert card.entitlements() == want.entitlements, serial
        if serial in paid or serial == late:
            assert want.entitlements


if __name__ == "__main__":
    run_carousel(*sys.argv[1:4])
