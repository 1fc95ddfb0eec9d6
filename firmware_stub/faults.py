"""Faults a box can be told to have (``stb … --fault NAME``), off by default.

They exist so that the conformance kit (docs/kit.md) can prove it catches a faulty box: each
one breaks one duty of a correct box, at one place in :mod:`firmware_stub.dialog`.
"""

from __future__ import annotations

from enum import StrEnum


class Fault(StrEnum):
    #: Never pass an EMM to the card: rights, kills and key updates never arrive.
    IGNORE_EMMS = "ignore-emms"
    #: Load the even control word into the odd slot and the odd into the even one.
    WRONG_CW_PARITY = "wrong-cw-parity"
    #: Show a channel the card refused for its maturity rating as open (no PIN asked).
    SKIP_MATURITY = "skip-maturity"
    #: Keep the card's first answer for an ECM PID and never ask again: later ECMs (the next
    #: crypto-period's control words, ECMs under a new ECM key) and the re-asking after an
    #: EMM changed the card's rights or keys are ignored.
    STALE_ECM_KEY = "stale-ecm-key"
    #: Show a channel refused for a card/box pairing mismatch as open.
    IGNORE_PAIRING = "ignore-pairing"
    #: Never show the card's on-screen messages or fingerprint orders (never asks for them).
    IGNORE_OSD = "ignore-osd"


NO_FAULTS: frozenset[Fault] = frozenset()
