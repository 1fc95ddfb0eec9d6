"""PSI/SI of the live multiplex: built once from the services, repeated on schedule.

The sources' own PSI is dropped (each source is one program with PIDs of its own); the
multiplex gets tables of its own:

* **PAT** (ISO/IEC 13818-1 §2.4.4.3) listing every service's PMT PID;
* **PMT** per service (§2.4.4.8): the source's streams on their output PIDs and, for a
  scrambled service, a program-level CA_descriptor (tag 0x09, our CA_system_ID, CA_PID = the
  service's ECM PID) and for CISSA a scrambling_descriptor (EN 300 468 §6.2.32, mode 0x10) —
  both added by :func:`cas.headend.scrambler.rewrite_pmt`, the same rule as the file scrambler;
* **CAT** (§2.4.4.6) with one CA_descriptor naming the EMM PID
  (:func:`cas.headend.scrambler.build_cat`), and one more per external EMMG connected
  through ``[mux]`` (its CA_system_ID, PID and private data; :mod:`cas.live.muxin`);
* **SDT actual** (EN 300 468 §5.2.3): a service_descriptor with the catalogue's name,
  ``free_CA_mode`` = 1 for a scrambled service, and the catalogue's channel number as an EACEM
  logical_channel_descriptor (:func:`cas.headend.scrambler.rewrite_sdt`).

Repetition (TR 101 290 §5.2.1 and EN 300 468 §5.1.4 / TR 101 211 §4.4): PAT, CAT and the PMTs
every 100 ms (a receiver's PAT_error limit is 0.5 s), the SDT every 1 s (at most 2 s apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cas.formats import psi, ts
from cas.headend.scrambler import (
    SCRAMBLING_MODE_CISSA,
    Algorithm,
    build_cat,
    rewrite_pmt,
    rewrite_sdt,
)

PAT_PID = 0x0000
CAT_PID = 0x0001
SDT_PID = psi.SDT_PID
#: service_type 0x01: digital television service (EN 300 468 table 87).
SERVICE_TYPE_TV = 0x01
PAT_INTERVAL_S = 0.1
SDT_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceLayout:
    """One service of the multiplex, in output PIDs."""

    service_id: int
    channel_number: int
    name: str
    pmt_pid: int
    pcr_pid: int
    streams: tuple[psi.PmtStream, ...]
    program_descriptors: tuple[psi.Descriptor, ...] = ()
    scrambled: bool = True
    ecm_pid: int | None = None

    @property
    def es_pids(self) -> tuple[int, ...]:
        return tuple(s.elementary_pid for s in self.streams)


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxSettings:
    ca_system_id: int
    emm_pid: int
    algorithm: Algorithm = Algorithm.CSA2
    transport_stream_id: int = 1
    original_network_id: int = 1
    provider: str = "cas-sim"
    #: More CA_descriptors for the CAT: the EMM PIDs of ``[[mux.client]]``s (cas.live.muxin).
    cat_descriptors: tuple[psi.CaDescriptor, ...] = ()


def build_tables(services: Sequence[ServiceLayout], settings: MuxSettings
                 ) -> dict[int, list[bytes]]:
    """Sections by PID: PAT, CAT, every PMT and the SDT."""
    pat = psi.build_pat(psi.Pat(
        transport_stream_id=settings.transport_stream_id,
        programs=tuple(psi.PatProgram(program_number=s.service_id, pid=s.pmt_pid)
                       for s in services)))
    tables: dict[int, list[bytes]] = {PAT_PID: [pat]}
    tables[CAT_PID] = [_cat(settings)]
    mode = SCRAMBLING_MODE_CISSA if settings.algorithm is Algorithm.CISSA else None
    for s in services:
        section = psi.build_pmt(psi.Pmt(program_number=s.service_id, pcr_pid=s.pcr_pid,
                                        descriptors=s.program_descriptors, streams=s.streams))
        if s.scrambled:
            assert s.ecm_pid is not None
            section = rewrite_pmt(section, ca_system_id=settings.ca_system_id,
                                  ecm_pid=s.ecm_pid, scrambling_mode=mode)
        tables.setdefault(s.pmt_pid, []).append(section)
    sdt = psi.build_sdt(psi.Sdt(
        transport_stream_id=settings.transport_stream_id,
        original_network_id=settings.original_network_id,
        services=tuple(psi.SdtService(
            service_id=s.service_id, free_ca_mode=s.scrambled,
            descriptors=(psi.ServiceDescriptor.of(SERVICE_TYPE_TV, settings.provider, s.name),))
            for s in services)))
    numbers = {s.service_id: s.channel_number for s in services if 1 <= s.channel_number <= 1023}
    tables[SDT_PID] = [rewrite_sdt(sdt, numbers) if numbers else sdt]
    return tables


def _cat(settings: MuxSettings) -> bytes:
    """The CAT: our CA_descriptor (EMM PID), then one per external EMM client, in order."""
    if not settings.cat_descriptors:
        return build_cat(ca_system_id=settings.ca_system_id, emm_pid=settings.emm_pid)
    ours = psi.CaDescriptor(ca_system_id=settings.ca_system_id, ca_pid=settings.emm_pid)
    return psi.build_cat(psi.Cat(descriptors=(ours, *settings.cat_descriptors)))


class PsiSchedule:
    """The PSI/SI packets due at a time, with continuity counters per PID."""

    def __init__(self, tables: dict[int, list[bytes]], *, pat_interval_s: float = PAT_INTERVAL_S,
                 sdt_interval_s: float = SDT_INTERVAL_S) -> None:
        self._pk = {pid: ts.Packetizer(pid) for pid in tables}
        self._tables = tables
        self._fast = [pid for pid in tables if pid != SDT_PID]
        self._pat_interval_s = pat_interval_s
        self._sdt_interval_s = sdt_interval_s
        self._next_pat_s = 0.0
        self._next_sdt_s = 0.0

    def replace(self, tables: dict[int, list[bytes]]) -> None:
        """New table contents (new versions); counters carry on."""
        for pid in tables:
            self._pk.setdefault(pid, ts.Packetizer(pid))
        self._tables = tables
        self._fast = [pid for pid in tables if pid != SDT_PID]

    def next_due_s(self) -> float:
        return min(self._next_pat_s, self._next_sdt_s)

    def due(self, now_s: float) -> list[tuple[float, bytes]]:
        """Every repetition that fell due up to ``now_s``: (time, packets) pairs."""
        out: list[tuple[float, bytes]] = []
        while self._next_pat_s <= now_s:
            at = self._next_pat_s
            for pid in self._fast:
                for section in self._tables[pid]:
                    out.append((at, b"".join(self._pk[pid].packetize(section))))
            self._next_pat_s += self._pat_interval_s
        while self._next_sdt_s <= now_s:
            at = self._next_sdt_s
            for section in self._tables.get(SDT_PID, []):
                out.append((at, b"".join(self._pk[SDT_PID].packetize(section))))
            self._next_sdt_s += self._sdt_interval_s
        out.sort(key=lambda e: e[0])
        return out
