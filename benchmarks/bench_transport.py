"""Transport-format throughput: CRC-32/MPEG-2, section reassembly, CA_descriptor lookup.

Run: ``.venv/bin/python benchmarks/bench_transport.py`` (prints a Markdown table).
Not part of the test suite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cas.formats.crc import crc32_mpeg2, crc32_mpeg2_table
from cas.formats.psi import (
    CaDescriptor,
    Pmt,
    PmtStream,
    build_pmt,
    find_ca_descriptors,
    parse_pmt,
)
from cas.formats.sections import ShortSection, build_section
from cas.formats.ts import Packetizer, SectionReassembler, iter_packets, pid_of


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rows: list[tuple[str, str]] = []

    data = os.urandom(1 << 20)
    t_fast = _best(lambda: crc32_mpeg2(data))
    t_table = _best(lambda: crc32_mpeg2_table(data), repeat=2)
    rows.append(("crc32_mpeg2 (binascii + translate), 1 MiB", f"{1 / t_fast:,.0f} MiB/s"))
    rows.append(("crc32_mpeg2_table (pure Python), 1 MiB", f"{1 / t_table:,.1f} MiB/s"))

    # 20,000 EMM-sized short sections (~120 bytes), packed on one PID, plus other-PID noise.
    sections = [
        build_section(ShortSection(table_id=0x82 + (i % 14), payload=os.urandom(117)))
        for i in range(20_000)
    ]
    packets = Packetizer(0x0500).packetize_many(sections)
    stream = b"".join(packets)
    n_packets = len(packets)

    def reassemble() -> None:
        r = SectionReassembler(0x0500)
        for pkt in iter_packets(stream):
            if pid_of(pkt) == 0x0500:
                r.feed(pkt)

    t_re = _best(reassemble, repeat=3)
    rows.append(
        (
            f"iter_packets + SectionReassembler, {n_packets:,} packets",
            f"{n_packets / t_re:,.0f} packets/s ({len(sections) / t_re:,.0f} sections/s)",
        )
    )

    pmt = build_pmt(
        Pmt(
            program_number=1,
            pcr_pid=0x100,
            descriptors=(CaDescriptor(ca_system_id=0xDEAD, ca_pid=0x600),),
            streams=tuple(
                PmtStream(
                    stream_type=0x1B if i == 0 else 0x03,
                    elementary_pid=0x100 + i,
                    descriptors=(CaDescriptor(ca_system_id=0xDEAD, ca_pid=0x610 + i),),
                )
                for i in range(4)
            ),
        )
    )
    n = 10_000
    t_find = _best(lambda: [find_ca_descriptors(pmt, 0xDEAD) for _ in range(n)], repeat=3)
    t_parse = _best(lambda: [parse_pmt(pmt) for _ in range(n)], repeat=3)
    rows.append(("find_ca_descriptors(PMT, 5 CA descriptors)", f"{n / t_find:,.0f} /s"))
    rows.append(("parse_pmt (construct) same PMT", f"{n / t_parse:,.0f} /s"))

    print("| operation | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
