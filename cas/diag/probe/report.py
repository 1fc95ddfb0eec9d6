"""The stream probe's report: frozen, JSON-ready values (:class:`ProbeReport` and its parts).

Built once by :mod:`.assembly` at the end of a scan; read by ``cas diag stream``, the visit
(:mod:`cas.diag.visit`) and the renderers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cas.diag.alarms import Alarm
from cas.i18n import Translator

STREAM_TYPES: dict[int, str] = {
    0x01: "MPEG-1 video", 0x02: "MPEG-2 video", 0x03: "MPEG-1 audio", 0x04: "MPEG-2 audio",
    0x06: "PES private data", 0x0F: "AAC audio", 0x11: "LATM AAC audio", 0x1B: "H.264 video",
    0x24: "HEVC video", 0x81: "AC-3 audio", 0x87: "E-AC-3 audio",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CaEntry:
    """One CA_descriptor: in the CAT (EMM PID) or a PMT (ECM PID, program or ES level)."""

    ca_system_id: int
    ca_pid: int
    table: str  # "CAT" / "PMT"
    service_id: int | None = None
    es_pid: int | None = None  # ES-level descriptor: the component it scrambles

    @property
    def level(self) -> str:
        if self.table == "CAT":
            return "CAT"
        return "ES" if self.es_pid is not None else "program"

    def to_json(self) -> dict[str, Any]:
        return {"ca_system_id": f"0x{self.ca_system_id:04X}", "ca_pid": self.ca_pid,
                "level": self.level, "service_id": self.service_id, "es_pid": self.es_pid}


@dataclass(frozen=True, slots=True, kw_only=True)
class EsReport:
    pid: int
    stream_type: int
    ecm_pids: tuple[int, ...]

    @property
    def kind(self) -> str:
        return STREAM_TYPES.get(self.stream_type, f"stream_type 0x{self.stream_type:02X}")

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "stream_type": self.stream_type, "kind": self.kind,
                "ecm_pids": list(self.ecm_pids)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceReport:
    service_id: int
    name: str | None
    provider: str | None
    service_type: int | None
    pmt_pid: int | None
    pcr_pid: int | None
    in_pat: bool
    in_sdt: bool
    has_pmt: bool
    free_ca_mode: bool | None
    scrambling_mode: int | None  # EN 300 468 scrambling_descriptor, None: absent (CSA2)
    streams: tuple[EsReport, ...]
    ca: tuple[CaEntry, ...]
    packets: int
    scrambled_packets: int
    bitrate_bps: float
    time_base: str

    @property
    def ecm_pids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(c.ca_pid for c in self.ca))

    @property
    def state(self) -> str:
        if not self.packets:
            return "no packets"
        if self.scrambled_packets == 0:
            return "clear"
        return "scrambled" if self.scrambled_packets * 2 >= self.packets else "partly scrambled"

    @property
    def es_pids(self) -> tuple[int, ...]:
        return tuple(s.pid for s in self.streams)

    def to_json(self) -> dict[str, Any]:
        return {
            "service_id": self.service_id, "name": self.name, "provider": self.provider,
            "service_type": self.service_type, "pmt_pid": self.pmt_pid, "pcr_pid": self.pcr_pid,
            "in_pat": self.in_pat, "in_sdt": self.in_sdt, "has_pmt": self.has_pmt,
            "free_ca_mode": self.free_ca_mode, "scrambling_mode": self.scrambling_mode,
            "state": self.state, "packets": self.packets,
            "scrambled_packets": self.scrambled_packets,
            "bitrate_bps": round(self.bitrate_bps), "time_base": self.time_base,
            "streams": [s.to_json() for s in self.streams],
            "ca_descriptors": [c.to_json() for c in self.ca],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PidReport:
    pid: int
    kind: str
    service_ids: tuple[int, ...]
    packets: int
    bitrate_bps: float
    clear: int
    scrambled_even: int
    scrambled_odd: int
    scrambled_reserved: int
    cc_errors: int
    duplicates: int
    pcrs: int
    #: packets without payload (adaptation field only, e.g. PCR carriers) or with fewer than
    #: 16 payload bytes: scramblers leave them clear
    no_payload: int = 0

    @property
    def scrambled(self) -> int:
        return self.scrambled_even + self.scrambled_odd + self.scrambled_reserved

    @property
    def state(self) -> str:
        if self.scrambled == 0:
            return "clear"
        return "scrambled" if self.clear <= self.no_payload else "mixed"

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "kind": self.kind, "service_ids": list(self.service_ids),
                "packets": self.packets, "bitrate_bps": round(self.bitrate_bps),
                "state": self.state, "clear": self.clear, "scrambled_even": self.scrambled_even,
                "scrambled_odd": self.scrambled_odd,
                "scrambled_reserved": self.scrambled_reserved, "cc_errors": self.cc_errors,
                "duplicates": self.duplicates, "pcrs": self.pcrs,
                "no_payload": self.no_payload}


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmReport:
    pid: int
    ca_system_id: int
    service_ids: tuple[int, ...]
    sections: int
    distinct_sections: int
    bitrate_bps: float
    first_at_s: float | None
    last_at_s: float | None
    mean_interval_ms: float | None
    max_gap_ms: float | None
    parity_changes: int
    crypto_period_s: float | None  # median time between table_id parity changes
    longest_same_parity_s: float | None
    table_ids: Mapping[int, int]
    channel_ids: tuple[int, ...]
    ecm_key_indexes: tuple[int, ...]
    #: the last ECM section seen (for a card-only check); not in the JSON
    last_section: bytes = field(default=b"", repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "ca_system_id": f"0x{self.ca_system_id:04X}",
            "service_ids": list(self.service_ids), "sections": self.sections,
            "distinct_sections": self.distinct_sections, "bitrate_bps": round(self.bitrate_bps),
            "first_at_s": _r(self.first_at_s), "last_at_s": _r(self.last_at_s),
            "mean_interval_ms": _r(self.mean_interval_ms, 1),
            "max_gap_ms": _r(self.max_gap_ms, 1), "parity_changes": self.parity_changes,
            "crypto_period_s": _r(self.crypto_period_s),
            "longest_same_parity_s": _r(self.longest_same_parity_s),
            "table_ids": {f"0x{k:02X}": v for k, v in sorted(self.table_ids.items())},
            "channel_ids": list(self.channel_ids), "ecm_key_indexes": list(self.ecm_key_indexes),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CaSystemReport:
    """One CA system in the stream (SimulCrypt: several per service): its ECM PIDs (from the
    PMTs) and EMM PIDs (from the CAT), their rates, the ECM parity seen in each crypto-period
    of the payload, and how the ECM parity changes line up with the payload's switches."""

    ca_system_id: int
    ours: bool
    ecm_pids: tuple[int, ...]
    ecm_sections: int
    ecm_sections_per_s: float
    ecm_interval_ms: float | None  # mean time between two ECMs of one PID
    #: whole crypto-periods of the payload (between two scrambling_control changes) seen …
    periods: int
    periods_matching: int  # … whose ECMs had mostly the payload's parity (the right one)
    periods_both_parities: int  # … with ECMs of both parities (a switch inside the period)
    periods_without_ecm: int  # … with no ECM of the system at all
    #: payload parity switches that had an ECM parity change within half a period
    switches: int
    switches_aligned: int
    #: payload switch time − ECM parity change time: > 0, the ECM of the new period was on air
    #: before the switch, by this much (min / median / max over the aligned switches)
    lead_ms: tuple[float, float, float] | None
    emm_pids: tuple[int, ...]
    emm_sections: int
    emm_bitrate_bps: float

    def to_json(self) -> dict[str, Any]:
        return {
            "ca_system_id": f"0x{self.ca_system_id:04X}", "ours": self.ours,
            "ecm_pids": list(self.ecm_pids), "ecm_sections": self.ecm_sections,
            "ecm_sections_per_s": _r(self.ecm_sections_per_s, 2),
            "ecm_interval_ms": _r(self.ecm_interval_ms, 1),
            "periods": self.periods, "periods_matching": self.periods_matching,
            "periods_both_parities": self.periods_both_parities,
            "periods_without_ecm": self.periods_without_ecm,
            "switches": self.switches, "switches_aligned": self.switches_aligned,
            "lead_ms": None if self.lead_ms is None else {
                "min": _r(self.lead_ms[0], 1), "median": _r(self.lead_ms[1], 1),
                "max": _r(self.lead_ms[2], 1)},
            "emm_pids": list(self.emm_pids), "emm_sections": self.emm_sections,
            "emm_bitrate_bps": round(self.emm_bitrate_bps),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressStats:
    """EMMs for one unique address (a card) or one shared address (a group)."""

    sections: int
    last_seq: int
    last_at_s: float
    members: int = 0  # shared: bitmap (bit 255 - position ... MSB first) OR-ed over sections

    def includes(self, position: int) -> bool:
        """Shared: was member ``position`` (0..255) addressed by any of the sections?"""
        return 0 <= position < 256 and bool(self.members >> (255 - position) & 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmReport:
    pid: int
    ca_system_id: int
    ours: bool  # our CA system: address types are parsed
    sections: int
    bitrate_bps: float
    first_at_s: float | None
    last_at_s: float | None
    max_gap_s: float | None
    table_ids: Mapping[int, int]
    by_address: Mapping[str, int]  # unique / shared / global / other
    unique: Mapping[int, AddressStats] = field(default_factory=dict, repr=False)
    shared: Mapping[int, AddressStats] = field(default_factory=dict, repr=False)
    global_last_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "ca_system_id": f"0x{self.ca_system_id:04X}",
            "sections": self.sections, "bitrate_bps": round(self.bitrate_bps),
            "first_at_s": _r(self.first_at_s), "last_at_s": _r(self.last_at_s),
            "max_gap_s": _r(self.max_gap_s),
            "table_ids": {f"0x{k:02X}": v for k, v in sorted(self.table_ids.items())},
            "by_address": dict(self.by_address), "unique_cards": len(self.unique),
            "shared_groups": len(self.shared), "global_last_seq": self.global_last_seq,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ScramblingReport:
    """The scrambling parity of one PID over time: the control-word changes."""

    pid: int
    service_id: int | None
    even: int
    odd: int
    first_at_s: float
    last_at_s: float
    parity_changes: int
    crypto_period_s: float | None  # median time between parity changes
    longest_same_parity_s: float

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "service_id": self.service_id, "even": self.even,
                "odd": self.odd, "first_at_s": _r(self.first_at_s),
                "last_at_s": _r(self.last_at_s), "parity_changes": self.parity_changes,
                "crypto_period_s": _r(self.crypto_period_s),
                "longest_same_parity_s": _r(self.longest_same_parity_s)}


@dataclass(frozen=True, slots=True, kw_only=True)
class CardEmms:
    """EMMs in the stream that a given card would take (its unique, group and global ones)."""

    unique: int
    shared: int
    global_: int
    last_unique_seq: int | None
    last_at_s: float | None

    @property
    def total(self) -> int:
        return self.unique + self.shared + self.global_

    def to_json(self) -> dict[str, Any]:
        return {"unique": self.unique, "shared": self.shared, "global": self.global_,
                "last_unique_seq": self.last_unique_seq, "last_at_s": _r(self.last_at_s)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReport:
    source: str
    ca_system_id: int
    size_bytes: int
    packets: int
    duration_s: float
    bitrate_bps: float
    time_base: str
    pcr_discontinuities: int
    sync_losses: int
    skipped_bytes: int
    transport_errors: int
    transport_stream_id: int | None
    services: tuple[ServiceReport, ...]
    pids: tuple[PidReport, ...]
    cat: tuple[CaEntry, ...]
    ecms: tuple[EcmReport, ...]
    emms: tuple[EmmReport, ...]
    scrambling: tuple[ScramblingReport, ...]
    alarms: tuple[Alarm, ...]
    crypto_period_s: float | None
    cc_events: tuple[tuple[int, int, int, int], ...] = ()  # (pid, packet index, expected, got)
    ca_systems: tuple[CaSystemReport, ...] = ()

    # --- queries for the visit ------------------------------------------------------------
    def service(self, service_id: int) -> ServiceReport | None:
        return next((s for s in self.services if s.service_id == service_id), None)

    def alarms_for_service(self, service_id: int) -> list[Alarm]:
        """Alarms on the service itself, its ES PIDs or its ECM PIDs."""
        svc = self.service(service_id)
        pids = set(svc.es_pids) | set(svc.ecm_pids) if svc else set()
        return [a for a in self.alarms
                if a.service_id == service_id or (a.pid is not None and a.pid in pids)]

    def emms_for_card(self, serial: int, shared_address: int | None = None,
                      position: int | None = None) -> CardEmms:
        """EMMs of our CA system that address this card (unique, its group's, global)."""
        unique = shared = global_ = 0
        last_seq: int | None = None
        last_at: float | None = None
        for emm in self.emms:
            if not emm.ours:
                continue
            u = emm.unique.get(serial)
            if u is not None:
                unique += u.sections
                last_seq = max(last_seq or 0, u.last_seq)
                last_at = max(last_at or 0.0, u.last_at_s)
            if shared_address is not None:
                g = emm.shared.get(shared_address)
                if g is not None and (position is None or g.includes(position)):
                    shared += g.sections
            global_ += emm.by_address.get("global", 0)
        return CardEmms(unique=unique, shared=shared, global_=global_, last_unique_seq=last_seq,
                        last_at_s=last_at)

    @property
    def errors(self) -> list[Alarm]:
        return [a for a in self.alarms if a.severity == "error"]

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        """The ``--json`` form; the alarms' ``message`` in ``lang`` (``message_en`` too)."""
        return {
            "kind": "stream_probe",
            "source": self.source, "ca_system_id": f"0x{self.ca_system_id:04X}",
            "size_bytes": self.size_bytes, "packets": self.packets,
            "duration_s": round(self.duration_s, 3), "bitrate_bps": round(self.bitrate_bps),
            "time_base": self.time_base, "pcr_discontinuities": self.pcr_discontinuities,
            "sync_losses": self.sync_losses, "skipped_bytes": self.skipped_bytes,
            "transport_errors": self.transport_errors,
            "transport_stream_id": self.transport_stream_id,
            "crypto_period_s": _r(self.crypto_period_s),
            "services": [s.to_json() for s in self.services],
            "pids": [p.to_json() for p in self.pids],
            "cat": [c.to_json() for c in self.cat],
            "ecm": [e.to_json() for e in self.ecms],
            "emm": [e.to_json() for e in self.emms],
            "scrambling": [s.to_json() for s in self.scrambling],
            "ca_systems": [c.to_json() for c in self.ca_systems],
            "alarms": [a.to_json(Translator(lang)) for a in self.alarms],
            "cc_events": [{"pid": p, "packet": i, "expected": e, "got": g}
                          for p, i, e, g in self.cc_events],
        }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)

