"""cas-sim: a conditional-access simulator — head-end, smart card, set-top box."""

from __future__ import annotations

__version__ = "0.1.0"

#: Default CA_system_ID (ISO/IEC 13818-1 CA_descriptor).  0xDEAD is absent from the public
#: allocation lists we checked (see docs/formats.md); every tool takes ``--ca-system-id``.
DEFAULT_CA_SYSTEM_ID = 0xDEAD
#: Default operator id carried in card records and ECM/EMM headers.
DEFAULT_OPERATOR_ID = 0x0001
