"""The SimulCrypt tables of the live head-end's configuration: ``[[ca_system]]`` (other CA
systems' ECMGs, docs/simulcrypt.md §9) and ``[mux]`` (external EMMGs and PDGs, §10).
:func:`cas.live.config.parse_config` reads them; ``docs/live.md`` is the key reference."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from cas.errors import ConfigError
from cas.i18n import Msg
from cas.live.configtable import Table as _Table
from cas.live.configtable import host_port as _host_port


class _Service(Protocol):
    """What the PID checks read of a ``[[service]]`` (:class:`cas.live.config.ServiceConfig`)."""

    @property
    def index(self) -> int: ...
    @property
    def ecm_pid(self) -> int | None: ...
    @property
    def scrambled(self) -> bool: ...


class _Emm(Protocol):
    """What ``own_emm`` reads of ``[emm]`` (:class:`cas.live.config.EmmConfig`)."""

    @property
    def external_mux(self) -> bool: ...
    @property
    def client_id(self) -> int: ...
    @property
    def pid(self) -> int: ...
    @property
    def bandwidth_kbps(self) -> int: ...
    @property
    def data_id(self) -> int: ...


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
                          services: tuple[_Service, ...], emm_pid: int) -> None:
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


def _mux(file: str, raw: object, emm: _Emm, ca_system_id: int) -> MuxListenConfig:
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
            ca_system_id=ca_system_id, own=True))
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
