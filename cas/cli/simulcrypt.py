"""``cas ecmg``, ``cas emmg``, ``cas mux``, ``cas scs``: DVB SimulCrypt peers (docs/simulcrypt.md).

Thin commands over :mod:`cas.headend.simulcrypt`:

* ``cas ecmg serve --port P`` — the ECMG a scrambler (SCS) connects to;
* ``cas ecmg access-criteria`` — the access_criteria bytes to type into the SCS per channel;
* ``cas emmg run --mux HOST:PORT ...`` — feed an EMM file to a mux;
* ``cas mux serve --port P --output FILE`` — a minimal mux writing what EMMGs send into a TS;
* ``cas scs test --ecmg HOST:PORT`` — act as an SCS against any ECMG and report what it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

import cas
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import UsageError
from cas.text import parse_digits, parse_int_auto

T = TypeVar("T")


class AutoInt(click.ParamType):  # type: ignore[type-arg]
    """An integer in decimal or with a 0x / 0o / 0b prefix."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        number = parse_int_auto(str(value))
        if number is None:
            self.fail(f"{value!r} is not an integer (ASCII decimal or 0x...)", param, ctx)
        return number


AUTO_INT = AutoInt()


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    port = parse_digits(port_text, max_value=65535) if sep else None
    if port is None:
        raise UsageError(f"expected HOST:PORT (port 0-65535 in ASCII digits), got {text!r}").with_id(
            "cli.expected_host_port_port", text=f"{text!r}")
    return host or "127.0.0.1", port


def _logging(verbose: int, app: Application) -> None:
    """-v: connections, -vv: every message; warnings (refusals, retries) always show."""
    level = logging.WARNING if app.quiet else (logging.DEBUG if verbose > 1 else
                                               logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # basicConfig does nothing when logging is already set up: the level must still apply
    logging.getLogger("cas.simulcrypt").setLevel(level)


def _idle_timeout(value: float) -> float | None:
    return value if value > 0 else None


IDLE_TIMEOUT_OPTION = click.option(
    "--idle-timeout-s", type=click.FloatRange(0), default=60.0, show_default=True,
    help="A connection silent this long gets a channel_test and is closed if it stays silent "
    "as long again (without an open channel: closed at once); 0: never.")


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T | None:
    """Run a short-lived coroutine (``cas scs test``); Ctrl-C ends it quietly."""
    async def main() -> T:
        return await coro_factory()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return None


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""What stops a long-running SimulCrypt command cleanly (as ``cas headend run``)."""


def _run_until_signal(body: Callable[[asyncio.Event], Awaitable[T]]) -> tuple[T, str | None]:
    """Run ``body(stop)``; SIGTERM and SIGINT set ``stop`` instead of killing the process.

    The body then ends on its own terms (stops listening, closes its connections, closes a
    stream it set up), so the command exits 0 with its summary and never a traceback.
    Returns the body's result and the name of the signal that stopped it (None: it ended by
    itself).  The logs are flushed before returning.
    """
    caught: list[str] = []

    async def main() -> T:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(sig: signal.Signals) -> None:
            caught.append(sig.name)
            stop.set()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await body(stop)
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    try:
        result = asyncio.run(main())
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
    return result, caught[0] if caught else None


async def _until_stopped(stop: asyncio.Event, duration_s: float | None) -> None:
    """Wait for a stop signal, or ``duration_s`` when given."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration_s)


def _say_stopped(app: Application, what: str, signal_name: str | None) -> None:
    """The one line a signal-stopped command prints (stderr: stdout keeps --json clean)."""
    if signal_name is not None and not app.quiet:
        app.err_console.print(f"{what} stopped ({signal_name})", markup=False, highlight=False)


def register(cli: click.Group) -> None:
    ecmg = group(cli, "ecmg", "ECMG: answer a scrambler's CW_provisions with ECMs (SimulCrypt).")
    ecmg.add_command(ecmg_serve)
    ecmg.add_command(ecmg_access_criteria)
    emmg = group(cli, "emmg", "EMMG: feed EMMs to a mux (SimulCrypt).")
    emmg.add_command(emmg_run)
    mux = group(cli, "mux", "A minimal SimulCrypt mux for EMMG tests.")
    mux.add_command(mux_serve)
    scs = group(cli, "scs", "Act as a scrambler (SCS) against an ECMG.")
    scs.add_command(scs_test)


# --- cas ecmg ---------------------------------------------------------------------------------
@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=2222, show_default=True)
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Operator key file (default: $CAS_OPERATOR_KEY, then the data dir).")
@click.option("--ecm-key-index", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option("--lineup", help="Lineup (shipped name or TOML path) for access_criteria "
              "references (form 0x02).")
@click.option("--ca-system-id", type=AUTO_INT, default=cas.DEFAULT_CA_SYSTEM_ID,
              show_default=True, help="Accept Super_CAS_ids with this CA_system_ID.")
@click.option("--ts-packets", is_flag=True, help="Announce and send ECMs as TS packets.")
@click.option("--rep-period-ms", type=click.IntRange(1, 0xFFFF), default=100, show_default=True)
@click.option("--max-comp-time-ms", type=click.IntRange(1, 0xFFFF), default=100,
              show_default=True, help="Announced in channel_status, and kept: see "
              "--shed-after-ms.")
@click.option("--shed-after-ms", type=click.IntRange(0, 0xFFFF),
              help="Answer a CW_provision out_of_compute when it waited this long in the "
              "ECMG (overload) [default: half of --max-comp-time-ms; 0: never].")
@click.option("--max-cw-per-s", type=click.FloatRange(0, min_open=True),
              help="Accept streams up to this many CW_provisions per second in all (each "
              "stream: one per nominal_CP_duration); beyond, stream_setup is refused "
              "out_of_compute [default: no cap].")
@click.option("--min-cp-100ms", type=click.IntRange(1, 0xFFFF), default=1, show_default=True,
              help="Shortest crypto-period accepted, in 100 ms units.")
@click.option("--max-streams", type=click.IntRange(0, 0xFFFF), default=0, show_default=True,
              help="Streams per channel (0: no limit).")
@IDLE_TIMEOUT_OPTION
@click.option("--duration-s", type=float, help="Stop after this long (default: run until Ctrl-C).")
@click.option("-v", "--verbose", count=True, help="Log connections (-v) and messages (-vv).")
@pass_app
def ecmg_serve(app: Application, host: str, port: int, keys_path: Path | None,
               ecm_key_index: int, lineup: str | None, ca_system_id: int, ts_packets: bool,
               rep_period_ms: int, max_comp_time_ms: int, shed_after_ms: int | None,
               max_cw_per_s: float | None, min_cp_100ms: int, max_streams: int, idle_timeout_s: float,
               duration_s: float | None, verbose: int) -> None:
    """Serve ECMG⇔SCS on HOST:PORT; ECMs are sealed with the operator's ECM key."""
    from cas.crypto import load_operator_keys
    from cas.headend.simulcrypt import access_criteria as ac
    from cas.headend.simulcrypt.ecmg import EcmgConfig, EcmgServer, sealed_ecm_builder

    _logging(verbose, app)
    if shed_after_ms is not None and shed_after_ms > max_comp_time_ms:
        raise UsageError("--shed-after-ms cannot exceed --max-comp-time-ms").with_id(
            "cli.shed_after_ms_cannot")
    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    resolve = None
    if lineup is not None:
        from cas.billing.catalog import load_lineup

        resolve = ac.lineup_resolver(load_lineup(lineup, minor_per_major=100))
    config = EcmgConfig(ca_system_id=ca_system_id, ts_packets=ts_packets,
                        ecm_rep_period_ms=rep_period_ms, max_comp_time_ms=max_comp_time_ms,
                        shed_after_ms=max_comp_time_ms // 2 if shed_after_ms is None
                        else shed_after_ms, max_cw_per_s=max_cw_per_s,
                        min_cp_duration_100ms=min_cp_100ms, max_streams_per_channel=max_streams,
                        idle_timeout_s=_idle_timeout(idle_timeout_s))
    server = EcmgServer(sealed_ecm_builder(keys, ecm_key_index=ecm_key_index, resolve=resolve),
                        config, host=host, port=port)

    async def serve(stop: asyncio.Event) -> None:
        async with server:       # leaving it: stop listening, close every connection
            app.print(f"ECMG listening on {host}:{server.port} (CA_system_ID 0x{ca_system_id:04X},"
                      f" {'TS packets' if ts_packets else 'sections'}); Ctrl-C or SIGTERM to stop")
            await _until_stopped(stop, duration_s)

    _, stopped_by = _run_until_signal(serve)
    _say_stopped(app, "ECMG", stopped_by)
    reg = server.registry
    compute = reg.compute_summary()
    summary = {"connections": server.connections, "ecms": reg.ecms_sent,
               "errors": reg.errors_sent, "shed": reg.shed, "compute": compute,
               "in_ecmg": reg.in_ecmg_summary()}
    app.output(summary, lambda: app.print(
        f"served {summary['connections']} connection(s), {summary['ecms']} ECM(s), "
        f"{summary['errors']} error answer(s) ({summary['shed']} shed: overloaded); "
        f"CW_provision compute p50 "
        f"{compute.get('p50_ms', '-')} ms, p99 {compute.get('p99_ms', '-')} ms"))


@click.command("access-criteria")
@click.option("--service-id", type=AUTO_INT, required=True, help="Channel (service_id).")
@click.option("--lineup", help="Lineup to read the criteria from (full form).")
@click.option("--reference", is_flag=True,
              help="Print the short reference form (needs `cas ecmg serve --lineup`).")
@pass_app
def ecmg_access_criteria(app: Application, service_id: int, lineup: str | None,
                         reference: bool) -> None:
    """Print the access_criteria bytes an SCS should send for a channel."""
    from cas.headend.simulcrypt import access_criteria as ac

    if reference:
        raw = ac.encode_reference(service_id)
    else:
        if lineup is None:
            raise UsageError("the full form needs --lineup (or use --reference)").with_id(
                "cli.full_form_needs_lineup")
        from cas.billing.catalog import load_lineup

        found = ac.lineup_resolver(load_lineup(lineup, minor_per_major=100))(service_id)
        if found is None:
            raise UsageError(f"service_id {service_id} is not in lineup {lineup}").with_id(
                "cli.service_id_not_lineup", service_id=service_id, lineup=lineup)
        raw = ac.encode_full(found)
    app.output({"service_id": service_id, "access_criteria": raw.hex()},
               lambda: app.print(raw.hex()))


# --- cas emmg -----------------------------------------------------------------------------------
@click.command("run")
@click.option("--mux", "mux_addr", required=True, help="The mux's HOST:PORT.")
@click.option("--client-id", type=AUTO_INT, default=cas.DEFAULT_CA_SYSTEM_ID << 16,
              show_default=True, help="client_id (CA_system_ID in the top 16 bits).")
@click.option("--data-id", type=click.IntRange(0, 0xFFFF), default=1, show_default=True)
@click.option("--channel-id", type=click.IntRange(0, 0xFFFF), default=1, show_default=True)
@click.option("--stream-id", type=click.IntRange(0, 0xFFFF), default=1, show_default=True)
@click.option("--bandwidth", "bandwidth_kbps", type=click.IntRange(1, 0xFFFF), default=100,
              show_default=True, help="kbit/s to ask for.")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), required=True, help="EMM sections file or TS file.")
@click.option("--pid", type=AUTO_INT, help="PID of the EMMs in a TS input (default: the first).")
@click.option("--ts-packets", is_flag=True, help="Send 188-byte TS packets, not sections.")
@click.option("--udp", is_flag=True, help="data_provision over UDP (control stays on TCP).")
@click.option("--udp-port", type=int, help="The mux's UDP port (default: the TCP port).")
@click.option("--rounds", type=click.IntRange(1), default=1, show_default=True,
              help="Times to send the file.")
@click.option("--loop", is_flag=True, help="Send the file over and over until Ctrl-C or "
              "SIGTERM (then the stream and the channel are closed).")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Outbox state file: a restarted run skips what the mux confirmed.")
@click.option("--protocol-version", type=click.IntRange(1, 5), default=2, show_default=True)
@click.option("--connect-attempts", type=click.IntRange(0), default=10, show_default=True,
              help="Give up after this many failed connections to the mux in a row, each "
              "one reported (0: retry forever).")
@click.option("--udp-end-wait-s", type=click.FloatRange(0), default=0.5, show_default=True,
              help="UDP: wait this long after the last datagram before closing the stream.")
@click.option("--v1-data-id", is_flag=True,
              help="Send data_id in protocol version 1 too (for muxes that expect it, e.g. "
              "TSDuck's).")
@click.option("-v", "--verbose", count=True)
@pass_app
def emmg_run(app: Application, mux_addr: str, client_id: int, data_id: int, channel_id: int,
             stream_id: int, bandwidth_kbps: int, input_path: Path, pid: int | None,
             ts_packets: bool, udp: bool, udp_port: int | None, rounds: int, loop: bool,
             state_path: Path | None, protocol_version: int, connect_attempts: int,
             udp_end_wait_s: float, v1_data_id: bool, verbose: int) -> None:
    """Send EMMs from a file to a mux at the allocated bandwidth, reconnecting as needed."""
    from cas.headend.simulcrypt.emmg import EmmgClient, EmmgConfig, carousel
    from cas.headend.simulcrypt.outbox import Outbox

    _logging(verbose, app)
    host, port = _host_port(mux_addr)
    flag = int(ts_packets)
    config = EmmgConfig(host=host, port=port, client_id=client_id, data_channel_id=channel_id,
                        data_stream_id=stream_id, data_id=data_id, bandwidth_kbps=bandwidth_kbps,
                        section_tspkt_flag=flag, udp=udp, udp_port=udp_port,
                        version=protocol_version, v1_data_id=v1_data_id,
                        max_connect_attempts=connect_attempts or None,
                        udp_end_wait_s=udp_end_wait_s)
    outbox = Outbox(carousel(input_path, section_tspkt_flag=flag, pid=pid,
                             rounds=None if loop else rounds), state_path=state_path)
    client = EmmgClient(config, outbox)
    app.print(f"EMMG → {host}:{port} client_id 0x{client_id:08X} data_id {data_id}, "
              f"{bandwidth_kbps} kbit/s{' (UDP data)' if udp else ''}")

    async def feed(stop: asyncio.Event) -> None:
        running = asyncio.create_task(client.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            client.stop(close_stream=True)    # a signal: close the stream and the channel
        stopping.cancel()
        await running

    _, stopped_by = _run_until_signal(feed)
    _say_stopped(app, "EMMG", stopped_by)
    # "acked": what the mux confirmed.  Over UDP nothing can be confirmed: the datagrams
    # handed to the network are counted as udp_unconfirmed instead.
    stats = client.stats.as_dict() | {"acked": outbox.acked if not udp else 0}

    def render() -> None:
        table = Table(title="EMMG run")
        table.add_column("item")
        table.add_column("value", justify="right")
        for name, value in stats.items():
            table.add_row(name, f"{value:.2f}" if isinstance(value, float) else str(value))
        app.print(table)

    app.output(stats, render)


# --- cas mux ----------------------------------------------------------------------------------
@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=4567, show_default=True)
@click.option("--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="TS file to append what EMMGs send.")
@click.option("--pid", type=AUTO_INT, default=0x0C00, show_default=True,
              help="PID for section datagrams.")
@click.option("--max-bandwidth", "max_bandwidth_kbps", type=click.IntRange(1, 0xFFFF),
              default=2000, show_default=True, help="Allocation cap per stream, kbit/s.")
@click.option("--client-id", "client_ids", type=AUTO_INT, multiple=True,
              help="Accepted client_id (repeat; default: any).")
@click.option("--no-udp", is_flag=True, help="Do not listen for UDP data_provision.")
@IDLE_TIMEOUT_OPTION
@click.option("--duration-s", type=float)
@click.option("-v", "--verbose", count=True, help="Log connections (-v) and messages (-vv).")
@pass_app
def mux_serve(app: Application, host: str, port: int, output: Path, pid: int,
              max_bandwidth_kbps: int, client_ids: tuple[int, ...], no_udp: bool,
              idle_timeout_s: float, duration_s: float | None, verbose: int) -> None:
    """Accept EMMGs and write their datagrams into a TS file."""
    from cas.headend.simulcrypt.mux import MuxConfig, MuxServer, TsFileSink

    _logging(verbose, app)
    if not 0 <= pid < 0x1FFF:
        raise UsageError(f"PID 0x{pid:X} outside 0x0000..0x1FFE").with_id(
            "cli.pid_x_outside_x0000", pid=f"{pid:X}")
    sink = TsFileSink.open(output, pid=pid)
    config = MuxConfig(max_bandwidth_kbps=max_bandwidth_kbps,
                       client_ids=frozenset(client_ids) if client_ids else None, udp=not no_udp,
                       idle_timeout_s=_idle_timeout(idle_timeout_s))
    server = MuxServer(sink, config, host=host, port=port)

    async def serve(stop: asyncio.Event) -> None:
        async with server:       # leaving it: stop listening, close every connection
            app.print(f"mux listening on {host}:{server.port}, writing {output} "
                      f"(PID 0x{pid:04X}); Ctrl-C or SIGTERM to stop")
            await _until_stopped(stop, duration_s)

    try:
        _, stopped_by = _run_until_signal(serve)
    finally:
        sink.close()
    _say_stopped(app, "mux", stopped_by)
    reg = server.registry
    summary = {"connections": server.connections, "datagrams": reg.datagrams,
               "udp_datagrams": reg.udp_datagrams, "packets": sink.packets,
               "output": str(output)}
    app.output(summary, lambda: app.print(
        f"{summary['datagrams']} datagram(s) from {summary['connections']} connection(s) → "
        f"{sink.packets} TS packets in {output}"))


# --- cas scs ----------------------------------------------------------------------------------
@click.command("test")
@click.option("--ecmg", "ecmg_addr", required=True, help="The ECMG's HOST:PORT.")
@click.option("--channel-id", type=click.IntRange(0, 0xFFFF), default=1, show_default=True)
@click.option("--super-cas-id", type=AUTO_INT, default=cas.DEFAULT_CA_SYSTEM_ID << 16,
              show_default=True)
@click.option("--streams", type=click.IntRange(1, 0xFFFF), default=1, show_default=True)
@click.option("--periods", type=click.IntRange(1), default=3, show_default=True,
              help="CW_provisions per stream.")
@click.option("--first-cp", type=click.IntRange(0, 0xFFFF), default=0, show_default=True)
@click.option("--cp-100ms", type=click.IntRange(1, 0xFFFF), default=100, show_default=True,
              help="nominal_CP_duration to announce.")
@click.option("--access-criteria", "ac_hex", help="access_criteria bytes in hex.")
@click.option("--service-id", type=AUTO_INT,
              help="Send the lineup-reference form for this service_id.")
@click.option("--cw-length", type=click.Choice(["8", "16"]), default="8", show_default=True)
@click.option("--protocol-version", type=click.IntRange(1, 3), default=2, show_default=True)
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also open each ECM with the operator keys and check its CWs.")
@click.option("--timeout-s", type=float, default=5.0, show_default=True)
@pass_app
def scs_test(app: Application, ecmg_addr: str, channel_id: int, super_cas_id: int,
             streams: int, periods: int, first_cp: int, cp_100ms: int, ac_hex: str | None,
             service_id: int | None, cw_length: str, protocol_version: int,
             keys_path: Path | None, timeout_s: float) -> None:
    """Set up a channel and streams on an ECMG, provide CWs, and report the ECMs."""
    from cas.crypto import generate_cw
    from cas.headend.simulcrypt import access_criteria as ac
    from cas.headend.simulcrypt.scs import ScsClient

    host, port = _host_port(ecmg_addr)
    if ac_hex is not None:
        try:
            criteria = bytes.fromhex(ac_hex)
        except ValueError as exc:
            raise UsageError("--access-criteria is not hex").with_id(
                "cli.access_criteria_not_hex") from exc
    elif service_id is not None:
        criteria = ac.encode_reference(service_id)
    else:
        raise UsageError("give --access-criteria HEX or --service-id N").with_id(
            "cli.give_access_criteria_hex")
    keys: Any = None
    if keys_path is not None:
        from cas.crypto import load_operator_keys

        keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    length = int(cw_length)
    rows: list[dict[str, Any]] = []

    async def run() -> dict[str, Any]:
        async with await ScsClient.connect(host, port, channel_id=channel_id,
                                           super_cas_id=super_cas_id, version=protocol_version,
                                           timeout_s=timeout_s) as scs:
            status = scs.channel_status
            assert status is not None
            for sid in range(1, streams + 1):
                await scs.setup_stream(sid, ecm_id=sid if protocol_version >= 2 else None,
                                       nominal_cp_duration_100ms=cp_100ms)
            for n in range(periods):
                cp = (first_cp + n) & 0xFFFF
                for sid in range(1, streams + 1):
                    cws = {cp: generate_cw(os.urandom, length),
                           (cp + 1) & 0xFFFF: generate_cw(os.urandom, length)}
                    t0 = time.perf_counter()
                    response = await scs.cw_provision(sid, cp, cws, access_criteria=criteria)
                    latency_ms = (time.perf_counter() - t0) * 1000
                    section = scs.section_of(response)
                    row: dict[str, Any] = {"stream": sid, "cp": cp, "table_id": f"0x{section[0]:02X}",
                                           "bytes": len(response.ecm_datagram),
                                           "latency_ms": round(latency_ms, 3)}
                    if keys_path is not None:
                        row["cws_match"] = _check_ecm(keys, section, cp, cws)
                    rows.append(row)
            await scs.test_channel()
            for sid in range(1, streams + 1):
                await scs.test_stream(sid)
                await scs.close_stream(sid)
            return {"ecmg": f"{host}:{port}", "protocol_version": protocol_version,
                    "section_TSpkt_flag": status.section_tspkt_flag,
                    "max_comp_time_ms": status.max_comp_time_ms,
                    "ecm_rep_period_ms": status.ecm_rep_period_ms,
                    "lead_CW": status.lead_cw, "CW_per_msg": status.cw_per_msg}

    info = _run(run)
    if info is None:
        return
    latencies = [r["latency_ms"] for r in rows]
    info["ecms"] = rows
    info["latency_ms"] = {"median": statistics.median(latencies), "max": max(latencies)}
    mismatches = [r for r in rows if r.get("cws_match") is False]

    def render() -> None:
        app.print(f"ECMG {info['ecmg']}: version {protocol_version}, "
                  f"{'TS packets' if info['section_TSpkt_flag'] else 'sections'}, "
                  f"max_comp_time {info['max_comp_time_ms']} ms")
        table = Table(title="ECM_responses")
        for col in rows[0]:
            table.add_column(col)
        for r in rows:
            table.add_row(*(str(v) for v in r.values()))
        app.print(table)
        app.print(f"latency median {info['latency_ms']['median']:.3f} ms, "
                  f"max {info['latency_ms']['max']:.3f} ms")

    app.output(info, render)
    if mismatches:
        app.fail(f"{len(mismatches)} ECM(s) do not carry the CWs provided")


def _check_ecm(keys: Any, section: bytes, cp: int, cws: dict[int, bytes]) -> bool:
    """Open an ECM with the operator keys; True when it carries CW(cp) and CW(cp+1)."""
    from cas.errors import CasError
    from cas.formats.ecm import parse_ecm
    from cas.headend.ecmgen import cw_slots
    from cas.messages import open_ecm

    with contextlib.suppress(CasError):
        _, body = open_ecm(keys.ecm_key(parse_ecm(section).header.ecm_key_index), section)
        even, odd = cw_slots(cp, cws[cp], cws[(cp + 1) & 0xFFFF])
        return bool(body.cw_even == even and body.cw_odd == odd)
    return False
