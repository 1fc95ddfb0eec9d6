"""Events: one frozen, keyword-only dataclass per SimulCrypt message.

An event validates itself when it is built (ranges from the parameter widths, plus the
semantic rules each message adds), and raises :class:`cas.errors.LocalProtocolError` with the
``error_status`` a peer would answer with.  When the same event is decoded from the wire, the
connection turns that into a :class:`PeerProtocolError` (the peer's fault) instead.

The mapping between dataclass fields and TLV parameters is declared once per class in
``_FIELDS``; encoding and decoding are generic (:meth:`Event.to_message`,
:meth:`Event.from_message`).  Parameters of user-defined types (``0x8000``-``0xFFFF``) are
kept in ``extra`` as raw :class:`~cas.formats.simulcrypt.Parameter`, never dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from cas.errors import LocalProtocolError, RemoteProtocolError
from cas.formats.simulcrypt import (
    USER_DEFINED_MIN,
    EcmgScsError,
    ErrorKind,
    InterfaceSpec,
    Message,
    MessageSpec,
    Parameter,
    ParamKind,
    ParamSpec,
    SimulcryptFormatError,
    check_message,
)


class Kind(Enum):
    """Interface-neutral message kinds; the state tables in :mod:`.state` are keyed by them."""

    CHANNEL_SETUP = "channel_setup"
    CHANNEL_TEST = "channel_test"
    CHANNEL_STATUS = "channel_status"
    CHANNEL_CLOSE = "channel_close"
    CHANNEL_ERROR = "channel_error"
    STREAM_SETUP = "stream_setup"
    STREAM_TEST = "stream_test"
    STREAM_STATUS = "stream_status"
    STREAM_CLOSE_REQUEST = "stream_close_request"
    STREAM_CLOSE_RESPONSE = "stream_close_response"
    STREAM_ERROR = "stream_error"
    CW_PROVISION = "CW_provision"
    ECM_RESPONSE = "ECM_response"
    STREAM_BW_REQUEST = "stream_BW_request"
    STREAM_BW_ALLOCATION = "stream_BW_allocation"
    DATA_PROVISION = "data_provision"

    @property
    def is_channel_level(self) -> bool:
        return self.name.startswith("CHANNEL_")


class PeerProtocolError(RemoteProtocolError):
    """The peer sent a message we must refuse.

    Carries what is needed to answer it: ``error_status`` (the interface's code),
    ``channel_id`` / ``stream_id`` taken from the message when they could be read,
    ``stream_level`` (answer with stream_error rather than channel_error) and
    ``parameter_type`` (sent back as error_information).  The offending message has been
    consumed; the connection stays usable.
    """

    def __init__(self, message: str, *, error_status: int, channel_id: int | None = None,
                 stream_id: int | None = None, stream_level: bool = False,
                 parameter_type: int | None = None, message_type: int | None = None) -> None:
        super().__init__(message, error_status=error_status)
        self.channel_id = channel_id
        self.stream_id = stream_id
        self.stream_level = stream_level
        self.parameter_type = parameter_type
        self.message_type = message_type


@dataclass(frozen=True, slots=True, kw_only=True)
class CpCw:
    """One CP_CW_combination: a crypto-period number and its control word.

    The CW is key material: it never appears in ``repr``.
    """

    cp_number: int
    cw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.cp_number <= 0xFFFF:
            raise LocalProtocolError(f"CP_number {self.cp_number} is not a u16",
                                     error_status=EcmgScsError.INV_PARAM_VALUE).with_id(
                "headend.cp_number_not_u16", cp_number=self.cp_number)

    def to_bytes(self) -> bytes:
        return self.cp_number.to_bytes(2, "big") + self.cw

    @classmethod
    def from_bytes(cls, raw: bytes) -> CpCw:
        return cls(cp_number=int.from_bytes(raw[:2], "big"), cw=raw[2:])


_NO_FIELDS: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every SimulCrypt event.

    Subclasses set ``SPEC`` (the interface syntax), ``MESSAGE_TYPE``, ``KIND``, ``_FIELDS``
    (``(field name, parameter_type)`` in the order we write them) and the names of their
    channel and stream id fields.
    """

    SPEC: ClassVar[InterfaceSpec]
    MESSAGE_TYPE: ClassVar[int]
    KIND: ClassVar[Kind]
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _NO_FIELDS
    _CHANNEL_FIELD: ClassVar[str] = ""
    _STREAM_FIELD: ClassVar[str] = ""
    #: Parameters whose value is a structure rather than an int or opaque bytes.
    _DECODERS: ClassVar[Mapping[int, Callable[[bytes], Any]]] = {}

    extra: tuple[Parameter, ...] = ()

    # --- validation -------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for name, lo, hi, pname in _ranges(type(self)):
            value = getattr(self, name)
            if value is None:
                continue
            for v in value if isinstance(value, tuple) else (value,):
                if not isinstance(v, int) or not lo <= v <= hi:
                    raise LocalProtocolError(
                        f"{self.KIND.value}: {pname}={v!r} is outside {lo}..{hi}",
                        error_status=self.SPEC.status(ErrorKind.INV_PARAM_VALUE)).with_id(
                        "headend.outside", value=self.KIND.value, pname=pname, v=f"{v!r}", lo=lo,
                        hi=hi)
        for p in self.extra:
            if p.type < USER_DEFINED_MIN:
                raise LocalProtocolError(
                    f"extra parameter 0x{p.type:04X} is not user defined "
                    f"(0x{USER_DEFINED_MIN:04X}-0xFFFF)",
                    error_status=self.SPEC.status(ErrorKind.INV_PARAM_TYPE)).with_id(
                    "headend.extra_parameter_x_not", type=f"{p.type:04X}",
                    user_defined_min=f"{USER_DEFINED_MIN:04X}")
        self._validate()

    def _validate(self) -> None:
        """Message-specific rules; raise LocalProtocolError with the matching status."""

    def _invalid(self, text: str, kind: ErrorKind = ErrorKind.INV_PARAM_VALUE) -> LocalProtocolError:
        return LocalProtocolError(f"{self.KIND.value}: {text}", error_status=self.SPEC.status(kind))

    # --- ids ----------------------------------------------------------------------------------
    @property
    def channel_id(self) -> int | None:
        return getattr(self, self._CHANNEL_FIELD) if self._CHANNEL_FIELD else None

    @property
    def stream_id(self) -> int | None:
        return getattr(self, self._STREAM_FIELD) if self._STREAM_FIELD else None

    def summary(self) -> str:
        """One line for logs: the message, its ids, CP number, sizes and error statuses —
        never CWs or datagram bytes."""
        parts = [self.KIND.value]
        if self.channel_id is not None:
            parts.append(f"channel={self.channel_id}")
        if self.stream_id is not None:
            parts.append(f"stream={self.stream_id}")
        for name in ("client_id", "super_cas_id"):
            value = getattr(self, name, None)
            if value is not None:
                parts.append(f"{name}=0x{value:08X}")
        for name in ("ecm_id", "data_id", "cp_number", "bandwidth_kbps", "section_tspkt_flag",
                     "nominal_cp_duration_100ms", "max_comp_time_ms"):
            value = getattr(self, name, None)
            if value is not None:
                parts.append(f"{name}={value}")
        combos = getattr(self, "cp_cw_combinations", None)
        if combos:
            parts.append("CWs for CP " + ",".join(str(c.cp_number) for c in combos))
        datagram = getattr(self, "ecm_datagram", None)
        if datagram is not None:
            parts.append(f"ECM_datagram {len(datagram)} bytes")
        datagrams = getattr(self, "datagrams", None)
        if datagrams:
            parts.append(f"{len(datagrams)} datagram(s), {sum(map(len, datagrams))} bytes")
        statuses = getattr(self, "error_status", None)
        if statuses:
            parts.append("error_status " + ", ".join(
                f"0x{s:04X} {self.SPEC.error_name(s)}" for s in statuses))
        return " ".join(parts)

    # --- wire ---------------------------------------------------------------------------------
    @classmethod
    def message_spec(cls) -> MessageSpec:
        return cls.SPEC.messages[cls.MESSAGE_TYPE]

    def to_message(self, version: int, *, syntax: int | None = None) -> Message:
        """Encode as a message of protocol ``version`` (LocalProtocolError if it cannot be).

        ``syntax`` picks the parameter rules when they must differ from the header's version
        (an error answered in a version we do not support uses our default's rules).
        """
        params: list[Parameter] = []
        for name, ptype, lo, hi, plo, phi, pspec in _wire_plan(
                type(self), version if syntax is None else syntax):
            value = getattr(self, name)
            values: tuple[Any, ...] = () if value is None else (
                value if isinstance(value, tuple) else (value,))
            if not lo <= len(values) <= hi:
                raise LocalProtocolError(
                    f"{self.KIND.value} in version {version} needs {lo}..{hi} {pspec.name}, "
                    f"got {len(values)}", error_status=self.SPEC.status(
                        ErrorKind.MISSING_PARAM if len(values) < lo else ErrorKind.INV_MESSAGE)).with_id(
                    "headend.version_needs", value=self.KIND.value, version=version, lo=lo, hi=hi,
                    name=pspec.name, n=len(values))
            for v in values:
                raw = v.to_bytes() if isinstance(v, CpCw) else pspec.encode(v, 2)
                if not plo <= len(raw) <= phi:
                    raise LocalProtocolError(
                        f"{pspec.name} of {len(raw)} bytes is not allowed in version {version}",
                        error_status=self.SPEC.status(ErrorKind.INV_PARAM_LENGTH)).with_id(
                        "headend.bytes_not_allowed_version", name=pspec.name, n=len(raw),
                        version=version)
                params.append(Parameter(type=ptype, value=raw))
        params.extend(self.extra)
        return Message(protocol_version=version, message_type=self.MESSAGE_TYPE,
                       parameters=tuple(params))

    @classmethod
    def from_message(cls, message: Message, grouped: Mapping[int, list[bytes]],
                     version: int) -> Event:
        """Decode from a message already checked by :func:`check_message`.

        Value errors raise :class:`PeerProtocolError` with the status the event's own
        validation chose.
        """
        spec = cls.SPEC
        kwargs: dict[str, Any] = {}
        for name, ptype, many, decoder in _decode_plan(cls):
            raws = grouped.get(ptype)
            if not raws:
                if many:
                    kwargs[name] = ()
                continue
            if many:
                kwargs[name] = tuple(decoder(r) for r in raws)
            else:
                kwargs[name] = decoder(raws[0])
        kwargs["extra"] = tuple(p for p in message.parameters if p.type >= USER_DEFINED_MIN
                                and p.type not in _known_types(cls))
        try:
            return cls(**kwargs)
        except LocalProtocolError as exc:
            raise PeerProtocolError(
                str(exc), error_status=exc.error_status, message_type=cls.MESSAGE_TYPE,
                channel_id=kwargs.get(cls._CHANNEL_FIELD) if cls._CHANNEL_FIELD else None,
                stream_id=kwargs.get(cls._STREAM_FIELD) if cls._STREAM_FIELD else None,
                stream_level=not cls.KIND.is_channel_level).with_message_of(exc) from exc
        except TypeError as exc:
            # A mandatory field absent although the syntax check passed: only possible for
            # V1 messages decoded into a V2-only event shape.
            raise PeerProtocolError(
                f"{cls.KIND.value}: {exc}", message_type=cls.MESSAGE_TYPE,
                error_status=spec.status(ErrorKind.MISSING_PARAM)).with_id(
                "headend.error", value=cls.KIND.value, exc=exc) from exc

    def replace(self, **changes: Any) -> Event:
        return dataclasses.replace(self, **changes)


# --- per-class plans, computed once: the generic code stays off the hot path ---------------
_RANGE_CACHE: dict[type[Event], tuple[tuple[str, int, int, str], ...]] = {}
_WIRE_CACHE: dict[tuple[type[Event], int], tuple[tuple[str, int, int, int, int, int, ParamSpec],
                                                 ...]] = {}
_DECODE_CACHE: dict[type[Event], tuple[tuple[str, int, bool, Callable[[bytes], Any]], ...]] = {}
_KNOWN_CACHE: dict[type[Event], frozenset[int]] = {}


def _ranges(cls: type[Event]) -> tuple[tuple[str, int, int, str], ...]:
    """(field, min, max, parameter name) of every integer field."""
    found = _RANGE_CACHE.get(cls)
    if found is None:
        out = []
        for name, ptype in cls._FIELDS:
            pspec = cls.SPEC.params[ptype]
            if pspec.kind is ParamKind.BYTES:
                continue
            width = pspec.length_range(2)[0] * 8
            if pspec.kind is ParamKind.UINT:
                out.append((name, 0, (1 << width) - 1, pspec.name))
            else:
                out.append((name, -(1 << (width - 1)), (1 << (width - 1)) - 1, pspec.name))
        found = _RANGE_CACHE[cls] = tuple(out)
    return found


def _wire_plan(cls: type[Event], version: int
               ) -> tuple[tuple[str, int, int, int, int, int, ParamSpec], ...]:
    """(field, type, min/max count, min/max length, spec) per field for ``version``."""
    key = (cls, version)
    found = _WIRE_CACHE.get(key)
    if found is None:
        mspec = cls.message_spec()
        out = []
        for name, ptype in cls._FIELDS:
            pspec = cls.SPEC.params[ptype]
            lo, hi = mspec.params[ptype].count_range(version)
            plo, phi = pspec.length_range(version)
            out.append((name, ptype, lo, hi, plo, phi, pspec))
        found = _WIRE_CACHE[key] = tuple(out)
    return found


def _decode_plan(cls: type[Event]) -> tuple[tuple[str, int, bool, Callable[[bytes], Any]], ...]:
    """(field, type, repeated, decoder) per field; the field shapes follow version 2."""
    found = _DECODE_CACHE.get(cls)
    if found is None:
        mspec = cls.message_spec()
        found = _DECODE_CACHE[cls] = tuple(
            (name, ptype, mspec.params[ptype].count_range(2)[1] > 1,
             cls._DECODERS.get(ptype, cls.SPEC.params[ptype].decode))
            for name, ptype in cls._FIELDS)
    return found


def _known_types(cls: type[Event]) -> frozenset[int]:
    found = _KNOWN_CACHE.get(cls)
    if found is None:
        found = _KNOWN_CACHE[cls] = frozenset(ptype for _, ptype in cls._FIELDS)
    return found


def decode_event(message: Message, events: Mapping[int, type[Event]], spec: InterfaceSpec,
                 *, version: int | None = None) -> Event:
    """Check ``message`` against ``spec`` and decode it into its event class.

    Raises :class:`PeerProtocolError` with the ``error_status`` of the first problem found
    (see :func:`cas.formats.simulcrypt.check_message` for the order of the checks).
    """
    cls = events.get(message.message_type)
    try:
        grouped = check_message(message, spec, version=version)
    except SimulcryptFormatError as exc:
        channel_id, stream_id = ids_from(message, cls)
        raise PeerProtocolError(
            str(exc), error_status=exc.error_status, channel_id=channel_id,
            stream_id=stream_id, parameter_type=exc.parameter_type,
            message_type=message.message_type,
            stream_level=cls is not None and not cls.KIND.is_channel_level).with_message_of(
                exc) from exc
    assert cls is not None  # check_message rejected unknown message types
    return cls.from_message(message, grouped,
                            message.protocol_version if version is None else version)


def ids_from(message: Message, cls: type[Event] | None) -> tuple[int | None, int | None]:
    """Best-effort channel/stream ids from a message that failed the syntax check."""
    if cls is None:
        return None, None
    ids: list[int | None] = []
    for fname in (cls._CHANNEL_FIELD, cls._STREAM_FIELD):
        ptype = next((t for n, t in cls._FIELDS if n == fname), None)
        values = message.values(ptype) if ptype is not None else []
        ids.append(int.from_bytes(values[0], "big") if len(values) == 1 and len(values[0]) == 2
                   else None)
    return ids[0], ids[1]


def error_information_for(parameter_type: int | None) -> tuple[bytes, ...]:
    """error_information we send: the offending parameter type as 2 bytes (as TSDuck does)."""
    return () if parameter_type is None else (parameter_type.to_bytes(2, "big"),)
