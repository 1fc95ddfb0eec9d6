"""Small hand-made TS streams for the box's tests: sections and PES packets per PID.

Written out byte by byte (ISO/IEC 13818-1 §2.4.3) so the tests do not depend on the
generator they are meant to check the box against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cas.formats.psi import (
    CaDescriptor,
    Cat,
    Descriptor,
    Pat,
    PatProgram,
    Pmt,
    PmtStream,
    ScramblingDescriptor,
    Sdt,
    SdtService,
    ServiceDescriptor,
    build_cat,
    build_pat,
    build_pmt,
    build_sdt,
)

PACKET = 188


class Mux:
    """Keeps one continuity counter per PID and writes packets."""

    def __init__(self) -> None:
        self.cc: dict[int, int] = {}

    def _next_cc(self, pid: int) -> int:
        cc = self.cc.get(pid, -1)
        cc = (cc + 1) & 0x0F
        self.cc[pid] = cc
        return cc

    def sections(self, pid: int, sections: Sequence[bytes]) -> bytes:
        """Sections back to back, split over packets (§2.4.4.2): every packet in which a
        section starts has PUSI set and a pointer_field to that start; 0xFF stuffing."""
        data = b"".join(sections)
        starts = []
        pos = 0
        for s in sections:
            starts.append(pos)
            pos += len(s)
        out = bytearray()
        pos = 0
        while pos < len(data):
            in_packet = [s for s in starts if pos <= s < pos + 183]
            if in_packet:
                pointer = in_packet[0] - pos
                chunk = data[pos:pos + 183]
                payload = bytes((pointer,)) + chunk
                pos += len(chunk)
            else:
                payload = data[pos:pos + 184]
                pos += len(payload)
            head = bytes((0x47, (0x40 if in_packet else 0) | (pid >> 8), pid & 0xFF,
                          0x10 | self._next_cc(pid)))
            out += head + payload.ljust(184, b"\xff")
        return bytes(out)

    def packet(self, pid: int, payload: bytes, *, pusi: bool = False, tsc: int = 0) -> bytes:
        """One packet; payloads shorter than 184 bytes get an adaptation field of stuffing."""
        if len(payload) > 184:
            raise ValueError("payload too long")
        head = bytes((0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF))
        cc = self._next_cc(pid)
        if len(payload) == 184:
            return head + bytes(((tsc << 6) | 0x10 | cc,)) + payload
        af_len = 183 - len(payload)
        af = bytes((af_len,)) + (bytes((0x00,)) + b"\xff" * (af_len - 1) if af_len else b"")
        return head + bytes(((tsc << 6) | 0x30 | cc,)) + af + payload

    def pes(self, pid: int, es_payload: bytes, *, stream_id: int = 0xE0) -> list[bytes]:
        """A PES packet (minimal header) cut into TS packets; the first carries PUSI."""
        pes = b"\x00\x00\x01" + bytes((stream_id,)) + b"\x00\x00\x80\x00\x00" + es_payload
        out = []
        first = True
        while pes:
            chunk, pes = pes[:184], pes[184:]
            out.append(self.packet(pid, chunk, pusi=first))
            first = False
        return out


def pat(programs: dict[int, int], *, tsid: int = 1, version: int = 0) -> bytes:
    return build_pat(Pat(transport_stream_id=tsid, version_number=version,
                         programs=tuple(PatProgram(program_number=n, pid=p)
                                        for n, p in programs.items())))


def pmt(program: int, streams: Iterable[tuple[int, int]], *, pcr_pid: int | None = None,
        program_descriptors: Sequence[Descriptor] = (),
        es_descriptors: dict[int, Sequence[Descriptor]] | None = None, version: int = 0) -> bytes:
    es_descriptors = es_descriptors or {}
    sts = tuple(PmtStream(stream_type=t, elementary_pid=p,
                          descriptors=tuple(es_descriptors.get(p, ())))
                for p, t in streams)
    return build_pmt(Pmt(program_number=program, version_number=version,
                         pcr_pid=pcr_pid if pcr_pid is not None else sts[0].elementary_pid,
                         descriptors=tuple(program_descriptors), streams=sts))


def cat(emm_pids: dict[int, int], *, version: int = 0) -> bytes:
    """``emm_pids``: CA_system_ID -> EMM PID."""
    return build_cat(Cat(version_number=version, descriptors=tuple(
        CaDescriptor(ca_system_id=s, ca_pid=p) for s, p in emm_pids.items())))


def sdt(names: dict[int, str], *, tsid: int = 1) -> bytes:
    return build_sdt(Sdt(transport_stream_id=tsid, original_network_id=1, services=tuple(
        SdtService(service_id=sid, descriptors=(ServiceDescriptor.of(1, "test", name),))
        for sid, name in names.items())))


def ca(system: int, pid: int) -> CaDescriptor:
    return CaDescriptor(ca_system_id=system, ca_pid=pid)


def scrambling(mode: int) -> ScramblingDescriptor:
    return ScramblingDescriptor(scrambling_mode=mode)
