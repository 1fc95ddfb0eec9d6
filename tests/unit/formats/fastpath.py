"""Helpers of the hypothesis tests that show a fast path and its construct declaration
accept and reject the same bytes (records, Chip ID records)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

from cas.errors import ChecksumError, FormatError


def with_crc(raw: bytearray) -> bytes:
    """``raw`` with its last four bytes set to the CRC-32 of the bytes before them."""
    n = len(raw) - 4
    struct.pack_into(">I", raw, n, zlib.crc32(raw[:n]))
    return bytes(raw)


def outcome(fn: Callable[[bytes], Any], data: bytes) -> tuple[str, Any]:
    """``("ok", value)``, ``("checksum", None)`` or ``("format", None)``: what ``fn`` made of
    ``data``, comparable between the fast and the declarative parser."""
    try:
        return "ok", fn(data)
    except ChecksumError:
        return "checksum", None
    except FormatError:
        return "format", None
