"""Set-top boxes: importing the chipset vendor's Chip ID records, linking a box to an
account, and the box as the operator sees it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.txn import account_by_number, atomic
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Account, Box, Card
from cas.store.repo import from_s, to_s


class ChipRecordLike(Protocol):
    """What the box import needs from a Chip ID record (``cas.formats.chipid.ChipIdRecord``)."""

    @property
    def chip_id(self) -> int: ...
    @property
    def vendor(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def wrapped_csk(self) -> bytes: ...
    @property
    def firmware_version(self) -> int: ...
    @property
    def manufactured_s(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    added: int
    unchanged: int
    chip_ids: tuple[int, ...]


def _fw_text(version: int) -> str:
    return f"{version >> 24}.{(version >> 16) & 0xFF}.{(version >> 8) & 0xFF}.{version & 0xFF}"


@atomic
def import_boxes(session: Session, records: Iterable[ChipRecordLike], *, at: datetime,
                 batch: str = "") -> ImportReport:
    """Import the chipset vendor's Chip ID records.  Re-importing the same record is a no-op;
    a different record under a known Chip ID is refused (the whole import writes nothing)."""
    at_s = to_s(at)
    added, unchanged = 0, 0
    ids: list[int] = []
    seen: set[int] = set()
    for rec in records:
        if rec.chip_id in seen:
            raise RecordConflict(f"Chip ID {rec.chip_id:08X} appears twice in the batch",
                                 code="DUPLICATE_CHIP_ID").with_id(
                "billing.chip_id_appears_twice", chip_id=f"{rec.chip_id:08X}")
        seen.add(rec.chip_id)
        existing = session.get(Box, rec.chip_id)
        manufactured = f"{from_s(rec.manufactured_s):%Y-%m-%d}" if rec.manufactured_s else ""
        if existing is not None:
            if existing.wrapped_csk != bytes(rec.wrapped_csk) or existing.vendor != rec.vendor \
                    or existing.model != rec.model:
                raise RecordConflict(f"Chip ID {rec.chip_id:08X} is already known with "
                                     "different data", code="CHIP_ID_CONFLICT").with_id(
                    "billing.chip_id_already_known", chip_id=f"{rec.chip_id:08X}")
            unchanged += 1
            continue
        session.add(Box(chip_id=rec.chip_id, vendor=rec.vendor, model=rec.model,
                        firmware_version=_fw_text(rec.firmware_version),
                        manufactured=manufactured, wrapped_csk=bytes(rec.wrapped_csk),
                        imported_at_s=at_s, batch=batch[:128]))
        added += 1
        ids.append(rec.chip_id)
    session.flush()
    return ImportReport(added=added, unchanged=unchanged, chip_ids=tuple(ids))


@atomic
def link_box(session: Session, *, chip_id: int, account_number: str, at: datetime) -> None:
    to_s(at)
    acc = account_by_number(session, account_number)
    box = session.get(Box, chip_id, with_for_update=True)
    if box is None:
        raise RecordNotFound(f"unknown box {chip_id:08X}", code="UNKNOWN_BOX").with_id(
            "unknown_box", chip=f"{chip_id:08X}")
    if box.account_id is not None and box.account_id != acc.id:
        raise RecordConflict(f"box {chip_id:08X} belongs to another account",
                             code="BOX_LINKED_ELSEWHERE").with_id(
            "billing.box_belongs_another_account", chip_id=f"{chip_id:08X}")
    box.account_id = acc.id
    session.flush()


@dataclass(frozen=True, slots=True, kw_only=True)
class BoxView:
    chip_id: int
    vendor: str
    model: str
    firmware_version: str
    manufactured: str
    account_number: str | None
    paired_card: int | None
    imported_at: datetime


def _box_view(session: Session, box: Box) -> BoxView:
    acc = session.get(Account, box.account_id) if box.account_id is not None else None
    paired = session.execute(select(Card.serial).where(Card.paired_chip_id == box.chip_id)).scalar()
    return BoxView(chip_id=box.chip_id, vendor=box.vendor, model=box.model,
                   firmware_version=box.firmware_version, manufactured=box.manufactured,
                   account_number=acc.account_number if acc else None,
                   paired_card=int(paired) if paired is not None else None,
                   imported_at=from_s(box.imported_at_s))


def get_box(session: Session, chip_id: int) -> BoxView:
    box = session.get(Box, chip_id)
    if box is None:
        raise RecordNotFound(f"unknown box {chip_id:08X}", code="UNKNOWN_BOX").with_id(
            "unknown_box", chip=f"{chip_id:08X}")
    return _box_view(session, box)


def list_boxes(session: Session, *, account_number: str | None = None, limit: int = 100,
               offset: int = 0) -> list[BoxView]:
    stmt = select(Box).order_by(Box.chip_id).limit(limit).offset(offset)
    if account_number is not None:
        stmt = stmt.where(Box.account_id == account_by_number(session, account_number).id)
    return [_box_view(session, box) for box in session.execute(stmt).scalars()]


__all__ = ["BoxView", "ChipRecordLike", "ImportReport", "get_box", "import_boxes", "link_box",
           "list_boxes"]
