"""The ``stb`` command: the set-top-box stub (docs/stb.md).

* ``stb boot``  — power on: chipset, NVRAM, card; show what the box found.
* ``stb info``  — the Chip ID record and the NVRAM, without powering on.
* ``stb scan IN.ts`` — every channel of the stream's lineup, OPEN or LOCKED and why.
* ``stb watch IN.ts --channel N -o OUT.ts`` — descramble one channel into a clear SPTS.

IN.ts is a file, ``-`` (stdin), or a network input (``udp://127.0.0.1:5000``,
``udp://@239.1.1.1:1234``, ``rtp://…``: :mod:`firmware_stub.udpin`).  A network input (or
``--live`` / ``--duration``) runs in live mode (:mod:`firmware_stub.live`): one JSON line
per change of a channel's state while the stream goes on, the full report on SIGINT,
SIGTERM or after ``--duration`` seconds.

The card is a PC/SC reader (``--reader NAME``) or an in-process card from its EEPROM image
(``--card-image FILE --rom-key-file FILE``); without either the slot is empty.  Errors are
one line on stderr and a non-zero exit code, as in ``cas``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click
from rich.markup import escape

import cas
from cas.console import (
    Application,
    Exit,
    GuardedGroup,
    ascii_numbers,
    examples_epilog,
    lang_everywhere,
    pass_app,
    refuse_repeated_options,
    run_cli,
)
from cas.errors import CasError, StreamError, UsageError
from cas.formats.boxreport import (
    channel_line,
    fingerprint_line,
    message_line,
    post_report,
    purchase_line,
)
from cas.i18n import os_reason
from cas.reasons import message
from firmware_stub.errors import NotTransportStreamError
from firmware_stub.faults import Fault

# The box (chipset, card, demux, descrambler, live input) is imported by the commands that
# run it: `stb --version` and `stb --help` start without construct, the crypto and pyscard.
if TYPE_CHECKING:
    from firmware_stub.box import Box, WatchResult
    from firmware_stub.fingerprint import FingerprintShow
    from firmware_stub.live import LiveResult
    from firmware_stub.ppv import BuyResult
    from firmware_stub.report import ChannelStatus, LockReport
    from firmware_stub.udpin import InputSpec

F = TypeVar("F", bound=Callable[..., Any])


class _StbGroup(GuardedGroup):
    """The box's command group: like `cas`, a bug of ours is one line, never a traceback
    (``CAS_DEBUG=1`` shows it)."""


def _hex_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        if not value.isascii():  # int(value, 16) also reads "１０"
            raise ValueError(value)
        return int(value, 16)
    except ValueError:
        raise UsageError(f"{value!r} is not a hexadecimal number (ASCII 0-9, a-f)").with_id(
            "not_hex", text=value) from None


@click.group(cls=_StbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cas.__version__, prog_name="stb")
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable JSON output.")
@click.option("-q", "--quiet", is_flag=True, help="Less output.")
@click.option("--lang", type=click.Choice(["en", "ru"]), default=None,
              help="Language of the reports, on-screen messages and errors (default: "
                   "CAS_LANG, then the locale, then en).")
@click.pass_context
def cli(ctx: click.Context, json_mode: bool, quiet: bool, lang: str | None) -> None:
    """cas-sim set-top-box stub."""
    ctx.obj = Application(json_mode=json_mode, quiet=quiet, lang=lang)


def _json_flag(f: F) -> F:
    """``--json`` after the command too (``stb scan IN.ts --json``), as before it."""

    def set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.find_object(Application).json_mode = True  # type: ignore[union-attr]
        return value

    return click.option("--json", "json_here", is_flag=True, expose_value=False,
                        callback=set_json, help="Machine-readable JSON output.")(f)


def _chip_options(f: F) -> F:
    f = click.option("--chip-id", "chip_id", metavar="HEX", envvar="KIT_CHIP_ID",
                     help="Which chip of a vendor batch file.")(f)
    f = click.option("--chip-record", "chip_record", required=True, envvar="KIT_CHIP_RECORD",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="The box's Chip ID record (or the vendor's batch file).")(f)
    return f


def _box_options(f: F) -> F:
    f = click.option("--ca-system-id", default=f"{cas.DEFAULT_CA_SYSTEM_ID:04X}",
                     show_default=True, metavar="HEX", help="CA_system_ID to look for.")(f)
    f = click.option("--fault", "faults", multiple=True,
                     type=click.Choice([x.value for x in Fault]),
                     help="Inject a fault (repeatable; for testing test kits: docs/kit.md).")(f)
    f = click.option("--trace", is_flag=True, help="Print every APDU to stderr.")(f)
    f = click.option("--rom-key-file", envvar="KIT_ROM_KEY_FILE",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="ROM key of the in-process card (32 hex digits).")(f)
    f = click.option("--card-ecm-log", "card_ecm_log", envvar="KIT_CARD_ECM_LOG",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="The in-process card appends every ECM it answers to this "
                          "JSON-lines file (`cas diag sharing`).")(f)
    f = click.option("--card-image", envvar="KIT_CARD_IMAGE",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Insert an in-process card from its EEPROM image.")(f)
    f = click.option("--reader", metavar="NAME",
                     help="PC/SC reader holding the card (name or part of it).")(f)
    f = click.option("--nvram", required=True, envvar="KIT_NVRAM",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="The box's NVRAM file (created on first boot).")(f)
    f = click.option("--vendor-key", "vendor_key", required=True, envvar="KIT_VENDOR_KEY",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="The chipset vendor key (the chip's burned-in root; 32 hex digits).")(f)
    return _json_flag(_chip_options(f))


def _boot(app: Application, stack: ExitStack, *, chip_record: Path, chip_id: str | None,
          vendor_key: Path, nvram: Path, reader: str | None, card_image: Path | None,
          rom_key_file: Path | None, trace: bool, ca_system_id: str,
          faults: tuple[str, ...] = (), card_ecm_log: Path | None = None) -> Box:
    from firmware_stub.box import Box
    from firmware_stub.cardslot import insert_card
    from firmware_stub.chipset import load_chip_record, load_key_file, load_vendor_key

    if reader is not None and card_image is not None:
        raise UsageError("use --reader or --card-image, not both").with_id("reader_or_image")
    if card_image is not None and rom_key_file is None:
        raise UsageError("--card-image needs --rom-key-file").with_id("image_needs_rom_key")
    if card_ecm_log is not None and card_image is None:
        raise UsageError("--card-ecm-log needs --card-image").with_id("ecm_log_needs_image")
    record = load_chip_record(chip_record, _hex_int(chip_id))
    rom_key = (load_key_file(rom_key_file, what="ROM key", label="card rom key")
               if rom_key_file is not None else None)
    tracer = (lambda line: click.echo(line, err=True)) if trace else None
    inserted = insert_card(reader=reader, image=card_image, rom_key=rom_key, stack=stack,
                           trace=tracer, ecm_log=card_ecm_log)
    system = _hex_int(ca_system_id)
    assert system is not None
    return Box.boot(record, nvram, vendor_key=load_vendor_key(vendor_key),
                    card=inserted.client, reader=inserted.reader, card_error=inserted.error,
                    ca_system_id=system, faults=frozenset(Fault(f) for f in faults))


def _print_info(app: Application, data: dict[str, Any]) -> None:
    def show() -> None:
        chip = data["chip"]
        card = data["card"]
        app.print(f"[bold]chip[/] {chip['chip_id']}  {chip['vendor']} {chip['model']}  "
                  f"firmware {chip['firmware_version']}")
        if "paired" in chip:
            app.print(f"  pairing key: {'loaded (' + chip['cwpk_fingerprint'] + ')' if chip['paired'] else 'none'}")
        if card is not None:
            if not card["present"]:
                app.print("[bold]card[/] none" + (f" (reader {card['reader']})"
                                                  if card.get("reader") else ""))
            elif card.get("error"):
                app.print(f"[bold]card[/] error: {card['error']}")
            else:
                app.print(f"[bold]card[/] {card['serial']}  status {card['status']}  "
                          f"group {card['shared_address']}  paired with chip "
                          f"{card['paired_chip_id'] or '-'}  ({card['reader']})")
        if data.get("pairing_note"):
            app.print(f"  [yellow]{data['pairing_note']}[/]")
        nv = data["nvram"]
        app.print(f"[bold]nvram[/] boots {nv['boot_count']}  last channel "
                  f"{nv['last_channel'] if nv['last_channel'] is not None else '-'}  "
                  f"pairing {'card ' + str(nv['pairing']['card_serial']) if nv['pairing'] else '-'}")
        if nv.get("last_ecm"):
            e = nv["last_ecm"]
            app.print(f"  last ECM: channel {e['channel']} {e['reason']}")
        if nv.get("last_emm"):
            e = nv["last_emm"]
            app.print(f"  last EMM: {e['address_type']} {e['result']} (SW {e['sw']})")
        counters = {k: v for k, v in nv["counters"].items() if v}
        if counters:
            app.print("  counters: " + ", ".join(f"{k} {v}" for k, v in counters.items()))

    app.output(data, show)


@cli.command()
@_box_options
@pass_app
def boot(app: Application, /, **opts: Any) -> None:
    """Power the box on: chipset, NVRAM, card, pairing."""
    with ExitStack() as stack:
        box = _boot(app, stack, **opts)
        _print_info(app, box.info())


@cli.command()
@_json_flag
@_chip_options
@click.option("--nvram", required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def info(app: Application, chip_record: Path, chip_id: str | None, nvram: Path) -> None:
    """Show the Chip ID record and the NVRAM (no key, no card needed)."""
    from firmware_stub.chipset import load_chip_record
    from firmware_stub.nvram import load_nvram

    record = load_chip_record(chip_record, _hex_int(chip_id))
    nv = load_nvram(nvram, chip_id=record.chip_id)
    data = {
        "chip": {"chip_id": f"{record.chip_id:08X}", "vendor": record.vendor,
                 "model": record.model, "firmware_version": f"{record.firmware_version:08X}",
                 "manufactured_s": record.manufactured_s},
        "card": None,
        "nvram": nv.to_json(),
    }
    _print_info(app, data)


@contextmanager
def _named(path: str) -> Iterator[None]:
    """A stream that is not TS at all is one line naming the input, as in `cas diag stream`."""
    try:
        yield
    except NotTransportStreamError as exc:
        source = "stdin" if path == "-" else path
        named = NotTransportStreamError(f"{source}: {exc}")
        if exc.message_id is not None:  # "not_ts_anon" -> "not_ts" naming the input
            named.with_id(exc.message_id.removesuffix("_anon"), source=source)
        raise named from None


def _open_input(path: str, stack: ExitStack) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(open(path, "rb"))
    except OSError as exc:
        raise StreamError(f"cannot read {path}: {exc.strerror}").with_id(
            "cannot_read", path=path, error=os_reason(exc)) from exc


def _live_options(f: F) -> F:
    f = click.option("--interface", metavar="ADDR",
                     help="Local interface address for a multicast join.")(f)
    f = click.option("--duration", "duration_s", type=click.FloatRange(min=0, min_open=True),
                     metavar="S", help="Live mode: stop after S seconds.")(f)
    f = click.option("--live", is_flag=True,
                     help="Live mode for a file or stdin (implied by udp:// and rtp://).")(f)
    return f


def _live_spec(stream: str, *, live: bool, duration_s: float | None,
               interface: str | None) -> InputSpec | None:
    """The input of a live run, or None for file mode (which stays as it always was)."""
    from firmware_stub.udpin import parse_input

    spec = parse_input(stream, interface=interface)
    if spec.network or live or duration_s is not None:
        return spec
    if interface is not None:
        raise UsageError("--interface is for udp:// and rtp:// inputs").with_id(
            "interface_live_only")
    return None


def _json_line(data: dict[str, Any], *, err: bool = False) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str), err=err)


def _kit_line(status: ChannelStatus) -> str:
    """One line of the kit report protocol (docs/kit.md) for a channel's verdict."""
    detail = f" ({status.detail})" if status.detail else ""
    return channel_line(status.channel, status.reason.value,
                        f"{status.screen_code} {status.message}{detail}".strip())


def _live(stack: ExitStack, box: Box, spec: InputSpec, *,
          duration_s: float | None, pin: str | None, channel: int | None = None,
          out: BinaryIO | None = None, events_to_err: bool = False,
          report_url: str | None = None) -> LiveResult:
    from firmware_stub.live import ChannelEvent, run_live, utc_text
    from firmware_stub.udpin import open_input, stop_on_signals

    source = open_input(spec)
    stack.callback(source.close)
    _json_line({"event": "start", "time": utc_text(datetime.now(UTC)), "input": source.url,
                "mode": "watch" if channel is not None else "scan"}, err=events_to_err)
    stop = stack.enter_context(stop_on_signals())
    lang = click.get_current_context().find_object(Application)
    lang_code = lang.lang if lang is not None else "en"

    def event_line(event: Any) -> None:
        data = event.to_json()
        if isinstance(event, ChannelEvent):
            # The on-screen message in the viewer's language; both stay in the event.
            data["message_en"] = message(event.status.reason, "en")
            data["message_ru"] = message(event.status.reason, "ru")
            data["message"] = message(event.status.reason, lang_code)
            if report_url:
                post_report(report_url, [_kit_line(event.status)])
        _json_line(data, err=events_to_err)

    return run_live(box, source, stop=stop, duration_s=duration_s, channel=channel, out=out,
                    pin=pin, on_event=event_line)


@cli.command()
@click.argument("stream", metavar="IN.ts")
@_box_options
@click.option("--pin", envvar="KIT_PIN",
              help="Parental PIN for maturity-locked channels (4 digits).")
@click.option("--fail-on-locked", is_flag=True,
              help=f"Exit {int(Exit.LOCKED)} when any channel is locked.")
@click.option("--report-protocol", type=click.Choice(["report", "kit"]), default="report",
              show_default=True,
              help="kit: one JSON line per channel, the conformance kit's report protocol "
                   "(docs/kit.md).")
@click.option("--report-url", envvar="KIT_REPORT_URL", metavar="URL",
              help="POST the kit report lines to URL (the kit runner's endpoint, "
                   "docs/kit.md) instead of printing them; live: one POST per change.")
@click.option("--buy-channel", type=int, envvar="KIT_BUY_CHANNEL", metavar="N",
              help="Before the scan, buy a pay-per-view event on channel N (kit box action; "
                   "with --buy-event and --buy-pin).")
@click.option("--buy-event", type=click.IntRange(1, 0xFFFFFFFF), envvar="KIT_BUY_EVENT",
              metavar="ID", help="The event to buy (kit box action).")
@click.option("--buy-pin", envvar="KIT_BUY_PIN", metavar="PIN",
              help="The purchase PIN the viewer enters (kit box action).")
@click.option("--ppv-report-out", type=click.Path(dir_okay=False, path_type=Path),
              envvar="KIT_PPV_REPORT", metavar="REPORT.bin",
              help="After the scan, write the card's signed purchase report here (kit box "
                   "action: the runner uploads it).")
@_live_options
@pass_app
def scan(app: Application, /, stream: str, pin: str | None, fail_on_locked: bool,
         report_protocol: str, report_url: str | None, buy_channel: int | None,
         buy_event: int | None, buy_pin: str | None, ppv_report_out: Path | None, live: bool,
         duration_s: float | None, interface: str | None, **opts: Any) -> None:
    """Report every channel of IN.ts (a file, - for stdin, or udp://… live) as OPEN or
    LOCKED, and why."""
    from firmware_stub.live import utc_text
    from firmware_stub.report import render

    spec = _live_spec(stream, live=live, duration_s=duration_s, interface=interface)
    buying = (buy_channel, buy_event, buy_pin)
    if any(v is not None for v in buying) and (None in buying or spec is not None
                                                or stream == "-"):
        raise UsageError("--buy-channel, --buy-event and --buy-pin go together, on a stream "
                         "file").with_id("buy_options")
    if ppv_report_out is not None and spec is not None:
        raise UsageError("--ppv-report-out is for a stream file").with_id("ppv_report_file")
    extra: list[str] = []
    bought: BuyResult | None = None
    with ExitStack() as stack:
        box = _boot(app, stack, **opts)
        if spec is None:
            if buy_channel is not None and buy_event is not None and buy_pin is not None:
                bought = _kit_buy(box, stream, stack, buy_channel, buy_event, buy_pin)
                extra.append(purchase_line(bought.channel, bought.event_id,
                                           bought.reason.value,
                                           bought.purse.purse_tokens if bought.purse else None))
            with _named(stream):
                report = box.scan(_open_input(stream, stack), pin=pin, require_ts=True)
            if report_protocol == "kit" or report_url:
                extra += _shown_lines(box, report)
            if ppv_report_out is not None:
                from firmware_stub.ppv import read_report

                ppv_report_out.write_bytes(read_report(box.slot.client))
        else:
            result = _live(stack, box, spec, duration_s=duration_s, pin=pin,
                           report_url=report_url)
            report = result.report
    if spec is None and (report_protocol == "kit" or report_url):
        lines = [_kit_line(status) for status in report.channels]
        if bought is not None and not bought.bought:
            # the purchase dialog's refusal is what the viewer sees on that channel
            lines = [_refusal_line(bought) if status.channel == bought.channel else line
                     for status, line in zip(report.channels, lines, strict=True)]
        lines += extra
        if report_url:
            post_report(report_url, lines)
        else:
            for line in lines:
                click.echo(line)
    elif spec is None:
        app.output(report.to_json(), lambda: render(report, app.console, app.lang))
    elif app.json_mode:
        _json_line({"event": "report", "time": utc_text(datetime.now(UTC)),
                    **result.to_json()})
    else:
        render(report, app.console, app.lang)
        app.print(app.t("stb.live_summary", url=result.input.url,
                        duration=f"{result.duration_s:.1f}", bytes=result.input.bytes,
                        events=result.events, stopped_by=result.stopped_by))
    if fail_on_locked and not report.all_open:
        raise SystemExit(int(Exit.LOCKED))


def _kit_buy(box: Box, stream: str, stack: ExitStack, channel: int, event_id: int,
             pin: str) -> BuyResult:
    """The viewer buys the event on the box (``stb buy``) before the scan of the same
    stream, which then shows the channel open if the card opened it."""
    from firmware_stub.ppv import buy as ppv_buy

    with _named(stream):
        return ppv_buy(box.slot.client, _open_input(stream, stack), channel=channel,
                       event_id=event_id, pin=pin, ca_system_id=box.ca_system_id)


def _refusal_line(bought: BuyResult) -> str:
    return channel_line(bought.channel, bought.reason.value,
                        f"{message(bought.reason)} ({bought.detail})")


def _shown_lines(box: Box, report: LockReport) -> list[str]:
    """The kit's event lines for what the scan showed: every message seen to its end, and
    the fingerprint order the card holds (docs/osd.md)."""
    from firmware_stub.osd import OsdCard

    lines = [message_line(e["message_id"], e["priority"], e["text"])
             for e in (report.osd or {}).get("events", ())
             if e["event"] == "osd_acknowledged"]
    client = box.slot.client
    info = box.slot.info
    if Fault.IGNORE_OSD in box.faults or info is None or not isinstance(client, OsdCard):
        return lines
    try:
        order = client.fingerprint()
    except CasError:
        order = None
    if order is not None:
        lines.append(fingerprint_line(order.kind.name.lower(), info.serial))
    return lines


@cli.command()
@click.argument("stream", metavar="IN.ts")
@click.option("--channel", "-c", required=True, type=int, help="Channel number to watch.")
@click.option("-o", "--output", "output", required=True, metavar="OUT.ts",
              help="Where the clear channel goes (- for stdout).")
@_box_options
@click.option("--pin", help="Parental PIN for a maturity-locked channel (4 digits).")
@_live_options
@pass_app
def watch(app: Application, /, stream: str, channel: int, output: str, pin: str | None,
          live: bool, duration_s: float | None, interface: str | None, **opts: Any) -> None:
    """Descramble one channel of IN.ts (a file, - for stdin, or udp://… live) and write
    it, clear, to OUT.ts."""
    spec = _live_spec(stream, live=live, duration_s=duration_s, interface=interface)
    drawn: list[FingerprintShow] = []
    with ExitStack() as stack:
        box = _boot(app, stack, **opts)
        if output == "-":
            out: BinaryIO = sys.stdout.buffer
        else:
            try:
                out = stack.enter_context(open(output, "wb"))
            except OSError as exc:
                raise UsageError(f"cannot write {output}: {exc.strerror}").with_id(
                    "cannot_write", path=str(output), error=os_reason(exc)) from exc
        if spec is None:
            src = _open_input(stream, stack)
            with _named(stream):
                result = box.watch(src, channel, out, pin=pin, require_ts=True)
            out.flush()  # the whole clip is on disk before ffmpeg reads it
            drawn = _draw_fingerprint(box, result, output)
        else:
            result = _live_watch(app, stack, box, spec, channel, out, output=output,
                                 duration_s=duration_s, pin=pin)
    status = result.status

    def show() -> None:
        from firmware_stub.report import detail_text

        console = app.err_console if output == "-" else app.console
        t = app.t
        if status is None:
            console.print(t("stb.not_found", channel=channel))
            return
        colour = "green" if status.open else "red"
        console.print(t("stb.watch_line", channel=channel, name=escape(status.name),
                        state=f"[{colour}]{t('state.' + status.state)}[/]",
                        reason=status.reason.value, code=status.screen_code,
                        message=message(status.reason, t.lang))
                      + (f" — {escape(detail_text(status.detail, t))}" if status.detail
                         else ""))
        ms = result.first_ecm_to_clear_s
        console.print(t("stb.written", n=result.packets_out, dropped=result.packets_dropped)
                      + (", " + t("stb.first_clear", ms=f"{ms * 1000:.2f}")
                         if ms is not None else ""))
        for event in (result.report.osd or {}).get("events", ()):
            if event["event"] == "osd_acknowledged":
                console.print(t("stb.osd_message", id=event["message_id"],
                                priority=event["priority"], text=escape(event["text"])))
            elif event["event"] == "osd_preempted":
                console.print(t("stb.osd_preempted", id=event["message_id"]))
        for show in drawn:
            console.print(t("stb.fingerprint", kind=show.kind.name.lower(),
                            serial=f"{show.serial:010d}", start=f"{show.start_s:g}",
                            end=f"{show.end_s:g}"))

    if spec is not None and app.json_mode:
        pass  # the report went out as the last JSON line, after the events
    elif output == "-" and app.json_mode:
        app.err_console.print_json(data=result.to_json())
    else:
        data = result.to_json()
        if drawn:
            data["fingerprints"] = [{"kind": d.kind.name.lower(), "serial": f"{d.serial:010d}",
                                     "start_s": d.start_s, "end_s": d.end_s,
                                     "x_pct": d.x_pct, "y_pct": d.y_pct} for d in drawn]
        app.output(data, show)
    if status is None or not status.open:
        raise SystemExit(int(Exit.LOCKED))


#: A fingerprint order is drawn up to its end, or the clip's (no clip is a day long).
_CLIP_MAX_S = 86_400.0


def _draw_fingerprint(box: Box, result: WatchResult, output: str) -> list[FingerprintShow]:
    """Burn the card's fingerprint order into the clear clip (a file, not stdout)."""
    from firmware_stub.fingerprint import burn_in
    from firmware_stub.osd import shows_for_clip

    info = box.slot.info
    if result.fingerprint is None or info is None or output == "-" or not result.packets_out:
        return []
    shows = shows_for_clip(result.fingerprint, info.serial, clip_start_s=result.clip_start_s,
                           clip_length_s=_CLIP_MAX_S)
    burn_in(Path(output), shows)
    return shows


def _live_watch(app: Application, stack: ExitStack, box: Box, spec: InputSpec, channel: int,
                out: BinaryIO, *, output: str, duration_s: float | None,
                pin: str | None) -> WatchResult:
    """``stb watch`` on a live input: the tuned channel's events, the clear service out."""
    from firmware_stub.box import WatchResult
    from firmware_stub.live import utc_text

    to_err = output == "-"
    live = _live(stack, box, spec, duration_s=duration_s, pin=pin, channel=channel,
                 out=out, events_to_err=to_err)
    try:
        status: ChannelStatus | None = live.report.channel(channel)
    except KeyError:
        status = None
    result = WatchResult(channel=channel, status=status, packets_out=live.packets_out,
                         packets_dropped=live.packets_dropped, first_ecm_to_clear_s=None,
                         report=live.report)
    if app.json_mode:
        _json_line({"event": "report", "time": utc_text(datetime.now(UTC)),
                    **result.to_json(), "live": live.to_json()}, err=to_err)
    return result


_BOX_FILES = "--chip-record box.chip --vendor-key vendor.key --nvram box.nvram"
scan.epilog = examples_epilog((
    f"stb scan in.ts --card-image card.img --rom-key-file rom.key {_BOX_FILES}",
    f"stb scan in.ts --reader 'Virtual PCD 00 00' {_BOX_FILES} --lang ru",
    f"stb scan udp://127.0.0.1:5000 --duration 30 --card-image card.img --rom-key-file rom.key "
    f"{_BOX_FILES}",
    f"stb --json scan in.ts --card-image card.img --rom-key-file rom.key {_BOX_FILES} "
    "--fail-on-locked",
))
watch.epilog = examples_epilog((
    f"stb watch in.ts -c 1 -o clear.ts --card-image card.img --rom-key-file rom.key {_BOX_FILES}",
    f"stb watch in.ts -c 27 --pin 1234 -o - --card-image card.img --rom-key-file rom.key "
    f"{_BOX_FILES} | ffplay -",
))
@cli.command()
@click.argument("stream", metavar="IN.ts")
@click.option("--channel", "-c", required=True, type=int, help="Channel the event is on.")
@click.option("--event", "event_id", required=True, type=click.IntRange(0, 0xFFFFFFFF),
              help="PPV event id to buy (as the EPG / the operator shows it).")
@click.option("--pin", required=True, help="Purchase (parental) PIN, 4 digits.")
@_box_options
@pass_app
def buy(app: Application, /, stream: str, channel: int, event_id: int, pin: str,
        **opts: Any) -> None:
    """Buy a pay-per-view event on the card (IPPV) while it is on air in IN.ts."""
    from firmware_stub.ppv import buy as ppv_buy

    with ExitStack() as stack:
        box = _boot(app, stack, **opts)
        with _named(stream):
            result = ppv_buy(box.slot.client, _open_input(stream, stack), channel=channel,
                             event_id=event_id, pin=pin, ca_system_id=box.ca_system_id)
    app.output(result.to_json(), lambda: app.print(
        f"event {event_id} on channel {channel}: "
        + ("bought" if result.bought else f"{result.reason.value}") + f" — {result.detail}"))
    if not result.bought:
        raise SystemExit(int(Exit.LOCKED))


@cli.command("ppv-report")
@click.option("-o", "--output", "output", required=True, metavar="REPORT.bin",
              help="Where the card's signed purchase report goes.")
@_box_options
@pass_app
def ppv_report(app: Application, /, output: str, **opts: Any) -> None:
    """Read the card's signed PPV purchase report for the head-end (return path)."""
    from cas.formats.ppv import describe_report, parse_report
    from firmware_stub.ppv import read_report

    with ExitStack() as stack:
        box = _boot(app, stack, **opts)
        data = read_report(box.slot.client)
    Path(output).write_bytes(data)
    info = describe_report(parse_report(data))
    app.output({**info, "output": output}, lambda: app.print(
        f"report {info['report_counter']} of card {info['serial']}: "
        f"{len(info['purchases'])} purchase(s), purse {info['purse_tokens']} tokens → {output}"))


ascii_numbers(cli)  # every integer option reads ASCII digits only (cas.text)
lang_everywhere(cli)  # --lang after the command too (stb scan IN.ts --lang ru)
refuse_repeated_options(cli)


def main() -> None:
    run_cli(cli, "stb")
