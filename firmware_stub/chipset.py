"""The STB chipset: the box's secure element for the key ladder's last two rungs (DESIGN §2).

* **CSK** (chipset secret key): burned into the chip.  The simulated chip gets it from its
  Chip ID record, where the chipset vendor stored it wrapped (RFC 3394) under the vendor
  key; the vendor key is the chip's root of trust, given to the stub as a file.
* **CWPK** (CW pairing key): learnt from the chip blob Enc(CSK, CWPK) that the card hands
  over after a PAIR EMM (or reports in its pairing data).  Only a chip holding the right
  CSK can open the blob, and only the right CWPK opens the card's wrapped control words.

Nothing here ever returns key bytes: callers get control words (which the descrambler
needs) and fingerprints.  A control-word unwrap that fails means the card is paired with
another chip (or not with this one any more): :class:`PairingError`, which the box
reports as ``PAIRING_MISMATCH``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from cas.crypto import Key, open_chip_blob, unwrap_cws, unwrap_key
from cas.errors import AuthenticationError, ConfigError
from cas.formats.chipid import (
    CHIP_ID_RECORD_SIZE,
    ChipIdRecord,
    iter_chip_id_records,
    parse_chip_id_record,
)
from cas.i18n import Msg, os_reason
from firmware_stub.errors import ChipsetError, PairingError

VENDOR_KEY_LEN = 16


class ChipRecordLike(Protocol):
    """What the chipset needs from a Chip ID record (``cas.formats.chipid``)."""

    @property
    def chip_id(self) -> int: ...

    @property
    def wrapped_csk(self) -> bytes: ...


def load_chip_record(path: Path, chip_id: int | None = None) -> ChipIdRecord:
    """A Chip ID record from ``path``: one record, or the vendor's batch file (then the
    record of ``chip_id``, or its only record)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the Chip ID record {path}: {exc.strerror}").with_id(
            "chip_record_unreadable", path=str(path), error=os_reason(exc)) from exc
    if len(data) == CHIP_ID_RECORD_SIZE:
        record = parse_chip_id_record(data)
        if chip_id is not None and record.chip_id != chip_id:
            raise ConfigError(f"{path} is the record of chip {record.chip_id:08X}, "
                              f"not {chip_id:08X}").with_id(
                "box.record_chip_not", path=path, chip_id=f"{record.chip_id:08X}",
                chip_id2=f"{chip_id:08X}")
        return record
    records = list(iter_chip_id_records(data))
    if chip_id is None:
        if len(records) != 1:
            raise ConfigError(f"{path} holds {len(records)} Chip ID records: "
                              "say which chip with --chip-id").with_id(
                "box.holds_chip_id_records", path=path, n=len(records))
        return records[0]
    for record in records:
        if record.chip_id == chip_id:
            return record
    raise ConfigError(f"chip {chip_id:08X} is not in {path}").with_id(
        "chip_not_in_record", chip=f"{chip_id:08X}", path=str(path))


def load_key_file(path: Path, *, what: str, label: str) -> Key:
    """A 16-byte key from a file: 32 hex digits (whitespace allowed) or 16 raw bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChipsetError(f"cannot read the {what} file {path}: {exc.strerror}").with_id(
            "file_unreadable", what=Msg("errors.file_kind." + what.replace(" ", "_")),
            path=str(path), error=os_reason(exc)) from exc
    raw: bytes | None = None
    if len(data) == VENDOR_KEY_LEN:
        raw = data
    else:
        try:
            text = "".join(data.decode("ascii").split())
            raw = bytes.fromhex(text)
        except (UnicodeDecodeError, ValueError):
            raw = None
    if raw is None or len(raw) != VENDOR_KEY_LEN:
        raise ChipsetError(f"{path} is not a {what} (32 hex digits or 16 bytes)").with_id(
            "box.not_hex_digits_bytes", path=path, what=what)
    return Key(raw, label=label)


def load_vendor_key(path: Path) -> Key:
    """Read the chipset vendor key: 32 hex digits (whitespace allowed) or 16 raw bytes."""
    return load_key_file(path, what="vendor key", label="chipset vendor key")


def save_vendor_key(path: Path, key: Key) -> None:
    """Write a vendor key file as hex, readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.raw().hex() + "\n")


class Chipset:
    """One STB chip: its id, its CSK, and (once paired) a CWPK."""

    __slots__ = ("_csk", "_cwpk", "_paired_blob", "chip_id")

    def __init__(self, *, chip_id: int, csk: Key) -> None:
        self.chip_id = chip_id
        self._csk = csk
        self._cwpk: Key | None = None
        self._paired_blob: bytes | None = None

    def __repr__(self) -> str:
        return (f"Chipset(chip_id={self.chip_id:08X}, csk={self._csk.fingerprint()}, "
                f"paired={self.paired})")

    @classmethod
    def from_record(cls, record: ChipRecordLike, vendor_key: Key) -> Chipset:
        """Unwrap the record's CSK with the vendor key (what the chip's boot ROM does)."""
        try:
            csk = unwrap_key(vendor_key, record.wrapped_csk, label=f"csk {record.chip_id:08X}")
        except AuthenticationError as exc:
            raise ChipsetError(
                f"Chip ID record {record.chip_id:08X} does not open with this vendor key"
            ).with_id("box.chip_id_record_does", chip_id=f"{record.chip_id:08X}") from exc
        return cls(chip_id=record.chip_id, csk=csk)

    @property
    def paired(self) -> bool:
        return self._cwpk is not None

    @property
    def chip_blob(self) -> bytes | None:
        """The blob the current CWPK came from (opaque without the CSK), for NVRAM."""
        return self._paired_blob

    def cwpk_fingerprint(self) -> str | None:
        return self._cwpk.fingerprint() if self._cwpk is not None else None

    def load_pairing(self, chip_blob: bytes) -> None:
        """Open Enc(CSK, CWPK) and keep the CWPK.  :class:`PairingError` if it is not ours."""
        try:
            cwpk = open_chip_blob(self._csk, bytes(chip_blob))
        except AuthenticationError as exc:
            raise PairingError("the chip blob was not made for this chip").with_id(
                "blob_other_chip") from exc
        self._cwpk = cwpk
        self._paired_blob = bytes(chip_blob)

    def clear_pairing(self) -> None:
        self._cwpk = None
        self._paired_blob = None

    def unwrap_cws(self, wrapped: bytes) -> tuple[bytes, bytes]:
        """The card's wrapped (even, odd) control words, opened with the CWPK."""
        if self._cwpk is None:
            raise PairingError("the chipset holds no pairing key").with_id("no_pairing_key")
        try:
            return unwrap_cws(self._cwpk, bytes(wrapped))
        except AuthenticationError as exc:
            raise PairingError("control words do not open with this chip's pairing key").with_id(
                "cw_not_for_chip") from exc
