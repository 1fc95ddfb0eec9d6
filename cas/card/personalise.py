"""Card personalisation: what the card factory writes into a blank card (DESIGN §2, §3).

A personalised card is one :class:`~cas.formats.records.CardRecord`:

* the CUK (derived from the OMK and the serial) wrapped under the card-factory transport key,
  which is also the key the card OS has in ROM to unwrap it (see ``docs/card.md``);
* the group key of its shared address, the global EMM key and the initial ECM key(s),
  each wrapped under the CUK;
* the parental PIN as a keyed hash (:func:`cas.crypto.pin_hash`);
* status INACTIVE, no entitlements, zero counters: the head-end activates it by EMM.

The factory's output is a personalisation batch (``docs/formats.md`` §4); ``cas card
personalise`` also writes one EEPROM image per card.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cas import DEFAULT_CA_SYSTEM_ID, DEFAULT_OPERATOR_ID
from cas.access import NO_MATURITY_LIMIT, CardStatus
from cas.card.eeprom import write_image_atomic
from cas.crypto import Key, OperatorKeys, pin_hash, unwrap_key, wrap_key
from cas.errors import AuthenticationError, CardError, UsageError
from cas.formats.records import (
    CardBatch,
    CardRecord,
    EcmKeySlot,
    build_card_batch,
    build_card_record,
)
from cas.text import is_ascii_digits
from cas.wiretime import WIRE_TIME_MAX_S, wire_time_s

DEFAULT_PIN = "0000"
DEFAULT_CARD_OS_VERSION = 0x0100
#: How long a card is valid after personalisation (printed on it; informative).
CARD_VALIDITY_S = 10 * 365 * 86400
#: First serial when nothing says otherwise (10 decimal digits, as printed on the card).
DEFAULT_FIRST_SERIAL = 1_000_000_001
GROUP_SIZE = 256
IMAGE_SUFFIX = ".img"
DEFAULT_ISSUER = "cas-sim card factory"


@dataclass(frozen=True, slots=True, kw_only=True)
class CardSlot:
    """A card's unique address and its place for shared EMMs."""

    serial: int
    shared_address: int
    member_position: int


def default_slot(serial: int) -> CardSlot:
    """Slot when no head-end allocates one: groups of 256 consecutive serials."""
    return CardSlot(serial=serial, shared_address=(serial >> 8) & 0xFFFFFF,
                    member_position=serial & 0xFF)


def personalise_card(keys: OperatorKeys, slot: CardSlot, *, now_s: int,
                     pin: str = DEFAULT_PIN, ecm_key_indexes: Sequence[int] = (0,),
                     ecm_key_epoch: int = 0,
                     region: int = 0, maturity_limit: int = NO_MATURITY_LIMIT,
                     status: CardStatus = CardStatus.INACTIVE,
                     ca_system_id: int = DEFAULT_CA_SYSTEM_ID,
                     operator_id: int = DEFAULT_OPERATOR_ID,
                     card_os_version: int = DEFAULT_CARD_OS_VERSION) -> CardRecord:
    """The factory record of one card (see module docstring)."""
    if not (len(pin) == 4 and is_ascii_digits(pin)):
        raise UsageError("the PIN must be 4 digits").with_id("card.pin_digits_2")
    if not 0 <= slot.member_position < GROUP_SIZE:
        raise UsageError(f"member position {slot.member_position} out of range 0..255").with_id(
            "card.member_position_out_range", member_position=slot.member_position)
    cuk = keys.cuk(slot.serial)
    return CardRecord(
        serial=slot.serial,
        shared_address=slot.shared_address,
        member_position=slot.member_position,
        ca_system_id=ca_system_id,
        operator_id=operator_id,
        card_os_version=card_os_version,
        personalised_s=wire_time_s(now_s, "personalisation time"),
        # A card made in the last ten years of wire time is valid to its end (u32 expiry_s).
        expiry_s=min(now_s + CARD_VALIDITY_S, WIRE_TIME_MAX_S),
        wrapped_cuk=wrap_key(keys.transport_key(), cuk),
        wrapped_group_key=wrap_key(cuk, keys.group_key(slot.shared_address)),
        wrapped_global_key=wrap_key(cuk, keys.global_key()),
        ecm_keys=tuple(
            EcmKeySlot(index=i, wrapped_key=wrap_key(cuk, keys.ecm_key(i, epoch=ecm_key_epoch)))
            for i in ecm_key_indexes),
        status=status,
        region=region,
        maturity_limit=maturity_limit,
        pin_hash=pin_hash(cuk, pin),
    )


def check_record_keys(record: CardRecord, rom_key: Key) -> None:
    """Refuse a record whose CUK does not unwrap under ``rom_key`` (wrong factory key)."""
    try:
        unwrap_key(rom_key, record.wrapped_cuk, label="cuk")
    except AuthenticationError as exc:
        raise CardError(f"card {record.serial:010d} was personalised under another "
                        "transport key").with_id(
            "card.card_personalised_under_another", serial=f"{record.serial:010d}") from exc


def image_path(directory: Path, serial: int) -> Path:
    return directory / f"{serial:010d}{IMAGE_SUFFIX}"


def write_images(records: Iterable[CardRecord], directory: Path, *,
                 overwrite: bool = False) -> list[Path]:
    """One EEPROM image per card, ``DIR/<serial>.img``.  Refuses to overwrite a card's
    image (it holds that card's counters and rights) unless ``overwrite``."""
    directory.mkdir(parents=True, exist_ok=True)
    records = list(records)
    paths = [image_path(directory, r.serial) for r in records]
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            raise UsageError(f"{len(existing)} card image(s) already exist, e.g. {existing[0]} "
                             "(use --force to overwrite)").with_id(
                "card.card_image_already_exist", n=len(existing), existing=existing[0])
    for record, path in zip(records, paths, strict=True):
        write_image_atomic(path, build_card_record(record))
    return paths


def write_batch(records: Sequence[CardRecord], path: Path, *, now_s: int,
                issuer: str = DEFAULT_ISSUER) -> Path:
    data = build_card_batch(CardBatch(created_s=now_s, issuer=issuer, records=tuple(records)))
    return _write_batch_file(data, path)


def write_batch_records(chunks: list[bytes], count: int, path: Path, *, now_s: int,
                        issuer: str = DEFAULT_ISSUER) -> Path:
    """:func:`write_batch` from records already built: ``chunks`` of ``build_card_record``
    bytes joined, ``count`` records in all."""
    from cas.formats.records.card_batch import CARD_BATCH

    return _write_batch_file(CARD_BATCH.build(created_s=now_s, issuer=issuer, records=chunks,
                                              count=count), path)


class BatchFileWriter:
    """A personalisation batch written as its records come (``cas card personalise
    --count N``: each chunk as a worker hands it back, while the others still work): the
    header (``count`` records) first, the SHA-256 at the end.  The file is built beside
    ``path`` (``.NAME.tmp``, mode 0600) and only :meth:`commit` puts it in place (fsync,
    rename, fsync of the directory), as :func:`write_batch_records` does; on an error,
    or a leaving the ``with`` block without :meth:`commit`, the partial file is removed."""

    def __init__(self, path: Path, count: int, *, now_s: int,
                 issuer: str = DEFAULT_ISSUER) -> None:
        import hashlib

        from cas.formats.records.card_batch import CARD_BATCH

        self.path = path
        self._size = count * CARD_BATCH.record_size
        self._written = 0
        head = CARD_BATCH.header(created_s=now_s, issuer=issuer, count=count)
        self._sha = hashlib.sha256(head)
        self._tmp = path.parent / f".{path.name}.tmp"
        self._fd: int | None = None
        self._committed = False

        def create() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

        self._io(create)
        self._put(head)

    def write(self, records: bytes) -> None:
        """Append records (built by :func:`build_card_record`, in the batch's order)."""
        if self._written + len(records) > self._size:
            raise ValueError("more records than the batch header says")
        self._written += len(records)
        self._sha.update(records)
        self._put(records)

    def commit(self) -> Path:
        if self._written != self._size:
            raise ValueError("fewer records than the batch header says")
        self._put(self._sha.digest())
        fd, self._fd = self._fd, None
        assert fd is not None

        def finish() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(self._tmp, 0o600)
            os.replace(self._tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

        self._io(finish)
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Drop the partial file (nothing once :meth:`commit` has put it in place)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        if not self._committed:
            with contextlib.suppress(OSError):
                self._tmp.unlink(missing_ok=True)

    def _put(self, data: bytes) -> None:
        def put() -> None:
            assert self._fd is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

        self._io(put)

    def _io(self, step: Callable[[], object]) -> None:
        try:
            step()
        except OSError as exc:
            self.abort()
            raise CardError(f"cannot write the batch file {self.path}: {exc.strerror}"
                            ).with_id("card.cannot_write_batch_file", path=self.path,
                                      strerror=exc.strerror) from None

    def __enter__(self) -> BatchFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _write_batch_file(data: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image_atomic(path, data)
    os.chmod(path, 0o600)  # wrapped keys: not for everyone's eyes
    return path
