"""``struct`` layouts derived from construct declarations, for the fixed-size hot paths.

The record fast paths (:mod:`cas.formats.records`, :mod:`cas.formats.chipid`) read and write
with :class:`struct.Struct`, but their byte layout is declared once, as the construct
``Struct`` that is the reference parser.  :func:`struct_layout` walks that declaration and
returns the equivalent flat ``struct`` format with every field's path and offset, so the two
forms cannot drift apart: change the declaration and the fast path's format follows (and the
import-time name check in the fast path fails if its unpacking order no longer fits).

Supported: big-endian ``FormatField`` integers, unsigned big-endian ``BytesInteger`` of 3
bytes (``struct`` has no 3-byte code: followed by a one-byte integer, the pair is read as one
u32 named ``"a+b"`` and split by the caller; otherwise it is ``3s``, three raw bytes), ``Bytes``, ``Const``, ``Array`` of a fixed count, nested
``Struct``, ``FixedSized`` and fixed-size strings (one opaque field: the caller decodes it),
``RawCopy``, validators, ``Checksum`` (its field) and the zero-size ``Check`` /
``Terminated``.  Anything else raises ``TypeError`` at import, where the fast path is built.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import construct as cs

#: Marker for a 3-byte big-endian integer before it is merged with the byte after it.
_U24 = "u24"


@dataclass(frozen=True, slots=True)
class LayoutField:
    """One ``struct`` item: the declaration's field path (``pairing.chip_id``,
    ``ecm_key_slots[1].index``), its ``struct`` code and its byte offset."""

    path: str
    code: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class StructLayout:
    """A flat, big-endian ``struct`` layout equal to a construct declaration."""

    fields: tuple[LayoutField, ...]

    @property
    def format(self) -> str:
        return ">" + "".join(f.code for f in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.fields)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fields)

    def struct(self) -> struct.Struct:
        s = struct.Struct(self.format)
        assert s.size == self.size
        return s

    def offset(self, path: str) -> int:
        """Byte offset of the first field whose path is ``path`` or starts with ``path.``/``[``."""
        for f in self.fields:
            if _under(f.path, path):
                return f.offset
        raise KeyError(path)

    def before(self, path: str) -> StructLayout:
        """The fields in front of the first one under ``path``."""
        cut = next(i for i, f in enumerate(self.fields) if _under(f.path, path))
        return StructLayout(self.fields[:cut])

    def joined(self, first: str, last: str) -> StructLayout:
        """The same bytes with the fields ``first`` .. ``last`` read as one ``bytes`` field
        named ``"first..last"`` (one comparison or one dictionary key instead of several)."""
        names = self.names
        i, j = names.index(first), names.index(last)
        size = sum(f.size for f in self.fields[i : j + 1])
        merged = LayoutField(f"{first}..{last}", f"{size}s", self.fields[i].offset, size)
        return StructLayout((*self.fields[:i], merged, *self.fields[j + 1 :]))

    def under(self, path: str) -> StructLayout:
        """The fields under ``path``, paths relative to it, offsets from its start."""
        picked = [f for f in self.fields if _under(f.path, path)]
        start = picked[0].offset
        return StructLayout(
            tuple(
                LayoutField(f.path[len(path) :].lstrip("."), f.code, f.offset - start, f.size)
                for f in picked
            )
        )


def _under(field_path: str, path: str) -> bool:
    return field_path == path or field_path.startswith((path + ".", path + "["))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _walk(con: Any, path: str) -> list[tuple[str, str, int]]:
    """``(path, code, size)`` for every byte-carrying field of ``con``, in order."""
    if isinstance(con, cs.Renamed):
        return _walk(con.subcon, _join(path, con.name) if con.name else path)
    if isinstance(con, cs.Struct):
        out: list[tuple[str, str, int]] = []
        for sub in con.subcons:
            out += _walk(sub, path)
        return out
    if isinstance(con, cs.Check | cs.Terminated.__class__):
        return []
    if isinstance(con, cs.RawCopy | cs.Validator | cs.Const | cs.StringEncoded):
        return _walk(con.subcon, path)
    if isinstance(con, cs.Checksum):
        return _walk(con.checksumfield, path)
    if isinstance(con, cs.FormatField):
        if con.fmtstr[0] != ">":
            raise TypeError(f"{path}: only big-endian integers, got {con.fmtstr!r}")
        return [(path, con.fmtstr[1:], con.length)]
    if isinstance(con, cs.BytesInteger):
        if con.length != 3 or con.signed or con.swapped:
            raise TypeError(f"{path}: only unsigned big-endian 3-byte BytesInteger")
        return [(path, _U24, 3)]
    if isinstance(con, cs.Bytes | cs.FixedSized) and isinstance(con.length, int):
        return [(path, f"{con.length}s", con.length)]
    if isinstance(con, cs.Array) and isinstance(con.count, int):
        out = []
        for i in range(con.count):
            out += _walk(con.subcon, f"{path}[{i}]")
        return out
    raise TypeError(f"{path or '<root>'}: no struct code for {type(con).__name__}")


def struct_layout(con: cs.Construct) -> StructLayout:
    """The flat ``struct`` layout of the fixed-size declaration ``con`` (see module doc)."""
    items = _walk(con, "")
    fields: list[LayoutField] = []
    offset = 0
    i = 0
    while i < len(items):
        path, code, size = items[i]
        if code == _U24:
            nxt = items[i + 1] if i + 1 < len(items) else None
            if nxt is not None and nxt[1] == "B":
                path, code, size = f"{path}+{nxt[0].rsplit('.', 1)[-1]}", "I", 4
                i += 1
            else:
                code = "3s"
        fields.append(LayoutField(path, code, offset, size))
        offset += size
        i += 1
    layout = StructLayout(tuple(fields))
    try:
        declared = con.sizeof()
    except cs.SizeofError:  # Checksum and RawCopy do not report a size; their parts did
        declared = layout.size
    if layout.size != declared:
        raise TypeError(f"layout size {layout.size} != declaration size {declared}")
    return layout


def check_order(layout: StructLayout, expected: tuple[str, ...], what: str) -> None:
    """Fail at import unless a fast path's positional unpacking order (``expected``) is the
    declaration's field order: a reordered declaration must not silently swap two fields."""
    if layout.names != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(layout.names, expected, strict=False)) if a != b),
            min(len(layout.names), len(expected)),
        )
        raise TypeError(
            f"{what}: field {first} of the declaration does not match the fast path's order "
            f"({len(layout.names)} fields declared, {len(expected)} unpacked)"
        )
