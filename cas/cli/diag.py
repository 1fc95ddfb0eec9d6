"""``cas diag``: field-engineer diagnostics.

``cas diag stream IN.ts`` probes a transport stream, ``cas diag codes`` prints the on-screen
code table, ``cas diag box`` reads a box's Chip ID record and NVRAM, ``cas diag visit`` puts
card, box, stream and the head-end's records together into one verdict per channel.
(``cas diag card`` comes from :mod:`cas.cli.diag_card`.)  Every command takes ``--json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cas import DEFAULT_CA_SYSTEM_ID
from cas.cli.app import Application, Exit, pass_app
from cas.cli.common import group
from cas.diag.alarms import Thresholds
from cas.diag.probe import probe_file, probe_stream
from cas.diag.render import codes_data, render_codes, render_probe
from cas.errors import UsageError


def parse_int(text: str, what: str) -> int:
    """Decimal, or hex with 0x (CA_system_IDs are usually written in hex)."""
    try:
        return int(text, 0)
    except ValueError:
        try:
            return int(text, 16)
        except ValueError:
            raise UsageError(f"{what}: {text!r} is not a number") from None


def _json_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--json", "json_flag", is_flag=True,
                        help="Machine-readable JSON output.")(f)


@click.command("stream")
@click.argument("stream", metavar="IN.ts")
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
def stream_cmd(app: Application, stream: str, ca_system_id: str, bitrate_bps: int | None,
               ecm_gap_ms: float, cw_change_s: float, emm_min_bps: int, fail_on_alarm: bool,
               json_flag: bool) -> None:
    """Probe IN.ts (a file, or - for stdin): services, PIDs, scrambling, ECM/EMM, alarms."""
    if json_flag:
        app.json_mode = True
    thresholds = Thresholds(ecm_gap_s=ecm_gap_ms / 1000, cw_change_s=cw_change_s,
                            emm_min_bps=emm_min_bps)
    system = parse_int(ca_system_id, "--ca-system-id")
    if stream == "-":
        report = probe_stream(sys.stdin.buffer, source="<stdin>", ca_system_id=system,
                              nominal_bitrate_bps=bitrate_bps, thresholds=thresholds)
    else:
        path = Path(stream)
        size = path.stat().st_size if path.is_file() else None
        with app.progress(f"probing {path.name}", size) as advance:
            report = probe_file(path, ca_system_id=system, nominal_bitrate_bps=bitrate_bps,
                                thresholds=thresholds, progress=advance)
    app.output(report.to_json(), lambda: render_probe(report, app.console))
    if fail_on_alarm and report.errors:
        raise SystemExit(int(Exit.STREAM))


@click.command("codes")
@click.option("--lang", type=click.Choice(["en", "ru"]), default="en", show_default=True)
@_json_option
@pass_app
def codes_cmd(app: Application, lang: str, json_flag: bool) -> None:
    """Every lock reason with its on-screen code, message and fix; the probe's alarms."""
    if json_flag:
        app.json_mode = True
    app.output(codes_data(lang), lambda: render_codes(app.console, lang))


def register(cli: click.Group) -> None:
    diag = group(cli, "diag", "Field-engineer diagnostics")
    diag.add_command(stream_cmd)
    diag.add_command(codes_cmd)
