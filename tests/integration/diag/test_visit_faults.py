"""``cas diag visit`` names each fault first, with its cause and fix.

Every fault is built where it lives — the head-end's records (billing rules, pairing), the
card (what EMMs reached it), or the stream (ECMs, control words) — through the real layers
(:mod:`tests.integration.diag.bench`); the visit sees only what a field engineer has: the
card, the box's files, a capture of the stream and (optionally) the head-end's database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.diag.visit import Cause, VisitReport
from cas.headend.teststream import TestService
from cas.reasons import Reason
from tests.fixtures.streams import clear_stream
from tests.integration.diag.bench import (
    KHABAR,
    KINO,
    QAZAQSTAN,
    SERVICE,
    SPORT,
    DiagBench,
    drop_ecms_after,
)

SERVICES = [TestService(service_id=1001, name="Qazaqstan"),
            TestService(service_id=1002, name="Khabar"),
            TestService(service_id=1016, name="Kino 18+"),
            TestService(service_id=1024, name="Viasat Sport HD")]


@pytest.fixture(scope="module")
def clear_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return clear_stream(tmp_path_factory, SERVICES, 4.0)


@pytest.fixture(scope="module")
def clear_long(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Long enough for the 25 s "control word not changing" alarm."""
    return clear_stream(tmp_path_factory, SERVICES, 27.0)


@pytest.fixture
def bench(tmp_path: Path, clear_ts: bytes) -> DiagBench:
    return DiagBench(tmp_path, clear_ts)


def first(report: VisitReport, channel: int) -> tuple[Cause, str]:
    v = report.channel(channel)
    assert v.cause is not None, f"channel {channel}: no cause found ({v.box_reason})"
    return v.cause.cause, v.cause.summary


def healthy(report: VisitReport, *channels: int) -> None:
    for ch in channels:
        v = report.channel(ch)
        assert v.state == "OPEN" and v.findings == (), (ch, v.findings)


# --- the card did not get its EMMs --------------------------------------------------------------
def test_missing_emms_for_this_card(bench: DiagBench) -> None:
    home = bench.home()
    assert bench.deliver(home, bench.emm_run("full")) == 1  # base package, a box earlier
    bench.pay(home, 1990)
    bench.subscribe(home, "viasat-sport")  # paid for the add-on ...
    bench.emm_run()  # ... the head-end sent the EMM (sequence 2) ...
    bench.advance(3)
    neighbour = bench.home()
    stream = bench.stream(bench.emm_run(), name="carousel")  # ... the carousel lost it
    report = bench.visit(home, stream)
    assert report.mode == "box"
    cause, summary = first(report, SPORT)
    assert cause is Cause.EMM_NOT_IN_STREAM
    assert summary == "EMMs for this card not in the stream for 3 days (since 2026-11-01)"
    v = report.channel(SPORT)
    assert v.box_reason is Reason.CHANNEL_NOT_IN_PACKAGE and v.headend_reason is Reason.OPEN
    assert "card EMM sequence 1, head-end issued up to 2" in v.cause.evidence  # type: ignore[union-attr]
    assert report.roots[0].finding.cause is Cause.EMM_NOT_IN_STREAM
    healthy(report, QAZAQSTAN, KHABAR, KINO)
    # the neighbour's EMMs are in the same stream: nothing wrong there
    healthy(bench.visit(neighbour, stream), QAZAQSTAN, KHABAR, KINO)


def test_stale_carousel_repeating_old_emms(bench: DiagBench) -> None:
    home = bench.home()
    old = bench.emm_run("full")
    bench.deliver(home, old)
    bench.pay(home, 1990)
    bench.subscribe(home, "viasat-sport")
    bench.emm_run()
    report = bench.visit(home, bench.stream(old))  # the mux still plays yesterday's file
    cause, _ = first(report, SPORT)
    assert cause is Cause.EMM_NOT_IN_STREAM
    assert any("only repeats old EMMs" in e for e in report.channel(SPORT).cause.evidence)  # type: ignore[union-attr]


def test_emms_never_generated(bench: DiagBench) -> None:
    home = bench.home()
    bench.deliver(home, bench.emm_run("full"))
    bench.pay(home, 1990)
    bench.subscribe(home, "viasat-sport")  # no EMM run since
    report = bench.visit(home, bench.stream([]))
    cause, summary = first(report, SPORT)
    assert cause is Cause.EMM_NOT_GENERATED
    assert summary.startswith("the head-end has not generated EMMs since this card's rights")


# --- the stream ----------------------------------------------------------------------------------
def test_stopped_ecms(bench: DiagBench) -> None:
    home = bench.home()
    report = bench.visit(home, bench.stream(bench.emm_run("full"), ecm_stop_s={1002: 1.5}))
    cause, summary = first(report, KHABAR)
    assert cause is Cause.ECM_STOPPED
    assert summary.startswith("ECMs for this channel stopped at 1.4 s into the stream")
    assert report.roots[0].finding.cause is Cause.ECM_STOPPED
    assert report.roots[0].channels == (KHABAR,)
    healthy(report, QAZAQSTAN, KINO)


def test_the_lock_shown_comes_before_a_stream_fault_that_did_not_cause_it(
        bench: DiagBench) -> None:
    home = bench.home()  # no add-on, and the add-on channel's ECMs stop after 1 s
    report = bench.visit(home, bench.stream(bench.emm_run("full"), ecm_stop_s={1024: 1.0}))
    assert report.channel(SPORT).box_reason is Reason.CHANNEL_NOT_IN_PACKAGE
    causes = [f.cause for f in report.channel(SPORT).findings]
    assert causes[:2] == [Cause.CHANNEL_NOT_IN_PACKAGE, Cause.ECM_STOPPED]
    # ... but across the visit the head-end's malfunction is named before the sales state
    assert [r.finding.cause for r in report.roots][:2] == [Cause.ECM_STOPPED,
                                                          Cause.CHANNEL_NOT_IN_PACKAGE]


def test_no_ecm_at_all(bench: DiagBench) -> None:
    home = bench.home()
    report = bench.visit(home, bench.stream(bench.emm_run("full"), ecm_stop_s={1002: 0.0}))
    v = report.channel(KHABAR)
    assert v.box_reason is Reason.NO_ECM and v.state == "LOCKED"
    assert first(report, KHABAR) == (Cause.ECM_MISSING, "no ECM at all for this channel")
    assert report.roots[0].finding.cause is Cause.ECM_MISSING


def test_control_word_not_changing(tmp_path: Path, clear_long: bytes) -> None:
    bench = DiagBench(tmp_path, clear_long)
    home = bench.home()
    # the scrambler's crypto-period is longer than the 27 s capture: one CW all along
    report = bench.visit(home, bench.stream(bench.emm_run("full"), crypto_period_ms=60_000))
    cause, summary = first(report, QAZAQSTAN)
    assert cause is Cause.CW_NOT_CHANGING
    assert summary.startswith("control word not changing for 2")
    assert report.channel(QAZAQSTAN).state == "OPEN" and report.channel(QAZAQSTAN).at_risk
    # one head-end fault, one root cause for every channel it hits
    assert report.roots[0].finding.cause is Cause.CW_NOT_CHANGING
    assert set(report.roots[0].channels) == {QAZAQSTAN, KHABAR, KINO, SPORT}


# --- card and box --------------------------------------------------------------------------------
def test_card_in_the_wrong_box(bench: DiagBench) -> None:
    mine, neighbours = bench.home(), bench.home()
    stream = bench.stream(bench.emm_run("full"))
    report = bench.visit(mine, stream, box=neighbours)
    cause, summary = first(report, QAZAQSTAN)
    assert cause is Cause.PAIRING_MISMATCH
    assert summary == (f"card {mine.serial:010d} is paired with another box "
                       f"(chip {mine.chip_id:08X}), not this box ({neighbours.chip_id:08X})")
    assert report.roots[0].finding.cause is Cause.PAIRING_MISMATCH
    assert set(report.roots[0].channels) == {QAZAQSTAN, KHABAR, KINO}
    assert "cas card pair" in report.roots[0].finding.fix


def test_no_card_in_the_box(bench: DiagBench) -> None:
    home = bench.home()
    stream = bench.stream(bench.emm_run("full"))
    from cas.diag.visit import VisitInput, run_visit

    report = run_visit(VisitInput(stream=stream, chip_record=home.chip_path, nvram=home.nvram,
                                  vendor_key=bench.vendor_key), store=bench.store)
    assert first(report, QAZAQSTAN)[0] is Cause.NO_CARD
    assert report.roots[0].finding.cause is Cause.NO_CARD
    # the people's form and the ticket work without a card too
    import io

    from rich.console import Console

    from cas.diag.render import render_visit
    from cas.diag.report import render_html, ticket, verification_for

    out = io.StringIO()
    render_visit(report.to_json(), Console(file=out, width=150))
    text = " ".join(out.getvalue().split())
    assert "no smart card in the box" in text and "card: none" in text
    page = render_html(ticket(report, verification_for(report, complaint="E04 everywhere")))
    assert "E04 everywhere" in page and "no smart card in the box" in page


# --- the account and the channel's rights ----------------------------------------------------------
def test_financial_block(bench: DiagBench) -> None:
    home = bench.home()
    bench.emm_run("full")
    bench.advance(31)  # renewal due, no money: the account is blocked
    report = bench.visit(home, bench.stream(bench.emm_run()))
    cause, summary = first(report, QAZAQSTAN)
    assert cause is Cause.FINANCIAL_BLOCK
    assert summary == "financial block since 2026-12-01: balance 0.00 KZT, pay 2490.00 KZT"
    assert all(v.box_reason is Reason.FINANCIAL_BLOCK for v in report.channels)
    assert report.roots[0].finding.cause is Cause.FINANCIAL_BLOCK
    assert len(report.roots[0].channels) == 4


def test_missing_add_on(bench: DiagBench) -> None:
    home = bench.home()
    report = bench.visit(home, bench.stream(bench.emm_run("full")))
    assert first(report, SPORT) == (Cause.CHANNEL_NOT_IN_PACKAGE,
                                    "package 'Viasat Sport HD' not connected: subscribe")
    assert report.channel(SPORT).cause.fix == "subscribe to 'Viasat Sport HD'"  # type: ignore[union-attr]
    healthy(report, QAZAQSTAN, KHABAR, KINO)


def test_expired_subscription(bench: DiagBench) -> None:
    home = bench.home(renew=False)
    bench.advance(31)
    report = bench.visit(home, bench.stream(bench.emm_run("full")))
    assert first(report, QAZAQSTAN) == (Cause.ENTITLEMENT_EXPIRED,
                                        "subscription to 'TV+ Start' ended on 2026-12-01")
    assert report.channel(QAZAQSTAN).cause.fix == (  # type: ignore[union-attr]
        "turn auto-renewal on for 'TV+ Start' and pay 2490.00 KZT "
        "(price 2490.00 KZT, balance 0.00 KZT)")


def test_expired_subscription_with_the_money_there_is_not_fixed_by_paying(
        bench: DiagBench) -> None:
    """Renewal off, the balance covers the next month: the fix is renewal on, not "pay"."""
    home = bench.home(renew=False)
    bench.pay(home, 2490)
    bench.advance(31)
    report = bench.visit(home, bench.stream(bench.emm_run("full")))
    assert first(report, QAZAQSTAN)[0] is Cause.ENTITLEMENT_EXPIRED
    fix = report.channel(QAZAQSTAN).cause.fix  # type: ignore[union-attr]
    assert fix == ("turn auto-renewal on for 'TV+ Start': the balance 2490.00 KZT covers its "
                   "price 2490.00 KZT, so it restarts at once")
    assert "pay" not in fix


def test_region_blackout(bench: DiagBench) -> None:
    home = bench.home(region=643)  # installed outside the country
    report = bench.visit(home, bench.stream(bench.emm_run("full")))
    assert first(report, KHABAR) == (Cause.REGION_BLACKOUT,
                                     "card region 643 is outside the channel's regions [398]")


def test_maturity_lock_on_a_kids_card(bench: DiagBench) -> None:
    home = bench.home(kids=True)
    report = bench.visit(home, bench.stream(bench.emm_run("full")))
    assert first(report, KINO) == (Cause.MATURITY_LOCKED,
                                   "channel rated 18+, card limit 12 (kids profile)")
    healthy(report, QAZAQSTAN, KHABAR)


# --- without the head-end, without the box -------------------------------------------------------
def test_without_the_headend_the_card_speaks(bench: DiagBench) -> None:
    home = bench.home(kids=True)
    report = bench.visit(home, bench.stream(bench.emm_run("full")), db=False)
    assert report.headend is None
    # without the lineup the box's numbers are the service ids
    cause, summary = first(report, SERVICE[KINO])
    assert cause is Cause.MATURITY_LOCKED
    assert summary == "rated above the card's maturity limit 12"
    assert first(report, SERVICE[SPORT])[0] is Cause.CHANNEL_NOT_IN_PACKAGE


def test_card_only_without_the_box(bench: DiagBench) -> None:
    home = bench.home()
    stream = bench.stream(bench.emm_run("full"))
    bench.deliver(home, bench.emm_run("full"))  # what a box would have given it
    report = bench.visit(home, stream, with_box=False)
    assert report.mode == "card-only" and report.box is None
    assert first(report, SPORT)[0] is Cause.CHANNEL_NOT_IN_PACKAGE
    assert report.channel(QAZAQSTAN).state == "OPEN"


def test_the_visit_changes_neither_nvram_nor_headend(bench: DiagBench) -> None:
    home = bench.home()
    stream = bench.stream(bench.emm_run("full"))
    home.nvram.write_text('{"format": "cas-sim-stb-nvram", "version": 1, "chip_id": '
                          f'"{home.chip_id:08X}", "boot_count": 7}}\n', encoding="utf-8")
    before = home.nvram.read_bytes()
    db = (bench.tmp / "store" / "cas.sqlite").read_bytes()
    report = bench.visit(home, stream)
    assert report.box is not None and report.box.nvram.boot_count == 7
    assert home.nvram.read_bytes() == before
    assert (bench.tmp / "store" / "cas.sqlite").read_bytes() == db


def test_drop_helper_leaves_other_pids_alone(bench: DiagBench) -> None:
    bench.home()
    data = bench.stream(bench.emm_run("full")).read_bytes()
    out = drop_ecms_after(data, {0x1FFE: 0.0})
    assert out == data
