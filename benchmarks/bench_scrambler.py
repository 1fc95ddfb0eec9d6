"""The whole scrambler path over a TS file, as a ratio to the bare primitive in the same run.

``benchmarks/bench_scramble.py`` measures ``cas.crypto.Csa2``/``Cissa`` on a synthetic buffer;
this one measures what ``cas stream scramble`` does to a real multi-service TS made by ffmpeg:
prescan, PSI rewrite, ECM/EMM insertion, crypto-period switching, the CW log, and the payload
cipher — file in, file out (in memory, so disk speed does not count).

* **scramble**: :class:`cas.headend.scrambler.Scrambler` (CSA2 / CISSA).
* **descramble**: the scrambled output back to clear with ``cas.crypto`` descramblers, keyed
  per channel and crypto-period from the CW log (what a test bench does with ``--cw-log``).
* **bare**: libdvbcsa's batch API (``dvbcsa_bs_encrypt``) over the payloads of the same
  packets, batch arrays built before the clock starts; for CISSA one AES-128-CBC ``update()``
  over the same number of payload bytes.

Throughput is Mbit/s of the *input* TS.  Run:
    .venv/bin/python benchmarks/bench_scrambler.py [--services 4] [--seconds 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cas.crypto import Cissa, Csa2
from cas.crypto.csa2 import batch_size, load_library
from cas.headend.scrambler import (
    Algorithm,
    CwLogEntry,
    ScrambleConfig,
    Scrambler,
    ScrambleReport,
    payload_cipher,
)
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream

PKT = 188


class _Svc:
    def __init__(self, channel_id: int, cw_length: int) -> None:
        self.channel_id = channel_id
        self._len = cw_length

    def cw(self, cp: int) -> bytes:
        raw = bytearray(os.urandom(self._len))
        if self._len == 8:
            raw[3] = (raw[0] + raw[1] + raw[2]) & 0xFF
            raw[7] = (raw[4] + raw[5] + raw[6]) & 0xFF
        return bytes(raw)

    def ecm_section(self, cp: int) -> bytes:
        return bytes((0x80 | (cp & 1), 0x70, 100)) + bytes(100)


def scramble(clear: bytes, algo: Algorithm, services: list[int]
             ) -> tuple[float, bytes, ScrambleReport, list[CwLogEntry]]:
    log: list[CwLogEntry] = []
    scr = Scrambler(ScrambleConfig(algorithm=algo, crypto_period_ms=2000),
                    {s: _Svc(s, algo.cw_length) for s in services}, payload_cipher(algo),
                    emm_sections=[bytes((0x82, 0x70, 80)) + bytes(80)], cw_log=log.append)
    out = io.BytesIO()
    t = time.perf_counter()
    report = scr.run(io.BytesIO(clear), out)
    return time.perf_counter() - t, out.getvalue(), report, log


def descramble(data: bytes, algo: Algorithm, report: ScrambleReport,
               log: list[CwLogEntry]) -> float:
    buf = bytearray(data)
    view = memoryview(buf)
    pids = {s.service_id: s.es_pids for s in report.services}
    engine = Csa2() if algo is Algorithm.CSA2 else Cissa()
    t = time.perf_counter()
    for e in log:
        parity = 1 if e.parity == "odd" else 0
        engine.set_cw(parity, e.cw)
        engine.descramble(view[e.first_packet * PKT : (e.last_packet + 1) * PKT],
                          pids=pids[e.service_id])
    return time.perf_counter() - t


def bare(clear: bytes, algo: Algorithm, es_pids: set[int]) -> float:
    buf = bytearray(clear)
    offs: list[int] = []
    lens: list[int] = []
    for off in range(0, len(buf), PKT):
        pid = ((buf[off + 1] & 0x1F) << 8) | buf[off + 2]
        if pid not in es_pids or not buf[off + 3] & 0x10:
            continue
        start = off + 4 + (1 + buf[off + 4] if buf[off + 3] & 0x20 else 0)
        if start < off + PKT:
            offs.append(start)
            lens.append(off + PKT - start)
    if algo is Algorithm.CISSA:
        total = sum(n - n % 16 for n in lens)
        data = bytes(total)
        t = time.perf_counter()
        enc = Cipher(algorithms.AES(bytes(16)), modes.CBC(b"DVBTMCPTAESCISSA")).encryptor()
        enc.update(data)
        return time.perf_counter() - t
    lib = load_library()
    key = lib.dvbcsa_bs_key_alloc()
    lib.dvbcsa_bs_key_set(bytes(8), key)
    holder = (ctypes.c_char * len(buf)).from_buffer(buf)
    base = ctypes.addressof(holder)
    bs = batch_size()

    class Entry(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_uint)]

    batches = []
    for i in range(0, len(offs), bs):
        arr = (Entry * (bs + 1))()
        for j, (o, n) in enumerate(zip(offs[i : i + bs], lens[i : i + bs], strict=True)):
            arr[j].data = base + o
            arr[j].len = n
        batches.append(arr)
    t = time.perf_counter()
    for arr in batches:
        lib.dvbcsa_bs_encrypt(key, ctypes.addressof(arr), 184)
    dt = time.perf_counter() - t
    del holder
    lib.dvbcsa_bs_key_free(key)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--video-kbps", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    services = [101 + i for i in range(args.services)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clear.ts"
        make_test_stream([TestService(service_id=s, name=f"S{s}") for s in services], path,
                         TestStreamOptions(duration_s=args.seconds, video_size="720x576",
                                           video_bitrate_kbps=args.video_kbps))
        clear = path.read_bytes()
    mbit = len(clear) * 8 / 1e6
    print(f"input: {len(clear) / 1e6:.1f} MB, {args.services} services, {args.seconds:g} s, "
          f"load {os.getloadavg()[0]:.2f}")
    for algo in (Algorithm.CSA2, Algorithm.CISSA):
        runs = [scramble(clear, algo, services) for _ in range(args.repeat)]
        t_scr = min(r[0] for r in runs)
        _, data, report, log = runs[0]
        es = {p for s in report.services for p in s.es_pids}
        t_des = min(descramble(data, algo, report, log) for _ in range(args.repeat))
        t_bare = min(bare(clear, algo, es) for _ in range(args.repeat))
        print(f"{algo.value:5s} scramble   {mbit / t_scr:8.0f} Mbit/s   descramble "
              f"{mbit / t_des:8.0f} Mbit/s   bare {mbit / t_bare:8.0f} Mbit/s   "
              f"scramble/bare time {t_scr / t_bare:5.2f}x   descramble/bare "
              f"{t_des / t_bare:5.2f}x")


if __name__ == "__main__":
    main()
