"""The box's EMM filter: hand the card only the EMMs addressed to it (DESIGN §5).

A real box programs its demux's section filters with the card's addresses, so the card
never sees the EMMs of the other million subscribers.  The address sits in the clear
header right after the 3-byte section header (docs/formats.md §5.1,
:mod:`cas.formats.emm`):

* table_id 0x82 **unique**: serial u32 — matches the card's serial;
* table_id 0x83 **shared**: shared_address u24 + a 32-byte member bitmap (bit ``p`` in byte
  ``p // 8``, MSB first) — matches the card's group *and* its position's bit;
* table_id 0x84 **global**: every card.

Matching is done on the raw bytes (no parsing for the EMMs that are not ours: that is most
of them); those that match are parsed once with :func:`cas.formats.emm.parse_emm`, so a
section too damaged to be an EMM is counted instead of bothering the card.  Table ids
0x85–0x8F are EMMs of other CA systems sharing the PID: counted, never passed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cas.errors import FormatError
from cas.formats.emm import EmmAddressType, parse_emm

ADDRESS_NAMES = {EmmAddressType.UNIQUE: "unique", EmmAddressType.SHARED: "shared",
                 EmmAddressType.GLOBAL: "global"}


@dataclass(slots=True)
class EmmCounts:
    """How many EMMs of each address type the filter passed and dropped."""

    passed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ADDRESS_NAMES.values(), 0))
    filtered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ADDRESS_NAMES.values(), 0))
    foreign: int = 0
    malformed: int = 0
    repeated: int = 0

    def to_json(self) -> dict[str, int]:
        out = {f"passed_{k}": v for k, v in self.passed.items()}
        out.update({f"filtered_{k}": v for k, v in self.filtered.items()})
        out.update(foreign=self.foreign, malformed=self.malformed, repeated=self.repeated)
        return out


class EmmFilter:
    """Decides, per EMM section, whether it goes to the card."""

    #: EMM carousels repeat every message; the card would refuse the copies anyway
    #: (9811 replayed), so the box remembers what it already handed over.
    REMEMBER = 4096

    def __init__(self, *, serial: int, shared_address: int, member_position: int) -> None:
        self.serial = serial
        self.shared_address = shared_address
        self.member_position = member_position
        self._serial_bytes = serial.to_bytes(4, "big")
        self._group_bytes = shared_address.to_bytes(3, "big")
        self._byte = 6 + (member_position >> 3)  # member bitmap starts at section byte 6
        self._bit = 0x80 >> (member_position & 7)
        self.counts = EmmCounts()
        self._seen: set[bytes] = set()

    def address_type(self, section: bytes) -> str | None:
        """``"unique"``/``"shared"``/``"global"`` for our table ids, else ``None``."""
        try:
            return ADDRESS_NAMES[EmmAddressType(section[0])]
        except (ValueError, IndexError):
            return None

    def matches(self, section: bytes) -> bool:
        """Is this EMM addressed to our card?  (Raw header bytes only.)"""
        table_id = section[0] if section else -1
        if table_id == EmmAddressType.UNIQUE:
            return section[3:7] == self._serial_bytes
        if table_id == EmmAddressType.SHARED:
            return (section[3:6] == self._group_bytes and len(section) > self._byte
                    and bool(section[self._byte] & self._bit))
        return table_id == EmmAddressType.GLOBAL

    def accept(self, section: bytes) -> bool:
        """Count the EMM; True when it should go to the card."""
        kind = self.address_type(section)
        if kind is None:
            self.counts.foreign += 1
            return False
        if not self.matches(section):
            self.counts.filtered[kind] += 1
            return False
        if section in self._seen:
            self.counts.repeated += 1
            return False
        try:
            parse_emm(section)
        except FormatError:
            self.counts.malformed += 1
            return False
        if len(self._seen) >= self.REMEMBER:
            self._seen.clear()
        self._seen.add(section)
        self.counts.passed[kind] += 1
        return True
