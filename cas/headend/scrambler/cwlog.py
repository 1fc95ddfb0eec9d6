"""The CW log (``--cw-log``): one JSON line per channel and crypto-period saying which CW
scrambled which output packets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from cas.errors import FormatError


@dataclass(frozen=True, slots=True, kw_only=True)
class CwLogEntry:
    """One line of ``--cw-log``: which CW scrambled which packets of a channel."""

    channel_id: int
    service_id: int
    cp: int
    parity: str
    cw: bytes
    first_packet: int
    last_packet: int
    packets: int

    def to_json(self) -> dict[str, object]:
        return {"channel_id": self.channel_id, "service_id": self.service_id, "cp": self.cp,
                "parity": self.parity, "cw": self.cw.hex(), "first_packet": self.first_packet,
                "last_packet": self.last_packet, "packets": self.packets}


def write_cw_log_line(fh: IO[str], entry: CwLogEntry) -> None:
    """One JSON object per line (``--cw-log``)."""
    fh.write(json.dumps(entry.to_json(), sort_keys=True) + "\n")


def read_cw_log(lines: Iterable[str]) -> list[dict[str, object]]:
    """Parse a ``--cw-log`` file back (test benches, the round-trip tests)."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"line {n}: not JSON", path="cw_log").with_id(
                "headend.cw_log_line_not", n=n) from exc
        if not isinstance(obj, dict):
            raise FormatError(f"line {n}: not an object", path="cw_log").with_id(
                "headend.cw_log_line_not_2", n=n)
        out.append(obj)
    return out
