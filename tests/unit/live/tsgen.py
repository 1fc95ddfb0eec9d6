"""A small synthetic SPTS for the playout tests, built byte by byte here (not with cas code),
plus an independent reader of what the playout produced.

The stream: PAT + PMT (program ``program_number``, PMT PID 0x1000), a "video" PID 0x100 that
carries the PCR every ``pcr_every`` packets and a PES header with PTS+DTS every
``pes_every`` packets, and an "audio" PID 0x101 with a PES header (PTS only) every 10th of
its packets.  Payload bytes are a counter pattern, so every packet is recognisable.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PACKET = 188
VIDEO_PID = 0x100
AUDIO_PID = 0x101
PMT_PID = 0x1000


def crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def section(table_id: int, ext: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4
    head = bytes((table_id, 0xB0 | (length >> 8), length & 0xFF)) + struct.pack(
        ">HBBB", ext, 0xC1, 0, 0)
    data = head + body
    return data + crc32_mpeg(data).to_bytes(4, "big")


def psi_packet(pid: int, sec: bytes, cc: int) -> bytes:
    payload = b"\x00" + sec
    return (bytes((0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | cc)) + payload
            + b"\xff" * (184 - len(payload)))


def pts_field(prefix: int, value: int) -> bytes:
    return bytes((
        (prefix << 4) | (((value >> 30) & 7) << 1) | 1,
        (value >> 22) & 0xFF, (((value >> 15) & 0x7F) << 1) | 1,
        (value >> 7) & 0xFF, ((value & 0x7F) << 1) | 1))


def pcr_af(pcr: int) -> bytes:
    base, ext = divmod(pcr, 300)
    field_ = bytes(((base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF,
                    (base >> 1) & 0xFF, ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF))
    return bytes((7, 0x10)) + field_


@dataclass
class Spts:
    data: bytes
    packets_per_second: float
    pcr0: int
    es_packets: dict[int, list[bytes]] = field(default_factory=dict)


def make_spts(*, seconds: float = 1.0, bitrate_bps: int = 1_000_000, program_number: int = 7,
              pcr_every: int = 20, pes_every: int = 25, pcr0: int = 27_000_000 * 5,
              cc0: int = 3) -> Spts:
    """An SPTS of ``seconds`` at ``bitrate_bps``, PCR starting at ``pcr0``."""
    pps = bitrate_bps / (PACKET * 8)
    n = int(seconds * pps)
    ticks_per_packet = 27_000_000 / pps
    pat = section(0x00, 1, struct.pack(">HH", program_number, 0xE000 | PMT_PID))
    streams = (bytes((0x02, 0xE0 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0xF0, 0))
               + bytes((0x03, 0xE0 | (AUDIO_PID >> 8), AUDIO_PID & 0xFF, 0xF0, 0)))
    pmt = section(0x02, program_number,
                  struct.pack(">HH", 0xE000 | VIDEO_PID, 0xF000) + streams)
    out = bytearray()
    cc = {0: 0, PMT_PID: 0, VIDEO_PID: cc0, AUDIO_PID: (cc0 + 5) & 15}
    es: dict[int, list[bytes]] = {VIDEO_PID: [], AUDIO_PID: []}
    counters = {VIDEO_PID: 0, AUDIO_PID: 0}
    for i in range(n):
        pcr = pcr0 + round(i * ticks_per_packet)
        if i % 50 == 0:
            out += psi_packet(0, pat, cc[0])
            cc[0] = (cc[0] + 1) & 15
            continue
        if i % 50 == 1:
            out += psi_packet(PMT_PID, pmt, cc[PMT_PID])
            cc[PMT_PID] = (cc[PMT_PID] + 1) & 15
            continue
        pid = AUDIO_PID if i % 4 == 3 else VIDEO_PID
        k = counters[pid]
        counters[pid] += 1
        af = pcr_af(pcr) if pid == VIDEO_PID and k % pcr_every == 0 else b""
        pusi = (k % pes_every == 0) if pid == VIDEO_PID else (k % 10 == 0)
        body = bytearray()
        if pusi:
            pts = (pcr // 300 + 9000) % (1 << 33)
            if pid == VIDEO_PID:
                body += b"\x00\x00\x01\xe0\x00\x00\x80\xc0\x0a" + pts_field(3, pts) + pts_field(
                    1, pts - 3600)
            else:
                body += b"\x00\x00\x01\xc0\x00\x00\x80\x80\x05" + pts_field(2, pts)
        room = 184 - len(af)  # af = adaptation_field_length byte + 7 bytes
        body += bytes(((i * 7 + j) & 0xFF) for j in range(room - len(body)))
        afc = 0x30 if af else 0x10
        pkt = bytes((0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF, afc | cc[pid]))
        pkt += af + bytes(body)
        assert len(pkt) == PACKET, len(pkt)
        cc[pid] = (cc[pid] + 1) & 15
        es[pid].append(pkt)
        out += pkt
    return Spts(data=bytes(out), packets_per_second=pps, pcr0=pcr0, es_packets=es)


# --- an independent reader -------------------------------------------------------------------

def pid_of(pkt: bytes) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def pcr_of(pkt: bytes) -> int | None:
    if not pkt[3] & 0x20 or pkt[4] < 7 or not pkt[5] & 0x10:
        return None
    base = int.from_bytes(pkt[6:10], "big") << 1 | pkt[10] >> 7
    return base * 300 + ((pkt[10] & 1) << 8 | pkt[11])


def payload_start(pkt: bytes) -> int:
    return 4 + (1 + pkt[4] if pkt[3] & 0x20 else 0)


def packets(data: bytes) -> list[bytes]:
    assert len(data) % PACKET == 0
    return [data[i : i + PACKET] for i in range(0, len(data), PACKET)]


def cc_errors(pkts: list[bytes]) -> int:
    """Continuity errors (ISO/IEC 13818-1 §2.4.3.3: +1 per packet with payload)."""
    last: dict[int, int] = {}
    errors = 0
    for p in pkts:
        pid = pid_of(p)
        if pid == 0x1FFF or not p[3] & 0x10:
            continue
        cc = p[3] & 0x0F
        if pid in last and cc != (last[pid] + 1) & 0x0F:
            errors += 1
        last[pid] = cc
    return errors


def crc_ok(sec: bytes) -> bool:
    return crc32_mpeg(sec[:-4]) == int.from_bytes(sec[-4:], "big")
