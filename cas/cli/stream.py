"""``cas stream make-test-stream`` and ``cas stream scramble``: test streams for STB benches.

Thin: lineup → :mod:`cas.headend.teststream` (ffmpeg); clear TS + keys + lineup →
:mod:`cas.headend.scrambler` with :mod:`cas.headend.ecmgen` for the ECMs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import click

import cas
from cas.access import AccessCriteria, PpvEvent
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import UsageError
from cas.outpath import check_output_file
from cas.text import parse_int_auto


def _int_auto(text: str) -> int:
    value = parse_int_auto(text)
    if value is None:
        raise click.BadParameter(f"{text!r} is not a number (ASCII digits, or hex with 0x)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class LineupChannels:
    """The lineup's channels as the stream tools need them, all keyed by service id."""

    criteria: dict[int, AccessCriteria]
    names: dict[int, str]
    numbers: dict[int, int]  # the catalog's channel numbers (what subscribers tune)


def lineup_channels(app: Application, lineup: str | None) -> LineupChannels:
    """Criteria, names and channel numbers from ``--lineup`` or the store's catalog."""
    from cas.headend.ecmgen import criteria_from_lineup

    if lineup is not None:
        from cas.billing.catalog import load_lineup

        parsed = load_lineup(lineup, minor_per_major=100)
        return LineupChannels(criteria=criteria_from_lineup(parsed),
                              names={c.service_id: c.name for c in parsed.channels},
                              numbers={c.service_id: c.number for c in parsed.channels})
    from cas.billing.catalog import all_access_criteria
    from cas.cli._subscribers import reader

    with reader(app) as s:
        rows = all_access_criteria(s)
        return LineupChannels(criteria={ch.service_id: crit for ch, crit in rows},
                              names={ch.service_id: ch.name for ch, _ in rows},
                              numbers={ch.service_id: ch.number for ch, _ in rows})


def _ppv_events(app: Application) -> dict[int, tuple[PpvEvent, ...]]:
    """The store's pay-per-view events per service id (ECMs carry each in its time)."""
    from cas.billing.ppv import events_by_service
    from cas.cli._subscribers import reader

    with reader(app) as s:
        return events_by_service(s)


def lineup_criteria(app: Application, lineup: str | None) -> tuple[dict[int, AccessCriteria],
                                                                   dict[int, str]]:
    """(criteria by service id, names by service id) from ``--lineup`` or the store's catalog."""
    channels = lineup_channels(app, lineup)
    return channels.criteria, channels.names


def register(cli: click.Group) -> None:
    stream = group(cli, "stream", "Transport streams for set-top-box test benches.")

    @stream.command("make-test-stream")
    @click.option("--lineup", help="Lineup TOML (file or shipped name, e.g. tvplus.toml); "
                  "default: the store's catalog.")
    @click.option("--duration", "duration_s", type=click.FloatRange(0.1, 3600), default=10.0,
                  show_default=True, help="Seconds.")
    @click.option("--channels", "max_channels", type=click.IntRange(1, 500),
                  help="Only the first N channels of the lineup.")
    @click.option("--provider", default="cas-sim", show_default=True)
    @click.option("--video-kbps", type=click.IntRange(50, 50_000), default=200, show_default=True)
    @click.option("--muxrate-kbps", type=click.IntRange(100, 200_000),
                  help="Constant mux rate (pads with null packets).")
    @click.option("-o", "--out", "out", type=click.Path(path_type=Path, dir_okay=False),
                  required=True)
    @pass_app
    def make_test_stream(app: Application, lineup: str | None, duration_s: float,
                         max_channels: int | None, provider: str, video_kbps: int,
                         muxrate_kbps: int | None, out: Path) -> None:
        """A clear multi-service TS: test picture and tone per channel (ffmpeg)."""
        from cas.headend.teststream import TestService, TestStreamOptions
        from cas.headend.teststream import make_test_stream as make

        check_output_file(out, "-o")  # ffmpeg runs first; the file is written at the end
        _, names = lineup_criteria(app, lineup)
        if not names:
            raise UsageError("the lineup has no channels").with_id("cli.lineup_no_channels")
        services = [TestService(service_id=sid, name=name, provider=provider)
                    for sid, name in list(names.items())[:max_channels]]
        make(services, out, TestStreamOptions(duration_s=duration_s,
                                              video_bitrate_kbps=video_kbps,
                                              muxrate_kbps=muxrate_kbps))
        data = {"out": str(out), "services": [s.service_id for s in services],
                "duration_s": duration_s, "bytes": out.stat().st_size}
        app.output(data, lambda: app.print(
            f"{out}: {len(services)} services, {duration_s:g} s, {data['bytes']} bytes"))

    @stream.command("scramble")
    @click.argument("src", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
    @click.argument("dst", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
    @click.option("--algo", type=click.Choice(["csa2", "cissa"]), default="csa2",
                  show_default=True)
    @click.option("--crypto-period-s", type=click.FloatRange(0.1, 3600), default=10.0,
                  show_default=True)
    @click.option("--ecm-repetition-ms", type=click.IntRange(10, 60_000), default=100,
                  show_default=True)
    @click.option("--cw-log", type=click.Path(path_type=Path, dir_okay=False),
                  help="JSON lines: the CW of every channel in every crypto-period.")
    @click.option("--emm", "emm_file", type=click.Path(path_type=Path, dir_okay=False,
                                                        exists=True),
                  help="EMM sections file to carry (carousel on the EMM PID).")
    @click.option("--emm-kbps", type=click.IntRange(1, 100_000), default=32, show_default=True)
    @click.option("--no-emm-repeat", is_flag=True, help="Send the EMM file once, not looped.")
    @click.option("--lineup", help="Lineup for the access criteria (default: the store's).")
    @click.option("--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False),
                  help="Operator key file (default: $CAS_OPERATOR_KEY, then the data dir).")
    @click.option("--ecm-key-index", type=click.IntRange(0, 255), default=0, show_default=True)
    @click.option("--ca-system-id", default=hex(cas.DEFAULT_CA_SYSTEM_ID), show_default=True,
                  callback=lambda c, p, v: _int_auto(v))
    @click.option("--emm-pid", callback=lambda c, p, v: None if v is None else _int_auto(v),
                  help="Default: the first free PID from 0x0C00.")
    @click.option("--bitrate-kbps", type=click.IntRange(100, 1_000_000), default=2000,
                  show_default=True, help="Nominal rate to time ECMs when the input has no PCR.")
    @click.option("--at", "at_text", help="Time stamped in the ECMs (YYYY-MM-DD or ISO); "
                  "default: the store's simulation clock, or now without a store.")
    @click.option("--no-lcn", is_flag=True, help="Leave the SDT untouched (default: add a "
                  "logical_channel_descriptor with the catalog's channel number per service).")
    @pass_app
    def scramble(app: Application, src: Path, dst: Path, algo: str, crypto_period_s: float,
                 ecm_repetition_ms: int, cw_log: Path | None, emm_file: Path | None,
                 emm_kbps: int, no_emm_repeat: bool, lineup: str | None,
                 keys_path: Path | None, ecm_key_index: int, ca_system_id: int,
                 emm_pid: int | None, bitrate_kbps: int, at_text: str | None,
                 no_lcn: bool) -> None:
        """Scramble SRC into DST (CSA2 or CISSA) with ECMs, EMMs and CA descriptors."""
        from cas.crypto import load_operator_keys
        from cas.formats.sections import iter_sections
        from cas.headend.ecmgen import EcmSettings, channel_ecms_for
        from cas.headend.scrambler import (
            Algorithm,
            CwLogEntry,
            ScrambleConfig,
            Scrambler,
            payload_cipher,
            write_cw_log_line,
        )

        algorithm = Algorithm(algo)
        cp_ms = round(crypto_period_s * 1000)
        cp_ms -= cp_ms % 100
        keys = load_operator_keys(keys_path, data_dir=app.data_dir)
        channels = lineup_channels(app, lineup)
        criteria = channels.criteria
        numbers = {} if no_lcn else channels.numbers
        too_big = sorted(n for n in numbers.values() if n > 1023)
        if too_big:
            raise UsageError(f"channel number(s) {too_big} do not fit a logical_channel_descriptor "
                             "(at most 1023); use --no-lcn").with_id(
                "cli.channel_number_do_not", too_big=too_big)
        settings = EcmSettings(crypto_period_ms=cp_ms, repetition_ms=ecm_repetition_ms,
                               cw_length=algorithm.cw_length, ecm_key_index=ecm_key_index)
        services = channel_ecms_for(keys, criteria, settings=settings,
                                    start_s=_ecm_time_s(app, at_text),
                                    ppv_events=_ppv_events(app) if lineup is None else None)
        emms = list(iter_sections(emm_file.read_bytes())) if emm_file else []
        config = ScrambleConfig(algorithm=algorithm, crypto_period_ms=cp_ms,
                                ecm_repetition_ms=ecm_repetition_ms, ca_system_id=ca_system_id,
                                emm_pid=emm_pid, emm_bitrate_bps=emm_kbps * 1000,
                                emm_repeat=not no_emm_repeat,
                                nominal_bitrate_bps=bitrate_kbps * 1000,
                                channel_numbers=numbers)
        log_fh: IO[str] | None = cw_log.open("w", encoding="utf-8") if cw_log else None
        on_cw: Callable[[CwLogEntry], None] | None = None
        if log_fh is not None:
            fh = log_fh

            def on_cw(entry: CwLogEntry) -> None:
                write_cw_log_line(fh, entry)

        size = src.stat().st_size if str(src) != "-" else None
        try:
            with (_open_in(src) as fin, _open_out(dst) as fout,
                  app.progress("scrambling, packets", size // 188 if size else None) as adv):
                report = Scrambler(config, services, payload_cipher(algorithm),
                                   emm_sections=emms, cw_log=on_cw, progress=adv).run(fin, fout)
        finally:
            if log_fh is not None:
                log_fh.close()
        if str(dst) == "-":
            return
        app.output(report.to_json(), lambda: app.print(
            f"{dst}: {report.scrambled_packets} packets scrambled ({algorithm.value}), "
            f"{report.crypto_periods} crypto-periods, {report.ecm_packets} ECM and "
            f"{report.emm_packets} EMM packets, EMM PID {report.emm_pid:#06x}, ECM PIDs "
            + ", ".join(f"{s.service_id}→{s.ecm_pid:#06x}" for s in report.services)))


def _ecm_time_s(app: Application, at_text: str | None) -> int:
    """ECM timestamps decide entitlement windows on the card, so they follow the head-end's
    simulation clock when there is a store; the wall clock otherwise."""
    from cas.cli._subscribers import parse_when
    from cas.store.engine import SQLITE_FILE

    if at_text is not None:
        return int(parse_when(at_text).timestamp())
    if app.db_url or (app.data_dir / SQLITE_FILE).exists():
        from cas.cli._subscribers import now, reader

        with reader(app) as session:
            return int(now(session).timestamp())
    return int(time.time())


class _StdIn:
    def __enter__(self) -> IO[bytes]:
        return sys.stdin.buffer

    def __exit__(self, *exc: object) -> None:
        return None


class _StdOut:
    def __enter__(self) -> IO[bytes]:
        return sys.stdout.buffer

    def __exit__(self, *exc: object) -> None:
        sys.stdout.buffer.flush()


def _open_in(path: Path) -> _StdIn | IO[bytes]:
    return _StdIn() if str(path) == "-" else path.open("rb")


def _open_out(path: Path) -> _StdOut | IO[bytes]:
    return _StdOut() if str(path) == "-" else path.open("wb")
