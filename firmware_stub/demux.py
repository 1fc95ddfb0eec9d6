"""The box's demultiplexer: the lineup from PAT/PMT/CAT/SDT, and packets routed by PID.

ISO/IEC 13818-1 §2.4.4: the PAT (PID 0) maps each program_number (= DVB service_id) to its
PMT PID; each PMT lists the service's elementary streams and, in CA_descriptors for our
CA_system_ID, its ECM PID (program level: every component; ES level: that component only);
the CAT (PID 1) names the EMM PID in its CA_descriptor.  EN 300 468 §5.2.3: the SDT (PID
0x11) carries the service names; a scrambling_descriptor (0x65) in the PMT says CISSA
(0x10) instead of the default CSA2.

Sections are reassembled by :class:`firmware_stub.tsreader.SectionFilter` and parsed by
:mod:`cas.formats.psi`; a section that fails its CRC or does not parse is counted and
dropped, and the last good version of the table stays in force — the box goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress
from typing import Protocol

from cas import DEFAULT_CA_SYSTEM_ID
from cas.errors import ChecksumError, FormatError
from cas.formats.psi import (
    CAT_PID,
    PAT_PID,
    SDT_PID,
    TABLE_ID_CAT,
    TABLE_ID_PAT,
    TABLE_ID_PMT,
    TABLE_ID_SDT_ACTUAL,
    CaDescriptor,
    Descriptor,
    Pmt,
    RawDescriptor,
    ScramblingDescriptor,
    ServiceDescriptor,
    parse_cat,
    parse_pat,
    parse_pmt,
    parse_sdt,
)
from cas.formats.sections import LongSection, SectionAssembler, build_section, parse_section
from firmware_stub.tsreader import (
    NULL_PID,
    PACKET_SIZE,
    PacketSplitter,
    SectionFilter,
    StreamStats,
    payload_offset,
)

#: scrambling_mode values (EN 300 468 §6.2.32) the descrambler implements.
SCRAMBLING_CSA2 = 0x02
SCRAMBLING_CISSA = 0x10
SCRAMBLING_NAMES = {0x01: "CSA1", 0x02: "CSA2", 0x03: "CSA3", 0x10: "CISSA"}
#: logical_channel_descriptor (EACEM/NorDig private descriptor 0x83 in the NIT/SDT loop):
#: we accept it in the SDT service loop, where some muxes put it.
LCN_DESCRIPTOR_TAG = 0x83


@dataclass(frozen=True, slots=True, kw_only=True)
class EsInfo:
    """One elementary stream of a service and the ECM PID that keys it (if any)."""

    pid: int
    stream_type: int
    ecm_pid: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """What the demux knows about one service (DVB service_id = MPEG program_number)."""

    service_id: int
    pmt_pid: int | None = None
    name: str | None = None
    provider: str | None = None
    lcn: int | None = None
    streams: tuple[EsInfo, ...] = ()
    program_ecm_pid: int | None = None
    #: CA_system_IDs of CA_descriptors for other CA systems (simulcrypt neighbours).
    other_ca_systems: tuple[int, ...] = ()
    scrambling_mode: int = SCRAMBLING_CSA2
    has_pmt: bool = False
    in_pat: bool = False
    in_sdt: bool = False
    free_ca_mode: bool = False

    @property
    def channel(self) -> int:
        return self.lcn if self.lcn is not None else self.service_id

    @property
    def ecm_pids(self) -> tuple[int, ...]:
        pids: list[int] = []
        for pid in ([self.program_ecm_pid] + [s.ecm_pid for s in self.streams]):
            if pid is not None and pid not in pids:
                pids.append(pid)
        return tuple(pids)

    @property
    def ca_signalled(self) -> bool:
        """The PMT announces some CA system (ours or another)."""
        return bool(self.ecm_pids or self.other_ca_systems)


class DemuxListener(Protocol):
    """What the demux hands on.  ``packet_index`` is the packet's position in the stream."""

    def on_lineup(self) -> None:
        """PAT, a PMT, the CAT or the SDT changed."""

    def on_ecm(self, pid: int, section: bytes, packet_index: int) -> None: ...

    def on_emm(self, pid: int, section: bytes, packet_index: int) -> None: ...

    def on_es(self, pid: int, packet: bytes, packet_index: int) -> None: ...


class BulkListener(DemuxListener, Protocol):
    """A listener that also takes runs of elementary-stream packets at once (the fast path)."""

    def on_es_block(self, block: bytes, packet_index: int) -> None:
        """``block``: consecutive packets, all on :attr:`Demux.bulk_pids`, continuity
        counters checked, no transport_error_indicator, each with a payload."""


# byte 3 low nibble = continuity_counter; "+1 mod 16" for comparing a run with itself
_CC_OF = bytes(b & 0x0F for b in range(256))
_CC_NEXT = bytes(((b & 0x0F) + 1) & 0x0F for b in range(256))
# byte 3 has a payload (adaptation_field_control 01 or 11)
_HAS_PAYLOAD = bytes(1 if b & 0x10 else 0 for b in range(256))
_NOT = bytes(1 if b == 0 else 0 for b in range(256))


def pid_tables(pid: int) -> tuple[bytes, bytes]:
    """translate() tables matching byte 1 (PID high bits, transport_error_indicator 0) and
    byte 2 (PID low byte) of a packet on ``pid``."""
    hi = bytes(1 if (b & 0x9F) == pid >> 8 else 0 for b in range(256))
    lo = bytes(1 if b == pid & 0xFF else 0 for b in range(256))
    return hi, lo


def _ca_for_us(descriptors: Iterable[Descriptor], ca_system_id: int) -> tuple[int | None, set[int]]:
    """(ECM PID for our CA system or None, other CA_system_IDs) of one descriptor loop."""
    ours: int | None = None
    others: set[int] = set()
    for d in descriptors:
        if isinstance(d, CaDescriptor):
            if d.ca_system_id == ca_system_id:
                if ours is None:
                    ours = d.ca_pid
            else:
                others.add(d.ca_system_id)
    return ours, others


def _scrambling_mode(pmt: Pmt) -> int:
    """scrambling_descriptor at program level, else on any component; CSA2 when absent."""
    for d in pmt.descriptors:
        if isinstance(d, ScramblingDescriptor):
            return d.scrambling_mode
    for st in pmt.streams:
        for d in st.descriptors:
            if isinstance(d, ScramblingDescriptor):
                return d.scrambling_mode
    return SCRAMBLING_CSA2


class Demux:
    """Feed it bytes; it keeps the lineup and calls its listener per section / ES packet."""

    def __init__(self, listener: DemuxListener, *, ca_system_id: int = DEFAULT_CA_SYSTEM_ID,
                 stats: StreamStats | None = None) -> None:
        self.listener = listener
        self.ca_system_id = ca_system_id
        self.stats = stats or StreamStats()
        self._splitter = PacketSplitter(self.stats)
        self._filters: dict[int, SectionFilter] = {}
        self._cc: dict[int, int] = {}
        self._assembler = SectionAssembler()
        self._last_raw: dict[tuple[int, int, int, int], bytes] = {}
        # the lineup
        self.transport_stream_id: int | None = None
        self.pat: dict[int, int] = {}  # service_id -> PMT PID
        self.pmts: dict[int, Pmt] = {}  # service_id -> PMT
        self.sdt: dict[int, tuple[str | None, str | None, int | None, bool]] = {}
        self.emm_pids: tuple[int, ...] = ()
        self.cat_seen = False
        # routing tables, rebuilt on every lineup change
        self._pmt_pids: dict[int, set[int]] = {}
        self.ecm_pids: dict[int, tuple[int, ...]] = {}  # ECM PID -> service ids
        self.es_pids: dict[int, int] = {}  # ES PID -> service id
        self._emm_pid_set: frozenset[int] = frozenset()
        # fast path (see _block)
        self._bulk_pids: frozenset[int] = frozenset()
        self._bulk_wanted: frozenset[int] = frozenset()
        self._bulk_tables: dict[int, tuple[bytes, bytes]] = {}
        self._bulk_listener: BulkListener | None = (
            listener if hasattr(listener, "on_es_block") else None)  # type: ignore[assignment]

    # --- lineup ------------------------------------------------------------------------------
    def services(self) -> list[ServiceInfo]:
        """Every service the stream names in its PAT, a PMT or the SDT, by channel number."""
        ids = set(self.pat) | set(self.pmts) | set(self.sdt)
        out = [self.service(sid) for sid in ids]
        return sorted(out, key=lambda s: (s.channel, s.service_id))

    def service(self, service_id: int) -> ServiceInfo:
        name, provider, lcn, free_ca = self.sdt.get(service_id, (None, None, None, False))
        pmt = self.pmts.get(service_id)
        base = ServiceInfo(service_id=service_id, pmt_pid=self.pat.get(service_id), name=name,
                           provider=provider, lcn=lcn, in_pat=service_id in self.pat,
                           in_sdt=service_id in self.sdt, free_ca_mode=free_ca)
        if pmt is None:
            return base
        program_ecm, others = _ca_for_us(pmt.descriptors, self.ca_system_id)
        streams = []
        for st in pmt.streams:
            es_ecm, es_others = _ca_for_us(st.descriptors, self.ca_system_id)
            others |= es_others
            streams.append(EsInfo(pid=st.elementary_pid, stream_type=st.stream_type,
                                  ecm_pid=es_ecm if es_ecm is not None else program_ecm))
        return ServiceInfo(
            service_id=service_id, pmt_pid=base.pmt_pid, name=name, provider=provider, lcn=lcn,
            streams=tuple(streams), program_ecm_pid=program_ecm,
            other_ca_systems=tuple(sorted(others)), scrambling_mode=_scrambling_mode(pmt),
            has_pmt=True, in_pat=base.in_pat, in_sdt=base.in_sdt, free_ca_mode=free_ca)

    def services_for_ecm_pid(self, pid: int) -> tuple[int, ...]:
        return self.ecm_pids.get(pid, ())

    def _rebuild_routes(self) -> None:
        pmt_pids: dict[int, set[int]] = {}
        for sid, pid in self.pat.items():
            pmt_pids.setdefault(pid, set()).add(sid)
        self._pmt_pids = pmt_pids
        ecm: dict[int, list[int]] = {}
        es: dict[int, int] = {}
        for sid in self.pmts:
            if sid not in self.pat:
                continue  # a service the PAT no longer lists is gone
            info = self.service(sid)
            for pid in info.ecm_pids:
                ecm.setdefault(pid, []).append(sid)
            for st in info.streams:
                es[st.pid] = sid
        reserved = {PAT_PID, CAT_PID, SDT_PID, NULL_PID} | set(pmt_pids) | set(self.emm_pids)
        self.ecm_pids = {pid: tuple(s) for pid, s in ecm.items() if pid not in reserved}
        self.es_pids = {pid: sid for pid, sid in es.items()
                        if pid not in reserved and pid not in self.ecm_pids}
        self._emm_pid_set = frozenset(self.emm_pids)
        # Forget section filters of PIDs that have no section role any more.
        keep = {PAT_PID, CAT_PID, SDT_PID} | set(pmt_pids) | set(self.ecm_pids) | self._emm_pid_set
        for pid in [p for p in self._filters if p not in keep]:
            del self._filters[pid]
        self._refresh_bulk()
        self.listener.on_lineup()

    # --- the fast path ------------------------------------------------------------------------
    @property
    def bulk_pids(self) -> frozenset[int]:
        return self._bulk_pids

    @bulk_pids.setter
    def bulk_pids(self, pids: frozenset[int]) -> None:
        """Elementary-stream PIDs whose packets go to ``on_es_block`` in runs (when the
        listener has it).  Everything else still goes packet by packet."""
        self._bulk_wanted = frozenset(pids)
        self._refresh_bulk()

    def _refresh_bulk(self) -> None:
        # Only PIDs the lineup gives to an elementary stream: a PID the PAT/PMT no longer
        # list must not be handed on as a service's packets.
        pids = frozenset(p for p in self._bulk_wanted if p in self.es_pids)
        if pids != self._bulk_pids:
            self._bulk_pids = pids
            self._bulk_tables = {pid: pid_tables(pid) for pid in pids}

    def _block(self, block: bytes) -> None:
        """A run of sync-checked packets: the bulk packets in runs, the rest one by one.

        Per-packet work is done with strided slices and ``bytes.translate`` (C loops): a
        mask of the packets on bulk PIDs, and per PID a continuity check of the whole run
        (each CC must be the previous + 1).  Anything unusual in a run (a CC error, a
        duplicate, a discontinuity) sends that run down the per-packet path, which counts
        and reports it exactly as for any other packet.
        """
        n = len(block) // PACKET_SIZE
        b1 = block[1::PACKET_SIZE]
        b2 = block[2::PACKET_SIZE]
        b3 = block[3::PACKET_SIZE]
        masks = {}
        bulk = 0
        for pid, (hi, lo) in self._bulk_tables.items():
            m = int.from_bytes(b1.translate(hi), "little") & int.from_bytes(
                b2.translate(lo), "little")
            if m:
                masks[pid] = m
                bulk |= m
        if not bulk:
            for i in range(0, len(block), PACKET_SIZE):
                self._packet(block[i:i + PACKET_SIZE])
            return
        bulk &= int.from_bytes(b3.translate(_HAS_PAYLOAD), "little")
        is_bulk = bulk.to_bytes(n, "little")
        lo_idx = 0
        for i in compress(range(n), is_bulk.translate(_NOT)):
            if i > lo_idx:
                self._bulk_run(block, lo_idx, i, b3, masks)
            self._packet(block[i * PACKET_SIZE:(i + 1) * PACKET_SIZE])
            lo_idx = i + 1
        if lo_idx < n:
            self._bulk_run(block, lo_idx, n, b3, masks)

    def _bulk_run(self, block: bytes, lo: int, hi: int, b3: bytes,
                  masks: dict[int, int]) -> None:
        """Packets ``lo``..``hi - 1`` of ``block``, all on bulk PIDs with a payload."""
        ccs_of = b3[lo:hi].translate(_CC_OF)
        width = hi - lo
        last_cc: dict[int, int] = {}
        for pid, mask in masks.items():
            sel = ((mask >> (8 * lo)) & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
            ccs = bytes(compress(ccs_of, sel))
            if not ccs:
                continue
            before = self._cc.get(pid)
            if (before is not None and ccs[0] != (before + 1) & 0x0F) or (
                    ccs[:-1].translate(_CC_NEXT) != ccs[1:]):
                for i in range(lo, hi):  # something to count and report: packet by packet
                    self._packet(block[i * PACKET_SIZE:(i + 1) * PACKET_SIZE])
                return
            last_cc[pid] = ccs[-1]
        self._cc.update(last_cc)
        index = self.stats.packets
        self.stats.packets += width
        listener = self._bulk_listener
        assert listener is not None
        listener.on_es_block(block[lo * PACKET_SIZE:hi * PACKET_SIZE], index)

    # --- bytes in ----------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Process ``chunk`` (any size; a partial packet at the end waits for the next)."""
        bulk = self._bulk_pids and self._bulk_listener is not None
        for block in self._splitter.blocks(chunk):
            if bulk and len(block) >= 8 * PACKET_SIZE:
                self._block(block)
            else:
                for i in range(0, len(block), PACKET_SIZE):
                    self._packet(block[i:i + PACKET_SIZE])
        self.stats.bytes_read += len(chunk)

    def finish(self) -> None:
        """End of stream: process the held-back tail."""
        for packet in self._splitter.finish():
            self._packet(packet)

    def _packet(self, packet: bytes) -> None:
        stats = self.stats
        index = stats.packets
        stats.packets += 1
        b1 = packet[1]
        pid = ((b1 & 0x1F) << 8) | packet[2]
        if pid == NULL_PID:
            return
        if b1 & 0x80:  # transport_error_indicator: the packet is known to be damaged
            stats.transport_errors += 1
            stats.note(index, pid, "transport_error", "transport_error_indicator set")
            flt = self._filters.get(pid)
            if flt is not None:
                flt.discontinuity(index)
            return
        b3 = packet[3]
        afc = b3 & 0x30
        if afc & 0x10:  # has a payload: the continuity counter counts
            cc = b3 & 0x0F
            last = self._cc.get(pid)
            self._cc[pid] = cc
            if last is not None and cc != (last + 1) & 0x0F:
                if cc == last:
                    # §2.4.3.3: a packet may be sent twice; the copy is dropped.
                    stats.duplicate_packets += 1
                    return
                if not (afc & 0x20 and packet[4] and packet[5] & 0x80):
                    stats.cc_errors += 1
                    stats.note(index, pid, "cc_error", f"continuity_counter {last} -> {cc}")
                    flt = self._filters.get(pid)
                    if flt is not None:
                        flt.discontinuity(index)
        elif afc == 0:
            stats.bad_adaptation_fields += 1
            stats.note(index, pid, "bad_adaptation_field", "adaptation_field_control 00")
            return
        sid = self.es_pids.get(pid)
        if sid is not None:
            self.listener.on_es(pid, packet, index)
            return
        if pid in self._emm_pid_set or pid in self.ecm_pids or pid in self._pmt_pids or pid in (
                PAT_PID, CAT_PID, SDT_PID):
            off = payload_offset(packet)
            if off < 0:
                if afc & 0x10:
                    stats.bad_adaptation_fields += 1
                    stats.note(index, pid, "bad_adaptation_field", "adaptation_field too long")
                return
            flt = self._filters.get(pid)
            if flt is None:
                flt = self._filters[pid] = SectionFilter(pid, stats)
            for section in flt.push(index, bool(b1 & 0x40), packet[off:]):
                self._section(pid, section, index)

    # --- sections ------------------------------------------------------------------------------
    def _section(self, pid: int, section: bytes, index: int) -> None:
        if pid in self.ecm_pids:
            self.listener.on_ecm(pid, section, index)
            return
        if pid in self._emm_pid_set:
            self.listener.on_emm(pid, section, index)
            return
        table_id = section[0]
        if len(section) >= 8 and section[1] & 0x80:
            key = (pid, table_id, (section[3] << 8) | section[4], section[6])
            if self._last_raw.get(key) == section:
                return  # a repetition of a section we already applied
        else:
            key = None
        try:
            changed = self._table(pid, table_id, section)
        except ChecksumError as exc:
            self.stats.crc_errors += 1
            self.stats.note(index, pid, "crc_error", str(exc))
            return
        except FormatError as exc:
            self.stats.table_errors += 1
            self.stats.note(index, pid, "table_error", str(exc))
            return
        if key is not None:
            self._last_raw[key] = section
        if changed:
            self._rebuild_routes()

    def _long(self, section: bytes) -> tuple[LongSection, ...] | None:
        parsed = parse_section(section)  # CRC check before the table is trusted at all
        if not isinstance(parsed, LongSection):
            raise FormatError("PSI section without section_syntax_indicator").with_id(
                "box.psi_section_without_section")
        return self._assembler.feed(parsed)

    def _table(self, pid: int, table_id: int, section: bytes) -> bool:
        """Apply one PSI/SI section; True when the lineup changed."""
        if pid == PAT_PID and table_id == TABLE_ID_PAT:
            parts = self._long(section)
            if parts is None:
                return False
            pat: dict[int, int] = {}
            for part in parts:
                for prog in parse_pat(_rebuild(part)).programs:
                    if prog.program_number != 0:  # 0 = network_PID (NIT), not a service
                        pat[prog.program_number] = prog.pid
            self.transport_stream_id = parts[0].table_id_extension
            if pat == self.pat:
                return False
            self.pat = pat
            for sid in [s for s in self.pmts if s not in pat]:
                del self.pmts[sid]
            return True
        if pid == CAT_PID and table_id == TABLE_ID_CAT:
            parts = self._long(section)
            if parts is None:
                return False
            emm: list[int] = []
            for part in parts:
                for d in parse_cat(_rebuild(part)).descriptors:
                    if (isinstance(d, CaDescriptor) and d.ca_system_id == self.ca_system_id
                            and d.ca_pid not in emm):
                        emm.append(d.ca_pid)
            self.cat_seen = True
            if tuple(emm) == self.emm_pids:
                return False
            self.emm_pids = tuple(emm)
            return True
        if pid == SDT_PID and table_id == TABLE_ID_SDT_ACTUAL:
            parts = self._long(section)
            if parts is None:
                return False
            names: dict[int, tuple[str | None, str | None, int | None, bool]] = {}
            for part in parts:
                for sv in parse_sdt(_rebuild(part)).services:
                    name = provider = None
                    lcn = None
                    for d in sv.descriptors:
                        if isinstance(d, ServiceDescriptor):
                            name, provider = d.name_text, d.provider_text
                        elif isinstance(d, RawDescriptor) and d.tag == LCN_DESCRIPTOR_TAG:
                            lcn = _lcn_for(d.data, sv.service_id)
                    names[sv.service_id] = (name, provider, lcn, sv.free_ca_mode)
            if names == self.sdt:
                return False
            self.sdt = names
            return True
        if table_id == TABLE_ID_PMT and pid in self._pmt_pids:
            pmt = parse_pmt(section)
            if pmt.program_number not in self._pmt_pids[pid]:
                raise FormatError(f"PMT for program {pmt.program_number} on PID {pid}, "
                                  "which the PAT gives to another program").with_id(
                    "box.pmt_program_pid_which", program_number=pmt.program_number, pid=pid)
            if not pmt.current_next_indicator or self.pmts.get(pmt.program_number) == pmt:
                return False
            self.pmts[pmt.program_number] = pmt
            return True
        return False  # other tables on these PIDs (NIT, BAT, EIT...): not ours to read


def _rebuild(section: LongSection) -> bytes:
    """Section bytes again, for the table parsers (they take whole sections)."""
    return build_section(section)


def _lcn_for(data: bytes, service_id: int) -> int | None:
    """logical_channel_descriptor: {service_id 16, visible 1, reserved 5, LCN 10} entries."""
    for pos in range(0, len(data) - 3, 4):
        if (data[pos] << 8) | data[pos + 1] == service_id:
            return ((data[pos + 2] & 0x03) << 8) | data[pos + 3]
    return None
