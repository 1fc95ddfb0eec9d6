"""The generic DVB SimulCrypt message frame and its parameter schemas (ETSI TS 103 197).

Every SimulCrypt command/response interface uses one frame (TS 103 197 §4.4.1)::

    protocol_version  u8
    message_type      u16
    message_length    u16     bytes after this field
    parameters        TLV*    parameter_type u16 | parameter_length u16 | value

This module knows the frame, and the *syntax* of the two interfaces cas-sim speaks:

* ECMG⇔SCS (TS 103 197 §5): which parameters each message carries, how often, and how wide
  each value is;
* EMMG/PDG⇔MUX (TS 103 197 §6): the same.

It does not know the protocol's *states* (that is :mod:`cas.headend.simulcrypt`).

Rules kept here:

* A parameter we do not know is kept as raw bytes (:class:`Parameter`), never dropped.
  :func:`check_message` rejects DVB-reserved unknown types (``inv_param_type``) but lets
  user-defined types (``0x8000``-``0xFFFF``, TS 103 197 parameter tables) through.
* Every error is a :class:`SimulcryptFormatError` (a :class:`cas.errors.FormatError`) that
  carries the ``error_status`` a protocol engine should answer with, and the offending
  parameter type when there is one.
* :func:`parse_message` / :func:`build_message` use precomputed :mod:`struct` layouts on the
  hot path; :data:`SIMULCRYPT_MESSAGE` is the declarative construct form, and a fuzz test
  checks that both accept and reject exactly the same inputs.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
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

HEADER_SIZE = 5
"""protocol_version (1) + message_type (2) + message_length (2)."""

MAX_MESSAGE_LENGTH = 0xFFFF
"""message_length is a u16; a frame is at most ``HEADER_SIZE + 0xFFFF`` bytes."""

USER_DEFINED_MIN = 0x8000
"""Message and parameter types from here on are user defined (TS 103 197 type tables)."""

_T = TypeVar("_T")
_HEADER = struct.Struct(">BHH")
_TL = struct.Struct(">HH")


# --- error status codes (TS 103 197 §5.4.5 / §6.2.5 tables) -----------------------------------
class EcmgScsError(IntEnum):
    """ECMG⇔SCS ``error_status`` values."""

    INV_MESSAGE = 0x0001
    INV_PROTO_VERSION = 0x0002
    INV_MESSAGE_TYPE = 0x0003
    MESSAGE_TOO_LONG = 0x0004
    INV_SUPER_CAS_ID = 0x0005
    INV_CHANNEL_ID = 0x0006
    INV_STREAM_ID = 0x0007
    TOO_MANY_CHANNELS = 0x0008
    TOO_MANY_STM_CHAN = 0x0009
    TOO_MANY_STM_ECMG = 0x000A
    NOT_ENOUGH_CW = 0x000B
    OUT_OF_STORAGE = 0x000C
    OUT_OF_COMPUTE = 0x000D
    INV_PARAM_TYPE = 0x000E
    INV_PARAM_LENGTH = 0x000F
    MISSING_PARAM = 0x0010
    INV_PARAM_VALUE = 0x0011
    INV_ECM_ID = 0x0012
    CHANNEL_ID_IN_USE = 0x0013
    STREAM_ID_IN_USE = 0x0014
    ECM_ID_IN_USE = 0x0015
    UNKNOWN_ERROR = 0x7000
    UNRECOVERABLE_ERROR = 0x7001


class EmmgMuxError(IntEnum):
    """EMMG/PDG⇔MUX ``error_status`` values."""

    INV_MESSAGE = 0x0001
    INV_PROTO_VERSION = 0x0002
    INV_MESSAGE_TYPE = 0x0003
    MESSAGE_TOO_LONG = 0x0004
    INV_STREAM_ID = 0x0005
    INV_CHANNEL_ID = 0x0006
    TOO_MANY_CHANNELS = 0x0007
    TOO_MANY_STM_CHAN = 0x0008
    TOO_MANY_STM_MUX = 0x0009
    INV_PARAM_TYPE = 0x000A
    INV_PARAM_LENGTH = 0x000B
    MISSING_PARAM = 0x000C
    INV_PARAM_VALUE = 0x000D
    INV_CLIENT_ID = 0x000E
    EXCEEDED_BW = 0x000F
    INV_DATA_ID = 0x0010
    CHANNEL_ID_IN_USE = 0x0011
    STREAM_ID_IN_USE = 0x0012
    DATA_ID_IN_USE = 0x0013
    CLIENT_ID_IN_USE = 0x0014
    UNKNOWN_ERROR = 0x7000
    UNRECOVERABLE_ERROR = 0x7001


class ErrorKind(Enum):
    """Interface-neutral names for the syntax errors both interfaces share.

    The two interfaces number them differently (e.g. "missing parameter" is 0x0010 on
    ECMG⇔SCS and 0x000C on EMMG⇔MUX); :meth:`InterfaceSpec.status` translates.
    """

    INV_MESSAGE = "inv_message"
    INV_PROTO_VERSION = "inv_proto_version"
    INV_MESSAGE_TYPE = "inv_message_type"
    MESSAGE_TOO_LONG = "message_too_long"
    INV_PARAM_TYPE = "inv_param_type"
    INV_PARAM_LENGTH = "inv_param_length"
    MISSING_PARAM = "missing_param"
    INV_PARAM_VALUE = "inv_param_value"
    INV_CHANNEL_ID = "inv_channel_id"
    INV_STREAM_ID = "inv_stream_id"
    TOO_MANY_CHANNELS = "too_many_channels"
    CHANNEL_ID_IN_USE = "channel_id_in_use"
    STREAM_ID_IN_USE = "stream_id_in_use"
    UNKNOWN_ERROR = "unknown_error"


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
                                    error_status=EcmgScsError.INV_MESSAGE)
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
                                    path="header", error_status=EcmgScsError.INV_MESSAGE)
    version, message_type, message_length = _HEADER.unpack_from(data)
    if size != HEADER_SIZE + message_length:
        raise SimulcryptFormatError(
            f"message_length {message_length} disagrees with the {size - HEADER_SIZE} bytes "
            "after the header", path="message_length", error_status=EcmgScsError.INV_MESSAGE)
    params: list[Parameter] = []
    pos = HEADER_SIZE
    index = 0
    while pos < size:
        if pos + 4 > size:
            raise SimulcryptFormatError(
                "truncated parameter header", path=f"parameters[{index}]",
                error_status=EcmgScsError.INV_MESSAGE)
        ptype, plen = _TL.unpack_from(data, pos)
        pos += 4
        end = pos + plen
        if end > size:
            raise SimulcryptFormatError(
                f"parameter_length {plen} runs {end - size} bytes past the end of the message",
                path=f"parameters[{index}].parameter_length", parameter_type=ptype,
                error_status=EcmgScsError.INV_MESSAGE)
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
            path="message_length", error_status=EcmgScsError.MESSAGE_TOO_LONG)
    parts[0] = _HEADER.pack(message.protocol_version, message.message_type, length)
    return b"".join(parts)


def parse_message_declarative(data: bytes) -> Message:
    """Parse with the construct declaration (reference path, used by tests and ``describe``)."""
    try:
        parsed = SIMULCRYPT_MESSAGE.parse(data)
        if len(data) != HEADER_SIZE + sum(4 + len(p.value) for p in parsed.parameters.tlv):
            raise SimulcryptFormatError("trailing bytes after the message", path="message_length",
                                        error_status=EcmgScsError.INV_MESSAGE)
    except ConstructError as exc:
        raise SimulcryptFormatError(f"not a SimulCrypt message: {exc.__class__.__name__}",
                                    path=getattr(exc, "path", None) or "message",
                                    error_status=EcmgScsError.INV_MESSAGE) from exc
    return Message(
        protocol_version=parsed.protocol_version, message_type=parsed.message_type,
        parameters=tuple(Parameter(type=p.parameter_type, value=bytes(p.value))
                         for p in parsed.parameters.tlv))


# --- schemas -------------------------------------------------------------------------------------
class ParamKind(Enum):
    UINT = "uint"      # big-endian unsigned, fixed width
    SINT = "sint"      # big-endian two's complement, fixed width (delays, ms)
    BYTES = "bytes"    # opaque or structured octets


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamSpec:
    """One parameter type of an interface: name, value kind and allowed value lengths.

    ``lengths`` is a tuple of ``(from_version, min_length, max_length)``: the last entry whose
    ``from_version`` is at most the message's version applies (e.g. a V1 CP_CW_combination is
    exactly 10 bytes, from V2 on the CW length is free).
    """

    type: int
    name: str
    kind: ParamKind
    lengths: tuple[tuple[int, int, int], ...]
    unit: str = ""

    def length_range(self, version: int) -> tuple[int, int]:
        chosen = self.lengths[0]
        for entry in self.lengths:
            if entry[0] <= version:
                chosen = entry
        return chosen[1], chosen[2]

    def decode(self, raw: bytes) -> int | bytes:
        if self.kind is ParamKind.UINT:
            return int.from_bytes(raw, "big")
        if self.kind is ParamKind.SINT:
            return int.from_bytes(raw, "big", signed=True)
        return raw

    def encode(self, value: int | bytes, version: int = 2) -> bytes:
        if self.kind is ParamKind.BYTES:
            if not isinstance(value, bytes | bytearray):
                raise TypeError(f"{self.name} takes bytes")
            return bytes(value)
        if not isinstance(value, int):
            raise TypeError(f"{self.name} takes an int")
        width = self.length_range(version)[0]
        try:
            return int(value).to_bytes(width, "big", signed=self.kind is ParamKind.SINT)
        except OverflowError as exc:
            raise ValueError(f"{self.name}={value} does not fit {width} byte(s)") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamRule:
    """How often a parameter occurs in a message: ``(from_version, min, max)`` entries.

    ``(0, 0)`` means "not part of this message in that version" (it is then an unknown
    parameter there, as for ECM_id in a V1 stream_setup).
    """

    counts: tuple[tuple[int, int, int], ...]

    def count_range(self, version: int) -> tuple[int, int]:
        chosen = (0, 0)
        for from_version, lo, hi in self.counts:
            if from_version <= version:
                chosen = (lo, hi)
        return chosen


def _rule(lo: int, hi: int, *later: tuple[int, int, int]) -> ParamRule:
    return ParamRule(counts=((1, lo, hi), *later))


_ONE = _rule(1, 1)
_OPT = _rule(0, 1)
_MANY = _rule(0, 0xFFFF)
_SOME = _rule(1, 0xFFFF)
_V2_ONE = ParamRule(counts=((1, 0, 0), (2, 1, 1)))   # new and mandatory from V2 on
_V2_OPT = ParamRule(counts=((1, 0, 0), (2, 0, 1)))   # new and optional from V2 on
_DATA_ID = ParamRule(counts=((1, 0, 1), (2, 1, 1)))
"""EMMG⇔MUX data_id: mandatory from V2 on.  V1 has no data_id, but peers that send it in
every version (TSDuck) are common, so a V1 data_id is accepted when present (a deliberate
deviation, docs/simulcrypt.md §1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSpec:
    type: int
    name: str
    params: Mapping[int, ParamRule]


class Interface(Enum):
    ECMG_SCS = "ECMG<>SCS"
    EMMG_MUX = "EMMG/PDG<>MUX"


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceSpec:
    """The syntax of one SimulCrypt interface."""

    interface: Interface
    versions: frozenset[int]
    params: Mapping[int, ParamSpec]
    messages: Mapping[int, MessageSpec]
    errors: type[IntEnum]

    def status(self, kind: ErrorKind) -> int:
        """The interface's ``error_status`` number for an interface-neutral error."""
        return int(self.errors[kind.name])

    def param(self, name: str) -> ParamSpec:
        for spec in self.params.values():
            if spec.name == name:
                return spec
        raise KeyError(name)

    def error_name(self, status: int) -> str:
        try:
            return self.errors(status).name.lower()
        except ValueError:
            return "user_defined" if status >= USER_DEFINED_MIN else "reserved"


class EcmgScsMessage(IntEnum):
    """ECMG⇔SCS message_type values (TS 103 197 §5.3)."""

    CHANNEL_SETUP = 0x0001
    CHANNEL_TEST = 0x0002
    CHANNEL_STATUS = 0x0003
    CHANNEL_CLOSE = 0x0004
    CHANNEL_ERROR = 0x0005
    STREAM_SETUP = 0x0101
    STREAM_TEST = 0x0102
    STREAM_STATUS = 0x0103
    STREAM_CLOSE_REQUEST = 0x0104
    STREAM_CLOSE_RESPONSE = 0x0105
    STREAM_ERROR = 0x0106
    CW_PROVISION = 0x0201
    ECM_RESPONSE = 0x0202


class EcmgScsParam(IntEnum):
    """ECMG⇔SCS parameter_type values (TS 103 197 §5.4)."""

    SUPER_CAS_ID = 0x0001
    SECTION_TSPKT_FLAG = 0x0002
    DELAY_START = 0x0003
    DELAY_STOP = 0x0004
    TRANSITION_DELAY_START = 0x0005
    TRANSITION_DELAY_STOP = 0x0006
    ECM_REP_PERIOD = 0x0007
    MAX_STREAMS = 0x0008
    MIN_CP_DURATION = 0x0009
    LEAD_CW = 0x000A
    CW_PER_MSG = 0x000B
    MAX_COMP_TIME = 0x000C
    ACCESS_CRITERIA = 0x000D
    ECM_CHANNEL_ID = 0x000E
    ECM_STREAM_ID = 0x000F
    NOMINAL_CP_DURATION = 0x0010
    ACCESS_CRITERIA_TRANSFER_MODE = 0x0011
    CP_NUMBER = 0x0012
    CP_DURATION = 0x0013
    CP_CW_COMBINATION = 0x0014
    ECM_DATAGRAM = 0x0015
    AC_DELAY_START = 0x0016
    AC_DELAY_STOP = 0x0017
    CW_ENCRYPTION = 0x0018
    ECM_ID = 0x0019
    ERROR_STATUS = 0x7000
    ERROR_INFORMATION = 0x7001


class EmmgMuxMessage(IntEnum):
    """EMMG/PDG⇔MUX message_type values (TS 103 197 §6.2)."""

    CHANNEL_SETUP = 0x0011
    CHANNEL_TEST = 0x0012
    CHANNEL_STATUS = 0x0013
    CHANNEL_CLOSE = 0x0014
    CHANNEL_ERROR = 0x0015
    STREAM_SETUP = 0x0111
    STREAM_TEST = 0x0112
    STREAM_STATUS = 0x0113
    STREAM_CLOSE_REQUEST = 0x0114
    STREAM_CLOSE_RESPONSE = 0x0115
    STREAM_ERROR = 0x0116
    STREAM_BW_REQUEST = 0x0117
    STREAM_BW_ALLOCATION = 0x0118
    DATA_PROVISION = 0x0211


class EmmgMuxParam(IntEnum):
    """EMMG/PDG⇔MUX parameter_type values (TS 103 197 §6.2)."""

    CLIENT_ID = 0x0001
    SECTION_TSPKT_FLAG = 0x0002
    DATA_CHANNEL_ID = 0x0003
    DATA_STREAM_ID = 0x0004
    DATAGRAM = 0x0005
    BANDWIDTH = 0x0006
    DATA_TYPE = 0x0007
    DATA_ID = 0x0008
    ERROR_STATUS = 0x7000
    ERROR_INFORMATION = 0x7001


def _uint(ptype: int, name: str, width: int, unit: str = "") -> ParamSpec:
    return ParamSpec(type=ptype, name=name, kind=ParamKind.UINT,
                     lengths=((1, width, width),), unit=unit)


def _sint(ptype: int, name: str, width: int, unit: str = "") -> ParamSpec:
    return ParamSpec(type=ptype, name=name, kind=ParamKind.SINT,
                     lengths=((1, width, width),), unit=unit)


def _bytes(ptype: int, name: str, lo: int = 0, hi: int = 0xFFFF) -> ParamSpec:
    return ParamSpec(type=ptype, name=name, kind=ParamKind.BYTES, lengths=((1, lo, hi),))


_E = EcmgScsParam
_ECMG_PARAMS: dict[int, ParamSpec] = {p.type: p for p in (
    _uint(_E.SUPER_CAS_ID, "Super_CAS_id", 4),
    _uint(_E.SECTION_TSPKT_FLAG, "section_TSpkt_flag", 1),
    _sint(_E.DELAY_START, "delay_start", 2, "ms"),
    _sint(_E.DELAY_STOP, "delay_stop", 2, "ms"),
    _sint(_E.TRANSITION_DELAY_START, "transition_delay_start", 2, "ms"),
    _sint(_E.TRANSITION_DELAY_STOP, "transition_delay_stop", 2, "ms"),
    _uint(_E.ECM_REP_PERIOD, "ECM_rep_period", 2, "ms"),
    _uint(_E.MAX_STREAMS, "max_streams", 2),
    _uint(_E.MIN_CP_DURATION, "min_CP_duration", 2, "100 ms"),
    _uint(_E.LEAD_CW, "lead_CW", 1),
    _uint(_E.CW_PER_MSG, "CW_per_msg", 1),
    _uint(_E.MAX_COMP_TIME, "max_comp_time", 2, "ms"),
    _bytes(_E.ACCESS_CRITERIA, "access_criteria"),
    _uint(_E.ECM_CHANNEL_ID, "ECM_channel_id", 2),
    _uint(_E.ECM_STREAM_ID, "ECM_stream_id", 2),
    _uint(_E.NOMINAL_CP_DURATION, "nominal_CP_duration", 2, "100 ms"),
    _uint(_E.ACCESS_CRITERIA_TRANSFER_MODE, "access_criteria_transfer_mode", 1),
    _uint(_E.CP_NUMBER, "CP_number", 2),
    _uint(_E.CP_DURATION, "CP_duration", 2, "100 ms"),
    # V1: CP (2) + an 8-byte CW; from V2 on the CW length is free (16 for AES-based modes).
    ParamSpec(type=_E.CP_CW_COMBINATION, name="CP_CW_combination", kind=ParamKind.BYTES,
              lengths=((1, 10, 10), (2, 2, 0xFFFF))),
    _bytes(_E.ECM_DATAGRAM, "ECM_datagram"),
    _sint(_E.AC_DELAY_START, "AC_delay_start", 2, "ms"),
    _sint(_E.AC_DELAY_STOP, "AC_delay_stop", 2, "ms"),
    _bytes(_E.CW_ENCRYPTION, "CW_encryption"),
    _uint(_E.ECM_ID, "ECM_id", 2),
    _uint(_E.ERROR_STATUS, "error_status", 2),
    # TSDuck sends 2 bytes, Wireshark shows octets: accept any length, send 2.
    _bytes(_E.ERROR_INFORMATION, "error_information"),
)}

_M = EcmgScsMessage
_ECMG_MESSAGES: dict[int, MessageSpec] = {m.type: m for m in (
    MessageSpec(type=_M.CHANNEL_SETUP, name="channel_setup", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.SUPER_CAS_ID: _ONE}),
    MessageSpec(type=_M.CHANNEL_TEST, name="channel_test", params={_E.ECM_CHANNEL_ID: _ONE}),
    MessageSpec(type=_M.CHANNEL_STATUS, name="channel_status", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.SECTION_TSPKT_FLAG: _ONE,
        _E.AC_DELAY_START: _OPT, _E.AC_DELAY_STOP: _OPT,
        _E.DELAY_START: _ONE, _E.DELAY_STOP: _ONE,
        _E.TRANSITION_DELAY_START: _OPT, _E.TRANSITION_DELAY_STOP: _OPT,
        _E.ECM_REP_PERIOD: _ONE, _E.MAX_STREAMS: _ONE, _E.MIN_CP_DURATION: _ONE,
        _E.LEAD_CW: _ONE, _E.CW_PER_MSG: _ONE, _E.MAX_COMP_TIME: _ONE}),
    MessageSpec(type=_M.CHANNEL_CLOSE, name="channel_close", params={_E.ECM_CHANNEL_ID: _ONE}),
    MessageSpec(type=_M.CHANNEL_ERROR, name="channel_error", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ERROR_STATUS: _SOME, _E.ERROR_INFORMATION: _MANY}),
    MessageSpec(type=_M.STREAM_SETUP, name="stream_setup", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE, _E.ECM_ID: _V2_ONE,
        _E.NOMINAL_CP_DURATION: _ONE}),
    MessageSpec(type=_M.STREAM_TEST, name="stream_test", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE}),
    MessageSpec(type=_M.STREAM_STATUS, name="stream_status", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE, _E.ECM_ID: _V2_ONE,
        _E.ACCESS_CRITERIA_TRANSFER_MODE: _ONE}),
    MessageSpec(type=_M.STREAM_CLOSE_REQUEST, name="stream_close_request", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE}),
    MessageSpec(type=_M.STREAM_CLOSE_RESPONSE, name="stream_close_response", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE}),
    MessageSpec(type=_M.STREAM_ERROR, name="stream_error", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE, _E.ERROR_STATUS: _SOME,
        _E.ERROR_INFORMATION: _MANY}),
    MessageSpec(type=_M.CW_PROVISION, name="CW_provision", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE, _E.CP_NUMBER: _ONE,
        _E.CW_ENCRYPTION: _V2_OPT, _E.CP_CW_COMBINATION: _MANY, _E.CP_DURATION: _OPT,
        _E.ACCESS_CRITERIA: _OPT}),
    MessageSpec(type=_M.ECM_RESPONSE, name="ECM_response", params={
        _E.ECM_CHANNEL_ID: _ONE, _E.ECM_STREAM_ID: _ONE, _E.CP_NUMBER: _ONE,
        _E.ECM_DATAGRAM: _ONE}),
)}

_P = EmmgMuxParam
_EMMG_PARAMS: dict[int, ParamSpec] = {p.type: p for p in (
    _uint(_P.CLIENT_ID, "client_id", 4),
    _uint(_P.SECTION_TSPKT_FLAG, "section_TSpkt_flag", 1),
    _uint(_P.DATA_CHANNEL_ID, "data_channel_id", 2),
    _uint(_P.DATA_STREAM_ID, "data_stream_id", 2),
    _bytes(_P.DATAGRAM, "datagram"),
    _uint(_P.BANDWIDTH, "bandwidth", 2, "kbit/s"),
    _uint(_P.DATA_TYPE, "data_type", 1),
    _uint(_P.DATA_ID, "data_id", 2),
    _uint(_P.ERROR_STATUS, "error_status", 2),
    _bytes(_P.ERROR_INFORMATION, "error_information"),
)}

_N = EmmgMuxMessage
_EMMG_MESSAGES: dict[int, MessageSpec] = {m.type: m for m in (
    MessageSpec(type=_N.CHANNEL_SETUP, name="channel_setup", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.SECTION_TSPKT_FLAG: _ONE}),
    MessageSpec(type=_N.CHANNEL_TEST, name="channel_test", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE}),
    MessageSpec(type=_N.CHANNEL_STATUS, name="channel_status", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.SECTION_TSPKT_FLAG: _ONE}),
    MessageSpec(type=_N.CHANNEL_CLOSE, name="channel_close", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE}),
    MessageSpec(type=_N.CHANNEL_ERROR, name="channel_error", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.ERROR_STATUS: _SOME,
        _P.ERROR_INFORMATION: _MANY}),
    MessageSpec(type=_N.STREAM_SETUP, name="stream_setup", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE,
        _P.DATA_ID: _DATA_ID, _P.DATA_TYPE: _ONE}),
    MessageSpec(type=_N.STREAM_TEST, name="stream_test", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE}),
    MessageSpec(type=_N.STREAM_STATUS, name="stream_status", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE,
        _P.DATA_ID: _DATA_ID, _P.DATA_TYPE: _ONE}),
    MessageSpec(type=_N.STREAM_CLOSE_REQUEST, name="stream_close_request", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE}),
    MessageSpec(type=_N.STREAM_CLOSE_RESPONSE, name="stream_close_response", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE}),
    MessageSpec(type=_N.STREAM_ERROR, name="stream_error", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE,
        _P.ERROR_STATUS: _SOME, _P.ERROR_INFORMATION: _MANY}),
    MessageSpec(type=_N.STREAM_BW_REQUEST, name="stream_BW_request", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE,
        _P.BANDWIDTH: _OPT}),
    MessageSpec(type=_N.STREAM_BW_ALLOCATION, name="stream_BW_allocation", params={
        _P.CLIENT_ID: _ONE, _P.DATA_CHANNEL_ID: _ONE, _P.DATA_STREAM_ID: _ONE,
        _P.BANDWIDTH: _OPT}),
    # V1: the ids are mandatory and data_id is optional (see _DATA_ID); from V2 on the ids
    # are optional (UDP) and data_id is mandatory.
    MessageSpec(type=_N.DATA_PROVISION, name="data_provision", params={
        _P.CLIENT_ID: _ONE,
        _P.DATA_CHANNEL_ID: ParamRule(counts=((1, 1, 1), (2, 0, 1))),
        _P.DATA_STREAM_ID: ParamRule(counts=((1, 1, 1), (2, 0, 1))),
        _P.DATA_ID: _DATA_ID, _P.DATAGRAM: _SOME}),
)}

ECMG_SCS = InterfaceSpec(
    interface=Interface.ECMG_SCS, versions=frozenset({1, 2, 3}), params=_ECMG_PARAMS,
    messages=_ECMG_MESSAGES, errors=EcmgScsError)
"""ECMG⇔SCS syntax, protocol versions 1-3 (V2 and V3 share the parameter set)."""

EMMG_MUX = InterfaceSpec(
    interface=Interface.EMMG_MUX, versions=frozenset({1, 2, 3, 4, 5}), params=_EMMG_PARAMS,
    messages=_EMMG_MESSAGES, errors=EmmgMuxError)
"""EMMG/PDG⇔MUX syntax, protocol versions 1-5 (V2+ share the parameter set)."""

INTERFACES: dict[Interface, InterfaceSpec] = {
    Interface.ECMG_SCS: ECMG_SCS, Interface.EMMG_MUX: EMMG_MUX}


def interface_of(message_type: int) -> InterfaceSpec | None:
    """Which interface a message_type belongs to (by its family, as Wireshark does)."""
    family = message_type & 0xFFF0
    if family in (0x0000, 0x0100, 0x0200):
        return ECMG_SCS
    if family in (0x0010, 0x0110, 0x0210):
        return EMMG_MUX
    return None


# --- validation ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Rules:
    """check_message's tables for one (interface, message_type, version), computed once."""

    name: str
    lengths: dict[int, tuple[int, int, str]]      # allowed parameter -> (min, max, name)
    counts: tuple[tuple[int, int, int, str], ...]  # (parameter, min, max, name)


_RULES: dict[tuple[int, int, int], _Rules] = {}


def _rules(spec: InterfaceSpec, mspec: MessageSpec, version: int) -> _Rules:
    key = (id(spec), mspec.type, version)
    found = _RULES.get(key)
    if found is None:
        lengths: dict[int, tuple[int, int, str]] = {}
        counts: list[tuple[int, int, int, str]] = []
        for ptype, rule in mspec.params.items():
            lo, hi = rule.count_range(version)
            pspec = spec.params[ptype]
            if hi > 0:
                lengths[ptype] = (*pspec.length_range(version), pspec.name)
            counts.append((ptype, lo, hi, pspec.name))
        found = _RULES[key] = _Rules(name=mspec.name, lengths=lengths, counts=tuple(counts))
    return found


def check_message(message: Message, spec: InterfaceSpec, *,
                  version: int | None = None) -> dict[int, list[bytes]]:
    """Check ``message`` against the interface syntax; return values grouped by type.

    Checks, in this order, each mapping to its ``error_status``: protocol version supported
    (inv_proto_version), message_type known (inv_message_type), every parameter known for this
    message and version (inv_param_type; user-defined types pass), each value length
    (inv_param_length), then occurrence counts: too few is missing_param, too many is
    inv_message.  ``version`` overrides the header's version (e.g. to read an answer sent in
    a version we do not support with our default's rules).
    """
    v = message.protocol_version if version is None else version
    if v not in spec.versions:
        raise SimulcryptFormatError(
            f"protocol_version {v} is not supported "
            f"(supported: {sorted(spec.versions)})", path="protocol_version",
            error_status=spec.status(ErrorKind.INV_PROTO_VERSION))
    mspec = spec.messages.get(message.message_type)
    if mspec is None:
        raise SimulcryptFormatError(
            f"unknown {spec.interface.value} message_type 0x{message.message_type:04X}",
            path="message_type", error_status=spec.status(ErrorKind.INV_MESSAGE_TYPE))
    rules = _rules(spec, mspec, v)
    grouped: dict[int, list[bytes]] = {}
    for index, p in enumerate(message.parameters):
        allowed = rules.lengths.get(p.type)
        if allowed is None:
            if p.type >= USER_DEFINED_MIN:
                grouped.setdefault(p.type, []).append(p.value)
                continue
            raise SimulcryptFormatError(
                f"parameter_type 0x{p.type:04X} is not part of {mspec.name} (version {v})",
                path=f"parameters[{index}]", parameter_type=p.type,
                error_status=spec.status(ErrorKind.INV_PARAM_TYPE))
        lo, hi, name = allowed
        if not lo <= len(p.value) <= hi:
            expected = f"{lo}" if lo == hi else f"{lo}..{hi}"
            raise SimulcryptFormatError(
                f"{name} has {len(p.value)} byte(s), expected {expected}",
                path=f"parameters[{index}].{name}", parameter_type=p.type,
                error_status=spec.status(ErrorKind.INV_PARAM_LENGTH))
        values = grouped.get(p.type)
        if values is None:
            grouped[p.type] = [p.value]
        else:
            values.append(p.value)
    for ptype, lo, hi, name in rules.counts:
        count = len(grouped.get(ptype, ()))
        if count < lo:
            raise SimulcryptFormatError(
                f"{mspec.name} lacks its mandatory {name}", path=f"{mspec.name}.{name}",
                parameter_type=ptype, error_status=spec.status(ErrorKind.MISSING_PARAM))
        if count > hi:
            raise SimulcryptFormatError(
                f"{mspec.name} carries {name} {count} times (at most {hi})",
                path=f"{mspec.name}.{name}", parameter_type=ptype,
                error_status=spec.status(ErrorKind.INV_MESSAGE))
    return grouped


# --- describe (for `cas decode`) ----------------------------------------------------------------
def _fingerprint(raw: bytes) -> str:
    return hashlib.sha256(b"cw|" + raw).hexdigest()[:8]


def _describe_value(spec: InterfaceSpec, pspec: ParamSpec, raw: bytes, *,
                    reveal: bool) -> Any:
    if spec.interface is Interface.ECMG_SCS and pspec.type == EcmgScsParam.CP_CW_COMBINATION:
        if len(raw) < 2:
            return {"raw": raw.hex()}
        cw = raw[2:]
        out: dict[str, Any] = {"CP_number": int.from_bytes(raw[:2], "big"),
                               "CW_length": len(cw)}
        # A CW in clear is key material: show it only when asked (cas decode --reveal).
        if reveal:
            out["CW"] = cw.hex()
        else:
            out["CW_fingerprint"] = _fingerprint(cw)
        return out
    if pspec.kind is ParamKind.BYTES:
        return raw.hex()
    lo, hi = pspec.length_range(2)
    if not lo <= len(raw) <= hi:
        return {"raw": raw.hex(), "error": "bad length"}
    value = pspec.decode(raw)
    if pspec.name == "error_status" and isinstance(value, int):
        return {"value": value, "name": spec.error_name(value)}
    return value


def describe(data: bytes, *, reveal: bool = False) -> dict[str, Any]:
    """A JSON-ready tree of one SimulCrypt message, for ``cas decode``.

    Unknown parameters appear with ``"name": "unknown"`` and their raw hex.  CWs inside
    CP_CW_combination are shown as a fingerprint unless ``reveal`` is true.  Raises
    :class:`SimulcryptFormatError` when the frame itself does not parse.
    """
    message = parse_message(data)
    spec = interface_of(message.message_type)
    tree: dict[str, Any] = {
        "kind": "simulcrypt",
        "interface": spec.interface.value if spec else "unknown",
        "protocol_version": message.protocol_version,
        "message_type": f"0x{message.message_type:04X}",
        "message": "unknown",
        "message_length": message.message_length,
    }
    mspec = spec.messages.get(message.message_type) if spec else None
    if mspec is not None:
        tree["message"] = mspec.name
    elif message.message_type >= USER_DEFINED_MIN:
        tree["message"] = "user_defined"
    params: list[dict[str, Any]] = []
    for p in message.parameters:
        entry: dict[str, Any] = {"type": f"0x{p.type:04X}", "length": len(p.value)}
        pspec = spec.params.get(p.type) if spec else None
        if pspec is None:
            entry["name"] = "user_defined" if p.type >= USER_DEFINED_MIN else "unknown"
            entry["raw"] = p.value.hex()
        else:
            entry["name"] = pspec.name
            entry["value"] = _describe_value(spec, pspec, p.value, reveal=reveal) \
                if spec else p.value.hex()
            if pspec.unit:
                entry["unit"] = pspec.unit
        params.append(entry)
    tree["parameters"] = params
    if spec is not None:
        try:
            check_message(message, spec)
            tree["valid"] = True
        except SimulcryptFormatError as exc:
            tree["valid"] = False
            tree["problem"] = {"error_status": f"0x{exc.error_status:04X}",
                               "name": spec.error_name(exc.error_status), "detail": str(exc)}
    return tree


def looks_like_simulcrypt(data: bytes) -> bool:
    """Cheap detection for ``cas decode``: a whole frame of a known interface."""
    if len(data) < HEADER_SIZE:
        return False
    try:
        message = parse_message(data)
    except SimulcryptFormatError:
        return False
    spec = interface_of(message.message_type)
    return spec is not None and message.message_type in spec.messages \
        and message.protocol_version in spec.versions


def iter_frames(data: bytes) -> Iterable[Message]:
    """Split a byte string holding back-to-back frames (e.g. a TCP capture) into messages."""
    pos = 0
    while pos < len(data):
        end = pos + frame_length(data[pos:pos + HEADER_SIZE])
        if end > len(data):
            raise SimulcryptFormatError("truncated frame at the end of the data",
                                        path=f"offset {pos}",
                                        error_status=EcmgScsError.INV_MESSAGE)
        yield parse_message(data[pos:end])
        pos = end
