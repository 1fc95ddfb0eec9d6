"""EMM generation rate for a card base, as a ratio to a bare AES-GCM loop in the same run.

What is timed:

* **ours**: :func:`cas.headend.emmgen.generate_parallel` over N card states (1-3 packages
  each, distinct windows so no two cards share commands; shared EMMs off): bulk CUK
  derivation, command TLVs, headers, AES-GCM sealing, in 1 and in 2 forked worker processes.
  The result sections are collected in the parent (as a full refresh writes them).
* **bare**: ``AESGCM(cuk).encrypt(nonce, plaintext, aad)`` in one loop over exactly the same
  plaintexts, CUKs and header bytes, all prepared *before* the clock starts — the AES work a
  generator cannot avoid, with nothing else.

Run:  .venv/bin/python benchmarks/bench_emmgen.py [--cards 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cas.access import CardRights, CardStatus, Entitlement
from cas.crypto import OperatorKeys, derive_cuks
from cas.headend.emmgen import CardTarget, EmmSettings, generate_parallel, rights_plaintexts

T0 = 1_772_000_000


def make_cards(n: int) -> list[CardTarget]:
    cards = []
    for i in range(n):
        ents = tuple(Entitlement(package_id=1 + (i + k) % 12, start_s=T0 - 86400 * (i % 30),
                                 end_s=T0 + 86400 * 30 + i) for k in range(1 + i % 3))
        cards.append(CardTarget(serial=1_000_000_001 + i, shared_address=i >> 8,
                                member_position=i & 0xFF,
                                rights=CardRights(status=CardStatus.ACTIVE, region=398,
                                                  entitlements=ents)))
    return cards


def bare_loop(cards: list[CardTarget], keys: OperatorKeys) -> float:
    cuks = derive_cuks(keys, [c.serial for c in cards])
    plains = [rights_plaintexts(c.rights)[0] for c in cards]
    nonces = os.urandom(12 * len(cards))
    aads = [bytes(27)] * len(cards)
    t = time.perf_counter()
    for i in range(len(cards)):
        AESGCM(cuks[i]).encrypt(nonces[12 * i : 12 * i + 12], plains[i], aads[i])
    return time.perf_counter() - t


def ours(cards: list[CardTarget], keys: OperatorKeys, workers: int) -> tuple[float, int, int]:
    t = time.perf_counter()
    count = size = 0
    for _, res in generate_parallel(keys, cards, at_s=T0, workers=workers, chunk=20_000,
                                    settings=EmmSettings(shared_min_members=0)):
        count += res.unique_count
        size += sum(len(s) for s in res.sections)
    return time.perf_counter() - t, count, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cards", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    keys = OperatorKeys.generate()
    t = time.perf_counter()
    cards = make_cards(args.cards)
    print(f"{args.cards} card states built in {time.perf_counter() - t:.1f} s "
          f"(Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f})")
    best_bare = min(bare_loop(cards, keys) for _ in range(args.repeat))
    bare_rate = args.cards / best_bare
    print(f"bare AES-GCM loop         : {bare_rate:>10,.0f} EMM/s  ({best_bare:.2f} s)")
    for workers in (1, 2):
        runs = [ours(cards, keys, workers) for _ in range(args.repeat)]
        best = min(r[0] for r in runs)
        count, size = runs[0][1], runs[0][2]
        rate = count / best
        print(f"ours, {workers} worker(s)        : {rate:>10,.0f} EMM/s  ({best:.2f} s, "
              f"{size / count:.0f} B/EMM)  ours/bare time {best / best_bare:.2f}x  "
              f"goal >= 170,000/s {'OK' if rate >= 170_000 else 'MISSED'}")


if __name__ == "__main__":
    main()
