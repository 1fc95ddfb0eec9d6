"""A ``[[ca_system]]``'s worker (:class:`cas.live.ecmgs.CaSystemEcmg`) against real ECMGs on
127.0.0.1: it follows the ECMG's channel_status (CWs per CW_provision, repetition, delays), its
ECMs carry the head-end's CWs, a failed ECMG is reported and the backup takes over, the
primary takes over again once it is back, and the channel is kept open across long idle
spells."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from cas.access import AccessCriteria
from cas.crypto import OperatorKeys
from cas.headend.ecmgen import CwSchedule
from cas.headend.simulcrypt import access_criteria as ac
from cas.headend.simulcrypt.ecmg import EcmgConfig, EcmgServer, sealed_ecm_builder
from cas.live import ecmgs
from cas.live.config_simulcrypt import CaSystemConfig
from cas.live.ecmgs import CaSystemEcmg, EcmInserter, EcmStream
from cas.live.metrics import LiveMetrics
from cas.messages import open_ecm
from tests.fixtures.net import free_tcp_port
from tests.unit.headend.helpers import sections_on

from .conftest import ThreadedServer

OTHER = 0x4AD0
AC = ac.encode_full(AccessCriteria(channel_id=1001, package_ids=(1,)))
WAIT_S = 20.0


def _server(keys: OperatorKeys, **config: object) -> ThreadedServer:
    return ThreadedServer(lambda: EcmgServer(sealed_ecm_builder(keys),
                                             EcmgConfig(ca_system_id=OTHER, **config)))  # type: ignore[arg-type]


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def _worker(port: int, *, backup: int = 0, metrics: LiveMetrics | None = None,
            schedule: CwSchedule | None = None) -> tuple[CaSystemEcmg, CwSchedule]:
    cws = schedule or CwSchedule(cw_length=8, rng=os.urandom)
    cfg = CaSystemConfig(index=1, ca_system_id=OTHER, ecmg_host="127.0.0.1", ecmg_port=port,
                         backup_host="127.0.0.1" if backup else "", backup_port=backup,
                         super_cas_id=OTHER << 16 | 1, reconnect_min_s=0.05,
                         reconnect_max_s=0.2)
    streams = [EcmStream(service_id=sid, stream_id=n, ecm_id=n, ecm_pid=0x0D00 + n - 1,
                         access_criteria=AC)
               for n, sid in enumerate((1001, 1002), 1)]
    worker = CaSystemEcmg(cfg, streams, cw_of=lambda sid, cp: cws.cw(cp * 10 + sid % 10),
                          crypto_period_s=1.0, default_repetition_s=0.1, metrics=metrics)
    return worker, cws


def test_the_ecmg_channel_status_is_followed(keys: OperatorKeys) -> None:
    server = _server(keys, delay_start_ms=-300, delay_stop_ms=-300, ecm_rep_period_ms=250,
                     ts_packets=True)
    worker, cws = _worker(server.port)
    try:
        worker.start()
        _until(lambda: worker.up, "ECMG up")
        t = worker.timing
        assert (t.delay_start_s, t.delay_stop_s, t.repetition_s) == (-0.3, -0.3, 0.25)
        assert (t.lead_cw, t.cw_per_msg) == (1, 2) and t.provision_cps(40) == (40, 41)
        assert worker.wait_ready(40, time.monotonic() + WAIT_S)
        _until(lambda: worker.ready(1002, 41) is not None, "ECM(41) prepared a period ahead")
        for sid in (1001, 1002):
            for cp in (40, 41):
                section = worker.ready(sid, cp)
                assert section is not None
                header, body = open_ecm(keys.ecm_key(0), section)
                assert header.table_id == 0x80 | (cp & 1)
                slots = {cp & 1: cws.cw(cp * 10 + sid % 10),
                         (cp + 1) & 1: cws.cw((cp + 1) * 10 + sid % 10)}
                assert (body.cw_even, body.cw_odd) == (slots[0], slots[1])
        # the multiplex: ECM(41) from 0.7 s (delay_start −300 ms), every 250 ms
        inserter = EcmInserter(worker, crypto_period_s=1.0, first_cp=40)
        out = inserter.window(0.0, 1.0)
        on_pid = [(round(out.times[i], 3), sec[0])
                  for i, sec in sections_on(bytes(out.data), 0x0D00)]
        assert on_pid == [(0.0, 0x80), (0.25, 0x80), (0.5, 0x80), (0.7, 0x81), (0.95, 0x81)]
        assert inserter.missed == 0
    finally:
        worker.close()
        server.stop()


def test_failure_then_backup_then_nothing(keys: OperatorKeys) -> None:
    primary, backup = _server(keys), _server(keys)
    backup_port = backup.port
    metrics = LiveMetrics()
    worker, _ = _worker(primary.port, backup=backup_port, metrics=metrics)
    label = 'ca_system_id="0x4AD0"'
    try:
        worker.start()
        assert worker.wait_ready(7, time.monotonic() + WAIT_S)
        assert worker.active == f"127.0.0.1:{primary.port}"
        primary.stop()
        worker.want(8)
        _until(lambda: worker.switches == 1 and worker.up, "the backup took over")
        assert worker.active == f"127.0.0.1:{backup_port}" and worker.failures == 1
        _until(lambda: worker.ready(1001, 9) is not None, "ECMs from the backup")
        text = metrics.render_prometheus()
        assert f"cas_live_ecmg_switches_total{{{label}}} 1" in text
        assert f"cas_live_ecmg_up{{{label}}} 1" in text
        backup.stop()
        worker.want(10)
        _until(lambda: not worker.up, "the backup's failure seen")
        time.sleep(1.0)  # reconnection attempts to both, refused: one outage, counted once
        text = metrics.render_prometheus()
        assert f"cas_live_ecmg_up{{{label}}} 0" in text
        assert worker.failures == 2 and f"cas_live_ecmg_failures_total{{{label}}} 2" in text
        assert worker.ready(1001, 11) is None
    finally:
        worker.close()


def test_the_primary_back_takes_over_from_the_backup_at_a_period_boundary(
        keys: OperatorKeys) -> None:
    """Primary down → backup; the primary restarted on the same port is tried in the
    background and taken back when the multiplex moves to a new period, with every period's
    ECM on air across the switch (the multiplex played in real time, 0.1 s windows)."""
    primary_port = free_tcp_port()

    def primary_server() -> ThreadedServer:
        return ThreadedServer(lambda: EcmgServer(sealed_ecm_builder(keys),
                                                 EcmgConfig(ca_system_id=OTHER),
                                                 port=primary_port))

    primary, backup = primary_server(), _server(keys)
    metrics = LiveMetrics()
    worker, _ = _worker(primary_port, backup=backup.port, metrics=metrics)
    label = 'ca_system_id="0x4AD0"'
    try:
        worker.start()
        assert worker.wait_ready(7, time.monotonic() + WAIT_S)
        primary.stop()
        worker.want(8)
        _until(lambda: worker.switches == 1 and worker.up, "the backup took over")
        assert worker.active == f"127.0.0.1:{backup.port}"
        assert worker.wait_ready(9, time.monotonic() + WAIT_S)
        inserter = EcmInserter(worker, crypto_period_s=1.0, first_cp=8, metrics=metrics)
        start = time.monotonic()
        played = 0.0

        def play_until(done: Callable[[], bool], what: str) -> None:
            nonlocal played
            deadline = time.monotonic() + WAIT_S
            while not done():
                assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
                time.sleep(max(0.0, start + played - time.monotonic()))
                inserter.window(played, played + 0.1)
                played += 0.1

        play_until(lambda: played >= 2.0, "two periods from the backup")
        primary = primary_server()               # back, on the same port
        play_until(lambda: worker.failbacks == 1, "the fail-back")
        assert worker.active == f"127.0.0.1:{primary_port}" and worker.up
        switched_at = played
        play_until(lambda: played >= switched_at + 3.0, "three periods from the primary")
        assert inserter.missed == 0                # no period without its ECM
        assert primary.server.registry.ecms_sent >= 3 * 2   # two streams a period
        assert worker.failures == 1 and worker.switches == 2
        text = metrics.render_prometheus()
        assert f"cas_live_ecmg_failbacks_total{{{label}}} 1" in text
        assert f"cas_live_ecmg_switches_total{{{label}}} 2" in text
        assert f"cas_live_ecmg_up{{{label}}} 1" in text
        assert worker.health()["failbacks"] == 1
        # the backup's channel was closed: it serves nothing more
        sent = backup.server.registry.ecms_sent
        play_until(lambda: played >= switched_at + 5.0, "two more periods")
        assert backup.server.registry.ecms_sent == sent and inserter.missed == 0
    finally:
        worker.close()
        primary.stop()
        backup.stop()


def test_a_long_idle_channel_is_kept_open(keys: OperatorKeys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An ECMG closes a channel that stays silent past its idle timeout unless it answers a
    channel_test; the worker tests the channel itself when it has nothing to ask, so a long
    crypto-period does not cost a reconnection (before: the next CW_provision found the
    connection closed and counted a failure)."""
    monkeypatch.setattr(ecmgs, "KEEPALIVE_S", 0.2)
    server = _server(keys, idle_timeout_s=0.5)
    worker, _ = _worker(server.port)
    try:
        worker.start()
        _until(lambda: worker.up, "ECMG up")
        time.sleep(2.5)  # five idle timeouts without a request from the head-end
        assert worker.wait_ready(3, time.monotonic() + WAIT_S)
        assert worker.failures == 0 and server.server.connections == 1
    finally:
        worker.close()
        server.stop()
