"""Independent TS tools for the head-end tests.

Nothing here uses ``cas.crypto``'s scramblers: CSA2 payloads are decrypted with libdvbcsa's own
single-packet ``dvbcsa_decrypt`` (called through ctypes right here), CISSA payloads with plain
AES-128-CBC from ``cryptography`` and the fixed IV of ETSI TS 103 127 §6.3.  That makes the
descrambling round trip a check of the scrambler against a second implementation.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cas.formats.sections import ShortSection, build_section, parse_section

PACKET = 188
CISSA_IV = b"DVBTMCPTAESCISSA"

_lib = ctypes.CDLL("libdvbcsa.so.1")
_lib.dvbcsa_key_alloc.restype = ctypes.c_void_p
_lib.dvbcsa_key_free.argtypes = [ctypes.c_void_p]
_lib.dvbcsa_key_set.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_lib.dvbcsa_decrypt.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]


def csa2_decrypt_payload(cw: bytes, payload: bytes) -> bytes:
    """libdvbcsa's one-payload decrypt (not its batch API)."""
    key = _lib.dvbcsa_key_alloc()
    try:
        _lib.dvbcsa_key_set(cw, key)
        buf = ctypes.create_string_buffer(payload, len(payload))
        _lib.dvbcsa_decrypt(key, ctypes.addressof(buf), len(payload))
        return buf.raw
    finally:
        _lib.dvbcsa_key_free(key)


def cissa_decrypt_payload(cw: bytes, payload: bytes) -> bytes:
    """AES-128-CBC with the DVB IV over the whole blocks; the residue is clear."""
    whole = len(payload) - len(payload) % 16
    if whole == 0:
        return payload
    dec = Cipher(algorithms.AES(cw), modes.CBC(CISSA_IV)).decryptor()
    return dec.update(payload[:whole]) + dec.finalize() + payload[whole:]


def pid(pkt: bytes) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def payload_start(pkt: bytes) -> int:
    afc = (pkt[3] >> 4) & 3
    return 4 + (1 + pkt[4] if afc == 3 else 0)


def packets(data: bytes) -> list[bytes]:
    assert len(data) % PACKET == 0
    return [data[i : i + PACKET] for i in range(0, len(data), PACKET)]


def descramble(data: bytes, cw_log: Iterable[Mapping[str, Any]], es_pids: Mapping[int, int],
               algorithm: str) -> tuple[bytes, int]:
    """Descramble ``data`` using only the CW log; returns (clear bytes, packets descrambled).

    ``es_pids`` maps each elementary PID to its service id.  Each scrambled packet's CW is the
    log entry of its service whose [first_packet, last_packet] range holds the packet index;
    its parity must match the packet's transport_scrambling_control.
    """
    by_service: dict[int, list[Mapping[str, Any]]] = {}
    for e in cw_log:
        by_service.setdefault(int(e["service_id"]), []).append(e)
    out = bytearray()
    done = 0
    for index, pkt in enumerate(packets(data)):
        tsc = pkt[3] >> 6
        if tsc in (2, 3):
            svc = es_pids[pid(pkt)]
            entry = next(e for e in by_service[svc]
                         if int(e["first_packet"]) <= index <= int(e["last_packet"]))
            assert entry["parity"] == ("odd" if tsc == 3 else "even"), index
            cw = bytes.fromhex(str(entry["cw"]))
            start = payload_start(pkt)
            body = pkt[start:]
            clear = (csa2_decrypt_payload(cw, body) if algorithm == "csa2"
                     else cissa_decrypt_payload(cw, body))
            pkt = pkt[:3] + bytes((pkt[3] & 0x3F,)) + pkt[4:start] + clear
            done += 1
        out += pkt
    return bytes(out), done


def without_pids(data: bytes, drop: Iterable[int]) -> list[bytes]:
    dropped = set(drop)
    return [p for p in packets(data) if pid(p) not in dropped]


def sections_on(data: bytes, want_pid: int) -> Iterator[tuple[int, bytes]]:
    """(packet index where it starts, section) for every section on ``want_pid``.

    A plain reassembler (ISO/IEC 13818-1 §2.4.4.2): payloads are concatenated from a
    payload_unit_start packet on; sections are cut from the front; 0xFF stuffing ends the run
    until the next pointer_field.
    """
    buf = bytearray()
    owners: list[int] = []  # packet index of every byte of buf
    for index, pkt in enumerate(packets(data)):
        if pid(pkt) != want_pid:
            continue
        body = pkt[payload_start(pkt) :]
        if pkt[1] & 0x40:
            ptr = body[0]
            if owners:
                buf += body[1 : 1 + ptr]
                owners += [index] * ptr
                yield from _cut(buf, owners)
            buf = bytearray(body[1 + ptr :])
            owners = [index] * len(buf)
        elif owners:
            buf += body
            owners += [index] * len(body)
        yield from _cut(buf, owners)


def _cut(buf: bytearray, owners: list[int]) -> Iterator[tuple[int, bytes]]:
    while len(buf) >= 3 and buf[0] != 0xFF:
        total = 3 + (((buf[1] & 0x0F) << 8) | buf[2])
        if total > len(buf):
            return
        yield owners[0], bytes(buf[:total])
        del buf[:total]
        del owners[:total]


@dataclass
class FakeServiceCrypto:
    """A ServiceCrypto with random CWs and a clear stand-in ECM (table_id by parity, CP and
    the two CWs in clear) — enough to test the scrambler alone."""

    channel_id: int
    cw_length: int = 8
    cws: dict[int, bytes] = field(default_factory=dict)

    def cw(self, cp: int) -> bytes:
        if cp not in self.cws:
            raw = bytearray(os.urandom(self.cw_length))
            if self.cw_length == 8:
                raw[3] = (raw[0] + raw[1] + raw[2]) & 0xFF
                raw[7] = (raw[4] + raw[5] + raw[6]) & 0xFF
            self.cws[cp] = bytes(raw)
        return self.cws[cp]

    def ecm_section(self, cp: int) -> bytes:
        even, odd = (self.cw(cp), self.cw(cp + 1)) if cp % 2 == 0 else (self.cw(cp + 1),
                                                                        self.cw(cp))
        body = self.channel_id.to_bytes(2, "big") + cp.to_bytes(4, "big") + even + odd
        return build_section(ShortSection(table_id=0x80 | (cp & 1), payload=body))


def fake_ecm_fields(section: bytes, cw_length: int) -> tuple[int, int, int, bytes, bytes]:
    """(table_id, channel_id, cp, cw_even, cw_odd) of a :class:`FakeServiceCrypto` ECM."""
    sec = parse_section(section)
    assert isinstance(sec, ShortSection)
    p = sec.payload
    return (sec.table_id, int.from_bytes(p[0:2], "big"), int.from_bytes(p[2:6], "big"),
            p[6 : 6 + cw_length], p[6 + cw_length : 6 + 2 * cw_length])
