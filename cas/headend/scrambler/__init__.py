"""The scrambler: a clear MPEG-TS in, a scrambled test stream with ECMs and EMMs out.

What it does to the stream (ISO/IEC 13818-1 §2.4.4, EN 300 468, ETSI TS 100 289, TS 103 127):

* **Prescan.** Reads the start of the input until the PAT and every PMT it lists are complete,
  so it knows each service's elementary PIDs and PCR PID before touching a payload.
* **PSI.** Every PMT gets a program-level CA_descriptor (tag 0x09, our CA_system_ID,
  CA_PID = the service's ECM PID) and, for CISSA, a scrambling_descriptor (tag 0x65, mode 0x10)
  — the input's PMT packets are dropped and ours put in their place. A CAT (PID 1) with one
  CA_descriptor pointing at the EMM PID follows every PAT; an input CAT is replaced by ours,
  keeping its other descriptors.
* **SDT.** With ``channel_numbers`` (the catalog's numbers by service_id), the SDT actual
  (table_id 0x42, PID 0x0011) is rewritten so that each listed service carries a
  private_data_specifier_descriptor (EACEM) and a logical_channel_descriptor (tag 0x83) with
  its number, and each scrambled service free_CA_mode = 1; boxes then show the head-end's
  channel numbers, not service_ids. The table is gathered until its last section and sent
  whole, over as many sections as its services now need. Other sections on PID 0x0011 pass
  unchanged (re-packetised). Without ``channel_numbers`` the SDT is not touched.
* **Crypto-periods.** Stream time comes from the PCR of the first service (or, for a stream
  without PCR, from the packet position at a nominal bitrate). Crypto-period ``n`` covers
  ``[n·P, (n+1)·P)``; its packets carry parity ``n & 1`` in transport_scrambling_control
  (``10`` even, ``11`` odd) and are scrambled with CW(n) of their service.
* **ECMs.** At the start of every crypto-period and then every repetition period, one ECM
  section per service (table_id ``0x80 | (n & 1)``) on the service's ECM PID. ECM(n) carries
  CW(n) and CW(n+1), so a box always holds the next key before the switch.
* **EMMs.** Sections from an EMM file, packetised on the EMM PID and inserted as a carousel at
  a fixed bitrate.
* **Payloads.** Only TS payloads are scrambled; headers and adaptation fields stay clear. The
  hot path is batched: packet classification is one small Python loop, the cipher work is
  one call per batch (libdvbcsa's bitslice batch API for CSA2, column-wise AES-CBC for CISSA,
  see :mod:`cas.headend.scrambler.ciphers`).

Inserted packets (CAT, ECM, EMM, rewritten PMTs and SDTs) are added to the stream — they do not
replace null packets — so the output is slightly longer than the input; PCR values are left
as they are (a file-based test stream, not a constant-rate multiplex).

The package, one idea per module (``docs/architecture.md``): :mod:`.tsinput` (packet
constants, prescan, input chunks), :mod:`.config` (settings, per-service crypto, the report),
:mod:`.ciphers` (payload ciphers), :mod:`.psirewrite` (PMT, SDT, CAT), :mod:`.cwlog` (the
``--cw-log`` lines) and :mod:`.engine` (:class:`Scrambler` and its per-run state).  Every
public name is importable from ``cas.headend.scrambler`` itself.
"""

from __future__ import annotations

from cas.headend.scrambler.ciphers import Algorithm, PayloadCipher, payload_cipher
from cas.headend.scrambler.config import (
    CHUNK_PACKETS,
    DEFAULT_FIRST_CA_PID,
    SCRAMBLING_MODE_CISSA,
    ScrambleConfig,
    ScrambleReport,
    ServiceCrypto,
    ServiceInfo,
)
from cas.headend.scrambler.cwlog import CwLogEntry, read_cw_log, write_cw_log_line
from cas.headend.scrambler.engine import PCR_HZ, PCR_MODULUS, Scrambler
from cas.headend.scrambler.psirewrite import build_cat, rewrite_pmt, rewrite_sdt, rewrite_sdt_table
from cas.headend.scrambler.tsinput import (
    CAT_PID,
    NULL_PID,
    PACKET_SIZE,
    PAT_PID,
    PRESCAN_LIMIT_BYTES,
    SDT_PID,
    SYNC_BYTE,
    TID_CAT,
    TID_PAT,
    TID_PMT,
)

__all__ = [
    "CAT_PID",
    "CHUNK_PACKETS",
    "DEFAULT_FIRST_CA_PID",
    "NULL_PID",
    "PACKET_SIZE",
    "PAT_PID",
    "PCR_HZ",
    "PCR_MODULUS",
    "PRESCAN_LIMIT_BYTES",
    "SCRAMBLING_MODE_CISSA",
    "SDT_PID",
    "SYNC_BYTE",
    "TID_CAT",
    "TID_PAT",
    "TID_PMT",
    "Algorithm",
    "CwLogEntry",
    "PayloadCipher",
    "ScrambleConfig",
    "ScrambleReport",
    "Scrambler",
    "ServiceCrypto",
    "ServiceInfo",
    "build_cat",
    "payload_cipher",
    "read_cw_log",
    "rewrite_pmt",
    "rewrite_sdt",
    "rewrite_sdt_table",
    "write_cw_log_line",
]
