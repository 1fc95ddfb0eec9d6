"""EMMG/PDG⇔MUX events (ETSI TS 103 197 §6): one class per message.

``data_id`` is ``None`` only in protocol version 1 (which has none); ``data_channel_id`` and
``data_stream_id`` may be ``None`` in a V2+ data_provision (the UDP form identifies the stream
by client_id and data_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from cas.formats.simulcrypt import EMMG_MUX, EmmgMuxMessage, InterfaceSpec
from cas.formats.simulcrypt import EmmgMuxParam as P

from .events import Event, Kind

SPEC = EMMG_MUX


class DataType(IntEnum):
    """data_type (§6.2.4): what a stream carries."""

    EMM = 0x00
    PRIVATE_DATA = 0x01
    DVB_RESERVED = 0x02  # used for ECMs by some muxes


@dataclass(frozen=True, slots=True, kw_only=True)
class _EmmgEvent(Event):
    SPEC: ClassVar[InterfaceSpec] = EMMG_MUX
    _CHANNEL_FIELD: ClassVar[str] = "data_channel_id"


@dataclass(frozen=True, slots=True, kw_only=True)
class _StreamEvent(_EmmgEvent):
    _STREAM_FIELD: ClassVar[str] = "data_stream_id"


_CH = (("client_id", P.CLIENT_ID), ("data_channel_id", P.DATA_CHANNEL_ID))
_ST = (*_CH, ("data_stream_id", P.DATA_STREAM_ID))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSetup(_EmmgEvent):
    """channel_setup (§6.2.1): the EMMG opens a data channel, saying sections or packets."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.CHANNEL_SETUP
    KIND: ClassVar[Kind] = Kind.CHANNEL_SETUP
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_CH, ("section_tspkt_flag", P.SECTION_TSPKT_FLAG))

    client_id: int
    data_channel_id: int
    section_tspkt_flag: int

    def _validate(self) -> None:
        if self.section_tspkt_flag not in (0, 1):
            raise self._invalid(f"section_TSpkt_flag {self.section_tspkt_flag} is not 0 or 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelTest(_EmmgEvent):
    """channel_test (§6.2.2): answered by channel_status."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.CHANNEL_TEST
    KIND: ClassVar[Kind] = Kind.CHANNEL_TEST
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _CH

    client_id: int
    data_channel_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatus(_EmmgEvent):
    """channel_status (§6.2.3): the mux accepts the channel (or answers channel_test)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.CHANNEL_STATUS
    KIND: ClassVar[Kind] = Kind.CHANNEL_STATUS
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_CH, ("section_tspkt_flag", P.SECTION_TSPKT_FLAG))

    client_id: int
    data_channel_id: int
    section_tspkt_flag: int

    def _validate(self) -> None:
        if self.section_tspkt_flag not in (0, 1):
            raise self._invalid(f"section_TSpkt_flag {self.section_tspkt_flag} is not 0 or 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelClose(_EmmgEvent):
    """channel_close (§6.2.4): the EMMG closes the channel."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.CHANNEL_CLOSE
    KIND: ClassVar[Kind] = Kind.CHANNEL_CLOSE
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _CH

    client_id: int
    data_channel_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelError(_EmmgEvent):
    """channel_error (§6.2.5)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.CHANNEL_ERROR
    KIND: ClassVar[Kind] = Kind.CHANNEL_ERROR
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_CH, ("error_status", P.ERROR_STATUS), ("error_information", P.ERROR_INFORMATION))

    client_id: int
    data_channel_id: int
    error_status: tuple[int, ...]
    error_information: tuple[bytes, ...] = ()

    def _validate(self) -> None:
        if not self.error_status:
            raise self._invalid("needs at least one error_status")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSetup(_StreamEvent):
    """stream_setup (§6.2.6): a stream of ``data_type`` identified by ``data_id``."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_SETUP
    KIND: ClassVar[Kind] = Kind.STREAM_SETUP
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST, ("data_id", P.DATA_ID), ("data_type", P.DATA_TYPE))

    client_id: int
    data_channel_id: int
    data_stream_id: int
    data_type: int
    data_id: int | None = None

    def _validate(self) -> None:
        if self.data_type not in tuple(DataType):
            raise self._invalid(f"data_type 0x{self.data_type:02X} is reserved")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTest(_StreamEvent):
    """stream_test (§6.2.7): answered by stream_status."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_TEST
    KIND: ClassVar[Kind] = Kind.STREAM_TEST
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _ST

    client_id: int
    data_channel_id: int
    data_stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStatus(_StreamEvent):
    """stream_status (§6.2.8)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_STATUS
    KIND: ClassVar[Kind] = Kind.STREAM_STATUS
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST, ("data_id", P.DATA_ID), ("data_type", P.DATA_TYPE))

    client_id: int
    data_channel_id: int
    data_stream_id: int
    data_type: int
    data_id: int | None = None

    def _validate(self) -> None:
        if self.data_type not in tuple(DataType):
            raise self._invalid(f"data_type 0x{self.data_type:02X} is reserved")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamCloseRequest(_StreamEvent):
    """stream_close_request (§6.2.9)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_CLOSE_REQUEST
    KIND: ClassVar[Kind] = Kind.STREAM_CLOSE_REQUEST
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _ST

    client_id: int
    data_channel_id: int
    data_stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamCloseResponse(_StreamEvent):
    """stream_close_response (§6.2.10)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_CLOSE_RESPONSE
    KIND: ClassVar[Kind] = Kind.STREAM_CLOSE_RESPONSE
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _ST

    client_id: int
    data_channel_id: int
    data_stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamError(_StreamEvent):
    """stream_error (§6.2.11)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_ERROR
    KIND: ClassVar[Kind] = Kind.STREAM_ERROR
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST, ("error_status", P.ERROR_STATUS), ("error_information", P.ERROR_INFORMATION))

    client_id: int
    data_channel_id: int
    data_stream_id: int
    error_status: tuple[int, ...]
    error_information: tuple[bytes, ...] = ()

    def _validate(self) -> None:
        if not self.error_status:
            raise self._invalid("needs at least one error_status")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamBwRequest(_StreamEvent):
    """stream_BW_request (§6.2.12): the EMMG asks for ``bandwidth_kbps`` (or its current one)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_BW_REQUEST
    KIND: ClassVar[Kind] = Kind.STREAM_BW_REQUEST
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (*_ST, ("bandwidth_kbps", P.BANDWIDTH))

    client_id: int
    data_channel_id: int
    data_stream_id: int
    bandwidth_kbps: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamBwAllocation(_StreamEvent):
    """stream_BW_allocation (§6.2.13): the bandwidth the mux grants (may differ)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.STREAM_BW_ALLOCATION
    KIND: ClassVar[Kind] = Kind.STREAM_BW_ALLOCATION
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (*_ST, ("bandwidth_kbps", P.BANDWIDTH))

    client_id: int
    data_channel_id: int
    data_stream_id: int
    bandwidth_kbps: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DataProvision(_StreamEvent):
    """data_provision (§6.2.14): one or more datagrams (sections or TS packets)."""

    MESSAGE_TYPE: ClassVar[int] = EmmgMuxMessage.DATA_PROVISION
    KIND: ClassVar[Kind] = Kind.DATA_PROVISION
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        ("client_id", P.CLIENT_ID), ("data_channel_id", P.DATA_CHANNEL_ID),
        ("data_stream_id", P.DATA_STREAM_ID), ("data_id", P.DATA_ID),
        ("datagrams", P.DATAGRAM))

    client_id: int
    datagrams: tuple[bytes, ...]
    data_channel_id: int | None = None
    data_stream_id: int | None = None
    data_id: int | None = None

    def _validate(self) -> None:
        if not self.datagrams or any(not d for d in self.datagrams):
            raise self._invalid("needs at least one non-empty datagram")


EVENTS: dict[int, type[Event]] = {cls.MESSAGE_TYPE: cls for cls in (
    ChannelSetup, ChannelTest, ChannelStatus, ChannelClose, ChannelError,
    StreamSetup, StreamTest, StreamStatus, StreamCloseRequest, StreamCloseResponse,
    StreamError, StreamBwRequest, StreamBwAllocation, DataProvision)}
"""message_type -> event class."""
