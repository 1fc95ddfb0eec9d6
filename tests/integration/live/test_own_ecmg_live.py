"""Our own CA system's ECMs from an ECMG (``[scrambling] ecm_source = "simulcrypt"``) that fails
mid-run, all real processes on 127.0.0.1 (docs/simulcrypt.md §9): ``cas headend run`` with our
ECMG (``cas ecmg serve`` with our keys), a second CA system's ECMG (``[[ca_system]]``) and our
box (``stb scan``) on the UDP output through a tee.

Shown:

* our ECMG killed: the head-end goes on sending, the payload stays scrambled, the other CA
  system's ECMs keep coming, our ECMs stop; the failure is in the log, ``/metrics`` (under our
  CA_system_ID) and ``/health``; the box reports the service LOCKED with NO_ECM;
* the ``backup_ecmg`` then started: the worker switches to it, our ECMs come back and the box
  opens again.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from cas.crypto import OperatorKeys
from cas.crypto.keys import default_key_path
from tests.integration.live.boxproc import StbProcess, port_of
from tests.integration.live.test_ca_systems_live import (
    CP_S,
    FIRST_STATE_S,
    OTHER_ID,
    OTHER_PID,
    OUR_PID,
    WAIT_S,
    Tee,
    _ecmg,
    _metrics,
    _wait_log,
    listening,
    world,
)
from tests.integration.live.world import (
    CAS,
    CHANNEL,
    Proc,
    World,
    free_tcp_port,
    headend_config,
    start,
    start_headend,
)
from tests.unit.headend.helpers import sections_on

__all__ = ["world"]  # the fixture, shared with the two-CA-systems test

pytestmark = pytest.mark.slow
OURS = "0xDEAD"


def _our_ecmg(world: World, port: int, name: str) -> Proc:
    proc = start([CAS, "ecmg", "serve", "--keys", str(default_key_path(world.data_dir)),
                  "--port", str(port)], world, name)
    return listening(proc, port)


def _ours(name: str) -> str:
    return f'cas_live_{name}{{ca_system_id="{OURS}"}}'


def _scrambled_video(data: bytes) -> int:
    pkts = (data[i : i + 188] for i in range(0, len(data) - 187, 188))
    return sum(1 for p in pkts if ((p[1] & 0x1F) << 8 | p[2]) == 0x0100 and p[3] >> 6 in (2, 3))


def test_our_ecmg_fails_then_the_backup_takes_over(world: World, tmp_path: Path) -> None:
    other_keys_path = tmp_path / "other-cas.key"
    OperatorKeys.generate().save(other_keys_path)
    primary_port, backup_port, other_port = free_tcp_port(), free_tcp_port(), free_tcp_port()
    procs: list[Proc] = []
    box = StbProcess.start("scan", "udp://127.0.0.1:0", world.box, cwd=world.root)
    tee = Tee(port_of(box.started()))
    try:
        primary = _our_ecmg(world, primary_port, "our-ecmg-primary.log")
        procs.append(primary)
        procs.append(_ecmg(world, other_keys_path, other_port, "other-ecmg.log"))
        config = headend_config(world, tee.port, crypto_period_s=CP_S)
        text = config.read_text().replace(
            "[scrambling]\n", f'[scrambling]\necm_source = "simulcrypt"\n'
            f'ecmg = "127.0.0.1:{primary_port}"\nbackup_ecmg = "127.0.0.1:{backup_port}"\n')
        text += (f"\n[[ca_system]]\nca_system_id = {OTHER_ID:#x}\n"
                 f'ecmg = "127.0.0.1:{other_port}"\necm_pid_base = {OTHER_PID:#x}\n')
        config.write_text(text)
        headend = start_headend(world, config)
        procs.append(headend)
        started = _wait_log(headend, lambda e: e.get("event") == "head-end started")
        ops_port = int(str(started["ops_port"]))
        up = _wait_log(headend, lambda e: e.get("event") == "ECMG up"
                       and e.get("ca_system_id") == OURS)
        assert up["ecmg"] == f"127.0.0.1:{primary_port}"
        try:
            opened = box.channel_event(CHANNEL, state="OPEN", timeout_s=FIRST_STATE_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhead-end: {headend.tail()}") from None
        assert _metrics(ops_port)[_ours("ecmg_up")] == 1

        # our ECMG dies (no backup listening yet): our ECMs stop, nothing else does
        primary.kill9()
        failed = _wait_log(headend, lambda e: e.get("event") in ("ECMG failed",
                                                                 "ECMG unavailable")
                           and e.get("ca_system_id") == OURS)
        assert failed["ecmg"] == f"127.0.0.1:{primary_port}"
        locked = box.channel_event(CHANNEL, state="LOCKED", reason="NO_ECM", after=opened,
                                   timeout_s=WAIT_S)
        quiet = tee.mark()
        time.sleep(3 * CP_S)
        silent = tee.since(quiet)
        assert not list(sections_on(silent, OUR_PID))
        assert len(list(sections_on(silent, OTHER_PID))) >= 3 * CP_S / 0.2 * 0.8
        assert _scrambled_video(silent) > 100  # the output goes on, still scrambled
        assert headend.alive()
        m = _metrics(ops_port)
        assert m[_ours("ecmg_up")] == 0 and m[_ours("ecmg_failures_total")] >= 1
        assert m[f'cas_live_ecmg_up{{ca_system_id="0x{OTHER_ID:04X}"}}'] == 1
        health = httpx.get(f"http://127.0.0.1:{ops_port}/health", timeout=10).json()
        ours = next(c for c in health["ca_systems"] if c["ca_system_id"] == OURS)
        assert ours["up"] is False and ours["failures"] >= 1

        # the backup comes up: the worker finds it (back-off), our ECMs and the picture return
        procs.append(_our_ecmg(world, backup_port, "our-ecmg-backup.log"))
        switched = _wait_log(headend, lambda e: e.get("event") == "ECMG switched"
                             and e.get("ca_system_id") == OURS)
        assert switched["ecmg"] == f"127.0.0.1:{backup_port}"
        box.channel_event(CHANNEL, state="OPEN", after=locked, timeout_s=WAIT_S)
        m = _metrics(ops_port)
        assert m[_ours("ecmg_up")] == 1 and m[_ours("ecmg_switches_total")] >= 1
        report = box.stop(signal.SIGINT)
    finally:
        box.kill()
        tee.close()
        for p in reversed(procs):
            p.stop()
    assert {c["channel"]: c["state"] for c in report["channels"]}[CHANNEL] == "OPEN"


def test_our_ecmg_back_after_the_backup_takes_over_again(world: World, tmp_path: Path) -> None:
    """Fail-back: our primary ECMG killed, the backup serves; the primary restarted on the same
    port is found (back-off), set up beside the backup and taken back at a crypto-period
    boundary — ECMs from the primary again, none missed, the box OPEN throughout."""
    primary_port, backup_port = free_tcp_port(), free_tcp_port()
    procs: list[Proc] = []
    box = StbProcess.start("scan", "udp://127.0.0.1:0", world.box, cwd=world.root)
    tee = Tee(port_of(box.started()))
    try:
        primary = _our_ecmg(world, primary_port, "our-ecmg-primary.log")
        procs.append(primary)
        procs.append(_our_ecmg(world, backup_port, "our-ecmg-backup.log"))
        config = headend_config(world, tee.port, crypto_period_s=CP_S)
        config.write_text(config.read_text().replace(
            "[scrambling]\n", f'[scrambling]\necm_source = "simulcrypt"\n'
            f'ecmg = "127.0.0.1:{primary_port}"\nbackup_ecmg = "127.0.0.1:{backup_port}"\n'))
        headend = start_headend(world, config)
        procs.append(headend)
        started = _wait_log(headend, lambda e: e.get("event") == "head-end started")
        ops_port = int(str(started["ops_port"]))
        try:
            box.channel_event(CHANNEL, state="OPEN", timeout_s=FIRST_STATE_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhead-end: {headend.tail()}") from None

        primary.kill9()
        switched = _wait_log(headend, lambda e: e.get("event") == "ECMG switched")
        assert switched["ecmg"] == f"127.0.0.1:{backup_port}"
        time.sleep(2 * CP_S)                    # the backup serves whole periods
        last = box.channel_events(CHANNEL)[-1]
        if last["state"] != "OPEN":             # a period lost to the kill, then open again
            box.channel_event(CHANNEL, state="OPEN", after=last, timeout_s=WAIT_S)
        missed = _metrics(ops_port).get(_ours("ecmg_missed_ecms_total"), 0.0)
        events_before = len(box.channel_events(CHANNEL))

        # the primary back on its port: taken back at a period boundary
        primary = _our_ecmg(world, primary_port, "our-ecmg-primary-again.log")
        procs.append(primary)
        back = _wait_log(headend, lambda e: e.get("event") == "ECMG failed back")
        assert (back["ecmg"], back["previous"]) == (f"127.0.0.1:{primary_port}",
                                                     f"127.0.0.1:{backup_port}")
        mark = tee.mark()
        time.sleep(3 * CP_S)
        assert len(list(sections_on(tee.since(mark), OUR_PID))) >= 3 * CP_S / 0.1 * 0.8
        m = _metrics(ops_port)
        assert m[_ours("ecmg_failbacks_total")] == 1 and m[_ours("ecmg_up")] == 1
        assert m.get(_ours("ecmg_missed_ecms_total"), 0.0) == missed   # no period without its ECM
        health = httpx.get(f"http://127.0.0.1:{ops_port}/health", timeout=10).json()
        ours = next(c for c in health["ca_systems"] if c["ca_system_id"] == OURS)
        assert ours["ecmg"] == f"127.0.0.1:{primary_port}" and ours["failbacks"] == 1
        # the box stayed OPEN: no channel change since the fail-back began
        assert box.channel_events(CHANNEL)[events_before:] == []
        report = box.stop(signal.SIGINT)
        assert primary.stop() == 0              # SIGTERM: its summary counts our ECMs
        served = re.search(r"served \d+ connection\(s\), (\d+) ECM\(s\)", primary.tail())
        assert served is not None and int(served[1]) >= 3, primary.tail()
    finally:
        box.kill()
        tee.close()
        for p in reversed(procs):
            p.stop()
    assert {c["channel"]: c["state"] for c in report["channels"]}[CHANNEL] == "OPEN"
