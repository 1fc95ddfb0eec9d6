"""The scrambler's settings, what it needs per service and what a run reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import cas
from cas.errors import UsageError
from cas.headend.scrambler.ciphers import Algorithm
from cas.headend.scrambler.tsinput import NULL_PID

#: EN 300 468 scrambling_mode for DVB-CISSA version 1.
SCRAMBLING_MODE_CISSA = 0x10
#: Where PID allocation for EMM/ECM starts when not given (clear of ffmpeg's 0x100.. ES PIDs
#: and 0x1000.. PMT PIDs).
DEFAULT_FIRST_CA_PID = 0x0C00
#: Packets processed per chunk (large chunks amortise the Python work per packet).
CHUNK_PACKETS = 8192


class ServiceCrypto(Protocol):
    """What the scrambler needs per service: the CW of a crypto-period and its ECM section."""

    @property
    def channel_id(self) -> int: ...

    def cw(self, cp: int) -> bytes: ...

    def ecm_section(self, cp: int) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrambleConfig:
    """Scrambler settings; defaults: 10 s crypto-period, 100 ms ECM repetition."""

    algorithm: Algorithm = Algorithm.CSA2
    crypto_period_ms: int = 10_000
    ecm_repetition_ms: int = 100
    ca_system_id: int = cas.DEFAULT_CA_SYSTEM_ID
    emm_pid: int | None = None
    #: ECM PIDs by service id; services not listed get the next free PID.
    ecm_pids: Mapping[int, int] = field(default_factory=dict)
    #: EMM carousel bitrate (bit/s) and whether it loops over the EMM file.
    emm_bitrate_bps: int = 32_000
    emm_repeat: bool = True
    #: Used to time ECMs when the stream carries no PCR.
    nominal_bitrate_bps: int = 2_000_000
    #: Crypto-period number of the first period (ECM body and CW log carry it).
    first_cp: int = 0
    chunk_packets: int = CHUNK_PACKETS
    #: Logical channel numbers by service id, carried in the SDT (empty: SDT left as it is).
    channel_numbers: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.crypto_period_ms <= 0 or self.ecm_repetition_ms <= 0:
            raise UsageError("crypto-period and ECM repetition must be positive").with_id(
                "headend.crypto_period_ecm_repetition")
        if self.ecm_repetition_ms > self.crypto_period_ms:
            raise UsageError("ECM repetition period longer than the crypto-period").with_id(
                "headend.ecm_repetition_period_longer")
        if not 0 < self.ca_system_id <= 0xFFFF:
            raise UsageError(f"CA_system_ID {self.ca_system_id:#x} outside 0x0001..0xFFFF").with_id(
                "headend.ca_system_id_outside", ca_system_id=f"{self.ca_system_id:#x}")
        if self.emm_pid is not None and not 0x20 <= self.emm_pid < NULL_PID:
            raise UsageError(f"EMM PID {self.emm_pid:#x} outside 0x0020..0x1FFE").with_id(
                "headend.emm_pid_outside_x0020", emm_pid=f"{self.emm_pid:#x}")
        for pid in self.ecm_pids.values():
            if not 0x20 <= pid < NULL_PID:
                raise UsageError(f"ECM PID {pid:#x} outside 0x0020..0x1FFE").with_id(
                    "headend.ecm_pid_outside_x0020", pid=f"{pid:#x}")
        if self.emm_bitrate_bps <= 0 or self.nominal_bitrate_bps <= 0:
            raise UsageError("bitrates must be positive").with_id("headend.bitrates_positive")
        if self.chunk_packets <= 0:
            raise UsageError("chunk size must be positive").with_id("headend.chunk_size_positive")
        for sid, number in self.channel_numbers.items():
            if not 0 <= sid <= 0xFFFF:
                raise UsageError(f"service_id {sid} outside 0..65535").with_id(
                    "headend.service_id_outside", sid=sid)
            # logical_channel_number is 10 bits; 0 means "no number" to EACEM receivers.
            if not 1 <= number <= 1023:
                raise UsageError(f"channel number {number} of service {sid} outside 1..1023 "
                                 "(the logical_channel_descriptor has 10 bits)").with_id(
                    "headend.channel_number_service_outside", number=number, sid=sid)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """A service as found in the input's PAT and PMT."""

    service_id: int
    pmt_pid: int
    pcr_pid: int
    es_pids: tuple[int, ...]
    ecm_pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrambleReport:
    """What a run did (for the CLI and the tests)."""

    algorithm: Algorithm
    packets_in: int
    packets_out: int
    scrambled_packets: int
    ecm_packets: int
    emm_packets: int
    crypto_periods: int
    timing: str  # "pcr" or "bitrate"
    emm_pid: int
    services: tuple[ServiceInfo, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm.value, "packets_in": self.packets_in,
            "packets_out": self.packets_out, "scrambled_packets": self.scrambled_packets,
            "ecm_packets": self.ecm_packets, "emm_packets": self.emm_packets,
            "crypto_periods": self.crypto_periods, "timing": self.timing,
            "emm_pid": self.emm_pid,
            "services": [{"service_id": s.service_id, "pmt_pid": s.pmt_pid,
                          "pcr_pid": s.pcr_pid, "es_pids": list(s.es_pids),
                          "ecm_pid": s.ecm_pid} for s in self.services],
        }
