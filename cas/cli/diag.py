"""``cas diag``: field-engineer diagnostics.

``cas diag stream IN.ts`` probes a transport stream (a file, stdin, or a live UDP/RTP input
for ``--duration`` seconds), ``cas diag codes`` prints the on-screen
code table, ``cas diag box`` reads a box's Chip ID record and NVRAM, ``cas diag visit`` puts
card, box, stream and the head-end's records together into one verdict per channel.
(``cas diag card`` comes from :mod:`cas.cli.diag_card`.)  Every command takes ``--json``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from cas import DEFAULT_CA_SYSTEM_ID
from cas.cli.app import Application, Exit, pass_app
from cas.cli.common import group
from cas.cli.diag_fingerprint import fingerprint_cmd
from cas.cli.diag_sharing import sharing_cmd
from cas.crypto import Key
from cas.diag.alarms import Thresholds
from cas.diag.probe import probe_file, probe_stream
from cas.diag.render import codes_data, render_codes, render_probe
from cas.errors import UsageError
from cas.outpath import check_output_file
from cas.text import parse_int_auto


def parse_int(text: str, what: str) -> int:
    """Decimal, or hex with 0x (CA_system_IDs are usually written in hex)."""
    value = parse_int_auto(text)
    if value is None and text.isascii():
        with contextlib.suppress(ValueError):
            value = int(text, 16)
    if value is None:
        raise UsageError(
            f"{what}: {text!r} is not a number (ASCII digits, or hex with 0x)").with_id(
            "not_a_number", what=what, text=text)
    return value


def _json_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--json", "json_flag", is_flag=True,
                        help="Machine-readable JSON output.")(f)


@click.command("stream")
@click.argument("stream", metavar="IN.ts")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0, min_open=True),
              metavar="S", help="Live input (udp://, rtp://): probe for S seconds "
              "(default: until Ctrl-C / SIGTERM).")
@click.option("--interface", metavar="ADDR", help="Local interface for a multicast join.")
@click.option("--ca-system-id", default=f"0x{DEFAULT_CA_SYSTEM_ID:04X}", show_default=True,
              help="CA system whose EMM addresses and ECM headers are read.")
@click.option("--bitrate", "bitrate_bps", type=int,
              help="Nominal bitrate (bit/s) for timing when the stream carries no PCR.")
@click.option("--ecm-gap-ms", type=float, default=500, show_default=True,
              help="Alarm when ECMs are further apart.")
@click.option("--cw-change-s", type=float, default=25, show_default=True,
              help="Alarm when the control word stays the same longer.")
@click.option("--emm-min-bps", type=int, default=1000, show_default=True,
              help="Alarm when an EMM PID carries less.")
@click.option("--fail-on-alarm", is_flag=True,
              help=f"Exit {int(Exit.STREAM)} when an error alarm is raised.")
@_json_option
@pass_app
def stream_cmd(app: Application, stream: str, duration_s: float | None,
               interface: str | None, ca_system_id: str, bitrate_bps: int | None,
               ecm_gap_ms: float, cw_change_s: float, emm_min_bps: int, fail_on_alarm: bool,
               json_flag: bool) -> None:
    """Probe IN.ts (a file, - for stdin, or udp://… / rtp://… live for --duration S):
    services, PIDs, scrambling, ECM/EMM, alarms."""
    if json_flag:
        app.json_mode = True
    thresholds = Thresholds(ecm_gap_s=ecm_gap_ms / 1000, cw_change_s=cw_change_s,
                            emm_min_bps=emm_min_bps)
    system = parse_int(ca_system_id, "--ca-system-id")
    from firmware_stub.udpin import parse_input

    spec = parse_input(stream, interface=interface)
    if spec.network:
        from cas.diag.liveprobe import probe_live
        from firmware_stub.udpin import open_input, stop_on_signals

        source = open_input(spec)
        try:
            with stop_on_signals() as stop:
                report, stats = probe_live(source, duration_s=duration_s, stop=stop,
                                           ca_system_id=system, nominal_bitrate_bps=bitrate_bps,
                                           thresholds=thresholds)
        finally:
            source.close()
        app.output({**report.to_json(app.lang), "input": stats.to_json()},
                   lambda: render_probe(report, app.console, app.t))
        if fail_on_alarm and report.errors:
            raise SystemExit(int(Exit.STREAM))
        return
    if duration_s is not None or interface is not None:
        raise UsageError("--duration and --interface are for udp:// and rtp:// inputs").with_id(
            "live_options_only")
    if stream == "-":
        report = probe_stream(sys.stdin.buffer, source="<stdin>", ca_system_id=system,
                              nominal_bitrate_bps=bitrate_bps, thresholds=thresholds)
    else:
        path = Path(stream)
        size = path.stat().st_size if path.is_file() else None
        with app.progress(f"probing {path.name}", size) as advance:
            report = probe_file(path, ca_system_id=system, nominal_bitrate_bps=bitrate_bps,
                                thresholds=thresholds, progress=advance)
    app.output(report.to_json(app.lang), lambda: render_probe(report, app.console, app.t))
    if fail_on_alarm and report.errors:
        raise SystemExit(int(Exit.STREAM))


@click.command("codes")
@click.option("--lang", type=click.Choice(["en", "ru"]), default=None,
              help="en or ru (default: CAS_LANG, then the locale).")
@click.option("--markdown", is_flag=True, help="A Markdown table (en and ru), for documents.")
@_json_option
@pass_app
def codes_cmd(app: Application, lang: str | None, markdown: bool, json_flag: bool) -> None:
    """Every lock reason with its on-screen code, message and fix; the probe's alarms."""
    if json_flag:
        app.json_mode = True
    if lang is not None:
        app.set_lang(lang)
    lang = app.lang
    if markdown and not app.json_mode:
        from cas.diag.render import codes_markdown

        click.echo(codes_markdown(), nl=False)
        return
    app.output(codes_data(lang), lambda: render_codes(app.console, lang))


_CHIP_HELP = "The box's Chip ID record (or the vendor's batch file, with --chip-id)."
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _hex_id(text: str | None) -> int | None:
    if text is None:
        return None
    from cas.cli._subscribers import parse_chip_id

    return parse_chip_id(text)


def _vendor_key(path: Path | None) -> Key | None:
    if path is None:
        return None
    from firmware_stub.chipset import load_vendor_key

    return load_vendor_key(path)


@click.command("box")
@click.option("--chip-record", required=True, type=_FILE, help=_CHIP_HELP)
@click.option("--chip-id", metavar="HEX", help="Which chip of a vendor batch file.")
@click.option("--nvram", type=click.Path(dir_okay=False, path_type=Path),
              help="The box's NVRAM file.")
@click.option("--vendor-key", type=_FILE,
              help="Chipset vendor key: also check the chip and the stored pairing.")
@_json_option
@pass_app
def box_cmd(app: Application, chip_record: Path, chip_id: str | None, nvram: Path | None,
            vendor_key: Path | None, json_flag: bool) -> None:
    """A box: Chip ID, firmware, pairing, last EMM and ECM results, counters (read only)."""
    from cas.diag.boxinfo import read_box
    from cas.diag.render import render_box

    if json_flag:
        app.json_mode = True
    report = read_box(chip_record, chip_id=_hex_id(chip_id), nvram=nvram,
                      vendor_key=_vendor_key(vendor_key))
    data = report.to_json()
    app.output(data, lambda: render_box(data, app.console, app.t))


@click.command("visit")
@click.option("--stream", "stream", required=True, type=_FILE, metavar="IN.ts",
              help="The stream the box receives (a capture from the subscriber's dish/cable).")
@click.option("--reader", metavar="NAME", help="PC/SC reader holding the subscriber's card.")
@click.option("--card-image", type=_FILE, help="Or: the card's EEPROM image (not changed).")
@click.option("--rom-key-file", type=_FILE, help="ROM key of the card image (32 hex digits).")
@click.option("--chip-record", type=_FILE, help=_CHIP_HELP)
@click.option("--chip-id", metavar="HEX", help="Which chip of a vendor batch file.")
@click.option("--nvram", type=click.Path(dir_okay=False, path_type=Path),
              help="The box's NVRAM file (copied, never changed).")
@click.option("--vendor-key", type=_FILE,
              help="Chipset vendor key: lets the box stub boot and scan the stream.")
@click.option("--db", "db_url", metavar="URL",
              help="The head-end's database (SQLAlchemy URL) to compare with.")
@click.option("--headend", is_flag=True,
              help="Compare with the head-end store of --data-dir / --db-url.")
@click.option("--at", "at_text", help="Moment of the visit (default: the head-end's clock, "
              "else now).")
@click.option("--pin", help="Parental PIN, for maturity-locked channels.")
@click.option("--ca-system-id", default=f"0x{DEFAULT_CA_SYSTEM_ID:04X}", show_default=True)
@click.option("--bitrate", "bitrate_bps", type=int,
              help="Nominal bitrate when the stream carries no PCR.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a support ticket: FILE.json or FILE.html.")
@click.option("--complaint", help="The subscriber's description of the error (for --report).")
@click.option("--city", help="Where the subscriber is (for --report).")
@click.option("--account", "account_ref", help="Account number, when no head-end is given.")
@click.option("--device", help="Device type and model, if not the box's Chip ID record.")
@_json_option
@pass_app
def visit_cmd(app: Application, stream: Path, reader: str | None, card_image: Path | None,
              rom_key_file: Path | None, chip_record: Path | None, chip_id: str | None,
              nvram: Path | None, vendor_key: Path | None, db_url: str | None, headend: bool,
              at_text: str | None, pin: str | None, ca_system_id: str,
              bitrate_bps: int | None, report_path: Path | None, complaint: str | None,
              city: str | None, account_ref: str | None, device: str | None,
              json_flag: bool) -> None:
    """Card + box + stream (+ head-end): a verdict per channel, cause and fix, worst first."""
    from cas.diag.render import render_visit
    from cas.diag.report import verification_for, write_report
    from cas.diag.visit import VisitInput, run_visit

    if json_flag:
        app.json_mode = True
    if reader is None and card_image is None:
        raise UsageError("give the card: --reader NAME or --card-image FILE").with_id(
            "give_the_card")
    if (nvram is not None or vendor_key is not None) and chip_record is None:
        raise UsageError("--nvram / --vendor-key need --chip-record").with_id(
            "box_needs_chip_record")
    if report_path is not None:
        check_output_file(report_path, "--report")  # written after the whole probe
    rom_key = None
    if rom_key_file is not None:
        from firmware_stub.chipset import load_key_file

        rom_key = load_key_file(rom_key_file, what="ROM key", label="card rom key")
    at = None
    if at_text is not None:
        from cas.cli._subscribers import parse_when

        at = parse_when(at_text)
    inp = VisitInput(stream=stream, reader=reader, card_image=card_image, rom_key=rom_key,
                     chip_record=chip_record, chip_id=_hex_id(chip_id), nvram=nvram,
                     vendor_key=_vendor_key(vendor_key), at=at, pin=pin,
                     ca_system_id=parse_int(ca_system_id, "--ca-system-id"),
                     nominal_bitrate_bps=bitrate_bps)
    store = None
    if db_url is not None or headend:
        from cas.store.engine import open_store

        store = (open_store(db_url=db_url, migrate=False, create=False) if db_url is not None
                 else open_store(db_url=app.db_url,
                                 data_dir=None if app.db_url else app.data_dir,
                                 migrate=False, create=False))
    try:
        with app.progress(f"probing {stream.name}", stream.stat().st_size) as advance:
            visit = run_visit(inp, store=store, progress=advance)
    finally:
        if store is not None:
            store.dispose()
    data = visit.to_json(app.lang)
    if report_path is not None:
        verification = verification_for(visit, complaint=complaint, city=city,
                                        account=account_ref, device=device)
        fmt = write_report(report_path, visit, verification, lang=app.lang)
        data["report"] = {"path": str(report_path), "format": fmt}

    def show() -> None:
        render_visit(data, app.console, app.t)
        if report_path is not None:
            app.print(app.t("visit.ticket_written", path=report_path), markup=False)

    app.output(data, show)


def register(cli: click.Group) -> None:
    diag = group(cli, "diag", "Field-engineer diagnostics")
    diag.add_command(stream_cmd)
    diag.add_command(codes_cmd)
    diag.add_command(box_cmd)
    diag.add_command(visit_cmd)
    diag.add_command(fingerprint_cmd)
    diag.add_command(sharing_cmd)
