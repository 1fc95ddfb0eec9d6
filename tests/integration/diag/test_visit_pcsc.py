"""``cas diag visit --reader``: the subscriber's card through real PC/SC (pcscd + vpcd, served
by ``cas card serve``, read with pyscard), the box stub and the head-end's records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cas.diag.visit import Cause, VisitInput, run_visit
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from tests.fixtures.pcsc import PcscService
from tests.integration.card.conftest import CardServer, cas_env, run_cas
from tests.integration.diag.bench import QAZAQSTAN, SPORT, DiagBench, two_channel_home

pytestmark = pytest.mark.pcsc


def test_visit_with_the_card_in_a_pcsc_reader(pcscd: PcscService, tmp_path: Path) -> None:
    bench, home, stream = two_channel_home(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    bench.keys.save(data_dir / "operator-keys.toml")  # `cas card serve` takes its ROM key here
    env = cas_env(pcscd, data_dir)
    server = CardServer([home.image], pcscd.slots, env, tmp_path / "serve.log")
    server.start()
    try:
        reader = pcscd.slots[0].reader
        report = run_visit(VisitInput(stream=stream, reader=reader, chip_record=home.chip_path,
                                      nvram=home.nvram, vendor_key=bench.vendor_key),
                           store=bench.store)
        assert report.card is not None and report.card.reader == reader
        assert report.card_seq_after == 1  # the stream's EMM went to the real card
        assert report.channel(QAZAQSTAN).state == "OPEN"
        cause = report.channel(SPORT).cause
        assert cause is not None and cause.cause is Cause.CHANNEL_NOT_IN_PACKAGE
        assert cause.summary == "package 'Viasat Sport HD' not connected: subscribe"

        # the same through the command, in its own process
        _, vendor = bench.key_files()
        out = run_cas(["diag", "visit", "--stream", str(stream), "--reader", reader,
                       "--chip-record", str(home.chip_path), "--nvram", str(home.nvram),
                       "--vendor-key", str(vendor), "--db", bench.db_url, "--json"], env)
        data = json.loads(out.stdout)
        verdicts = {v["channel"]: v for v in data["verdicts"]}
        assert verdicts[SPORT]["cause"] == "package 'Viasat Sport HD' not connected: subscribe"
        assert data["card"]["reader"] == reader
    finally:
        server.stop()


def test_visit_with_an_empty_reader(pcscd: PcscService, tmp_path: Path) -> None:
    clear = tmp_path / "clear.ts"
    make_test_stream([TestService(service_id=1001, name="Qazaqstan")], clear,
                     TestStreamOptions(duration_s=2.0))
    (tmp_path / "he").mkdir()
    bench = DiagBench(tmp_path / "he", clear.read_bytes())
    home = bench.home()
    stream = bench.stream(bench.emm_run("full"))
    report = run_visit(VisitInput(stream=stream, reader=pcscd.slots[1].reader,
                                  chip_record=home.chip_path, nvram=home.nvram,
                                  vendor_key=bench.vendor_key), store=bench.store)
    cause = report.channel(QAZAQSTAN).cause
    assert cause is not None and cause.cause is Cause.NO_CARD
    assert report.card is None
