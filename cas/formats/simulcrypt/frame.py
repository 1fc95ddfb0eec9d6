"""The generic SimulCrypt message frame (ETSI TS 103 197 §4.4.1) and its codec.

Every SimulCrypt command/response interface uses one frame::

    protocol_version  u8
    message_type      u16
    message_length    u16     bytes after this field
    parameters        TLV*    parameter_type u16 | parameter_length u16 | value

This module knows the frame only, not which parameters a message carries (:mod:`.tables`).

* A parameter is kept as raw bytes (:class:`Parameter`) whether we know its type or not.
* Every error is a :class:`SimulcryptFormatError` (a :class:`cas.errors.FormatError`) that
  carries the ``error_status`` a protocol engine should answer with, and the offending
  parameter type when there is one.
* :func:`parse_message` / :func:`build_message` use precomputed :mod:`struct` layouts on the
  hot path; :data:`SIMULCRYPT_MESSAGE` is the declarative construct form, and a fuzz test
  checks that both accept and reject exactly the same inputs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from construct import (
    Bytes,
    ConstructError,
    GreedyRange,
    Int8ub,
    Int16ub,
    Prefixed,
    Struct,
    Terminated,
    this,
)

from cas.errors import FormatError

from .ids import EcmgScsError

HEADER_SIZE = 5
"""protocol_version (1) + message_type (2) + message_length (2)."""

MAX_MESSAGE_LENGTH = 0xFFFF
"""message_length is a u16; a frame is at most ``HEADER_SIZE + 0xFFFF`` bytes."""


_T = TypeVar("_T")
_HEADER = struct.Struct(">BHH")
_TL = struct.Struct(">HH")

class SimulcryptFormatError(FormatError):
    """A frame or parameter that breaks the SimulCrypt syntax.

    ``error_status`` is the code to answer with.  Errors raised before the interface is known
    (:func:`parse_message`) carry ``inv_message`` (0x0001), which both interfaces share.
    ``parameter_type`` names the offending parameter when there is one; protocol engines
    send it back as ``error_information``.
    """

    def __init__(self, message: str, *, error_status: int, parameter_type: int | None = None,
                 path: str | None = None) -> None:
        self.error_status = error_status
        self.parameter_type = parameter_type
        super().__init__(message, path=path)


# --- the frame -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Parameter:
    """One TLV parameter, value kept as raw bytes (known or not)."""

    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFFFF:
            raise ValueError(f"parameter_type {self.type} is not a u16")
        if len(self.value) > 0xFFFF:
            raise ValueError(f"parameter value of {len(self.value)} bytes exceeds 65535")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One SimulCrypt message: header fields and the parameters in wire order."""

    protocol_version: int
    message_type: int
    parameters: tuple[Parameter, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.protocol_version <= 0xFF:
            raise ValueError(f"protocol_version {self.protocol_version} is not a u8")
        if not 0 <= self.message_type <= 0xFFFF:
            raise ValueError(f"message_type {self.message_type} is not a u16")

    @property
    def message_length(self) -> int:
        """The header's message_length: bytes of TLV parameters."""
        return sum(4 + len(p.value) for p in self.parameters)

    def values(self, parameter_type: int) -> list[bytes]:
        """Values of every occurrence of ``parameter_type``, in wire order."""
        return [p.value for p in self.parameters if p.type == parameter_type]


TLV_PARAMETER = Struct(
    "parameter_type" / Int16ub,
    "parameter_length" / Int16ub,
    "value" / Bytes(this.parameter_length),
)
"""One TLV parameter (TS 103 197 §4.4.1, "generic message structure")."""

SIMULCRYPT_MESSAGE = Struct(
    "protocol_version" / Int8ub,
    "message_type" / Int16ub,
    "parameters" / Prefixed(Int16ub, Struct(
        "tlv" / GreedyRange(TLV_PARAMETER),
        Terminated,
    )),
)
"""The generic SimulCrypt message (TS 103 197 §4.4.1): header, then ``message_length`` bytes
of TLV parameters that must be consumed exactly.  Declarative reference for the struct-based
fast path in :func:`parse_message` / :func:`build_message`."""


def _trusted(cls: type[_T], **fields: Any) -> _T:
    """Build a frozen record whose fields come straight from ``struct`` (already in range):
    the parse hot path skips ``__post_init__``."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def frame_length(header: bytes | bytearray | memoryview) -> int:
    """Total frame size announced by a 5-byte header (header included)."""
    if len(header) < HEADER_SIZE:
        raise SimulcryptFormatError("truncated SimulCrypt header", path="header",
                                    error_status=EcmgScsError.INV_MESSAGE).with_id(
            "formats.header_truncated_simulcrypt_header")
    return HEADER_SIZE + int.from_bytes(header[3:5], "big")


def parse_message(data: bytes | bytearray | memoryview) -> Message:
    """Parse exactly one frame; unknown parameters are kept as raw bytes.

    Raises :class:`SimulcryptFormatError` (``inv_message``) when the header is short, when
    message_length disagrees with the data, or when a TLV runs past the end.
    """
    data = bytes(data)
    size = len(data)
    if size < HEADER_SIZE:
        raise SimulcryptFormatError(f"frame of {size} bytes is shorter than the 5-byte header",
                                    path="header", error_status=EcmgScsError.INV_MESSAGE).with_id(
            "formats.header_frame_bytes_shorter", size=size)
    version, message_type, message_length = _HEADER.unpack_from(data)
    if size != HEADER_SIZE + message_length:
        raise SimulcryptFormatError(
            f"message_length {message_length} disagrees with the {size - HEADER_SIZE} bytes "
            "after the header", path="message_length", error_status=EcmgScsError.INV_MESSAGE).with_id(
            "formats.message_length_message_length", message_length=message_length,
            value=size - HEADER_SIZE)
    params: list[Parameter] = []
    pos = HEADER_SIZE
    index = 0
    while pos < size:
        if pos + 4 > size:
            raise SimulcryptFormatError(
                "truncated parameter header", path=f"parameters[{index}]",
                error_status=EcmgScsError.INV_MESSAGE).with_id(
                "formats.truncated_parameter_header", field=f"parameters[{index}]")
        ptype, plen = _TL.unpack_from(data, pos)
        pos += 4
        end = pos + plen
        if end > size:
            raise SimulcryptFormatError(
                f"parameter_length {plen} runs {end - size} bytes past the end of the message",
                path=f"parameters[{index}].parameter_length", parameter_type=ptype,
                error_status=EcmgScsError.INV_MESSAGE).with_id(
                "formats.parameter_length_runs_bytes",
                field=f"parameters[{index}].parameter_length", plen=plen, value=end - size)
        params.append(_trusted(Parameter, type=ptype, value=data[pos:end]))
        pos = end
        index += 1
    return _trusted(Message, protocol_version=version, message_type=message_type,
                    parameters=tuple(params))


def build_message(message: Message) -> bytes:
    """Serialise ``message``; parameters are written in the order given."""
    parts = [b""]
    length = 0
    for p in message.parameters:
        parts.append(_TL.pack(p.type, len(p.value)))
        parts.append(p.value)
        length += 4 + len(p.value)
    if length > MAX_MESSAGE_LENGTH:
        raise SimulcryptFormatError(
            f"{length} bytes of parameters do not fit the u16 message_length",
            path="message_length", error_status=EcmgScsError.MESSAGE_TOO_LONG).with_id(
            "formats.message_length_bytes_parameters", length=length)
    parts[0] = _HEADER.pack(message.protocol_version, message.message_type, length)
    return b"".join(parts)


def parse_message_declarative(data: bytes) -> Message:
    """Parse with the construct declaration (reference path, used by tests and ``describe``)."""
    try:
        parsed = SIMULCRYPT_MESSAGE.parse(data)
        if len(data) != HEADER_SIZE + sum(4 + len(p.value) for p in parsed.parameters.tlv):
            raise SimulcryptFormatError("trailing bytes after the message", path="message_length",
                                        error_status=EcmgScsError.INV_MESSAGE).with_id(
                "formats.message_length_trailing_bytes")
    except ConstructError as exc:
        raise SimulcryptFormatError(f"not a SimulCrypt message: {exc.__class__.__name__}",
                                    path=getattr(exc, "path", None) or "message",
                                    error_status=EcmgScsError.INV_MESSAGE).with_id(
            "formats.not_simulcrypt_message", field=getattr(exc, 'path', None) or 'message',
            name__=exc.__class__.__name__) from exc
    return Message(
        protocol_version=parsed.protocol_version, message_type=parsed.message_type,
        parameters=tuple(Parameter(type=p.parameter_type, value=bytes(p.value))
                         for p in parsed.parameters.tlv))


def iter_frames(data: bytes) -> Iterable[Message]:
    """Split a byte string holding back-to-back frames (e.g. a TCP capture) into messages."""
    pos = 0
    while pos < len(data):
        end = pos + frame_length(data[pos:pos + HEADER_SIZE])
        if end > len(data):
            raise SimulcryptFormatError("truncated frame at the end of the data",
                                        path=f"offset {pos}",
                                        error_status=EcmgScsError.INV_MESSAGE).with_id(
                "formats.truncated_frame_end_data", field=f"offset {pos}")
        yield parse_message(data[pos:end])
        pos = end
