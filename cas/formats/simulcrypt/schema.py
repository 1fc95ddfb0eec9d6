"""The syntax of a SimulCrypt interface, and the check of a message against it.

A schema says, per interface (:class:`InterfaceSpec`): which protocol versions exist, each
parameter's name, value kind and allowed lengths (:class:`ParamSpec`), and which parameters
each message carries how often (:class:`MessageSpec`, :class:`ParamRule`) — all by version.
The two interfaces' schemas are data, in :mod:`.tables`; :func:`check_message` reads them.

It does not know the protocol's *states* (that is :mod:`cas.headend.simulcrypt`).

:func:`check_message` rejects DVB-reserved unknown parameter types (``inv_param_type``) but
lets user-defined types (``0x8000``-``0xFFFF``, TS 103 197 parameter tables) through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum

from .frame import Message, SimulcryptFormatError
from .ids import USER_DEFINED_MIN, ErrorKind, Interface


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


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSpec:
    type: int
    name: str
    params: Mapping[int, ParamRule]



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
            error_status=spec.status(ErrorKind.INV_PROTO_VERSION)).with_id(
            "formats.protocol_version_protocol_version", v=v, versions=sorted(spec.versions))
    mspec = spec.messages.get(message.message_type)
    if mspec is None:
        raise SimulcryptFormatError(
            f"unknown {spec.interface.value} message_type 0x{message.message_type:04X}",
            path="message_type", error_status=spec.status(ErrorKind.INV_MESSAGE_TYPE)).with_id(
            "formats.message_type_unknown_message", value=spec.interface.value,
            message_type=f"{message.message_type:04X}")
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
                error_status=spec.status(ErrorKind.INV_PARAM_TYPE)).with_id(
                "formats.parameter_type_x_not", field=f"parameters[{index}]", type=f"{p.type:04X}",
                name=mspec.name, v=v)
        lo, hi, name = allowed
        if not lo <= len(p.value) <= hi:
            expected = f"{lo}" if lo == hi else f"{lo}..{hi}"
            raise SimulcryptFormatError(
                f"{name} has {len(p.value)} byte(s), expected {expected}",
                path=f"parameters[{index}].{name}", parameter_type=p.type,
                error_status=spec.status(ErrorKind.INV_PARAM_LENGTH)).with_id(
                "formats.byte_expected", field=f"parameters[{index}].{name}", name=name,
                n=len(p.value), expected=expected)
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
                parameter_type=ptype, error_status=spec.status(ErrorKind.MISSING_PARAM)).with_id(
                "formats.lacks_mandatory", field=f"{mspec.name}.{name}", name=mspec.name,
                name2=name)
        if count > hi:
            raise SimulcryptFormatError(
                f"{mspec.name} carries {name} {count} times (at most {hi})",
                path=f"{mspec.name}.{name}", parameter_type=ptype,
                error_status=spec.status(ErrorKind.INV_MESSAGE)).with_id(
                "formats.carries_times_most", field=f"{mspec.name}.{name}", name=mspec.name,
                name2=name, count=count, hi=hi)
    return grouped
