"""Scrambling / descrambling throughput of cas.crypto.Csa2 and cas.crypto.Cissa on one core.

Each figure is compared with the bare primitive over the same bytes in the same run:

* CSA2: libdvbcsa's batch API called directly (``dvbcsa_bs_encrypt``/``decrypt``) with batch
  arrays built *before* the clock starts — i.e. only the C work we cannot avoid.
* CISSA: one AES-128-CBC ``update()`` over the same number of bytes (the AES work with no
  per-packet restart at all).

Run:  .venv/bin/python benchmarks/bench_scramble.py [--mb 50] [--repeat 3] [--cpu 0]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import random
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cas.crypto import Cissa, Csa2
from cas.crypto.csa2 import batch_size, load_library

PKT = 188


def make_stream(size_mb: float, seed: int = 1) -> bytearray:
    """Clear TS packets, PID 0x100, no adaptation field: 184-byte payloads."""
    n = int(size_mb * 1_000_000) // PKT
    rnd = random.Random(seed)
    buf = bytearray(rnd.randbytes(n * PKT))
    buf[0::PKT] = b"\x47" * n
    buf[1::PKT] = b"\x01" * n
    buf[2::PKT] = b"\x00" * n
    buf[3::PKT] = bytes(0x10 | (i & 0xF) for i in range(n))
    return buf


def best_of(repeat: int, setup: Callable[[], object], fn: Callable[[object], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        arg = setup()
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


class _Batch(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_uint)]


def bare_csa2(buf: bytearray, cw: bytes) -> tuple[Callable[[], None], Callable[[], None], object]:
    """Pre-built batch arrays over ``buf``'s payloads; returns (encrypt, decrypt, keepalive)."""
    lib = load_library()
    key = lib.dvbcsa_bs_key_alloc()
    lib.dvbcsa_bs_key_set(cw, key)
    holder = (ctypes.c_char * len(buf)).from_buffer(buf)
    base = ctypes.addressof(holder)
    bs = batch_size()
    n = len(buf) // PKT
    arrays = []
    for lo in range(0, n, bs):
        hi = min(n, lo + bs)
        arr = (_Batch * (hi - lo + 1))()
        for j, i in enumerate(range(lo, hi)):
            arr[j].data = base + i * PKT + 4
            arr[j].len = 184
        arrays.append(arr)
    enc, dec = lib.dvbcsa_bs_encrypt, lib.dvbcsa_bs_decrypt

    def encrypt() -> None:
        for arr in arrays:
            enc(key, ctypes.addressof(arr), 184)

    def decrypt() -> None:
        for arr in arrays:
            dec(key, ctypes.addressof(arr), 184)

    return encrypt, decrypt, (holder, arrays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0, help="stream size in MB (default 50)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    clear = make_stream(args.mb)
    nbytes = len(clear)
    mbit = nbytes * 8 / 1e6
    rows: list[tuple[str, float, float]] = []

    # --- CSA2 -------------------------------------------------------------------------------------
    cw_e, cw_o = bytes.fromhex("07e01b02c9e045ee"), bytes.fromhex("0706050403020100")
    csa = Csa2(cw_e, cw_o)
    ours_enc = best_of(args.repeat, lambda: bytearray(clear), lambda b: csa.scramble(b, 0))  # type: ignore[arg-type]
    scrambled = bytearray(clear)
    csa.scramble(scrambled, 0)
    ours_dec = best_of(args.repeat, lambda: bytearray(scrambled), lambda b: csa.descramble(b))  # type: ignore[arg-type]
    work = bytearray(clear)
    bare_enc, bare_dec, _keep = bare_csa2(work, cw_e)
    t_bare_enc = best_of(args.repeat, lambda: None, lambda _: bare_enc())
    t_bare_dec = best_of(args.repeat, lambda: None, lambda _: bare_dec())
    rows.append(("CSA2 scramble", ours_enc, t_bare_enc))
    rows.append(("CSA2 descramble", ours_dec, t_bare_dec))
    del _keep

    # --- CISSA ------------------------------------------------------------------------------------
    k_e, k_o = bytes(range(16)), bytes(range(16, 32))
    cissa = Cissa(k_e, k_o)
    ours_enc = best_of(args.repeat, lambda: bytearray(clear), lambda b: cissa.scramble(b, 0))  # type: ignore[arg-type]
    scrambled = bytearray(clear)
    cissa.scramble(scrambled, 0)
    ours_dec = best_of(args.repeat, lambda: bytearray(scrambled), lambda b: cissa.descramble(b))  # type: ignore[arg-type]
    whole = bytes(clear[: nbytes - nbytes % 16])
    iv = b"DVBTMCPTAESCISSA"

    def cbc_enc(_: object) -> None:
        Cipher(algorithms.AES(k_e), modes.CBC(iv)).encryptor().update(whole)

    def cbc_dec(_: object) -> None:
        Cipher(algorithms.AES(k_e), modes.CBC(iv)).decryptor().update(whole)

    rows.append(("CISSA scramble", ours_enc, best_of(args.repeat, lambda: None, cbc_enc)))
    rows.append(("CISSA descramble", ours_dec, best_of(args.repeat, lambda: None, cbc_dec)))

    print(f"# {nbytes / 1e6:.1f} MB of TS ({nbytes // PKT} packets, 184-byte payloads), "
          f"best of {args.repeat}, Python {platform.python_version()}, "
          f"libdvbcsa batch size {batch_size()}, CPUs allowed: {sorted(os.sched_getaffinity(0))}")
    print("| operation | ours Mbit/s | bare primitive Mbit/s | ours / bare time |")
    print("|---|---:|---:|---:|")
    for name, ours, bare in rows:
        print(f"| {name} | {mbit / ours:,.0f} | {mbit / bare:,.0f} | {ours / bare:.2f}x |")


if __name__ == "__main__":
    main()
