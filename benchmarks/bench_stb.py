"""The set-top box's whole path on a 20 Mbit/s service, and its channel-change time.

What is measured (``benchmarks/stb.md``):

* **watch**: ``Box.watch`` over a scrambled single-service stream — demux (sync, CC, PSI),
  EMM filter, ECM → card (in-process applet: AES-GCM open, access decision, CW wrap) →
  chipset (CW unwrap) → CSA2 descrambling (libdvbcsa batch API) → clear SPTS written to
  ``/dev/null`` — as a multiple of real time (the stream's duration / wall time);
* **scan**: ``Box.scan`` over the same stream (the lock report: PES starts checked, no full
  descrambling);
* the bare primitive in the same run: ``Csa2.descramble`` over the same packets in one call;
* **channel change**: first ECM of the channel seen → first clear packet written, over many
  short streams (each run boots a fresh box, so each one is a real first ECM).

The stream: PAT + PMT every 100 ms and one video PID carrying PES packets of random bytes at
20 Mbit/s (no ffmpeg: encoding 20 Mbit/s video would take longer than the benchmark), then
scrambled by the head-end scrambler with its defaults (10 s crypto-period, ECM every 100 ms)
and the card's pairing and subscription EMMs put after the first CAT.

Run: ``.venv/bin/python benchmarks/bench_stb.py`` (``--seconds``, ``--repeat``, ``--changes``).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cas.access import AccessCriteria  # noqa: E402
from cas.crypto.csa2 import Csa2  # noqa: E402
from cas.formats.psi import Pat, PatProgram, Pmt, PmtStream, build_pat, build_pmt  # noqa: E402
from cas.formats.ts import Packetizer  # noqa: E402
from cas.headend.ecmgen import EcmSettings, channel_ecms_for  # noqa: E402
from cas.headend.scrambler import (  # noqa: E402
    Algorithm,
    ScrambleConfig,
    Scrambler,
    payload_cipher,
)
from tests.integration.firmware_stub.headend import (  # noqa: E402
    START_S,
    HeadEnd,
    emm_packets,
    insert_after,
)

BITRATE = 20_000_000
SERVICE = 1001
VIDEO_PID = 0x0100
PMT_PID = 0x1000
EMM_PID = 0x0BFF
FRAME_RATE = 25


def clear_stream(seconds: float, seed: int = 1) -> bytes:
    """A single-service TS at ``BITRATE``: PSI every 100 ms, 25 video PES per second."""
    rnd = random.Random(seed)
    total_packets = int(seconds * BITRATE / (188 * 8))
    pat = build_pat(Pat(transport_stream_id=1, programs=(
        PatProgram(program_number=SERVICE, pid=PMT_PID),)))
    pmt = build_pmt(Pmt(program_number=SERVICE, pcr_pid=VIDEO_PID, streams=(
        PmtStream(stream_type=0x02, elementary_pid=VIDEO_PID),)))
    pat_pk, pmt_pk = Packetizer(0), Packetizer(PMT_PID)
    packets_per_frame = total_packets // int(seconds * FRAME_RATE)
    psi_every = int(BITRATE / (188 * 8) / 10)
    payload = rnd.randbytes(184 * 64)
    out = bytearray()
    cc = 0
    n = 0
    frame_left = 0
    while n < total_packets:
        if n % psi_every == 0:
            for pkt in pat_pk.packetize(pat) + pmt_pk.packetize(pmt):
                out += pkt
                n += 1
        pusi = frame_left == 0
        if pusi:
            frame_left = packets_per_frame
            body = b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00" + payload[:175]
        else:
            start = (n * 37) % (len(payload) - 184)
            body = payload[start:start + 184]
        out += bytes((0x47, (0x40 if pusi else 0) | (VIDEO_PID >> 8), VIDEO_PID & 0xFF,
                      0x10 | cc)) + body
        cc = (cc + 1) & 0x0F
        frame_left -= 1
        n += 1
    return bytes(out)


def scrambled_stream(he: HeadEnd, clear: bytes, emms: list[bytes]) -> bytes:
    settings = EcmSettings()
    services = channel_ecms_for(he.keys, {SERVICE: AccessCriteria(channel_id=SERVICE,
                                                                  package_ids=(1,))},
                                settings=settings, start_s=START_S, rng=he.rng)
    config = ScrambleConfig(algorithm=Algorithm.CSA2, emm_pid=EMM_PID,
                            nominal_bitrate_bps=BITRATE)
    out = io.BytesIO()
    Scrambler(config, services, payload_cipher(Algorithm.CSA2)).run(io.BytesIO(clear), out)
    return insert_after(out.getvalue(), emm_packets(EMM_PID, emms), pid=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="stream duration")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best kept)")
    parser.add_argument("--changes", type=int, default=50, help="channel changes measured")
    args = parser.parse_args()

    he = HeadEnd(seed=5)
    chip = he.chip(0x0BE4C001)
    card = he.card(1_500_000_001)
    emms = [he.pair_emm(card, chip), he.activate_emm(card, [1])]
    print(f"building a {args.seconds:g} s stream at {BITRATE / 1e6:g} Mbit/s ...", file=sys.stderr)
    clear = clear_stream(args.seconds)
    stream = scrambled_stream(he, clear, emms)
    n_packets = len(stream) // 188

    def watch_once() -> float:
        box = he.boot(chip, None, card)
        with open(os.devnull, "wb") as sink:
            start = time.perf_counter()
            result = box.watch(stream, SERVICE, sink)
            elapsed = time.perf_counter() - start
        assert result.status is not None and result.status.open, result.status
        return elapsed

    def scan_once() -> float:
        box = he.boot(chip, None, card)
        start = time.perf_counter()
        report = box.scan(stream)
        elapsed = time.perf_counter() - start
        assert report.channel(SERVICE).open
        return elapsed

    def bare_once() -> float:
        # the scrambled packets only, in one call; any CWs do (the work is the same)
        buf = bytearray(b"".join(stream[i:i + 188] for i in range(0, len(stream), 188)
                                 if stream[i + 3] >> 6))
        cipher = Csa2(b"\x01\x02\x03\x06\x04\x05\x06\x0f", b"\x07\x08\x09\x18\x0a\x0b\x0c\x21")
        start = time.perf_counter()
        cipher.descramble(buf)
        return time.perf_counter() - start

    watch_s = min(watch_once() for _ in range(args.repeat))
    scan_s = min(scan_once() for _ in range(args.repeat))
    bare_s = min(bare_once() for _ in range(args.repeat))

    short = scrambled_stream(he, clear_stream(1.0, seed=2), emms)
    changes = []
    for _ in range(args.changes):
        box = he.boot(chip, None, card)
        with open(os.devnull, "wb") as sink:
            result = box.watch(short, SERVICE, sink)
        assert result.first_ecm_to_clear_s is not None
        changes.append(result.first_ecm_to_clear_s * 1000)
    changes.sort()

    mbit = n_packets * 188 * 8 / 1e6
    print("| operation | time | rate | × real time | goal |")
    print("|---|---:|---:|---:|---|")
    print(f"| stb watch, {args.seconds:g} s of {BITRATE / 1e6:g} Mbit/s ({n_packets:,} packets) "
          f"| {watch_s:.3f} s | {mbit / watch_s:,.0f} Mbit/s | {args.seconds / watch_s:.1f}× "
          f"| ≥ 10× {'✔' if args.seconds / watch_s >= 10 else '✘'} |")
    print(f"| stb scan, same stream | {scan_s:.3f} s | {mbit / scan_s:,.0f} Mbit/s "
          f"| {args.seconds / scan_s:.1f}× | — |")
    print(f"| bare Csa2.descramble, same service packets | {bare_s:.3f} s "
          f"| {mbit / bare_s:,.0f} Mbit/s | {args.seconds / bare_s:.1f}× | — |")
    print(f"| watch / bare time | {watch_s / bare_s:.2f}× | | | |")
    print(f"| channel change, first ECM → first clear packet ({len(changes)} runs) "
          f"| median {statistics.median(changes):.2f} ms, p95 "
          f"{changes[int(0.95 * (len(changes) - 1))]:.2f} ms | | | — |")


if __name__ == "__main__":
    main()
