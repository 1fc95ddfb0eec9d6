"""Helpers shared by the format modules.

* :func:`parse_struct` / :func:`build_struct` run a construct declaration and turn every
  exception that can come out of it (construct's own errors, but also ``struct.error``,
  ``UnicodeDecodeError``, ``IndexError`` ...) into our :class:`~cas.errors.FormatError`
  (or :class:`~cas.errors.ChecksumError`) carrying the field path, so no construct exception
  ever leaves ``cas.formats``.
* :func:`key_summary` is how ``describe()`` shows key material: length and a fingerprint,
  never the bytes.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import construct as cs

from cas.errors import ChecksumError, FormatError
from cas.i18n import Msg

T = TypeVar("T")

#: Exceptions a parser of untrusted bytes may hit; all become FormatError.
_LOW_LEVEL_ERRORS: tuple[type[BaseException], ...] = (
    cs.ConstructError,
    struct.error,
    IndexError,
    KeyError,
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    OverflowError,
)


def _construct_path(exc: BaseException, root: str) -> str:
    """Turn construct's ``"(parsing) -> body -> value -> serial"`` into ``"root.body.serial"``."""
    raw = getattr(exc, "path", None)
    if not raw:
        return root
    parts = [p.strip() for p in str(raw).split("->")]
    # drop the "(parsing)"/"(building)" marker and RawCopy's internal "value" level
    # (and PrefixedArray's "items")
    names = [p for p in parts if p and not p.startswith("(") and p not in ("value", "items")]
    return ".".join([root, *names])


def _message(exc: BaseException) -> str:
    # these two would echo the offending value, which may be key material: keep them terse
    if isinstance(exc, cs.ValidationError):
        return "object failed validation"
    if isinstance(exc, cs.StringError):
        return "not valid text in its encoding"
    if isinstance(exc, cs.ConstructError):
        # construct messages embed the path again; keep the part after it.
        text = str(exc)
        if "\n" in text:
            text = text.splitlines()[-1]
        if ")" in text and text.startswith("Error in path"):
            text = text.split(")", 1)[-1].strip()
        return text.strip() or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


#: construct's messages we have words for (``errors.formats.detail``): a read past the end,
#: a constant that does not match.
_TRUNCATED = re.compile(r"stream read less than specified amount, expected (\d+), found (\d+)")
_CONST = re.compile(r"parsing expected (.+) but parsed (.+)")
#: The fast parsers' own words for the same failures (records.fast, chipid).
_PHRASES = {"object failed validation": "failed_validation",
            "not valid text in its encoding": "bad_text",
            "stream read less than specified amount": "ends_early", "check failed": "check_failed"}
_EXPECTED = re.compile(r"expected (.+)")
_VERSION = re.compile(r"unsupported version (\d+)")


def detail_words(text: str) -> Msg | None:
    """A fast parser's detail (``"object failed validation"``, ``"expected b'CREC'"``) as a
    catalogue message, or ``None`` when we have no words for it."""
    if text in _PHRASES:
        return Msg(f"errors.formats.detail.{_PHRASES[text]}")
    if m := _VERSION.fullmatch(text):
        return Msg("errors.formats.detail.unsupported_version", {"version": m[1]})
    if m := _EXPECTED.fullmatch(text):
        return Msg("errors.formats.detail.expected", {"expected": m[1]})
    return None


def field_error(message: str, path: str) -> FormatError:
    """``path: message`` from a fast parser, its message named when we have words for it."""
    error = FormatError(message, path=path)
    words = detail_words(message)
    return error if words is None else error.with_id("formats.field_detail", field=path,
                                                     detail=words)


def _detail_words(exc: BaseException) -> Msg | None:
    """What construct said, as a catalogue message, or ``None`` when we have no words."""
    if isinstance(exc, cs.ValidationError):
        return Msg("errors.formats.detail.failed_validation")
    if isinstance(exc, cs.StringError):
        return Msg("errors.formats.detail.bad_text")
    text = _message(exc)
    if m := _TRUNCATED.fullmatch(text):
        return Msg("errors.formats.detail.truncated", {"expected": m[1], "found": m[2]})
    if m := _CONST.fullmatch(text):
        return Msg("errors.formats.detail.constant", {"expected": m[1], "found": m[2]})
    return None


def wrap_error(exc: BaseException, root: str, *, action: str = "parse") -> FormatError:
    """Build the FormatError (or ChecksumError) to raise ``from exc``."""
    if isinstance(exc, FormatError):
        return exc
    path = _construct_path(exc, root)
    if isinstance(exc, cs.ChecksumError):
        return ChecksumError("integrity check failed", path=path).with_id(
            "formats.integrity_failed", field=path)
    error = FormatError(f"cannot {action}: {_message(exc)}", path=path)
    words = _detail_words(exc)
    return error if words is None else error.with_id(
        "formats.cannot_action", field=path, action=Msg(f"errors.formats.action.{action}"),
        detail=words)


def parse_struct(schema: cs.Construct, data: bytes, root: str) -> Any:
    """Parse ``data`` with ``schema``; every failure becomes a FormatError naming the field."""
    try:
        return schema.parse(data)
    except FormatError:
        raise
    except _LOW_LEVEL_ERRORS as exc:
        raise wrap_error(exc, root) from exc


def build_struct(schema: cs.Construct, obj: Any, root: str) -> bytes:
    """Build ``obj`` with ``schema``; out-of-range values become a FormatError naming the field."""
    try:
        out = schema.build(obj)
    except FormatError:
        raise
    except _LOW_LEVEL_ERRORS as exc:
        raise wrap_error(exc, root, action="build") from exc
    assert isinstance(out, bytes)
    return out


def guarded(root: str, fn: Callable[[], T], *, action: str = "parse") -> T:
    """Run ``fn`` and convert low-level exceptions into FormatError (for hand-written parsers)."""
    try:
        return fn()
    except FormatError:
        raise
    except _LOW_LEVEL_ERRORS as exc:
        raise wrap_error(exc, root, action=action) from exc


def as_sliceable(data: Any) -> bytes | mmap.mmap:
    """``data`` itself if slicing it gives ``bytes`` (bytes, mmap), else a ``bytes`` copy
    (memoryview, bytearray), so that parsers get hashable, immutable slices."""
    if isinstance(data, bytes | mmap.mmap):
        return data
    return bytes(data)


def fingerprint(data: bytes) -> str:
    """First 8 hex digits of SHA-256 over ``data``: identifies key material without showing it."""
    return hashlib.sha256(data).hexdigest()[:8]


def key_summary(data: bytes) -> dict[str, Any]:
    """How ``describe()`` shows key material (wrapped or clear): length + fingerprint only."""
    return {"length": len(data), "fingerprint": fingerprint(data)}


def check_range(value: int, bits: int, path: str) -> None:
    """Raise FormatError unless ``0 <= value < 2**bits`` (used by builders)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise FormatError(f"value {value!r} does not fit in u{bits}", path=path).with_id(
            "formats.value_does_not_fit", field=path, value=f"{value!r}", bits=bits)


def check_bits(path: str, value: int, bits: int) -> None:
    """Raise FormatError unless ``0 <= value < 2**bits`` (field checks of the PSI and TS value
    types; worded in bits, where :func:`check_range` says ``u<bits>``)."""
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise FormatError(f"{value!r} does not fit in {bits} bits", path=path).with_id(
            "formats.does_not_fit_bits", field=path, value=f"{value!r}", bits=bits)


def check_len(value: bytes, length: int, path: str) -> None:
    """Raise FormatError unless ``value`` is bytes of exactly ``length``."""
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise FormatError(f"expected {length} bytes, got {got}", path=path).with_id(
            "formats.expected_bytes", field=path, length=length, got=got)


def decode_padded_ascii(raw: bytes, path: str) -> str:
    """Fixed-width ASCII text, right-padded with NUL.  Canonical: printable ASCII, then only NULs."""
    text, _, pad = raw.partition(b"\x00")
    if pad.strip(b"\x00") or any(not 0x20 <= b <= 0x7E for b in text):
        raise FormatError("not printable ASCII padded with NUL", path=path).with_id(
            "formats.not_printable_ascii_padded", field=path)
    return text.decode("ascii")


def encode_padded_ascii(text: str, width: int, path: str) -> bytes:
    """Inverse of :func:`decode_padded_ascii`; FormatError if too long or not printable ASCII."""
    raw = text.encode("ascii", "replace")
    if len(raw) > width or any(not 0x20 <= b <= 0x7E for b in raw) or not text.isascii():
        raise FormatError(f"must be printable ASCII of at most {width} characters", path=path).with_id(
            "formats.printable_ascii_most_characters", field=path, width=width)
    return raw.ljust(width, b"\x00")


# --- short MPEG-2 private sections (ECM/EMM) -----------------------------------------------------
#: ECM/EMM sections are kept within 256 bytes (WIRE-FACTS §1.2): 3-byte header + ≤ 253.
MAX_CA_SECTION_LENGTH = 253
CA_SECTION_HEADER_SIZE = 3
#: Second byte, high nibble: section_syntax_indicator 0, private_indicator 1, reserved '11'.
_CA_FLAGS = 0x7


def build_ca_section(table_id: int, payload: bytes, root: str) -> bytes:
    """``table_id | 0 1 11 section_length(12) | payload`` (ISO/IEC 13818-1 private section,
    short form, no CRC).  FormatError if the section would exceed 256 bytes."""
    check_range(table_id, 8, f"{root}.table_id")
    if len(payload) > MAX_CA_SECTION_LENGTH:
        raise FormatError(
            f"section_length {len(payload)} > {MAX_CA_SECTION_LENGTH} (section over 256 bytes)",
            path=f"{root}.section_length",
        ).with_id(
            "formats.section_length_section_over", field=f"{root}.section_length", n=len(payload),
            max_ca_section_length=MAX_CA_SECTION_LENGTH)
    n = len(payload)
    return bytes((table_id, (_CA_FLAGS << 4) | (n >> 8), n & 0xFF)) + payload


def ca_section_clear(table_id: int, clear: bytes, body_length: int, root: str,
                     budget: str) -> bytes:
    """Section header + ``clear`` header of a CA section whose sealed body of
    ``body_length`` bytes follows (the ECM's or EMM's AAD).  FormatError if the section would
    exceed 256 bytes; ``budget`` says how much body fits, for the message."""
    if len(clear) + body_length > MAX_CA_SECTION_LENGTH:
        raise FormatError(
            f"section_length {len(clear) + body_length} > {MAX_CA_SECTION_LENGTH} (section over "
            f"256 bytes; at most {budget})",
            path=f"{root}.section_length",
        ).with_id(
            "formats.section_length_section_over_2", field=f"{root}.section_length",
            value=len(clear) + body_length, max_ca_section_length=MAX_CA_SECTION_LENGTH,
            budget=budget)
    return build_ca_section(table_id, clear + bytes(body_length), root)[
        : CA_SECTION_HEADER_SIZE + len(clear)
    ]


def parse_ca_section(data: bytes, root: str, *, strict_flags: bool = True) -> tuple[int, bytes]:
    """Check a short CA section header and return ``(table_id, payload)``.

    ``section_length`` must match the data exactly (the depacketiser strips 0xFF stuffing)
    and be ≤ 253.  With ``strict_flags`` the flag bits must be ``0 1 11``; otherwise only
    section_syntax_indicator = 0 is required (EMMs of other table ids).
    """
    if len(data) < CA_SECTION_HEADER_SIZE:
        raise FormatError(f"a section has at least 3 bytes, got {len(data)}", path=root).with_id(
            "formats.section_least_bytes", field=root, n=len(data))
    table_id = data[0]
    flags = data[1] >> 4
    if flags & 0x8:
        raise FormatError(
            "section_syntax_indicator is 1 (long section), ECM/EMM use short sections",
            path=f"{root}.section_syntax_indicator",
        ).with_id("formats.section_syntax_indicator_long", field=f"{root}.section_syntax_indicator")
    if strict_flags and flags != _CA_FLAGS:
        raise FormatError(
            f"flag bits {flags:04b}, expected 0111", path=f"{root}.private_indicator"
        ).with_id(
            "formats.flag_bits_expected", field=f"{root}.private_indicator", flags=f"{flags:04b}")
    length = ((data[1] & 0x0F) << 8) | data[2]
    if length > MAX_CA_SECTION_LENGTH:
        raise FormatError(
            f"section_length {length} > {MAX_CA_SECTION_LENGTH}", path=f"{root}.section_length"
        ).with_id(
            "formats.section_length", field=f"{root}.section_length", length=length,
            max_ca_section_length=MAX_CA_SECTION_LENGTH)
    if length != len(data) - CA_SECTION_HEADER_SIZE:
        raise FormatError(
            f"section_length {length} but {len(data) - CA_SECTION_HEADER_SIZE} bytes follow",
            path=f"{root}.section_length",
        ).with_id(
            "formats.section_length_but_bytes", field=f"{root}.section_length", length=length,
            value=len(data) - CA_SECTION_HEADER_SIZE)
    return table_id, bytes(data[CA_SECTION_HEADER_SIZE:])


# --- bulk CRC-32 check for batches of fixed-size records -----------------------------------------
#: Records per bulk CRC pass (a few MB at most; small enough to keep in cache-friendly chunks).
CRC_CHUNK_RECORDS = 4096
_RESIDUE_CACHE: dict[tuple[int, int], int] = {}


def _expected_bulk_crc(count: int, size: int) -> int:
    """zlib.crc32 of ``count`` valid records of ``size`` bytes whose CRC bytes were swapped to
    little-endian.  Each such record has the CRC-32 residue (its CRC is 0x2144DF1C whatever
    the body), so the CRC of their concatenation depends only on ``count`` and ``size``."""
    key = (count, size)
    value = _RESIDUE_CACHE.get(key)
    if value is None:
        body = bytes(size - 4)
        one = body + zlib.crc32(body).to_bytes(4, "little")
        value = zlib.crc32(one * count)
        if len(_RESIDUE_CACHE) > 64:
            _RESIDUE_CACHE.clear()
        _RESIDUE_CACHE[key] = value
    return value


def bulk_crc_ok(buf: Any, offset: int, count: int, size: int) -> bool:
    """True iff each of ``count`` records of ``size`` bytes at ``buf[offset:]`` ends in the
    big-endian ``zlib.crc32`` of its other bytes — checked with one CRC pass, not ``count``.

    How: copy the records, byte-swap every CRC field to little-endian with four strided slice
    assignments, and compare the CRC of the whole copy with the value all-valid records give
    (:func:`_expected_bulk_crc`).  CRC-32 is linear and ``x^k`` is invertible modulo its
    generator, so if exactly one record is bad the totals differ exactly when that record's own
    check fails; errors in several records could cancel with probability 2^-32, as for any
    32-bit check.  Callers fall back to per-record checks when this returns False, so the
    failing record is still named.
    """
    end = offset + count * size
    region = bytearray(buf[offset:end])
    for k in range(4):  # CRC bytes at size-4 .. size-1, reversed
        region[size - 4 + k :: size] = buf[offset + size - 1 - k : end : size]
    return zlib.crc32(region) == _expected_bulk_crc(count, size)


# --- fast construction of frozen slots dataclasses ------------------------------------------------
def slots_builder(cls: type) -> Any:
    """A plain class with exactly the ``__slots__`` of the frozen slots dataclass ``cls``.

    Parsers' fast paths fill an instance of it with ordinary attribute stores (which CPython
    specialises to a direct slot write) and then set ``obj.__class__ = cls``.  Python allows
    ``__class__`` assignment between classes with the same instance layout, so the result is a
    genuine, frozen ``cls`` instance — equal, hashable and immutable like one made by
    ``cls(...)``; the hypothesis tests compare the two.  Why not the slots' own setters
    (``cls.__dict__[name].__set__``, what the frozen ``__init__`` reaches through
    ``object.__setattr__``): each is a C call through a method wrapper, several times the cost
    of a specialised slot store, and that made the record benchmarks 30-50 % slower
    (benchmarks/records.md).
    Only for dataclasses without ``__post_init__``; the layout check below runs once at import.
    """
    slots = cls.__dict__.get("__slots__")
    if not slots or "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a plain frozen slots dataclass")
    builder = type(f"_{cls.__name__}Builder", (), {"__slots__": tuple(slots)})
    probe: Any = object.__new__(builder)
    probe.__class__ = cls  # raises TypeError if the layouts differ
    return builder
