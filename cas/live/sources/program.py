"""What a live head-end source hands the playout, and how its one program is found.

A source gives :class:`Block` s: whole TS packets of its program's elementary streams (its
own PSI, SDT, null packets and anything else dropped; PIDs already renumbered to the
service's output PIDs) and, per packet, the time in seconds on the multiplex clock at which
it is due on the wire.  :class:`ProgramProbe` finds the program from the PAT and its PMT.
"""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cas.errors import FormatError
from cas.formats import psi, ts

PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF
#: How much of a file or live source is read to find its PAT and PMT.
PROBE_LIMIT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramInfo:
    """The one program a source carries (from its PAT and PMT), in the source's PIDs."""

    program_number: int
    pcr_pid: int
    streams: tuple[psi.PmtStream, ...]
    descriptors: tuple[psi.Descriptor, ...] = ()

    @property
    def pids(self) -> tuple[int, ...]:
        """Every PID played out: the elementary streams, and the PCR PID when it is apart."""
        es = tuple(s.elementary_pid for s in self.streams)
        return es if self.pcr_pid in es or self.pcr_pid == NULL_PID else (*es, self.pcr_pid)


@dataclass(slots=True)
class Block:
    """Packets of one source due in a time window, with each packet's time (seconds)."""

    data: bytearray = field(default_factory=bytearray)
    times: array[float] = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.times)

    def extend(self, other: Block) -> None:
        self.data += other.data
        self.times.extend(other.times)


class Source(Protocol):
    """What the playout needs from a source."""

    @property
    def program(self) -> ProgramInfo: ...

    def set_pid_map(self, pid_map: Mapping[int, int]) -> None:
        """Output PID for every PID of :attr:`program` (called once, before :meth:`read`)."""

    def read(self, until_s: float, now_s: float) -> Block:
        """The packets due before ``until_s`` (multiplex clock) not handed out yet."""

    def close(self) -> None: ...



SourceFactory = Callable[[], Source]


class ProgramProbe:
    """Finds a program of a TS (``program_number``, else the first in the PAT) from its PAT
    and that program's PMT."""

    def __init__(self, program_number: int | None = None) -> None:
        self._wanted = program_number
        self._pat = ts.SectionReassembler(PAT_PID)
        self._pmt: ts.SectionReassembler | None = None
        self._number = -1
        self.program: ProgramInfo | None = None

    def feed(self, pkt: bytes | bytearray | memoryview) -> ProgramInfo | None:
        if self.program is not None:
            return self.program
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if pid == PAT_PID and self._pmt is None:
            for sec in self._pat.feed(pkt):
                with contextlib.suppress(FormatError):
                    pat = psi.parse_pat(sec)
                    programs = [p for p in pat.programs if p.program_number != 0
                                and self._wanted in (None, p.program_number)]
                    if programs:
                        self._number = programs[0].program_number
                        self._pmt = ts.SectionReassembler(programs[0].pid)
        elif self._pmt is not None and pid == self._pmt.pid:
            for sec in self._pmt.feed(pkt):
                try:
                    pmt = psi.parse_pmt(sec)
                except FormatError:  # a damaged PMT is skipped; the next one counts
                    continue
                if pmt.program_number == self._number:
                    self.program = ProgramInfo(program_number=pmt.program_number,
                                               pcr_pid=pmt.pcr_pid, streams=pmt.streams,
                                               descriptors=pmt.descriptors)
        return self.program
