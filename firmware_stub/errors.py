"""The box's own errors: branches of the shared tree in :mod:`cas.errors`.

The box reports most trouble in its lock report instead of raising (a box never crashes on
a bad stream); these are for the few things that stop it from booting or running at all.
"""

from __future__ import annotations

from cas.errors import AuthenticationError, ConfigError, StreamError


class NvramError(ConfigError):
    """The NVRAM file cannot be read or written (not the box's, unreadable, bad JSON)."""


class ChipsetError(AuthenticationError):
    """The chipset cannot take a key: its record does not open with the vendor key, or a
    blob or control words do not unwrap under the keys it holds.  Says nothing about which."""


class PairingError(ChipsetError):
    """Control words or a chip blob do not unwrap: the card is paired with another chip."""


class TuneError(StreamError):
    """The requested channel is not in the stream's lineup."""


class NotTransportStreamError(StreamError):
    """The input holds no MPEG-TS packet at all (empty, text, sections, a card image): raised
    only when the caller asks for it (``require_ts``), as ``stb`` and ``cas diag stream`` do."""
