"""What a scan has gathered so far: per-PID, per-program and per-CA-PID accumulators and
the :class:`ScanState` that holds them.

:class:`cas.diag.probe.scanner.StreamProbe` fills it; :mod:`.assembly` reads it.
"""

from __future__ import annotations

from array import array
from collections import Counter
from enum import StrEnum

from cas.diag.alarms import Thresholds
from cas.diag.probe.report import CaEntry
from cas.formats.ts import SectionReassembler


class PidState:
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


class ProgramState:
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


class CaKind(StrEnum):
    """What a CA PID carries (the CA_descriptor's table: PMT -> ECM, CAT -> EMM)."""

    ECM = "ECM"
    EMM = "EMM"


class CaPidState:
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
        "tids",
        "times",
        "unique",
    )

    def __init__(self, pid: int, kind: CaKind, ca_system_id: int) -> None:
        self.pid = pid
        self.kind = kind
        self.ca_system_id = ca_system_id
        self.times = array("q")  # packet index of every section
        self.tids = bytearray()  # table_id of every section (ECM parity per period)
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


class ScanState:
    """The facts a scan has gathered: counters, the PID / program / CA PID accumulators, the
    PSI tables seen.  The scanner writes them; report assembly only reads them."""

    def __init__(self, *, ca_system_id: int, nominal_bitrate_bps: int | None,
                 thresholds: Thresholds, source: str) -> None:
        self.ca_system_id = ca_system_id
        self.nominal_bitrate_bps = nominal_bitrate_bps
        self.thresholds = thresholds
        self.source = source
        self.size_bytes = 0
        self.packets = 0
        self.sync_losses = 0
        self.skipped_bytes = 0
        self.sync_loss_at: list[int] = []
        self.transport_errors = 0
        self.first_tei: int | None = None
        self.pids: dict[int, PidState] = {}
        self.overflow = False  # more PIDs than one-byte codes: the rest share one code
        self.reasm: dict[int, SectionReassembler] = {}  # .idle: no section in progress
        self.programs: dict[int, ProgramState] = {}
        self.pmt_pids: dict[int, set[int]] = {}  # PMT PID -> program numbers
        self.pat_times = array("q")
        self.cat_times = array("q")
        self.cat: list[CaEntry] = []
        self.ca_pids: dict[int, CaPidState] = {}
        self.transport_stream_id: int | None = None
