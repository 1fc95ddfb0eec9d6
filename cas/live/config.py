"""The live head-end's TOML configuration (``docs/live.md`` is the reference).

Every key is checked here, once, before anything starts: a bad value is a
:class:`~cas.errors.ConfigError` whose one-line message names the file and the key, e.g.
``headend.toml: [service.2].source: unknown source kind 'rtsp'``.  Unknown keys are errors
too (a typo must not silently fall back to a default).  ``[[service]]`` entries are numbered
from 1 in messages.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import cas
from cas.errors import ConfigError
from cas.headend.scrambler import Algorithm
from cas.i18n import Msg
from cas.live.config_simulcrypt import (
    CaSystemConfig,
    MuxListenConfig,
    _ca_systems,
    _check_ca_system_pids,
    _mux,
)
from cas.live.configtable import Table as _Table
from cas.live.configtable import host_port as _host_port

#: Output URL schemes.
DEFAULT_PACKETS_PER_DATAGRAM = 7
#: The sender wakes at most once per this many µs (cas.live.pacer.WAKE_INTERVAL_S).
DEFAULT_WAKE_INTERVAL_US = 200
#: A datagram of 7 TS packets (1316 bytes) fits an Ethernet MTU with IP/UDP/RTP headers.
MAX_PACKETS_PER_DATAGRAM = 7
DEFAULT_EMM_PID = 0x0C00
DEFAULT_OPS_LISTEN = "127.0.0.1:9100"


class OutputKind(StrEnum):
    UDP = "udp"
    RTP = "rtp"
    FILE = "file"
    STDOUT = "stdout"


class SourceKind(StrEnum):
    LOOP = "loop"
    LAVFI = "lavfi"
    UDP = "udp"


class EcmSource(StrEnum):
    INTERNAL = "internal"
    SIMULCRYPT = "simulcrypt"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadendConfig:
    data_dir: Path | None = None
    db_url: str | None = None
    keys: Path | None = None
    ca_system_id: int = cas.DEFAULT_CA_SYSTEM_ID
    transport_stream_id: int = 1
    original_network_id: int = 1
    provider: str = "cas-sim"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputConfig:
    kind: OutputKind
    url: str
    host: str = ""
    port: int = 0
    path: Path | None = None
    ttl: int = 16
    interface: str = ""
    packets_per_datagram: int = DEFAULT_PACKETS_PER_DATAGRAM
    wake_interval_us: int = DEFAULT_WAKE_INTERVAL_US

    @property
    def multicast(self) -> bool:
        first = self.host.split(".", 1)[0]
        return first.isdigit() and 224 <= int(first) <= 239


@dataclass(frozen=True, slots=True, kw_only=True)
class ScramblingConfig:
    algorithm: Algorithm = Algorithm.CSA2
    crypto_period_ms: int = 10_000
    ecm_repetition_ms: int = 100
    ecm_source: EcmSource = EcmSource.INTERNAL
    ecmg_host: str = ""
    ecmg_port: int = 0
    #: ``backup_ecmg``: takes over when ``ecmg`` fails (``ecm_source = "simulcrypt"`` only).
    backup_host: str = ""
    backup_port: int = 0
    super_cas_id: int = 0
    ecm_key_index: int = 0
    #: JSON lines: which CW scrambled which crypto-period (test benches; holds CWs in clear).
    cw_log: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    kind: SourceKind
    text: str
    path: Path | None = None  # loop
    graph: str = ""  # lavfi
    host: str = ""  # udp
    port: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    index: int  # 1-based, as in error messages
    channel: int
    source: SourceSpec
    scrambled: bool = True
    ecm_pid: int | None = None
    #: Which program of the source (its program_number); default: the first in its PAT.
    program: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmConfig:
    pid: int = DEFAULT_EMM_PID
    repeat_count: int = 3
    repeat_window_s: float = 6.0
    cycle_bitrate_bps: int = 100_000
    poll_interval_s: float = 0.5
    #: Ceiling of the EMM PID's bitrate in the multiplex (what ``take()`` may fill per tick).
    max_bitrate_bps: int = 1_000_000
    mux_host: str = ""
    mux_port: int = 0
    client_id: int = 1
    data_id: int = 1
    bandwidth_kbps: int = 100

    @property
    def external_mux(self) -> bool:
        return bool(self.mux_host)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9100  # 0: no ops endpoint
    log: LogFormat = LogFormat.JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveConfig:
    name: str  # the file's name, as error messages give it
    base: Path  # relative paths in the file are relative to this directory
    headend: HeadendConfig
    output: OutputConfig
    scrambling: ScramblingConfig
    services: tuple[ServiceConfig, ...]
    emm: EmmConfig = field(default_factory=EmmConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    #: Other CA systems' ECMGs beside our own (``[[ca_system]]``, docs/simulcrypt.md §9).
    ca_systems: tuple[CaSystemConfig, ...] = ()
    mux: MuxListenConfig | None = None


# --- parsing ---------------------------------------------------------------------------------

def _output(t: _Table, base: Path) -> OutputConfig:
    url = t.str_("url", required=True)
    ppd = t.int_("packets_per_datagram", DEFAULT_PACKETS_PER_DATAGRAM, 1,
                 MAX_PACKETS_PER_DATAGRAM)
    wake_us = t.int_("wake_interval_us", DEFAULT_WAKE_INTERVAL_US, 0, 5000)
    ttl = t.int_("ttl", 16, 1, 255)
    interface = t.str_("interface", "")
    if url == "-":
        return OutputConfig(kind=OutputKind.STDOUT, url=url, packets_per_datagram=ppd,
                            wake_interval_us=wake_us)
    parts = urlsplit(url)
    if parts.scheme == "file":
        # file:///abs/x.ts (absolute) or file://x.ts (relative to the config file)
        if not parts.netloc + parts.path:
            raise t.fail("url", f"{url!r}: no path",
                Msg("errors.live.problem.no_path", {"url": f"{url!r}"}))
        p = Path(parts.netloc + parts.path)
        return OutputConfig(kind=OutputKind.FILE, url=url, path=p if p.is_absolute() else base / p,
                            packets_per_datagram=ppd, wake_interval_us=wake_us)
    if parts.scheme not in ("udp", "rtp"):
        raise t.fail("url", f"{url!r}: expected udp://HOST:PORT, rtp://HOST:PORT, "
                     "file:///PATH or -",
                     Msg("errors.live.problem.expected_udp_host_port", {"url": f"{url!r}"}))
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise t.fail("url", f"{url!r}: expected {parts.scheme}://HOST:PORT",
            Msg("errors.live.problem.expected_host_port_2",
                {"url": f"{url!r}", "scheme": parts.scheme}))
    return OutputConfig(kind=OutputKind(parts.scheme), url=url, host=host, port=port, ttl=ttl,
                        interface=interface, packets_per_datagram=ppd,
                        wake_interval_us=wake_us)


def _scrambling(t: _Table, base: Path, ca_system_id: int) -> ScramblingConfig:
    algorithm = t.enum_("algorithm", Algorithm, Algorithm.CSA2)
    cp_s = t.float_("crypto_period_s", 10.0, 0.1, 3600.0)
    cp_ms = round(cp_s * 1000)
    if cp_ms % 100:
        # SimulCrypt carries CP durations in 100 ms units (TS 103 197 CP_duration).
        raise t.fail("crypto_period_s", f"{cp_s:g} is not a multiple of 0.1 s",
            Msg("errors.live.problem.not_multiple_s", {"cp_s": f"{cp_s:g}"}))
    rep_ms = t.int_("ecm_repetition_ms", 100, 10, 60_000)
    if rep_ms > cp_ms:
        raise t.fail("ecm_repetition_ms", f"{rep_ms} ms is longer than the crypto-period",
            Msg("errors.live.problem.ms_longer_than_crypto", {"rep_ms": rep_ms}))
    source = t.enum_("ecm_source", EcmSource, EcmSource.INTERNAL)
    ecmg = t.str_("ecmg", "")
    host, port = "", 0
    if source is EcmSource.SIMULCRYPT:
        if not ecmg:
            raise t.fail("ecmg", "required with ecm_source = \"simulcrypt\" (HOST:PORT)",
                Msg("errors.live.problem.required_ecm_source_simulcrypt"))
        host, port = _host_port(t, "ecmg", ecmg)
    backup = t.str_("backup_ecmg", "")
    b_host, b_port = "", 0
    if backup:
        if source is not EcmSource.SIMULCRYPT:
            raise t.fail("backup_ecmg", "needs ecm_source = \"simulcrypt\"",
                Msg("errors.live.problem.backup_needs_simulcrypt"))
        b_host, b_port = _host_port(t, "backup_ecmg", backup)
        if (b_host, b_port) == (host, port):
            raise t.fail("backup_ecmg", "is the same address as ecmg",
                         Msg("errors.live.problem.same_address_as_ecmg"))
    # Super_CAS_id = CA_system_ID (16 bits) + CA_subsystem_ID (TS 103 197 §4.2.5)
    super_cas_id = t.int_("super_cas_id", (ca_system_id << 16) | 0x0001, 0, 0xFFFF_FFFF)
    index = t.int_("ecm_key_index", 0, 0, 255)
    cw_log = t.path_("cw_log", base)
    return ScramblingConfig(algorithm=algorithm, crypto_period_ms=cp_ms, ecm_repetition_ms=rep_ms,
                            ecm_source=source, ecmg_host=host, ecmg_port=port,
                            backup_host=b_host, backup_port=b_port,
                            super_cas_id=super_cas_id, ecm_key_index=index, cw_log=cw_log)


def parse_source(t: _Table, key: str, text: str, base: Path) -> SourceSpec:
    """``loop:PATH.ts`` | ``lavfi:GRAPH`` | ``udp://HOST:PORT`` (``udp://@GROUP:PORT``)."""
    kind, sep, rest = text.partition(":")
    if not sep:
        raise t.fail(key, f"{text!r}: expected loop:PATH, lavfi:GRAPH or udp://HOST:PORT",
            Msg("errors.live.problem.expected_loop_path_lavfi", {"text": f"{text!r}"}))
    if kind == "loop":
        if not rest:
            raise t.fail(key, "loop: needs a file path",
                Msg("errors.live.problem.loop_needs_file_path"))
        p = Path(rest).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise t.fail(key, f"{p}: no such file",
                Msg("errors.live.problem.no_such_file", {"p": p}))
        return SourceSpec(kind=SourceKind.LOOP, text=text, path=p)
    if kind == "lavfi":
        if not rest:
            raise t.fail(key, "lavfi: needs a filter graph, e.g. lavfi:testsrc",
                Msg("errors.live.problem.lavfi_needs_filter_graph"))
        return SourceSpec(kind=SourceKind.LAVFI, text=text, graph=rest)
    if kind == "udp":
        hostport = rest.removeprefix("//").lstrip("@")
        host, port = _host_port(t, key, hostport)
        return SourceSpec(kind=SourceKind.UDP, text=text, host=host, port=port)
    raise t.fail(key, f"unknown source kind {kind!r} (loop, lavfi, udp)",
        Msg("errors.live.problem.unknown_source_kind_loop", {"kind": f"{kind!r}"}))


def _services(file: str, raw: object, base: Path) -> tuple[ServiceConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{file}: [[service]]: at least one service is required").with_id(
            "live.service_least_one_service", file=file)
    out: list[ServiceConfig] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(raw, 1):
        t = _Table(file, f"service.{i}", item)
        channel = t.int_("channel", None, 1, 0xFFFF)
        if channel in seen:
            raise t.fail("channel", f"channel {channel} is already [service.{seen[channel]}]",
                Msg("errors.live.problem.channel_already_service",
                    {"channel": channel, "seen": seen[channel]}))
        seen[channel] = i
        source = parse_source(t, "source", t.str_("source", required=True), base)
        scrambled = t.bool_("scrambled", True)
        ecm_pid = t.opt_int("ecm_pid", 0x20, 0x1FFE)
        program = t.opt_int("program", 1, 0xFFFF)
        t.done()
        out.append(ServiceConfig(index=i, channel=channel, source=source, scrambled=scrambled,
                                 ecm_pid=ecm_pid, program=program))
    return tuple(out)


def _emm(t: _Table) -> EmmConfig:
    pid = t.int_("pid", DEFAULT_EMM_PID, 0x20, 0x1FFE)
    mux = t.str_("mux", "")
    host, port = "", 0
    if mux:
        if not mux.startswith("emmg://"):
            raise t.fail("mux", f"{mux!r}: expected emmg://HOST:PORT or \"\"",
                Msg("errors.live.problem.expected_emmg_host_port", {"mux": f"{mux!r}"}))
        host, port = _host_port(t, "mux", mux.removeprefix("emmg://"))
    return EmmConfig(
        pid=pid,
        repeat_count=t.int_("repeat_count", 3, 1, 100),
        repeat_window_s=t.float_("repeat_window_s", 6.0, 0.0, 3600.0),
        cycle_bitrate_bps=t.int_("cycle_bitrate_bps", 100_000, 0, 100_000_000),
        poll_interval_s=t.float_("poll_interval_s", 0.5, 0.01, 60.0),
        max_bitrate_bps=t.int_("max_bitrate_bps", 1_000_000, 1_000, 100_000_000),
        mux_host=host, mux_port=port,
        client_id=t.int_("client_id", 1, 0, 0xFFFF_FFFF),
        data_id=t.int_("data_id", 1, 0, 0xFFFF),
        bandwidth_kbps=t.int_("bandwidth_kbps", 100, 1, 100_000))


def _ops(t: _Table) -> OpsConfig:
    listen = t.str_("listen", DEFAULT_OPS_LISTEN)
    host, port = "", 0
    if listen:
        host, sep, port_text = listen.rpartition(":")
        if not sep or not host or not port_text.isdigit() or int(port_text) > 0xFFFF:
            raise t.fail("listen", f"{listen!r}: expected HOST:PORT (port 0: any free port) "
                         "or \"\" for none",
                         Msg("errors.live.problem.expected_host_port_port",
                             {"listen": f"{listen!r}"}))
        port = int(port_text)
    log = t.enum_("log", LogFormat, LogFormat.JSON)
    return OpsConfig(listen_host=host, listen_port=port if listen else -1, log=log)


_SECTIONS = ("headend", "output", "scrambling", "service", "emm", "ops", "ca_system", "mux")


def parse_config(data: Mapping[str, object], *, file: str, base: Path) -> LiveConfig:
    """Check a parsed TOML document; ``file`` names it in errors, ``base`` anchors paths."""
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"{file}: [{key}]: unknown section "
                              f"(expected {', '.join(_SECTIONS)})").with_id(
                "live.unknown_section_expected", file=file, key=key, sections=", ".join(_SECTIONS))
    h = _Table(file, "headend", data.get("headend", {}))
    headend = HeadendConfig(
        data_dir=h.path_("data_dir", base), db_url=h.str_("db_url", "") or None,
        keys=h.path_("keys", base),
        ca_system_id=h.int_("ca_system_id", cas.DEFAULT_CA_SYSTEM_ID, 1, 0xFFFF),
        transport_stream_id=h.int_("transport_stream_id", 1, 0, 0xFFFF),
        original_network_id=h.int_("original_network_id", 1, 0, 0xFFFF),
        provider=h.str_("provider", "cas-sim"))
    h.done()
    if "output" not in data:
        raise ConfigError(f"{file}: [output]: required (url = \"udp://HOST:PORT\", ...)").with_id(
            "live.output_required_url_udp", file=file)
    o = _Table(file, "output", data["output"])
    output = _output(o, base)
    o.done()
    s = _Table(file, "scrambling", data.get("scrambling", {}))
    scrambling = _scrambling(s, base, headend.ca_system_id)
    s.done()
    services = _services(file, data.get("service"), base)
    e = _Table(file, "emm", data.get("emm", {}))
    emm = _emm(e)
    e.done()
    taken = {svc.ecm_pid: svc.index for svc in services if svc.ecm_pid is not None}
    if emm.pid in taken:
        raise ConfigError(f"{file}: [emm].pid: {emm.pid:#x} is also the ECM PID of "
                          f"[service.{taken[emm.pid]}]").with_id(
            "live.emm_pid_also_ecm", file=file, pid=f"{emm.pid:#x}", taken=taken[emm.pid])
    p = _Table(file, "ops", data.get("ops", {}))
    ops = _ops(p)
    p.done()
    ca_systems = _ca_systems(file, data.get("ca_system"), own_id=headend.ca_system_id,
                             services=len(services))
    _check_ca_system_pids(file, ca_systems, services, emm.pid)
    mux = _mux(file, data["mux"], emm, headend.ca_system_id) if "mux" in data else None
    if mux is not None:
        ca_pids = {ca.ecm_pid(k): ca.index for ca in ca_systems
                   for k in range(sum(1 for svc in services if svc.scrambled))}
        for c in mux.clients:
            if c.pid in taken:
                raise ConfigError(f"{file}: [mux.client.{c.index}].pid: {c.pid:#x} is also the "
                                  f"ECM PID of [service.{taken[c.pid]}]").with_id(
                    "live.pid_is_also", file=file, where=f"[mux.client.{c.index}].pid",
                    pid=f"{c.pid:#x}", other=Msg("errors.live.problem.ecm_pid_of_service",
                                                 {"index": taken[c.pid]}))
            if c.pid in ca_pids:
                raise ConfigError(f"{file}: [mux.client.{c.index}].pid: {c.pid:#x} is also an "
                                  f"ECM PID of [ca_system.{ca_pids[c.pid]}]").with_id(
                    "live.pid_is_also", file=file, where=f"[mux.client.{c.index}].pid",
                    pid=f"{c.pid:#x}", other=Msg("errors.live.problem.ecm_pid_of_ca_system",
                                                 {"index": ca_pids[c.pid]}))
    return LiveConfig(name=file, base=base, headend=headend, output=output, scrambling=scrambling,
                      services=services, emm=emm, ops=ops, ca_systems=ca_systems, mux=mux)


def load_config(path: Path) -> LiveConfig:
    """Read and check ``path`` (TOML)."""
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}").with_id(
            "live.cannot_read", path=path, value=exc.strerror or exc) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}").with_id(
            "live.not_valid_toml", name=name, exc=exc) from None
    return parse_config(data, file=name, base=path.resolve().parent)
