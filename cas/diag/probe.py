"""``cas diag stream``: a transport stream probe for CA engineers.

What it measures (ISO/IEC 13818-1, EN 300 468, ETSI TR 101 290, TR 101 211):

* services from the PAT, PMTs and SDT (names), their PCR PIDs and CA_descriptors (program
  and ES level) and the CAT's CA_descriptors (EMM PIDs);
* every PID: packets, bitrate, clear / even / odd (transport_scrambling_control), continuity
  errors, PCRs;
* ECM PIDs: sections, bitrate, repetition, the longest gap, table_id parity changes
  (0x80 ↔ 0x81) and so the crypto-period, channel ids and ECM key indexes in our headers;
* EMM PIDs: sections, bitrate, by table_id and by address type (unique 0x82 / shared 0x83 /
  global 0x84, :mod:`cas.formats.emm`), the distinct cards and groups addressed;
* the scrambling parity of every scrambled PID: when it changes, so the measured crypto-period;
* alarms (:mod:`cas.diag.alarms`).

Time is the PCR of each program (:mod:`cas.diag.timebase`); without PCR a nominal bitrate.

Speed.  A 10-minute 20 Mbit/s stream is 8 million packets; Python cannot look at each one
and stay under 10 s, so the probe never loops over packets.  It reads 12 MB at a time and
works on *columns*: ``chunk[1::188]`` is every packet's byte 1 in one C-level slice.

* PID -> a one-byte *code* per packet: for each PID high-byte class ``h`` present,
  ``lo.translate(lut_h)`` masked by ``hi == h`` (``bytes.translate`` + big-integer AND).
* counts: ``codes.count(code)``; scrambled even / odd: the codes masked by the
  transport_scrambling_control column, counted the same way; parity changes: alternate
  ``find`` calls on those two masked columns (one call per change).
* continuity: up to 15 PIDs share a group whose byte per packet is ``code4 << 4 | cc``
  (payload-less packets zeroed); ``translate(None, delete=...)`` pulls out one PID's CC
  sequence, and pairs ``(cc[i], cc[i+1])`` built with a big-integer shift are checked against
  the 16 good and 16 duplicate pairs by another ``translate``.
* only packets on PSI, ECM and EMM PIDs, and packets whose adaptation field carries a PCR
  or a discontinuity_indicator, are handled one by one in Python.
"""

from __future__ import annotations

import struct
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress, pairwise
from pathlib import Path
from statistics import median
from typing import Any, BinaryIO

from cas import DEFAULT_CA_SYSTEM_ID
from cas.diag.alarms import Alarm, AlarmCode, Thresholds
from cas.diag.timebase import DEFAULT_NOMINAL_BITRATE_BPS, PACKET_BITS, TimeBase
from cas.errors import FormatError, StreamError, UsageError
from cas.formats import psi
from cas.formats.emm import EmmAddressType
from cas.formats.ts import Pcr, SectionReassembler

PACKET_SIZE = 188
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF
#: Packets per read (12.3 MB): big enough that the per-chunk Python work is noise.
CHUNK_PACKETS = 1 << 16
#: Continuity errors listed one by one per PID (all of them are counted).
MAX_CC_EVENTS = 20
#: Codes 1..254 name PIDs; 255 collects PIDs beyond the 254th; 0 means "not yet seen".
_MAX_CODES = 254
_OVERFLOW = 255

STREAM_TYPES: dict[int, str] = {
    0x01: "MPEG-1 video", 0x02: "MPEG-2 video", 0x03: "MPEG-1 audio", 0x04: "MPEG-2 audio",
    0x06: "PES private data", 0x0F: "AAC audio", 0x11: "LATM AAC audio", 0x1B: "H.264 video",
    0x24: "HEVC video", 0x81: "AC-3 audio", 0x87: "E-AC-3 audio",
}

# --- translate tables (one entry per byte value) ---------------------------------------------
_PID_HI = bytes(b & 0x1F for b in range(256))
_EQ = [bytes(0xFF if b == h else 0 for b in range(256)) for h in range(32)]
_MASK_EVEN = bytes(0xFF if b >> 6 == 2 else 0 for b in range(256))
_MASK_ODD = bytes(0xFF if b >> 6 == 3 else 0 for b in range(256))
_MASK_RSVD = bytes(0xFF if b >> 6 == 1 else 0 for b in range(256))
_TSC_CLEAR = bytes(range(0x40))  # delete: leaves the scrambled packets' byte 3
_NOT_RSVD = bytes(range(0x80, 0x100))  # delete (after _TSC_CLEAR): leaves tsc 01
_PAYLOAD = bytes(0xFF if b & 0x10 else 0 for b in range(256))
_NO_PAYLOAD = bytes(0 if b & 0x10 else 0xFF for b in range(256))
_AF_AND_PAYLOAD = bytes(0xFF if b & 0x30 == 0x30 else 0 for b in range(256))
#: adaptation_field_length >= 168: at most 15 payload bytes, which scramblers leave clear
#: (DVB-CSA2 scrambles whole 8-byte blocks, CISSA whole 16-byte blocks).
_AF_GE168 = bytes(0xFF if b >= 168 else 0 for b in range(256))
_CC = bytes(b & 0x0F for b in range(256))
_AF = bytes(1 if b & 0x20 else 0 for b in range(256))
_GE1 = bytes(1 if b >= 1 else 0 for b in range(256))
_GE7 = bytes(1 if b >= 7 else 0 for b in range(256))
_PCR_FLAG = bytes(1 if b & 0x10 else 0 for b in range(256))
_DISC_FLAG = bytes(1 if b & 0x80 else 0 for b in range(256))
_IS_ZERO = bytes(1 if b == 0 else 0 for b in range(256))
_NO_TEI = bytes(range(0x80))  # delete: leaves bytes with transport_error_indicator set
_DEL_NOT = [bytes(b for b in range(256) if b >> 4 != c) for c in range(16)]
_CC_OK = bytes(sorted({(a << 4) | ((a + 1) & 0x0F) for a in range(16)}
                      | {(a << 4) | a for a in range(16)}))
_NOT_DUP = bytes(b for b in range(256) if b >> 4 != b & 0x0F)


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


# --- report ------------------------------------------------------------------------------------
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

    def to_json(self) -> dict[str, Any]:
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
            "alarms": [a.to_json() for a in self.alarms],
            "cc_events": [{"pid": p, "packet": i, "expected": e, "got": g}
                          for p, i, e, g in self.cc_events],
        }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --- scan state --------------------------------------------------------------------------------
class _Pid:
    __slots__ = ("cc_errors", "cc_events", "clear", "code", "duplicates", "even",
                 "first_scrambled", "last_cc", "last_scrambled", "no_payload", "odd", "packets",
                 "parity", "parity_changes", "pcr_idx", "pcr_ticks", "pid", "reserved")

    def __init__(self, pid: int, code: int) -> None:
        self.pid = pid
        self.code = code
        self.packets = 0
        self.clear = 0
        self.even = 0
        self.odd = 0
        self.reserved = 0
        self.no_payload = 0
        self.cc_errors = 0
        self.duplicates = 0
        self.cc_events: list[tuple[int, int, int]] = []
        self.last_cc: int | None = None
        self.parity: int | None = None  # 2 even / 3 odd: the last scrambled packet's
        self.parity_changes = array("q")
        self.first_scrambled: int | None = None
        self.last_scrambled: int | None = None
        self.pcr_idx = array("q")
        self.pcr_ticks = array("q")


class _Program:
    __slots__ = (
        "ca",
        "free_ca_mode",
        "has_pmt",
        "in_pat",
        "in_sdt",
        "last_pmt",
        "name",
        "number",
        "pcr_pid",
        "pmt_pid",
        "pmt_times",
        "provider",
        "scrambling_mode",
        "service_type",
        "streams",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.pmt_pid: int | None = None
        self.in_pat = False
        self.in_sdt = False
        self.has_pmt = False
        self.last_pmt = b""
        self.pmt_times = array("q")
        self.pcr_pid: int | None = None
        self.streams: list[tuple[int, int]] = []  # (pid, stream_type)
        self.ca: list[CaEntry] = []
        self.scrambling_mode: int | None = None
        self.name: str | None = None
        self.provider: str | None = None
        self.service_type: int | None = None
        self.free_ca_mode: bool | None = None


class _CaPid:
    """An ECM or EMM PID."""

    __slots__ = (
        "address_counts",
        "bytes",
        "ca_system_id",
        "channel_ids",
        "distinct",
        "global_last_seq",
        "key_indexes",
        "kind",
        "last_section",
        "last_tid",
        "parity_changes",
        "pid",
        "shared",
        "tables",
        "times",
        "unique",
    )

    def __init__(self, pid: int, kind: str, ca_system_id: int) -> None:
        self.pid = pid
        self.kind = kind  # "ECM" / "EMM"
        self.ca_system_id = ca_system_id
        self.times = array("q")  # packet index of every section
        self.tables: Counter[int] = Counter()
        self.distinct = 0
        self.last_section = b""
        self.last_tid: int | None = None
        self.parity_changes = array("q")
        self.channel_ids: set[int] = set()
        self.key_indexes: set[int] = set()
        self.bytes = 0
        # EMM addresses: serial -> [sections, last seq, last index]
        self.unique: dict[int, list[int]] = {}
        # shared address -> [sections, last seq, last index, members bitmap]
        self.shared: dict[int, list[int]] = {}
        self.global_last_seq: int | None = None
        self.address_counts: Counter[str] = Counter()


_Reassembler = SectionReassembler  # .idle says whether a section is in progress


_ECM_HDR = struct.Struct(">HBI")  # channel_id, ecm_key_index, timestamp_s after the 3 bytes
_U32 = struct.Struct(">I")


class StreamProbe:
    """Feed bytes (any chunking), then :meth:`finish` for the :class:`ProbeReport`."""

    def __init__(self, *, ca_system_id: int = DEFAULT_CA_SYSTEM_ID,
                 nominal_bitrate_bps: int | None = None, thresholds: Thresholds | None = None,
                 source: str = "<stream>") -> None:
        if nominal_bitrate_bps is not None and nominal_bitrate_bps <= 0:
            raise UsageError("the nominal bitrate must be positive")
        self.ca_system_id = ca_system_id
        self.nominal_bitrate_bps = nominal_bitrate_bps
        self.thresholds = thresholds or Thresholds()
        self.source = source
        self.size_bytes = 0
        self.packets = 0
        self.sync_losses = 0
        self.skipped_bytes = 0
        self.sync_loss_at: list[int] = []
        self.transport_errors = 0
        self.first_tei: int | None = None
        self._carry = b""
        self._synced = False
        self._ever_synced = False
        # PID codes
        self._pids: dict[int, _Pid] = {}
        self._by_code: list[_Pid | None] = [None] * 256
        self._luts: dict[int, bytearray] = {}
        self._overflow = False
        self._groups: list[tuple[bytes, list[tuple[int, _Pid]]]] = []
        self._groups_dirty = True
        # sections
        self._interesting: set[int] = {0x0000, 0x0001, 0x0011}
        self._interest_table = bytes(256)
        self._interest_dirty = True
        self._reasm: dict[int, _Reassembler] = {}
        self._idle: dict[int, bool] = {}  # no partial section in the PID's reassembler
        self._last_good: dict[int, bytes] = {}  # last long section that passed its CRC
        self._programs: dict[int, _Program] = {}
        self._pmt_pids: dict[int, set[int]] = {}  # PMT PID -> program numbers
        self._pat_times = array("q")
        self._last_pat: dict[int, bytes] = {}
        self._cat_times = array("q")
        self._last_cat: dict[int, bytes] = {}
        self._cat: list[CaEntry] = []
        self._last_sdt: dict[int, bytes] = {}
        self._ca_pids: dict[int, _CaPid] = {}
        self._psi_errors: Counter[str] = Counter()
        self.transport_stream_id: int | None = None

    # --- input -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        self.size_bytes += len(data)
        buf = self._carry + bytes(data) if self._carry else bytes(data)
        self._carry = b""
        n = len(buf)
        pos = 0
        while pos < n:
            if not self._synced:
                found = self._find_sync(buf, pos)
                if found < 0:
                    # Keep enough bytes to confirm a sync position with the next data.
                    keep = max(pos, n - 3 * PACKET_SIZE)
                    self.skipped_bytes += keep - pos
                    self._carry = buf[keep:]
                    return
                self.skipped_bytes += found - pos
                pos = found
                self._synced = True
                self._ever_synced = True
            avail = (n - pos) // PACKET_SIZE
            if avail == 0:
                break
            count = min(avail, CHUNK_PACKETS)
            end = pos + count * PACKET_SIZE
            sync = buf[pos:end:PACKET_SIZE]
            good = count - len(sync.lstrip(b"\x47"))
            if good:
                self._process(buf, pos, good)
                pos += good * PACKET_SIZE
            if good < count:
                # Sync lost at this packet: resync from the next byte (TR 101 290 1.1/1.2).
                self.sync_losses += 1
                self.sync_loss_at.append(self.packets)
                self._synced = False
                pos += 1
                self.skipped_bytes += 1
        self._carry = buf[pos:]

    def _find_sync(self, buf: bytes, pos: int) -> int:
        """First offset >= pos with 0x47 there and one and two packets further; -1: need data."""
        n = len(buf)
        while True:
            i = buf.find(b"\x47", pos)
            if i < 0 or i + 2 * PACKET_SIZE >= n:
                return -1
            if buf[i + PACKET_SIZE] == SYNC_BYTE and buf[i + 2 * PACKET_SIZE] == SYNC_BYTE:
                return i
            pos = i + 1

    # --- PID codes -----------------------------------------------------------------------------
    def _add_pid(self, pid: int) -> None:
        if pid in self._pids:
            return
        hi, lo = pid >> 8, pid & 0xFF
        lut = self._luts.get(hi)
        if lut is None:
            lut = self._luts[hi] = bytearray([_OVERFLOW if self._overflow else 0]) * 256
        if len(self._pids) >= _MAX_CODES:
            self._start_overflow()
            lut[lo] = _OVERFLOW
            return
        code = len(self._pids) + 1
        st = _Pid(pid, code)
        self._pids[pid] = st
        self._by_code[code] = st
        lut[lo] = code
        self._groups_dirty = True
        self._interest_dirty = True

    def _start_overflow(self) -> None:
        """More than 254 PIDs: the rest are counted together under code 255."""
        if self._overflow:
            return
        self._overflow = True
        for h in range(32):
            lut = self._luts.get(h)
            if lut is None:
                self._luts[h] = bytearray([_OVERFLOW]) * 256
            else:
                for lo in range(256):
                    if lut[lo] == 0:
                        lut[lo] = _OVERFLOW

    def _codes(self, hi: bytes, lo: bytes, count: int) -> bytes:
        while True:
            acc = 0
            for h, lut in self._luts.items():
                mask = _int(hi.translate(_EQ[h]))
                if mask:
                    acc |= _int(lo.translate(lut)) & mask
            codes = acc.to_bytes(count, "big")
            if codes.find(0) < 0:
                return codes
            for h, low in set(compress(zip(hi, lo, strict=True), codes.translate(_IS_ZERO))):
                self._add_pid((h << 8) | low)

    def _regroup(self) -> None:
        members = [st for st in self._pids.values() if st.pid != NULL_PID]
        groups: list[tuple[bytes, list[tuple[int, _Pid]]]] = []
        for g in range(0, len(members), 15):
            part = members[g:g + 15]
            table = bytearray(256)
            entries = []
            for k, st in enumerate(part, start=1):
                table[st.code] = k
                entries.append((k, st))
            groups.append((bytes(table), entries))
        self._groups = groups
        self._groups_dirty = False

    def _interest(self, pid: int) -> None:
        if pid not in self._interesting:
            self._interesting.add(pid)
            self._interest_dirty = True

    def _interest_codes(self) -> bytes:
        table = bytearray(256)
        for pid in self._interesting:
            st = self._pids.get(pid)
            if st is not None:
                table[st.code] = 1
        return bytes(table)

    # --- the column work -------------------------------------------------------------------
    def _process(self, buf: bytes, start: int, count: int) -> None:
        base = self.packets
        end = start + count * PACKET_SIZE
        c1 = buf[start + 1:end:PACKET_SIZE]
        c2 = buf[start + 2:end:PACKET_SIZE]
        c3 = buf[start + 3:end:PACKET_SIZE]
        hi = c1.translate(_PID_HI)
        codes = self._codes(hi, c2, count)
        if self._groups_dirty:
            self._regroup()

        tei = c1.translate(None, _NO_TEI)
        if tei:
            self.transport_errors += len(tei)
            if self.first_tei is None:
                self.first_tei = base + min(i for i, b in enumerate(c1) if b & 0x80)

        states = list(self._pids.values())
        for st in states:
            st.packets += codes.count(st.code)

        # adaptation fields: PCRs and discontinuity indicators
        disc: dict[int, list[int]] = {}
        af = c3.translate(_AF)
        short = _int(c3.translate(_NO_PAYLOAD))  # 0xFF: no payload, or too short to scramble
        if af.find(1) >= 0:
            c4 = buf[start + 4:end:PACKET_SIZE]
            c5 = buf[start + 5:end:PACKET_SIZE]
            afi = _int(af)
            short |= _int(c3.translate(_AF_AND_PAYLOAD)) & _int(c4.translate(_AF_GE168))
            pcr = (afi & _int(c4.translate(_GE7)) & _int(c5.translate(_PCR_FLAG))).to_bytes(
                count, "big")
            j = pcr.find(1)
            while j >= 0:
                owner = self._by_code[codes[j]]
                if owner is not None:
                    p = start + j * PACKET_SIZE
                    b = buf[p + 6:p + 12]
                    pcr_value = Pcr(base=(b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1)
                                    | (b[4] >> 7), extension=((b[4] & 1) << 8) | b[5])
                    owner.pcr_idx.append(base + j)
                    owner.pcr_ticks.append(pcr_value.ticks_27mhz)
                j = pcr.find(1, j + 1)
            dmask = (afi & _int(c4.translate(_GE1)) & _int(c5.translate(_DISC_FLAG))).to_bytes(
                count, "big")
            j = dmask.find(1)
            while j >= 0:
                disc.setdefault(codes[j], []).append(j)
                j = dmask.find(1, j + 1)

        # scrambling: counts per parity and the parity changes
        codes_i = _int(codes)
        scrambled = c3.translate(None, _TSC_CLEAR)
        if scrambled:
            even = (codes_i & _int(c3.translate(_MASK_EVEN))).to_bytes(count, "big")
            odd = (codes_i & _int(c3.translate(_MASK_ODD))).to_bytes(count, "big")
            rsvd = ((codes_i & _int(c3.translate(_MASK_RSVD))).to_bytes(count, "big")
                    if scrambled.translate(None, _NOT_RSVD) else None)
            for st in states:
                cb = st.code
                ne = even.count(cb)
                no = odd.count(cb)
                nr = rsvd.count(cb) if rsvd is not None else 0
                st.even += ne
                st.odd += no
                st.reserved += nr
                if ne or no:
                    self._parity(st, even, odd, base)
        for st in states:
            st.clear = st.packets - st.even - st.odd - st.reserved

        # continuity counters, 15 PIDs per group
        pm = _int(c3.translate(_PAYLOAD))
        if short:
            short_codes = (codes_i & short).to_bytes(count, "big")
            for st in states:
                st.no_payload += short_codes.count(st.code)
        cci = _int(c3.translate(_CC))
        for table, members in self._groups:
            gi = _int(codes.translate(table))
            if not gi:
                continue
            v = (((gi << 4) | cci) & pm).to_bytes(count, "big")
            for k, st in members:
                sub = v.translate(None, _DEL_NOT[k])
                if sub:
                    self._cc(st, sub, k, buf, start, codes, base, disc.get(st.code))

        # sections on PSI / ECM / EMM PIDs, one packet at a time
        walked = bytearray(256)  # codes whose packets in this chunk went to the reassemblers
        while True:
            if self._interest_dirty:
                self._interest_table = self._interest_codes()
                self._interest_dirty = False
            table = bytes(1 if want and not seen else 0
                          for want, seen in zip(self._interest_table, walked, strict=True))
            if not any(table):
                break
            for code, want in enumerate(table):
                if want:
                    walked[code] = 1
            marks = codes.translate(table)
            j = marks.find(1)
            while j >= 0:
                owner = self._by_code[codes[j]]
                if owner is not None:
                    p = start + j * PACKET_SIZE
                    self._section_packet(owner.pid, buf[p:p + PACKET_SIZE], base + j)
                j = marks.find(1, j + 1)
            # A PAT / PMT / CAT in this chunk may have named PIDs whose packets are in it too.
            if not self._interest_dirty:
                break
        self.packets += count

    def _parity(self, st: _Pid, even: bytes, odd: bytes, base: int) -> None:
        cb = st.code
        pos = 0
        cur = st.parity
        if cur is None:
            e = even.find(cb)
            o = odd.find(cb)
            if o < 0 or (0 <= e < o):
                cur, pos = 2, e
            else:
                cur, pos = 3, o
            st.first_scrambled = base + pos
        while True:
            j = (odd if cur == 2 else even).find(cb, pos)
            if j < 0:
                break
            cur = 5 - cur
            st.parity_changes.append(base + j)
            pos = j
        st.parity = cur
        st.last_scrambled = base + max(even.rfind(cb), odd.rfind(cb))

    def _cc(self, st: _Pid, sub: bytes, k: int, buf: bytes, start: int, codes: bytes,
            base: int, disc: list[int] | None) -> None:
        prev = st.last_cc
        s = bytes(((k << 4) | prev,)) + sub if prev is not None else sub
        st.last_cc = s[-1] & 0x0F
        if len(s) < 2:
            return
        lo = s.translate(_CC)
        pairs = ((_int(lo[:-1]) << 4) | _int(lo[1:])).to_bytes(len(s) - 1, "big")
        bad = len(pairs.translate(None, _CC_OK))
        dups = len(pairs.translate(None, _NOT_DUP))
        if not bad and not (disc and dups):
            st.duplicates += dups
            return
        if not disc and len(st.cc_events) >= MAX_CC_EVENTS:
            st.cc_errors += bad
            st.duplicates += dups
            return
        # Slow path: walk this PID's packets in the chunk to place (and excuse) each error.
        last = prev
        cb = st.code
        j = codes.find(cb)
        errors = duplicates = 0
        disc_set = set(disc or ())
        while j >= 0:
            p = start + j * PACKET_SIZE
            b3 = buf[p + 3]
            if b3 & 0x10:
                cc = b3 & 0x0F
                if last is not None and j not in disc_set:
                    if cc == last:
                        duplicates += 1
                    elif cc != (last + 1) & 0x0F:
                        errors += 1
                        if len(st.cc_events) < MAX_CC_EVENTS:
                            st.cc_events.append((base + j, (last + 1) & 0x0F, cc))
                last = cc
            j = codes.find(cb, j + 1)
        st.cc_errors += errors
        st.duplicates += duplicates

    # --- sections --------------------------------------------------------------------------
    def _section_packet(self, pid: int, packet: bytes, index: int) -> None:
        r = self._reasm.get(pid)
        if r is None:
            r = self._reasm[pid] = _Reassembler(pid, max_events=0)
        # Fast path for the common case — one whole section starting right after a zero
        # pointer_field, stuffing after it, no section in progress: a short section (ECM,
        # EMM: no CRC) is taken as it is, a long one only if it repeats the last section
        # that passed its CRC on this PID (PSI tables are repeated unchanged).
        if packet[1] & 0x40 and packet[3] & 0xF0 == 0x10 and packet[4] == 0 and \
                self._idle.get(pid, True):
            total = 3 + (((packet[6] & 0x0F) << 8) | packet[7])
            end = 5 + total
            if end == PACKET_SIZE or (end < PACKET_SIZE and packet[end] == 0xFF):
                section = packet[5:end]
                if not packet[6] & 0x80 or section == self._last_good.get(pid):
                    r.reset()  # its continuity check is ours anyway (see _cc)
                    self._section(pid, section, index)
                    return
        sections = r.feed(packet)
        self._idle[pid] = r.idle
        for section in sections:
            if section[1] & 0x80:
                self._last_good[pid] = section
            self._section(pid, section, index)

    def _section(self, pid: int, section: bytes, index: int) -> None:
        try:
            self._on_section(pid, section, index)
        except FormatError:
            self._psi_errors[f"0x{pid:04X}"] += 1

    def _on_section(self, pid: int, section: bytes, index: int) -> None:
        tid = section[0]
        if pid == 0x0000 and tid == psi.TABLE_ID_PAT:
            self._pat_times.append(index)
            if self._last_pat.get(section[6]) != section:
                self._last_pat[section[6]] = section
                self._on_pat(psi.parse_pat(section))
        elif pid == 0x0001 and tid == psi.TABLE_ID_CAT:
            self._cat_times.append(index)
            if self._last_cat.get(section[6]) != section:
                self._last_cat[section[6]] = section
                self._on_cat(section)
        elif pid == 0x0011 and tid == psi.TABLE_ID_SDT_ACTUAL:
            if self._last_sdt.get(section[6]) != section:
                self._last_sdt[section[6]] = section
                self._on_sdt(psi.parse_sdt(section))
        elif tid == psi.TABLE_ID_PMT and pid in self._pmt_pids:
            number = (section[3] << 8) | section[4]
            prog = self._programs.get(number)
            if prog is None or prog.pmt_pid != pid:
                return  # a PMT for a program the PAT puts elsewhere
            prog.pmt_times.append(index)
            if prog.last_pmt != section:
                prog.last_pmt = section
                self._on_pmt(prog, section)
        elif 0x80 <= tid <= 0x8F:
            ca = self._ca_pids.get(pid)
            if ca is not None:
                self._on_ca_section(ca, section, index)

    def _program(self, number: int) -> _Program:
        prog = self._programs.get(number)
        if prog is None:
            prog = self._programs[number] = _Program(number)
        return prog

    def _on_pat(self, pat: psi.Pat) -> None:
        self.transport_stream_id = pat.transport_stream_id
        for entry in pat.programs:
            if entry.program_number == 0:
                continue  # network_PID
            prog = self._program(entry.program_number)
            prog.in_pat = True
            if prog.pmt_pid != entry.pid:
                if prog.pmt_pid is not None:
                    self._pmt_pids.get(prog.pmt_pid, set()).discard(prog.number)
                prog.pmt_pid = entry.pid
                prog.last_pmt = b""
            self._pmt_pids.setdefault(entry.pid, set()).add(entry.program_number)
            self._interest(entry.pid)

    def _on_cat(self, section: bytes) -> None:
        refs = psi.find_ca_descriptors(section)
        entries = [CaEntry(ca_system_id=r.ca_system_id, ca_pid=r.ca_pid, table="CAT")
                   for r in refs]
        self._cat = list(dict.fromkeys([*self._cat, *entries]))
        for e in entries:
            self._ca_pid(e.ca_pid, "EMM", e.ca_system_id)

    def _ca_pid(self, pid: int, kind: str, ca_system_id: int) -> None:
        if pid not in self._ca_pids:
            self._ca_pids[pid] = _CaPid(pid, kind, ca_system_id)
            self._interest(pid)

    def _on_sdt(self, sdt: psi.Sdt) -> None:
        if self.transport_stream_id is None:
            self.transport_stream_id = sdt.transport_stream_id
        for svc in sdt.services:
            prog = self._program(svc.service_id)
            prog.in_sdt = True
            prog.free_ca_mode = svc.free_ca_mode
            for d in svc.descriptors:
                if isinstance(d, psi.ServiceDescriptor):
                    prog.name = d.name_text
                    prog.provider = d.provider_text
                    prog.service_type = d.service_type

    def _on_pmt(self, prog: _Program, section: bytes) -> None:
        pmt = psi.parse_pmt(section)
        refs = psi.find_ca_descriptors(section)
        prog.has_pmt = True
        prog.pcr_pid = None if pmt.pcr_pid == NULL_PID else pmt.pcr_pid
        prog.streams = [(s.elementary_pid, s.stream_type) for s in pmt.streams]
        prog.ca = [CaEntry(ca_system_id=r.ca_system_id, ca_pid=r.ca_pid, table="PMT",
                           service_id=prog.number, es_pid=r.elementary_pid) for r in refs]
        mode = None
        for d in pmt.descriptors:
            if isinstance(d, psi.ScramblingDescriptor):
                mode = d.scrambling_mode
        prog.scrambling_mode = mode
        for e in prog.ca:
            self._ca_pid(e.ca_pid, "ECM", e.ca_system_id)

    def _on_ca_section(self, ca: _CaPid, section: bytes, index: int) -> None:
        tid = section[0]
        ca.times.append(index)
        ca.tables[tid] += 1
        ca.bytes += len(section)
        new = section != ca.last_section
        if new:
            ca.distinct += 1
            ca.last_section = section
        ours = ca.ca_system_id == self.ca_system_id
        if ca.kind == "ECM":
            if tid in (0x80, 0x81):
                if ca.last_tid is not None and tid != ca.last_tid:
                    ca.parity_changes.append(index)
                ca.last_tid = tid
            if ours and new and len(section) >= 3 + _ECM_HDR.size:
                channel_id, key_index, _ = _ECM_HDR.unpack_from(section, 3)
                ca.channel_ids.add(channel_id)
                ca.key_indexes.add(key_index)
            return
        if not ours:
            ca.address_counts["other"] += 1
            return
        # Clear EMM headers (docs/formats.md §5.1, cas.formats.emm.EMM_HEADERS) after the
        # 3-byte section header: unique serial u32, seq u32 | shared address u24, members
        # 32 bytes, seq u32 | global seq u32.  Read with struct: only addresses are needed.
        n = len(section)
        if tid == EmmAddressType.UNIQUE and n >= 11:
            serial = _U32.unpack_from(section, 3)[0]
            seq = _U32.unpack_from(section, 7)[0]
            u = ca.unique.get(serial)
            if u is None:
                ca.unique[serial] = [1, seq, index]
            else:
                u[0] += 1
                u[1] = max(u[1], seq)
                u[2] = index
            ca.address_counts["unique"] += 1
        elif tid == EmmAddressType.SHARED and n >= 42:
            addr = (section[3] << 16) | (section[4] << 8) | section[5]
            members = int.from_bytes(section[6:38], "big")
            seq = _U32.unpack_from(section, 38)[0]
            g = ca.shared.get(addr)
            if g is None:
                ca.shared[addr] = [1, seq, index, members]
            else:
                g[0] += 1
                g[1] = max(g[1], seq)
                g[2] = index
                g[3] |= members
            ca.address_counts["shared"] += 1
        elif tid == EmmAddressType.GLOBAL and n >= 7:
            seq = _U32.unpack_from(section, 3)[0]
            ca.global_last_seq = max(ca.global_last_seq or 0, seq)
            ca.address_counts["global"] += 1
        else:
            ca.address_counts["other"] += 1

    # --- the report --------------------------------------------------------------------------
    def _flush_tail(self) -> None:
        """End of stream: the last packets cannot be confirmed by three sync bytes in a row;
        accept a position whose every 188th byte up to the end is a sync byte."""
        buf = self._carry
        pos = 0
        while not self._synced:
            i = buf.find(b"\x47", pos)
            if i < 0 or len(buf) - i < PACKET_SIZE:
                return
            if buf[i:len(buf) - (len(buf) - i) % PACKET_SIZE:PACKET_SIZE].lstrip(b"\x47"):
                pos = i + 1
                continue
            self.skipped_bytes += i
            self._carry = b""
            self._synced = self._ever_synced = True
            self.size_bytes -= len(buf)  # feed() counts them again
            self.feed(buf[i:])

    def finish(self) -> ProbeReport:
        if not self._synced and self._carry:
            self._flush_tail()
        if not self._ever_synced:
            if self.size_bytes == 0:
                raise StreamError(f"{self.source}: empty stream")
            raise StreamError(f"{self.source}: not an MPEG transport stream "
                              "(no 188-byte packet sync found)")
        if self._carry:
            self.skipped_bytes += len(self._carry)
            self._carry = b""
        return _Finisher(self).report()


# --- report assembly -----------------------------------------------------------------------------
class _Finisher:
    """Turns the scan state into a :class:`ProbeReport` (times, bitrates, alarms)."""

    def __init__(self, probe: StreamProbe) -> None:
        self.p = probe
        self.th = probe.thresholds
        self.total = probe.packets
        nominal = probe.nominal_bitrate_bps or DEFAULT_NOMINAL_BITRATE_BPS
        self.bases: dict[int, TimeBase] = {}
        for st in probe._pids.values():
            if len(st.pcr_idx) >= 2:
                self.bases[st.pid] = TimeBase(st.pcr_idx, st.pcr_ticks, nominal_bitrate_bps=nominal,
                                              source=f"PCR on PID {st.pid} (0x{st.pid:04X})")
        if self.bases:
            ref_pid = max(self.bases, key=lambda pid: (len(probe._pids[pid].pcr_idx), -pid))
            self.ref = self.bases[ref_pid]
        elif probe.nominal_bitrate_bps:
            self.ref = TimeBase.nominal(probe.nominal_bitrate_bps)
        else:
            self.ref = TimeBase.nominal(DEFAULT_NOMINAL_BITRATE_BPS)
        self.duration = max(self.ref.at(self.total), 1e-9)
        # ES / ECM PID -> programs
        self.es_programs: dict[int, list[int]] = {}
        self.ecm_programs: dict[int, list[int]] = {}
        for prog in sorted(probe._programs.values(), key=lambda x: x.number):
            for pid, _ in prog.streams:
                self.es_programs.setdefault(pid, []).append(prog.number)
            for ca in prog.ca:
                self.ecm_programs.setdefault(ca.ca_pid, [])
                if prog.number not in self.ecm_programs[ca.ca_pid]:
                    self.ecm_programs[ca.ca_pid].append(prog.number)
        self.alarms: list[Alarm] = []

    def base_for_program(self, number: int | None) -> TimeBase:
        prog = self.p._programs.get(number) if number is not None else None
        if prog is not None and prog.pcr_pid is not None and prog.pcr_pid in self.bases:
            return self.bases[prog.pcr_pid]
        return self.ref

    def base_for_pid(self, pid: int) -> TimeBase:
        programs = self.es_programs.get(pid) or self.ecm_programs.get(pid)
        return self.base_for_program(programs[0] if programs else None)

    def rate(self, packets: int) -> float:
        return packets * PACKET_BITS / self.duration

    def alarm(self, code: AlarmCode, message: str, **kw: Any) -> None:
        self.alarms.append(Alarm(code=code, message=message, **kw))

    def report(self) -> ProbeReport:
        p = self.p
        pids = self.pid_reports()
        services = self.service_reports()
        ecms = self.ecm_reports()
        emms = self.emm_reports()
        scrambling = self.scrambling_reports()
        self.stream_alarms(services, emms)
        periods = [s.crypto_period_s for s in scrambling if s.crypto_period_s] + [
            e.crypto_period_s for e in ecms if e.crypto_period_s]
        cc_events = sorted((st.pid, i, e, g) for st in p._pids.values()
                           for i, e, g in st.cc_events)
        order = {AlarmCode(c): n for n, c in enumerate(AlarmCode)}
        alarms = sorted(self.alarms, key=lambda a: (a.severity != "error", order[a.code],
                                                    a.pid if a.pid is not None else -1))
        return ProbeReport(
            source=p.source, ca_system_id=p.ca_system_id, size_bytes=p.size_bytes,
            packets=self.total, duration_s=self.duration, bitrate_bps=self.rate(self.total),
            time_base=self.ref.source, pcr_discontinuities=sum(
                b.discontinuities for b in self.bases.values()),
            sync_losses=p.sync_losses, skipped_bytes=p.skipped_bytes,
            transport_errors=p.transport_errors, transport_stream_id=p.transport_stream_id,
            services=services, pids=pids, cat=tuple(p._cat), ecms=ecms, emms=emms,
            scrambling=scrambling, alarms=tuple(alarms),
            crypto_period_s=median(periods) if periods else None, cc_events=tuple(cc_events))

    # --- PIDs and services ---------------------------------------------------------------------
    def pid_kind(self, pid: int) -> str:
        p = self.p
        if pid == 0x0000:
            return "PAT"
        if pid == 0x0001:
            return "CAT"
        if pid == 0x0011:
            return "SDT"
        if pid == NULL_PID:
            return "null"
        ca = p._ca_pids.get(pid)
        if ca is not None:
            return f"{ca.kind} (CA 0x{ca.ca_system_id:04X})"
        if pid in p._pmt_pids:
            return "PMT"
        for prog in p._programs.values():
            for es_pid, stype in prog.streams:
                if es_pid == pid:
                    return STREAM_TYPES.get(stype, f"stream_type 0x{stype:02X}")
            if prog.pcr_pid == pid:
                return "PCR"
        return "unreferenced"

    def pid_reports(self) -> tuple[PidReport, ...]:
        out = []
        for pid in sorted(self.p._pids):
            st = self.p._pids[pid]
            services = set(self.es_programs.get(pid, ())) | set(self.ecm_programs.get(pid, ()))
            services |= self.p._pmt_pids.get(pid, set())
            out.append(PidReport(
                pid=pid, kind=self.pid_kind(pid), service_ids=tuple(sorted(services)),
                packets=st.packets, bitrate_bps=self.rate(st.packets), clear=st.clear,
                scrambled_even=st.even, scrambled_odd=st.odd, scrambled_reserved=st.reserved,
                cc_errors=st.cc_errors, duplicates=st.duplicates, pcrs=len(st.pcr_idx),
                no_payload=st.no_payload))
            if st.cc_errors:
                first = st.cc_events[0][0] if st.cc_events else None
                self.alarm(AlarmCode.CC_ERROR,
                           f"PID {pid} (0x{pid:04X}): {st.cc_errors} continuity error"
                           f"{'s' if st.cc_errors != 1 else ''}",
                           pid=pid, count=st.cc_errors,
                           at_s=None if first is None else self.base_for_pid(pid).at(first))
        if self.p._overflow:
            out.append(PidReport(
                pid=-1, kind="(PIDs beyond the 254th)", service_ids=(), packets=0,
                bitrate_bps=0.0, clear=0, scrambled_even=0, scrambled_odd=0,
                scrambled_reserved=0, cc_errors=0, duplicates=0, pcrs=0))
        return tuple(out)

    def service_reports(self) -> tuple[ServiceReport, ...]:
        p = self.p
        out = []
        for number in sorted(p._programs):
            prog = p._programs[number]
            es_ca: dict[int, list[int]] = {}
            prog_ecm = [c.ca_pid for c in prog.ca if c.es_pid is None]
            for c in prog.ca:
                if c.es_pid is not None:
                    es_ca.setdefault(c.es_pid, []).append(c.ca_pid)
            streams = tuple(EsReport(pid=pid, stream_type=stype,
                                     ecm_pids=tuple(es_ca.get(pid, prog_ecm)))
                            for pid, stype in prog.streams)
            packets = scrambled = 0
            for s in streams:
                st = p._pids.get(s.pid)
                if st is not None:
                    packets += st.packets
                    scrambled += st.even + st.odd + st.reserved
            base = self.base_for_program(number)
            out.append(ServiceReport(
                service_id=number, name=prog.name, provider=prog.provider,
                service_type=prog.service_type, pmt_pid=prog.pmt_pid, pcr_pid=prog.pcr_pid,
                in_pat=prog.in_pat, in_sdt=prog.in_sdt, has_pmt=prog.has_pmt,
                free_ca_mode=prog.free_ca_mode, scrambling_mode=prog.scrambling_mode,
                streams=streams, ca=tuple(prog.ca), packets=packets,
                scrambled_packets=scrambled, bitrate_bps=self.rate(packets),
                time_base=base.source))
            if prog.in_pat:
                self.pmt_alarm(prog, base)
        return tuple(out)

    def gaps(self, times: Iterable[int], base: TimeBase, *, end: bool = True) -> list[
            tuple[float, float]]:
        """(start, length) of every interval between consecutive events, the stream start
        and (``end``) the stream end."""
        ts = [base.at(i) for i in times]
        edges = [0.0, *ts, base.at(self.total)] if end else [0.0, *ts]
        return [(a, b - a) for a, b in pairwise(edges)]

    def pmt_alarm(self, prog: _Program, base: TimeBase) -> None:
        name = f"service {prog.number}"
        if not prog.pmt_times:
            self.alarm(AlarmCode.PMT_ERROR, f"{name}: no PMT on PID {prog.pmt_pid}",
                       pid=prog.pmt_pid, service_id=prog.number)
            return
        late = [(a, g) for a, g in self.gaps(prog.pmt_times, base) if g > self.th.pmt_gap_s]
        if late:
            worst = max(g for _, g in late)
            self.alarm(AlarmCode.PMT_ERROR,
                       f"{name}: PMT gap of {worst * 1000:.0f} ms (limit "
                       f"{self.th.pmt_gap_s * 1000:.0f} ms), {len(late)} time(s)",
                       pid=prog.pmt_pid, service_id=prog.number, at_s=late[0][0],
                       count=len(late), worst=worst)

    # --- ECM / EMM -----------------------------------------------------------------------------
    def ecm_reports(self) -> tuple[EcmReport, ...]:
        p = self.p
        out = []
        for pid in sorted(p._ca_pids):
            ca = p._ca_pids[pid]
            if ca.kind != "ECM":
                continue
            programs = self.ecm_programs.get(pid, [])
            base = self.base_for_pid(pid)
            times = [base.at(i) for i in ca.times]
            intervals = [b - a for a, b in pairwise(times)]
            changes = [base.at(i) for i in ca.parity_changes]
            periods = [b - a for a, b in pairwise(changes)]
            same = ([(b - a, a) for a, b in zip([times[0], *changes], [*changes, times[-1]],
                                                strict=True)] if times else [])
            st = p._pids.get(pid)
            out.append(EcmReport(
                pid=pid, ca_system_id=ca.ca_system_id, service_ids=tuple(programs),
                sections=len(ca.times), distinct_sections=ca.distinct,
                bitrate_bps=self.rate(st.packets if st else 0),
                first_at_s=times[0] if times else None, last_at_s=times[-1] if times else None,
                mean_interval_ms=(sum(intervals) / len(intervals) * 1000 if intervals else None),
                max_gap_ms=max(intervals) * 1000 if intervals else None,
                parity_changes=len(changes),
                crypto_period_s=median(periods) if periods else None,
                longest_same_parity_s=max(same)[0] if same else None,
                table_ids=dict(ca.tables), channel_ids=tuple(sorted(ca.channel_ids)),
                ecm_key_indexes=tuple(sorted(ca.key_indexes)), last_section=ca.last_section))
            self.ecm_alarms(ca, programs, base, times, same)
        return tuple(out)

    def service_active_until(self, programs: list[int], base: TimeBase) -> float | None:
        """Time of the last scrambled packet of these services (None: nothing scrambled)."""
        last: int | None = None
        for number in programs:
            prog = self.p._programs.get(number)
            for pid, _ in prog.streams if prog else ():
                st = self.p._pids.get(pid)
                if st is not None and st.last_scrambled is not None:
                    last = max(last or 0, st.last_scrambled)
        return None if last is None else base.at(last)

    def ecm_alarms(self, ca: _CaPid, programs: list[int], base: TimeBase, times: list[float],
                   same: list[tuple[float, float]]) -> None:
        th = self.th
        sid = programs[0] if programs else None
        label = f"ECM PID {ca.pid} (0x{ca.pid:04X})" + (
            f", service {', '.join(map(str, programs))}" if programs else "")
        if not times:
            self.alarm(AlarmCode.ECM_MISSING, f"{label}: signalled in the PMT, no ECM received",
                       pid=ca.pid, service_id=sid)
            return
        end = base.at(self.total)
        inner = [(a, b - a) for a, b in pairwise([0.0, *times]) if b - a > th.ecm_gap_s]
        if inner:
            worst = max(g for _, g in inner)
            self.alarm(AlarmCode.ECM_GAP,
                       f"{label}: {len(inner)} gap(s) over {th.ecm_gap_s * 1000:.0f} ms, "
                       f"longest {worst * 1000:.0f} ms at {inner[0][0]:.1f} s",
                       pid=ca.pid, service_id=sid, at_s=inner[0][0], count=len(inner),
                       worst=worst)
        tail = end - times[-1]
        if tail > th.ecm_gap_s:
            active = self.service_active_until(programs, base)
            still = "" if active is None else f"; scrambled packets go on to {active:.1f} s"
            self.alarm(AlarmCode.ECM_STOPPED,
                       f"{label}: last ECM at {times[-1]:.1f} s, none for the last {tail:.1f} s "
                       f"of the stream{still}",
                       pid=ca.pid, service_id=sid, at_s=times[-1], worst=tail)
        longest, since = max(same) if same else (0.0, 0.0)
        if longest >= th.cw_change_s:
            self.alarm(AlarmCode.CW_NOT_CHANGING,
                       f"{label}: ECM table_id parity unchanged for {longest:.1f} s "
                       f"(limit {th.cw_change_s:.0f} s)",
                       pid=ca.pid, service_id=sid, worst=longest, at_s=since)

    def emm_reports(self) -> tuple[EmmReport, ...]:
        p = self.p
        out = []
        for pid in sorted(p._ca_pids):
            ca = p._ca_pids[pid]
            if ca.kind != "EMM":
                continue
            base = self.ref
            times = [base.at(i) for i in ca.times]
            gaps = [g for _, g in self.gaps(ca.times, base)] if ca.times else []
            st = p._pids.get(pid)
            ours = ca.ca_system_id == p.ca_system_id
            bitrate = self.rate(st.packets if st else 0)
            out.append(EmmReport(
                pid=pid, ca_system_id=ca.ca_system_id, ours=ours, sections=len(ca.times),
                bitrate_bps=bitrate, first_at_s=times[0] if times else None,
                last_at_s=times[-1] if times else None, max_gap_s=max(gaps) if gaps else None,
                table_ids=dict(ca.tables), by_address=dict(ca.address_counts),
                unique={s: AddressStats(sections=v[0], last_seq=v[1], last_at_s=base.at(v[2]))
                        for s, v in ca.unique.items()},
                shared={a: AddressStats(sections=v[0], last_seq=v[1], last_at_s=base.at(v[2]),
                                        members=v[3]) for a, v in ca.shared.items()},
                global_last_seq=ca.global_last_seq))
            if ours and bitrate < self.th.emm_min_bps:
                self.alarm(AlarmCode.EMM_BITRATE_LOW,
                           f"EMM PID {pid} (0x{pid:04X}): {bitrate:.0f} bit/s, under "
                           f"{self.th.emm_min_bps} bit/s", pid=pid, worst=bitrate)
        return tuple(out)

    def scrambling_reports(self) -> tuple[ScramblingReport, ...]:
        out = []
        for pid in sorted(self.p._pids):
            st = self.p._pids[pid]
            if st.first_scrambled is None or st.last_scrambled is None:
                continue
            base = self.base_for_pid(pid)
            first = base.at(st.first_scrambled)
            last = base.at(st.last_scrambled)
            changes = [base.at(i) for i in st.parity_changes]
            periods = [b - a for a, b in pairwise(changes)]
            spans = [(b - a, a) for a, b in zip([first, *changes], [*changes, last],
                                                 strict=True)]
            programs = self.es_programs.get(pid)
            longest, since = max(spans)
            out.append(ScramblingReport(
                pid=pid, service_id=programs[0] if programs else None, even=st.even, odd=st.odd,
                first_at_s=first, last_at_s=last, parity_changes=len(changes),
                crypto_period_s=median(periods) if periods else None,
                longest_same_parity_s=longest))
            sid = programs[0] if programs else None
            label = f"PID {pid} (0x{pid:04X})" + (f", service {sid}" if sid is not None else "")
            if longest >= self.th.cw_change_s:
                self.alarm(AlarmCode.CW_NOT_CHANGING,
                           f"{label}: scrambling parity unchanged for {longest:.1f} s "
                           f"(limit {self.th.cw_change_s:.0f} s): the control word is not "
                           "changing", pid=pid, service_id=sid, worst=longest, at_s=since)
            self.no_ecm_alarm(st, programs, label, first)
        return tuple(out)

    def no_ecm_alarm(self, st: _Pid, programs: list[int] | None, label: str,
                     first: float) -> None:
        p = self.p
        scrambled = st.even + st.odd + st.reserved
        if not programs:
            self.alarm(AlarmCode.SCRAMBLED_NO_ECM,
                       f"{label}: {scrambled} scrambled packets on a PID no PMT lists",
                       pid=st.pid, at_s=first, count=scrambled)
            return
        prog = p._programs[programs[0]]
        ecm_pids = [c.ca_pid for c in prog.ca if c.es_pid in (None, st.pid)]
        if not ecm_pids:
            self.alarm(AlarmCode.SCRAMBLED_NO_ECM,
                       f"{label}: {scrambled} scrambled packets, but the PMT has no "
                       "CA_descriptor (no ECM PID)", pid=st.pid, service_id=prog.number,
                       at_s=first, count=scrambled)

    def stream_alarms(self, services: tuple[ServiceReport, ...],
                      emms: tuple[EmmReport, ...]) -> None:
        p = self.p
        th = self.th
        if p.sync_losses:
            self.alarm(AlarmCode.SYNC_LOSS,
                       f"sync lost {p.sync_losses} time(s), {p.skipped_bytes} bytes skipped",
                       count=p.sync_losses, at_s=self.ref.at(p.sync_loss_at[0]))
        if p.transport_errors:
            self.alarm(AlarmCode.TRANSPORT_ERROR,
                       f"{p.transport_errors} packet(s) with transport_error_indicator set",
                       count=p.transport_errors,
                       at_s=None if p.first_tei is None else self.ref.at(p.first_tei))
        if not p._pat_times:
            self.alarm(AlarmCode.PAT_ERROR, "no PAT on PID 0x0000", pid=0)
        else:
            late = [(a, g) for a, g in self.gaps(p._pat_times, self.ref) if g > th.pat_gap_s]
            if late:
                worst = max(g for _, g in late)
                self.alarm(AlarmCode.PAT_ERROR,
                           f"PAT gap of {worst * 1000:.0f} ms (limit {th.pat_gap_s * 1000:.0f}"
                           f" ms), {len(late)} time(s)", pid=0, at_s=late[0][0],
                           count=len(late), worst=worst)
        crc = {pid: r.counts["crc"] for pid, r in p._reasm.items() if r.counts["crc"]}
        if crc:
            self.alarm(AlarmCode.CRC_ERROR,
                       "CRC_32 errors: " + ", ".join(f"PID {pid} ×{n}"
                                                     for pid, n in sorted(crc.items())),
                       count=sum(crc.values()), pid=min(crc))
        scrambled_any = any(s.scrambled_packets for s in services) or any(
            st.even + st.odd for st in p._pids.values())
        if scrambled_any and not p._cat_times:
            self.alarm(AlarmCode.CAT_ERROR, "scrambled packets but no CAT on PID 0x0001",
                       pid=1)
        ours = [e for e in emms if e.ours]
        if scrambled_any and p._cat_times and not ours:
            self.alarm(AlarmCode.EMM_MISSING,
                       f"the CAT names no EMM PID for CA system 0x{p.ca_system_id:04X}: "
                       "cards get no entitlement updates", pid=1)


# --- entry points ----------------------------------------------------------------------------
def probe_stream(handle: BinaryIO, *, source: str = "<stream>",
                 ca_system_id: int = DEFAULT_CA_SYSTEM_ID, nominal_bitrate_bps: int | None = None,
                 thresholds: Thresholds | None = None,
                 progress: Callable[[int], None] | None = None) -> ProbeReport:
    """Probe everything ``handle`` yields (``progress(n)`` after every ``n`` bytes read)."""
    probe = StreamProbe(ca_system_id=ca_system_id, nominal_bitrate_bps=nominal_bitrate_bps,
                        thresholds=thresholds, source=source)
    size = CHUNK_PACKETS * PACKET_SIZE
    while True:
        try:
            data = handle.read(size)
        except OSError as exc:
            raise StreamError(f"cannot read {source}: {exc.strerror or exc}") from exc
        if not data:
            break
        probe.feed(data)
        if progress is not None:
            progress(len(data))
    return probe.finish()


def probe_file(path: Path | str, **kwargs: Any) -> ProbeReport:
    """Probe a TS file (see :func:`probe_stream` for the options)."""
    p = Path(path)
    try:
        with p.open("rb", buffering=0) as handle:
            return probe_stream(handle, source=str(p), **kwargs)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise StreamError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise StreamError(f"{p} is a directory") from None
    except PermissionError:
        raise StreamError(f"{p}: permission denied") from None


def probe_bytes(data: bytes, **kwargs: Any) -> ProbeReport:
    probe = StreamProbe(**kwargs)
    probe.feed(data)
    return probe.finish()
