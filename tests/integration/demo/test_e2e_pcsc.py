"""The demo's end-to-end check once through real PC/SC: the cards run in `cas card serve`
(their own process), attached to pcscd through vsmartcard-vpcd, and the boxes reach them only
through pyscard.  Same store, EMMs, ECMs and stream as the in-process run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.card.client import CardClient
from cas.card.pcsc import PcscTransport
from cas.crypto import OperatorKeys
from cas.demo import scenario
from cas.reasons import Reason
from cas.store.engine import open_store
from tests.fixtures.pcsc import PcscService
from tests.integration.card.conftest import CardServer, cas_env

pytestmark = pytest.mark.pcsc

SERVED = ("base", "kids-pin")


def test_demo_boxes_through_pcsc(pcscd: PcscService, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    scenario.prepare_dir(data_dir)
    rng = scenario._Rng(5)
    keys = OperatorKeys.generate(rng)
    keys.save(data_dir / "operator-keys.toml")  # `cas card serve` takes its ROM key from it
    store = open_store(data_dir=data_dir)
    try:
        subscribers, spare, now = scenario.build_world(store, keys, data_dir, rng)
        stream, _ = scenario.make_stream(store, keys, data_dir, now, rng)
        served = [s for s in subscribers if s.situation.key in SERVED]
        images = [data_dir / "cards" / f"{s.serial:010d}.img" for s in served]
        server = CardServer(images, pcscd.slots, cas_env(pcscd, data_dir),
                            tmp_path / "serve.log")
        server.start()
        readers = {s.serial: slot.reader for s, slot in zip(served, pcscd.slots, strict=False)}
        transports: list[PcscTransport] = []

        def client_for(serial: int) -> CardClient:
            t = PcscTransport(readers[serial])
            transports.append(t)
            return CardClient(t)

        try:
            results = scenario.run_boxes(store, keys, data_dir, subscribers, spare, stream, now,
                                         client_for=client_for, only=set(SERVED))
        finally:
            for t in transports:
                t.close()
            server.stop()
    finally:
        store.dispose()
    assert [r.situation.key for r in results] == list(SERVED)
    for r in results:
        assert r.ok, [(c.number, c.box, c.headend, c.expected) for c in r.channels]
    kids = results[1]
    assert next(c for c in kids.channels if c.number == 27).box is Reason.OPEN  # PIN over PC/SC
