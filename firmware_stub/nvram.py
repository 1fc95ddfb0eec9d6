"""The box's NVRAM: a small JSON record next to its Chip ID record (DESIGN §1).

It holds what a real box keeps across power cycles: the last tuned channel, running
counters, the outcome of the last EMM and ECM, and the pairing state.  The pairing state
keeps the chip blob Enc(CSK, CWPK) exactly as the card handed it over — never the CWPK in
clear — so the chipset can re-load its pairing key at the next boot without the card.

Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the
directory), so a power cut at any moment leaves either the old or the new record.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from firmware_stub.errors import NvramError

FORMAT_NAME = "cas-sim-stb-nvram"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PairingState:
    """The pairing the box last learnt from its card (GET DATA 05 or a PAIR EMM)."""

    card_serial: int
    chip_id: int
    chip_blob: bytes  # Enc(CSK, CWPK): opaque without the chipset's CSK

    def to_json(self) -> dict[str, Any]:
        return {"card_serial": self.card_serial, "chip_id": f"{self.chip_id:08X}",
                "chip_blob": self.chip_blob.hex()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairingState:
        return cls(card_serial=int(data["card_serial"]), chip_id=int(str(data["chip_id"]), 16),
                   chip_blob=bytes.fromhex(str(data["chip_blob"])))


@dataclass(frozen=True, slots=True, kw_only=True)
class LastEmm:
    """Outcome of the last EMM handed to the card."""

    at_s: int
    address_type: str  # "unique" / "shared" / "global"
    sw: int  # status word the card answered (0x9000 on success)
    result: str  # short text, e.g. "applied", "replayed"

    def to_json(self) -> dict[str, Any]:
        return {"at_s": self.at_s, "address_type": self.address_type, "sw": f"{self.sw:04X}",
                "result": self.result}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LastEmm:
        return cls(at_s=int(data["at_s"]), address_type=str(data["address_type"]),
                   sw=int(str(data["sw"]), 16), result=str(data["result"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class LastEcm:
    """Outcome of the last ECM handed to the card."""

    at_s: int
    channel: int
    reason: str  # a cas.reasons.Reason value

    def to_json(self) -> dict[str, Any]:
        return {"at_s": self.at_s, "channel": self.channel, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LastEcm:
        return cls(at_s=int(data["at_s"]), channel=int(data["channel"]),
                   reason=str(data["reason"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Nvram:
    """One box's persistent state.  ``chip_id`` binds the file to its chip."""

    chip_id: int
    boot_count: int = 0
    last_channel: int | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    last_emm: LastEmm | None = None
    last_ecm: LastEcm | None = None
    pairing: PairingState | None = None

    def with_counters(self, delta: Mapping[str, int]) -> Nvram:
        """A copy with ``delta`` added to the running counters."""
        merged = dict(self.counters)
        for name, n in delta.items():
            if n:
                merged[name] = merged.get(name, 0) + n
        return replace(self, counters=dict(sorted(merged.items())))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "chip_id": f"{self.chip_id:08X}",
            "boot_count": self.boot_count,
            "last_channel": self.last_channel,
            "counters": dict(self.counters),
            "last_emm": self.last_emm.to_json() if self.last_emm else None,
            "last_ecm": self.last_ecm.to_json() if self.last_ecm else None,
            "pairing": self.pairing.to_json() if self.pairing else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Nvram:
        if data.get("format") != FORMAT_NAME:
            raise NvramError("not a cas-sim STB NVRAM file").with_id("box.not_cas_sim_stb")
        if data.get("version") != FORMAT_VERSION:
            raise NvramError(f"unsupported NVRAM version {data.get('version')!r}").with_id(
                "box.unsupported_nvram_version", value=f"{data.get('version')!r}")
        try:
            counters = {str(k): int(v) for k, v in dict(data.get("counters") or {}).items()}
            last_channel = data.get("last_channel")
            return cls(
                chip_id=int(str(data["chip_id"]), 16),
                boot_count=int(data.get("boot_count", 0)),
                last_channel=None if last_channel is None else int(last_channel),
                counters=counters,
                last_emm=LastEmm.from_json(data["last_emm"]) if data.get("last_emm") else None,
                last_ecm=LastEcm.from_json(data["last_ecm"]) if data.get("last_ecm") else None,
                pairing=(PairingState.from_json(data["pairing"])
                         if data.get("pairing") else None),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NvramError(f"NVRAM file is damaged: {exc}").with_id(
                "box.nvram_file_damaged", exc=exc) from exc


def load_nvram(path: Path, *, chip_id: int) -> Nvram:
    """Read the NVRAM file, or a fresh record when there is none yet.

    A file written by another chip is refused: NVRAM belongs to its chip, and carrying one
    box's pairing into another would hide exactly the fault the box must report.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Nvram(chip_id=chip_id)
    except OSError as exc:
        raise NvramError(f"cannot read NVRAM file {path}: {exc.strerror}").with_id(
            "box.cannot_read_nvram_file", path=path, strerror=exc.strerror) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NvramError(f"NVRAM file {path} is not JSON: {exc.msg}").with_id(
            "box.nvram_file_not_json", path=path, msg=exc.msg) from exc
    if not isinstance(data, dict):
        raise NvramError(f"NVRAM file {path} is not a JSON object").with_id(
            "box.nvram_file_not_json_2", path=path)
    nvram = Nvram.from_json(data)
    if nvram.chip_id != chip_id:
        raise NvramError(f"NVRAM file {path} belongs to chip {nvram.chip_id:08X}, "
                         f"not to this box's chip {chip_id:08X}").with_id(
            "box.nvram_file_belongs_chip", path=path, chip_id=f"{nvram.chip_id:08X}",
            chip_id2=f"{chip_id:08X}")
    return nvram


def save_nvram(path: Path, nvram: Nvram) -> None:
    """Write atomically: temp file, fsync, rename over the old file, fsync the directory."""
    directory = path.parent if str(path.parent) else Path(".")
    payload = json.dumps(nvram.to_json(), indent=2, sort_keys=True) + "\n"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise NvramError(f"cannot write NVRAM file {path}: {exc.strerror}").with_id(
            "box.cannot_write_nvram_file", path=path, strerror=exc.strerror) from exc
