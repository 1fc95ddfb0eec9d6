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
from typing import Any
from urllib.parse import urlsplit

import cas
from cas.errors import ConfigError
from cas.headend.scrambler import Algorithm
from cas.i18n import Msg

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


class MuxDataType(StrEnum):
    """What a ``[[mux.client]]`` sends (TS 103 197 data_type): EMMs or private data."""

    EMM = "emm"
    PRIVATE = "private"


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxClientConfig:
    """One ``[[mux.client]]``: an external EMMG or PDG allowed to connect."""

    index: int  # 1-based, as in error messages
    client_id: int
    pid: int
    max_bandwidth_kbps: int
    data_type: MuxDataType = MuxDataType.EMM
    #: Accepted data_ids (empty: any).
    data_ids: frozenset[int] = frozenset()
    #: CA_system_ID of the CAT's CA_descriptor (EMM clients); default: client_id >> 16.
    ca_system_id: int = 0
    #: private_data_byte of that CA_descriptor.
    private_data: bytes = b""
    #: True for the client that carries our own carousel (``own_emm``): its CA_descriptor is
    #: the CAT's own entry, not a second one.
    own: bool = False

    @property
    def name(self) -> str:
        return f"0x{self.client_id:08X}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxListenConfig:
    """``[mux]``: the head-end as a MUX for external EMMGs/PDGs (TS 103 197 §6)."""

    host: str
    port: int  # 0: any free port (tests)
    udp: bool = True
    idle_timeout_s: float = 60.0
    #: A client's queue holds at most this many seconds of its maximum bandwidth.
    queue_s: float = 2.0
    #: Our own EMM carousel through this interface, as one more client.
    own_emm: bool = False
    clients: tuple[MuxClientConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9100  # 0: no ops endpoint
    log: LogFormat = LogFormat.JSON


class AcMode(StrEnum):
    """What a ``[[ca_system]]`` ECMG gets as access_criteria (docs/simulcrypt.md §9)."""

    FULL = "full"            # our self-contained form 0x01 (cas/headend/simulcrypt/access_criteria.py)
    REFERENCE = "reference"  # form 0x02: the service id only
    NONE = "none"            # no access_criteria parameter at all
    HEX = "hex"              # the bytes of ``access_criteria_hex``, the same for every service


#: Default ECM PIDs of the k-th ``[[ca_system]]`` (1-based): 0x0D00 + 0x20·(k−1) + service index.
FIRST_CA_SYSTEM_ECM_PID = 0x0D00
CA_SYSTEM_ECM_PID_STEP = 0x20


@dataclass(frozen=True, slots=True, kw_only=True)
class CaSystemConfig:
    """One ``[[ca_system]]``: another CA system's ECMG on every scrambled service."""

    index: int  # 1-based, as in error messages
    ca_system_id: int
    ecmg_host: str
    ecmg_port: int
    backup_host: str = ""
    backup_port: int = 0
    super_cas_id: int = 0
    #: ECM PID of scrambled service k (0-based) = ecm_pid_base + k.
    ecm_pid_base: int = FIRST_CA_SYSTEM_ECM_PID
    #: private_data_byte of the CA_descriptor in the PMT.
    private_data: bytes = b""
    access_criteria: AcMode = AcMode.FULL
    access_criteria_hex: bytes = b""
    protocol_version: int = 2
    #: Reconnection back-off: first wait and ceiling (doubling in between).
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 10.0

    @property
    def has_backup(self) -> bool:
        return bool(self.backup_host)

    def ecm_pid(self, k: int) -> int:
        return self.ecm_pid_base + k


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

class _Table:
    """One TOML table being read: typed getters, each error naming ``[section].key``."""

    def __init__(self, file: str, name: str, data: object) -> None:
        self.file = file
        self.name = name
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: [{name}]: expected a table").with_id(
                "live.expected_table", file=file, name=name)
        self.data: dict[str, Any] = dict(data)
        self.used: set[str] = set()

    def fail(self, key: str, message: str, problem: Msg) -> ConfigError:
        """``[name].key: message``; ``problem`` is ``message`` as a catalogue message."""
        return ConfigError(f"{self.file}: [{self.name}].{key}: {message}").with_id(
            "live.config_field", file=self.file, name=self.name, key=key, problem=problem)

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def raw(self, key: str) -> Any:
        """The value as TOML gave it (the caller checks it)."""
        return self._get(key)

    def str_(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        value = self._get(key)
        if value is None:
            if required or default is None:
                raise self.fail(key, "required", Msg("errors.live.problem.required"))
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}",
                Msg("errors.live.problem.expected_string_got", {"name__": type(value).__name__}))
        return value

    def int_(self, key: str, default: int | None, lo: int, hi: int) -> int:
        value = self._get(key)
        if value is None:
            if default is None:
                raise self.fail(key, "required", Msg("errors.live.problem.required"))
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}",
                Msg("errors.live.problem.expected_integer_got", {"value": f"{value!r}"}))
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} outside {lo}..{hi}",
                Msg("errors.live.problem.outside", {"value": value, "lo": lo, "hi": hi}))
        return value

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        return None if self.data.get(key) is None else self.int_(key, None, lo, hi)

    def float_(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}",
                Msg("errors.live.problem.expected_number_got", {"value": f"{value!r}"}))
        if not lo <= float(value) <= hi:
            raise self.fail(key, f"{value} outside {lo:g}..{hi:g}",
                Msg("errors.live.problem.outside",
                    {"value": value, "lo": f"{lo:g}", "hi": f"{hi:g}"}))
        return float(value)

    def bool_(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}",
                Msg("errors.live.problem.expected_true_false_got", {"value": f"{value!r}"}))
        return value

    def enum_(self, key: str, kind: type[Any], default: Any) -> Any:
        text = self.str_(key, default.value)
        try:
            return kind(text)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in kind)
            raise self.fail(key, f"{text!r} is not one of {choices}",
                Msg("errors.live.problem.not_one",
                    {"text": f"{text!r}", "choices": choices})) from None

    def path_(self, key: str, base: Path) -> Path | None:
        text = self.str_(key, "")
        if not text:
            return None
        p = Path(text).expanduser()
        return p if p.is_absolute() else base / p

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key", Msg("errors.live.problem.unknown_key"))


def _host_port(table: _Table, key: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 0xFFFF:
        raise table.fail(key, f"{text!r}: expected HOST:PORT",
            Msg("errors.live.problem.expected_host_port", {"text": f"{text!r}"}))
    return host, int(port)


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


def _hex(t: _Table, key: str) -> bytes:
    text = t.str_(key, "").replace(" ", "")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise t.fail(key, f"{text!r} is not hex bytes",
                     Msg("errors.live.problem.not_hex_bytes", {"text": f"{text!r}"})) from None


def _ca_systems(file: str, raw: object, *, own_id: int, services: int
                ) -> tuple[CaSystemConfig, ...]:
    """``[[ca_system]]`` tables: other CA systems' ECMGs (docs/simulcrypt.md §9, docs/live.md)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{file}: [[ca_system]]: expected an array of tables").with_id(
            "live.ca_system_expected_array", file=file)
    out: list[CaSystemConfig] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(raw, 1):
        t = _Table(file, f"ca_system.{i}", item)
        cas_id = t.int_("ca_system_id", None, 1, 0xFFFF)
        if cas_id == own_id:
            raise t.fail("ca_system_id", f"{cas_id:#06x} is our own CA system ([headend])",
                         Msg("errors.live.problem.own_ca_system", {"cas_id": f"{cas_id:#06x}"}))
        if cas_id in seen:
            raise t.fail("ca_system_id", f"{cas_id:#06x} is already [ca_system.{seen[cas_id]}]",
                         Msg("errors.live.problem.ca_system_already",
                             {"cas_id": f"{cas_id:#06x}", "seen": seen[cas_id]}))
        seen[cas_id] = i
        host, port = _host_port(t, "ecmg", t.str_("ecmg", required=True))
        backup = t.str_("backup_ecmg", "")
        b_host, b_port = _host_port(t, "backup_ecmg", backup) if backup else ("", 0)
        if (b_host, b_port) == (host, port):
            raise t.fail("backup_ecmg", "is the same address as ecmg",
                         Msg("errors.live.problem.same_address_as_ecmg"))
        super_cas_id = t.int_("super_cas_id", (cas_id << 16) | 0x0001, 0, 0xFFFF_FFFF)
        if super_cas_id >> 16 != cas_id:
            raise t.fail("super_cas_id", f"{super_cas_id:#010x}: the top 16 bits must be the "
                         f"ca_system_id {cas_id:#06x}",
                         Msg("errors.live.problem.super_cas_id_top_bits",
                             {"super_cas_id": f"{super_cas_id:#010x}",
                              "cas_id": f"{cas_id:#06x}"}))
        base = t.int_("ecm_pid_base", FIRST_CA_SYSTEM_ECM_PID + CA_SYSTEM_ECM_PID_STEP * (i - 1),
                      0x20, 0x1FFE)
        if base + services - 1 > 0x1FFE:
            noun = "service" if services == 1 else "services"
            raise t.fail("ecm_pid_base", f"{base:#x} + {services} {noun} goes past 0x1FFE",
                         Msg("errors.live.problem.ecm_pids_past_end",
                             {"base": f"{base:#x}", "n": services}))
        private = _hex(t, "private_data")
        if len(private) > 251:
            raise t.fail("private_data", f"{len(private)} bytes, at most 251 fit a CA_descriptor",
                         Msg("errors.live.problem.private_data_too_long", {"n": len(private)}))
        ac_text = t.str_("access_criteria", AcMode.FULL.value)
        ac_bytes = b""
        if ac_text in {m.value for m in AcMode} - {AcMode.HEX.value}:
            ac_mode = AcMode(ac_text)
        elif ac_text.startswith("hex:"):
            ac_mode = AcMode.HEX
            try:
                ac_bytes = bytes.fromhex(ac_text.removeprefix("hex:"))
            except ValueError:
                raise t.fail("access_criteria", f"{ac_text!r} is not hex:BYTES",
                             Msg("errors.live.problem.not_hex_bytes_form",
                                 {"text": f"{ac_text!r}"})) from None
            if not ac_bytes:
                raise t.fail("access_criteria", "hex: needs at least one byte",
                             Msg("errors.live.problem.hex_needs_one_byte"))
        else:
            raise t.fail("access_criteria", f"{ac_text!r} is not 'full', 'reference', 'none' "
                         "or 'hex:BYTES'", Msg("errors.live.problem.access_criteria_mode",
                                               {"text": f"{ac_text!r}"}))
        version = t.int_("protocol_version", 2, 1, 3)
        rmin = t.float_("reconnect_min_s", 0.5, 0.05, 60.0)
        rmax = t.float_("reconnect_max_s", 10.0, 0.05, 600.0)
        if rmax < rmin:
            raise t.fail("reconnect_max_s", f"{rmax:g} is below reconnect_min_s {rmin:g}",
                         Msg("errors.live.problem.below_reconnect_min",
                             {"rmax": f"{rmax:g}", "rmin": f"{rmin:g}"}))
        t.done()
        out.append(CaSystemConfig(index=i, ca_system_id=cas_id, ecmg_host=host, ecmg_port=port,
                                  backup_host=b_host, backup_port=b_port,
                                  super_cas_id=super_cas_id, ecm_pid_base=base,
                                  private_data=private, access_criteria=ac_mode,
                                  access_criteria_hex=ac_bytes, protocol_version=version,
                                  reconnect_min_s=rmin, reconnect_max_s=rmax))
    return tuple(out)


def _check_ca_system_pids(file: str, ca_systems: tuple[CaSystemConfig, ...],
                          services: tuple[ServiceConfig, ...], emm_pid: int) -> None:
    """No ECM PID range of a ``[[ca_system]]`` may meet another's, the EMM PID or a
    configured ECM PID of ours."""
    ours: dict[int, tuple[str, Msg | str]] = {
        svc.ecm_pid: (f"the ECM PID of [service.{svc.index}]",
                      Msg("errors.live.problem.ecm_pid_of_service", {"index": svc.index}))
        for svc in services if svc.ecm_pid is not None}
    ours[emm_pid] = ("[emm].pid", "[emm].pid")
    n = sum(1 for svc in services if svc.scrambled)
    for ca in ca_systems:
        for k in range(n):
            pid = ca.ecm_pid(k)
            if pid in ours:
                where = f"[ca_system.{ca.index}].ecm_pid_base"
                raise ConfigError(f"{file}: {where}: {pid:#x} is also {ours[pid][0]}").with_id(
                    "live.pid_is_also", file=file, where=where, pid=f"{pid:#x}",
                    other=ours[pid][1])
            ours[pid] = (f"an ECM PID of [ca_system.{ca.index}]",
                         Msg("errors.live.problem.ecm_pid_of_ca_system", {"index": ca.index}))


def _hex_bytes(t: _Table, key: str, limit: int) -> bytes:
    text = t.str_(key, "").replace(" ", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise t.fail(key, f"{text!r}: expected hex digits, e.g. \"01ff\"",
                     Msg("errors.live.problem.expected_hex_digits",
                         {"text": f"{text!r}"})) from None
    if len(raw) > limit:
        raise t.fail(key, f"{len(raw)} bytes, at most {limit}",
                     Msg("errors.live.problem.bytes_at_most", {"n": len(raw), "limit": limit}))
    return raw


def _mux_client(file: str, i: int, item: object) -> MuxClientConfig:
    t = _Table(file, f"mux.client.{i}", item)
    client_id = t.int_("client_id", None, 0, 0xFFFF_FFFF)
    pid = t.int_("pid", None, 0x20, 0x1FFE)
    kbps = t.int_("max_bandwidth_kbps", None, 1, 0xFFFF)  # bandwidth is 16 bits of kbit/s
    data_type = t.enum_("data_type", MuxDataType, MuxDataType.EMM)
    raw_ids = t.raw("data_ids")
    if raw_ids is None:
        ids: frozenset[int] = frozenset()
    elif isinstance(raw_ids, list) and raw_ids and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 0xFFFF for d in raw_ids):
        ids = frozenset(raw_ids)
    else:
        raise t.fail("data_ids", f"{raw_ids!r}: expected a non-empty list of 0..65535",
                     Msg("errors.live.problem.expected_data_ids", {"value": f"{raw_ids!r}"}))
    ca_system_id = t.int_("ca_system_id", client_id >> 16, 0, 0xFFFF)
    # CA_descriptor: descriptor_length 4 + private bytes <= 255
    private = _hex_bytes(t, "private_data", 251)
    t.done()
    if data_type is MuxDataType.PRIVATE and ("ca_system_id" in t.data or private):
        raise t.fail("private_data" if private else "ca_system_id",
                     "only for data_type = \"emm\" (private data gets no CA_descriptor)",
                     Msg("errors.live.problem.only_emm_data_type"))
    if data_type is MuxDataType.EMM and not 1 <= ca_system_id <= 0xFFFF:
        raise t.fail("ca_system_id", f"0x{ca_system_id:04X}: an EMM client needs a "
                     "CA_system_ID (client_id's upper 16 bits, or this key)",
                     Msg("errors.live.problem.emm_client_needs_ca_system_id",
                         {"value": f"0x{ca_system_id:04X}"}))
    return MuxClientConfig(index=i, client_id=client_id, pid=pid, max_bandwidth_kbps=kbps,
                           data_type=data_type, data_ids=ids, ca_system_id=ca_system_id,
                           private_data=private)


def _mux(file: str, raw: object, emm: EmmConfig, headend: HeadendConfig) -> MuxListenConfig:
    """``[mux]`` and its ``[[mux.client]]`` entries."""
    t = _Table(file, "mux", raw)
    listen = t.str_("listen", required=True)
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise t.fail("listen", f"{listen!r}: expected HOST:PORT (port 0: any free port)",
                     Msg("errors.live.problem.expected_host_port_any", {"listen": f"{listen!r}"}))
    udp = t.bool_("udp", True)
    idle = t.float_("idle_timeout_s", 60.0, 0.0, 86_400.0)
    queue_s = t.float_("queue_s", 2.0, 0.1, 60.0)
    own_emm = t.bool_("own_emm", False)
    raw_clients = t.raw("client")
    t.done()
    if raw_clients is None:
        raw_clients = []
    if not isinstance(raw_clients, list):
        raise t.fail("client", "expected [[mux.client]] tables",
                     Msg("errors.live.problem.expected_mux_client_tables"))
    clients = [_mux_client(file, i, item) for i, item in enumerate(raw_clients, 1)]
    if own_emm:
        if emm.external_mux:
            raise t.fail("own_emm", "and [emm].mux both set: our EMMs go one way or the other",
                         Msg("errors.live.problem.own_emm_and_emm_mux"))
        clients.append(MuxClientConfig(
            index=len(clients) + 1, client_id=emm.client_id, pid=emm.pid,
            max_bandwidth_kbps=emm.bandwidth_kbps, data_ids=frozenset({emm.data_id}),
            ca_system_id=headend.ca_system_id, own=True))
    if not clients:
        raise t.fail("client", "at least one [[mux.client]] (or own_emm = true)",
                     Msg("errors.live.problem.mux_client_at_least_one"))
    seen: dict[int, MuxClientConfig] = {}
    pids: dict[int, MuxClientConfig] = {}
    for c in clients:
        where = f"[mux.client.{c.index}]" if not c.own else "[mux].own_emm"
        if c.client_id in seen:
            raise ConfigError(f"{file}: {where}.client_id: 0x{c.client_id:08X} is already "
                              f"[mux.client.{seen[c.client_id].index}]").with_id(
                "live.mux_client_id_twice", file=file, where=where,
                client_id=f"0x{c.client_id:08X}", index=seen[c.client_id].index)
        if c.pid in pids:
            raise ConfigError(f"{file}: {where}.pid: {c.pid:#x} is already the PID of "
                              f"[mux.client.{pids[c.pid].index}]").with_id(
                "live.mux_client_pid_twice", file=file, where=where, pid=f"{c.pid:#x}",
                index=pids[c.pid].index)
        if c.pid == emm.pid and not c.own:
            raise ConfigError(f"{file}: {where}.pid: {c.pid:#x} is also [emm].pid").with_id(
                "live.pid_is_also", file=file, where=f"{where}.pid", pid=f"{c.pid:#x}",
                other="[emm].pid")
        seen[c.client_id] = c
        pids[c.pid] = c
    return MuxListenConfig(host=host, port=int(port_text), udp=udp,
                           idle_timeout_s=idle, queue_s=queue_s, own_emm=own_emm,
                           clients=tuple(clients))


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
    mux = _mux(file, data["mux"], emm, headend) if "mux" in data else None
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
