"""The box's transport-stream front end: packets and sections out of a byte stream.

What a set-top box's demux hardware does before any table is understood (ISO/IEC 13818-1
§2.4.3 and §2.4.4): find the 0x47 sync bytes, drop packets that are cut short or flagged
by the transport_error_indicator, check each PID's continuity_counter, and reassemble
sections that span packets (pointer_field, stuffing).

It is written for a hostile input: every defect is counted and logged as a
:class:`StreamIssue`, and reading goes on with the next good packet.  It never raises on
stream content.  The per-packet path uses integer operations on the packet bytes rather
than ``construct``, because it runs ~13,000 times per second of a 20 Mbit/s service.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

PACKET_SIZE = 188
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF
#: Section total size limit for private sections (ISO/IEC 13818-1 §2.4.4.10: 4096 bytes).
MAX_SECTION_SIZE = 4096
#: How many issues a reader keeps in detail (all of them are counted).
MAX_ISSUES_KEPT = 200
#: Read size: a whole number of packets, large enough to amortise the read calls.
READ_SIZE = PACKET_SIZE * 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamIssue:
    """One defect found in the stream: where, on which PID, what."""

    packet_index: int
    pid: int | None
    kind: str
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"packet": self.packet_index, "pid": self.pid, "kind": self.kind,
                "detail": self.detail}


@dataclass(slots=True)
class StreamStats:
    """Running counters of the front end (mutable: updated per packet)."""

    packets: int = 0
    bytes_read: int = 0
    sync_losses: int = 0
    skipped_bytes: int = 0
    truncated_packets: int = 0
    transport_errors: int = 0
    cc_errors: int = 0
    duplicate_packets: int = 0
    bad_adaptation_fields: int = 0
    sections: int = 0
    sections_dropped: int = 0
    crc_errors: int = 0
    table_errors: int = 0
    issues: list[StreamIssue] = field(default_factory=list)
    issue_count: int = 0

    def note(self, packet_index: int, pid: int | None, kind: str, detail: str = "") -> None:
        self.issue_count += 1
        if len(self.issues) < MAX_ISSUES_KEPT:
            self.issues.append(StreamIssue(packet_index=packet_index, pid=pid, kind=kind,
                                           detail=detail))

    def counters(self) -> dict[str, int]:
        return {
            "ts_packets": self.packets,
            "ts_sync_losses": self.sync_losses,
            "ts_truncated_packets": self.truncated_packets,
            "ts_transport_errors": self.transport_errors,
            "ts_cc_errors": self.cc_errors,
            "ts_bad_adaptation_fields": self.bad_adaptation_fields,
            "sections_dropped": self.sections_dropped,
            "section_crc_errors": self.crc_errors,
            "table_errors": self.table_errors,
        }

    def to_json(self) -> dict[str, object]:
        return {**self.counters(), "bytes_read": self.bytes_read,
                "skipped_bytes": self.skipped_bytes, "duplicate_packets": self.duplicate_packets,
                "sections": self.sections, "issue_count": self.issue_count,
                "issues": [i.to_json() for i in self.issues]}


def iter_chunks(source: BinaryIO, size: int = READ_SIZE) -> Iterator[bytes]:
    """Read ``source`` (a file or a pipe) in chunks until EOF."""
    while True:
        chunk = source.read(size)
        if not chunk:
            return
        yield bytes(chunk)


class PacketSplitter:
    """Cuts an arbitrary byte stream into 188-byte packets that start with 0x47.

    A packet is accepted when its sync byte is there and no other packet starts inside
    its 188 bytes (a start is confirmed by a second sync byte 188 bytes later).  A packet
    with another one starting inside it was cut short (dropped, counted as truncated);
    bytes without a sync byte are skipped up to the next confirmed start (one sync loss).
    """

    def __init__(self, stats: StreamStats) -> None:
        self._stats = stats
        self._rest = b""
        self._lost = False  # inside a sync loss that was already counted

    def split(self, chunk: bytes) -> Iterator[bytes]:
        """Yield the whole packets in the held-back tail + ``chunk``, one by one."""
        for block in self.blocks(chunk):
            for pos in range(0, len(block), PACKET_SIZE):
                yield block[pos:pos + PACKET_SIZE]

    def blocks(self, chunk: bytes) -> Iterator[bytes]:
        """Yield the whole packets in the held-back tail + ``chunk`` as runs of packets
        (one ``bytes`` per run of good packets); keep the new tail.

        The last packet of the buffer is held back until the following bytes arrive, so
        the next-sync check can be made (:meth:`finish` releases it at EOF).  A clean
        stream comes out as one block per chunk: the sync bytes are checked with one
        strided slice, not packet by packet.
        """
        data = self._rest + chunk if self._rest else chunk
        n = len(data)
        pos = 0
        while n - pos > PACKET_SIZE:
            # sync bytes of every packet that has its successor's sync byte in the buffer,
            # plus that successor's: packet j is good when bytes j and j + 1 are 0x47
            m = (n - pos - 1) // PACKET_SIZE
            syncs = data[pos:pos + m * PACKET_SIZE + 1:PACKET_SIZE]
            good = len(syncs) - len(syncs.lstrip(b"\x47"))
            if good >= 2:
                self._lost = False
                end = pos + (good - 1) * PACKET_SIZE
                yield data[pos:end]
                pos = end
                continue
            nxt = self._next_start(data, pos + 1 if data[pos] == SYNC_BYTE else pos)
            if nxt < 0 and n - pos <= 2 * PACKET_SIZE:
                break  # too little data to judge: wait for the next chunk
            if data[pos] == SYNC_BYTE and (nxt < 0 or nxt >= pos + PACKET_SIZE):
                # A whole packet followed by garbage: keep the packet; the garbage is
                # the sync loss, found at the next position.
                yield data[pos:pos + PACKET_SIZE]
                pos += PACKET_SIZE
                continue
            if nxt < 0:
                # No packet start can be confirmed: keep only what could still be one.
                self._defect(data, pos, n)
                keep_from = max(pos + 1, n - 2 * PACKET_SIZE)
                self._stats.skipped_bytes += keep_from - pos
                pos = keep_from
                break
            self._defect(data, pos, nxt)
            self._stats.skipped_bytes += nxt - pos
            pos = nxt
        self._rest = data[pos:]

    @staticmethod
    def _next_start(data: bytes, start: int) -> int:
        """First index >= ``start`` with a sync byte and another one 188 bytes later."""
        n = len(data)
        probe = data.find(b"\x47", start)
        while probe >= 0 and probe + PACKET_SIZE < n:
            if data[probe + PACKET_SIZE] == SYNC_BYTE:
                return probe
            probe = data.find(b"\x47", probe + 1)
        return -1

    def _defect(self, data: bytes, pos: int, nxt: int) -> None:
        stats = self._stats
        if data[pos] == SYNC_BYTE and nxt - pos < PACKET_SIZE:
            stats.truncated_packets += 1
            stats.note(stats.packets, None, "truncated_packet",
                       f"packet cut after {nxt - pos} bytes")
        elif not self._lost:
            stats.sync_losses += 1
            stats.note(stats.packets, None, "sync_loss", "no sync byte where one was due")
        self._lost = True

    def finish(self) -> Iterator[bytes]:
        """At EOF: release the held-back packet; a short tail counts as a truncated packet."""
        data, self._rest = self._rest, b""
        n = len(data)
        pos = 0
        while pos < n:
            left = n - pos
            if data[pos] == SYNC_BYTE and (left == PACKET_SIZE or (
                    left > PACKET_SIZE and data[pos + PACKET_SIZE] == SYNC_BYTE)):
                self._lost = False
                yield data[pos:pos + PACKET_SIZE]
                pos += PACKET_SIZE
                continue
            nxt = data.find(b"\x47", pos + 1)
            end = nxt if nxt >= 0 else n
            self._defect(data, pos, end)
            self._stats.skipped_bytes += end - pos
            pos = end


def payload_offset(packet: bytes) -> int:
    """Offset of the payload in a packet, or -1 if it has none (or a bad adaptation field).

    ISO/IEC 13818-1 §2.4.3.2: adaptation_field_control 01 = payload only, 10 = adaptation
    field only, 11 = both; 00 is reserved (the packet is discarded).
    """
    afc = (packet[3] >> 4) & 0x3
    if afc == 1:
        return 4
    if afc == 3:
        af_len = packet[4]
        if af_len > 182:  # leaves no payload byte: malformed for afc 11
            return -1
        return 5 + af_len
    return -1


class SectionFilter:
    """Reassembles the sections of one PID from its packets' payloads (§2.4.4.1-2).

    A packet with payload_unit_start_indicator set carries a pointer_field: the number of
    bytes that still belong to the section in progress, after which new sections start
    back to back, until 0xFF stuffing.  A continuity error or a section longer than
    :data:`MAX_SECTION_SIZE` drops the section in progress.
    """

    __slots__ = ("_buf", "_need", "pid", "stats")

    def __init__(self, pid: int, stats: StreamStats) -> None:
        self.pid = pid
        self.stats = stats
        self._buf = bytearray()
        self._need = 0  # total size of the section in progress (0: length not known yet)

    def discontinuity(self, packet_index: int) -> None:
        if self._buf:
            self.stats.sections_dropped += 1
            self.stats.note(packet_index, self.pid, "section_dropped",
                            "continuity error inside a section")
        self._buf.clear()
        self._need = 0

    def push(self, packet_index: int, pusi: bool, payload: bytes) -> list[bytes]:
        """Feed one packet's payload; return the sections it completes."""
        out: list[bytes] = []
        if pusi:
            if not payload:
                return out
            pointer = payload[0]
            if 1 + pointer > len(payload):
                self.stats.sections_dropped += 1
                self.stats.note(packet_index, self.pid, "bad_pointer_field",
                                f"pointer_field {pointer} beyond the payload")
                self._buf.clear()
                self._need = 0
                return out
            if self._buf:
                self._buf += payload[1:1 + pointer]
                self._complete(packet_index, out)
                if self._buf:  # the new section starts before the old one was complete
                    self.stats.sections_dropped += 1
                    self.stats.note(packet_index, self.pid, "section_dropped",
                                    "section cut short by the next one")
                    self._buf.clear()
                    self._need = 0
            self._buf += payload[1 + pointer:]
            self._need = 0
            self._complete(packet_index, out)
        elif self._buf:
            self._buf += payload
            self._complete(packet_index, out)
        return out

    def _complete(self, packet_index: int, out: list[bytes]) -> None:
        buf = self._buf
        while buf:
            if buf[0] == 0xFF:  # stuffing: nothing more in this packet
                buf.clear()
                self._need = 0
                return
            if len(buf) < 3:
                return
            need = 3 + (((buf[1] & 0x0F) << 8) | buf[2])
            if need > MAX_SECTION_SIZE:
                self.stats.sections_dropped += 1
                self.stats.note(packet_index, self.pid, "section_too_long",
                                f"section_length announces {need} bytes")
                buf.clear()
                self._need = 0
                return
            self._need = need
            if len(buf) < need:
                return
            out.append(bytes(buf[:need]))
            self.stats.sections += 1
            del buf[:need]
            self._need = 0
            # §2.4.4.2 wants a pointer_field wherever a section starts, but some muxes put
            # the next section right after the last one without it; read on (sections are
            # checked by CRC or MAC further up, so a misread costs nothing but a count).
