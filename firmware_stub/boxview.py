"""What one pass (:class:`firmware_stub.run.Run`) and the card dialog
(:class:`firmware_stub.dialog.CardDialog`) use of the box.

:class:`firmware_stub.box.Box` is the one implementation; the pass and the dialog name this
protocol instead of the class, so ``box -> run -> dialog`` has no edge back to ``box``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cas.formats.chipid import ChipIdRecord
from firmware_stub.cardslot import CardSlot
from firmware_stub.chipset import Chipset
from firmware_stub.faults import Fault
from firmware_stub.nvram import Nvram
from firmware_stub.report import CardSummary


class BoxView(Protocol):
    """The booted box's parts and state, as the pass and the card dialog see them."""

    chip: ChipIdRecord
    chipset: Chipset
    slot: CardSlot
    nvram: Nvram
    ca_system_id: int
    clock: Callable[[], float]
    #: why the chipset holds no (usable) pairing key, for the report's detail
    pairing_note: str | None
    #: injected faults (firmware_stub/faults.py); none in a correct box
    faults: frozenset[Fault]

    def save(self) -> None:
        """Write the NVRAM file (when the box has one)."""

    def card_summary(self) -> CardSummary:
        """The card as the lock report shows it."""

    def pair_from_card(self) -> None:
        """Load the CWPK from the card's pairing data (or NVRAM for the same card)."""
