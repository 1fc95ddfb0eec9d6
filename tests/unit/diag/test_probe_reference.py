"""The probe's column tricks against a plain per-packet loop written from ISO/IEC 13818-1.

Random streams (PIDs sharing high and low bytes, adaptation-field-only packets, duplicates,
lost packets, discontinuity_indicator, reserved and changing scrambling control, TEI bits),
fed in random pieces: counts, scrambling, continuity errors and parity changes must equal
the reference exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from cas.diag.probe import StreamProbe

PID_POOL = (0x0000, 0x0020, 0x0120, 0x1020, 0x0021, 0x0100, 0x1FFF, 0x1ABC, 0x00BC)


@dataclass
class Reference:
    packets: Counter[int] = field(default_factory=Counter)
    tsc: Counter[tuple[int, int]] = field(default_factory=Counter)
    cc_errors: Counter[int] = field(default_factory=Counter)
    duplicates: Counter[int] = field(default_factory=Counter)
    changes: Counter[int] = field(default_factory=Counter)
    no_payload: Counter[int] = field(default_factory=Counter)
    tei: int = 0


def reference(data: bytes) -> Reference:
    ref = Reference()
    last_cc: dict[int, int] = {}
    parity: dict[int, int] = {}
    for off in range(0, len(data), 188):
        pkt = data[off:off + 188]
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        ref.packets[pid] += 1
        ref.tei += pkt[1] >> 7
        tsc, afc, cc = pkt[3] >> 6, (pkt[3] >> 4) & 3, pkt[3] & 15
        ref.tsc[pid, tsc] += 1
        ref.no_payload[pid] += not afc & 1 or (afc == 3 and pkt[4] >= 168)
        if pid != 0x1FFF and afc & 1:
            disc = bool(afc & 2 and pkt[4] > 0 and pkt[5] & 0x80)
            if pid in last_cc and not disc:
                if cc == last_cc[pid]:
                    ref.duplicates[pid] += 1
                elif cc != (last_cc[pid] + 1) & 15:
                    ref.cc_errors[pid] += 1
            last_cc[pid] = cc
        if tsc in (2, 3):
            if pid in parity and parity[pid] != tsc:
                ref.changes[pid] += 1
            parity[pid] = tsc
    return ref


def random_stream(seed: int, n: int, pids: list[int]) -> bytes:
    rng = random.Random(seed)
    cc = {pid: rng.randrange(16) for pid in pids}
    tsc = {pid: rng.choice((0, 2, 3)) for pid in pids}
    out = bytearray()
    for _ in range(n):
        pid = rng.choice(pids)
        afc = rng.choice((1, 1, 1, 2, 3))
        roll = rng.random()
        if afc & 1:
            if roll < 0.05:
                pass  # duplicate
            elif roll < 0.10:
                cc[pid] = rng.randrange(16)  # lost / reordered
            else:
                cc[pid] = (cc[pid] + 1) & 15
        if rng.random() < 0.05:
            tsc[pid] = rng.choice((0, 1, 2, 3, 2, 3))
        b1 = (0x80 if rng.random() < 0.02 else 0) | (pid >> 8)
        header = bytes((0x47, b1, pid & 0xFF, (tsc[pid] << 6) | (afc << 4) | cc[pid]))
        if afc & 2:
            disc = 0x80 if rng.random() < 0.1 else 0
            af_len = 183 if afc == 2 else rng.choice((0, 1, 20, 167, 168, 182))
            af = bytes((af_len,)) + (bytes((disc,)) + b"\xff" * (af_len - 1) if af_len else b"")
        else:
            af = b""
        out += header + af + rng.randbytes(188 - 4 - len(af))
    return bytes(out)


@given(seed=st.integers(0, 2**32), n=st.integers(1, 700),
       pids=st.lists(st.sampled_from(PID_POOL), min_size=1, max_size=6, unique=True),
       pieces=st.lists(st.integers(1, 40_000), min_size=1, max_size=8))
def test_probe_equals_the_per_packet_reference(seed: int, n: int, pids: list[int],
                                               pieces: list[int]) -> None:
    data = random_stream(seed, n, pids)
    ref = reference(data)
    probe = StreamProbe()
    pos = i = 0
    while pos < len(data):
        size = pieces[i % len(pieces)]
        probe.feed(data[pos:pos + size])
        pos += size
        i += 1
    report = probe.finish()
    assert report.packets == n and report.transport_errors == ref.tei
    by_pid = {p.pid: p for p in report.pids}
    assert set(by_pid) == set(ref.packets)
    for pid, p in by_pid.items():
        assert p.packets == ref.packets[pid]
        assert (p.clear, p.scrambled_reserved, p.scrambled_even, p.scrambled_odd) == tuple(
            ref.tsc[pid, t] for t in range(4))
        assert p.cc_errors == ref.cc_errors[pid], pid
        assert p.duplicates == ref.duplicates[pid], pid
        assert p.no_payload == ref.no_payload[pid]
    changes = {s.pid: s.parity_changes for s in report.scrambling}
    for pid in ref.packets:
        if ref.tsc[pid, 2] or ref.tsc[pid, 3]:
            assert changes[pid] == ref.changes[pid]
        else:
            assert pid not in changes
