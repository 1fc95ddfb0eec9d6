"""ECMG⇔SCS events (ETSI TS 103 197 §5): one class per message.

Field names follow the spec's parameter names in snake_case, with the unit appended where
the spec gives one (``delay_start_ms``, ``nominal_cp_duration_100ms``).  ``ecm_id`` is
``None`` only in protocol version 1, which has no ECM_id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cas.formats.simulcrypt import ECMG_SCS, EcmgScsMessage, InterfaceSpec
from cas.formats.simulcrypt import EcmgScsParam as P

from .events import CpCw, Event, Kind

SPEC = ECMG_SCS

#: CW lengths we accept in a CP_CW_combination: 8 (DVB-CSA2) or 16 (CISSA, CSA3, IDSA).
CW_LENGTHS = frozenset({8, 16})


_CH = (("ecm_channel_id", P.ECM_CHANNEL_ID),)
_ST = (*_CH, ("ecm_stream_id", P.ECM_STREAM_ID))


@dataclass(frozen=True, slots=True, kw_only=True)
class _EcmgEvent(Event):
    SPEC: ClassVar[InterfaceSpec] = ECMG_SCS
    _CHANNEL_FIELD: ClassVar[str] = "ecm_channel_id"


@dataclass(frozen=True, slots=True, kw_only=True)
class _StreamEvent(_EcmgEvent):
    _STREAM_FIELD: ClassVar[str] = "ecm_stream_id"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSetup(_EcmgEvent):
    """channel_setup (§5.3.1): the SCS opens an ECM channel for a Super_CAS_id."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.CHANNEL_SETUP
    KIND: ClassVar[Kind] = Kind.CHANNEL_SETUP
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_CH, ("super_cas_id", P.SUPER_CAS_ID))

    ecm_channel_id: int
    super_cas_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelTest(_EcmgEvent):
    """channel_test (§5.3.2): either side checks the channel; answered by channel_status."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.CHANNEL_TEST
    KIND: ClassVar[Kind] = Kind.CHANNEL_TEST
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _CH

    ecm_channel_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatus(_EcmgEvent):
    """channel_status (§5.3.3): the ECMG's answer to setup/test, with its timing needs."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.CHANNEL_STATUS
    KIND: ClassVar[Kind] = Kind.CHANNEL_STATUS
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_CH, ("section_tspkt_flag", P.SECTION_TSPKT_FLAG),
        ("ac_delay_start_ms", P.AC_DELAY_START), ("ac_delay_stop_ms", P.AC_DELAY_STOP),
        ("delay_start_ms", P.DELAY_START), ("delay_stop_ms", P.DELAY_STOP),
        ("transition_delay_start_ms", P.TRANSITION_DELAY_START),
        ("transition_delay_stop_ms", P.TRANSITION_DELAY_STOP),
        ("ecm_rep_period_ms", P.ECM_REP_PERIOD), ("max_streams", P.MAX_STREAMS),
        ("min_cp_duration_100ms", P.MIN_CP_DURATION), ("lead_cw", P.LEAD_CW),
        ("cw_per_msg", P.CW_PER_MSG), ("max_comp_time_ms", P.MAX_COMP_TIME))

    ecm_channel_id: int
    section_tspkt_flag: int
    delay_start_ms: int
    delay_stop_ms: int
    ecm_rep_period_ms: int
    max_streams: int
    min_cp_duration_100ms: int
    lead_cw: int
    cw_per_msg: int
    max_comp_time_ms: int
    ac_delay_start_ms: int | None = None
    ac_delay_stop_ms: int | None = None
    transition_delay_start_ms: int | None = None
    transition_delay_stop_ms: int | None = None

    def _validate(self) -> None:
        if self.section_tspkt_flag not in (0, 1):
            raise self._invalid(f"section_TSpkt_flag {self.section_tspkt_flag} is not 0 or 1")
        if self.cw_per_msg < 1 or self.lead_cw >= self.cw_per_msg:
            raise self._invalid(
                f"lead_CW {self.lead_cw} needs CW_per_msg above it, got {self.cw_per_msg}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelClose(_EcmgEvent):
    """channel_close (§5.3.4): the SCS closes the channel (and with it, the connection)."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.CHANNEL_CLOSE
    KIND: ClassVar[Kind] = Kind.CHANNEL_CLOSE
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _CH

    ecm_channel_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelError(_EcmgEvent):
    """channel_error (§5.3.5): one or more error_status codes about the channel."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.CHANNEL_ERROR
    KIND: ClassVar[Kind] = Kind.CHANNEL_ERROR
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_CH, ("error_status", P.ERROR_STATUS),
        ("error_information", P.ERROR_INFORMATION))

    ecm_channel_id: int
    error_status: tuple[int, ...]
    error_information: tuple[bytes, ...] = ()

    def _validate(self) -> None:
        if not self.error_status:
            raise self._invalid("needs at least one error_status")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSetup(_StreamEvent):
    """stream_setup (§5.4.1): the SCS opens an ECM stream on the channel."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.STREAM_SETUP
    KIND: ClassVar[Kind] = Kind.STREAM_SETUP
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST,
        ("ecm_id", P.ECM_ID), ("nominal_cp_duration_100ms", P.NOMINAL_CP_DURATION))

    ecm_channel_id: int
    ecm_stream_id: int
    nominal_cp_duration_100ms: int
    ecm_id: int | None = None

    def _validate(self) -> None:
        if self.nominal_cp_duration_100ms == 0:
            raise self._invalid("nominal_CP_duration is 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTest(_StreamEvent):
    """stream_test (§5.4.2): either side checks a stream; answered by stream_status."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.STREAM_TEST
    KIND: ClassVar[Kind] = Kind.STREAM_TEST
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _ST

    ecm_channel_id: int
    ecm_stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStatus(_StreamEvent):
    """stream_status (§5.4.3): the ECMG accepts a stream (or answers stream_test)."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.STREAM_STATUS
    KIND: ClassVar[Kind] = Kind.STREAM_STATUS
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST,
        ("ecm_id", P.ECM_ID),
        ("access_criteria_transfer_mode", P.ACCESS_CRITERIA_TRANSFER_MODE))

    ecm_channel_id: int
    ecm_stream_id: int
    access_criteria_transfer_mode: int
    ecm_id: int | None = None

    def _validate(self) -> None:
        if self.access_criteria_transfer_mode not in (0, 1):
            raise self._invalid("access_criteria_transfer_mode is not 0 or 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamCloseRequest(_StreamEvent):
    """stream_close_request (§5.4.4): the SCS closes a stream."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.STREAM_CLOSE_REQUEST
    KIND: ClassVar[Kind] = Kind.STREAM_CLOSE_REQUEST
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _ST

    ecm_channel_id: int
    ecm_stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamCloseResponse(_StreamEvent):
    """stream_close_response (§5.4.5): the ECMG confirms the stream is closed."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.STREAM_CLOSE_RESPONSE
    KIND: ClassVar[Kind] = Kind.STREAM_CLOSE_RESPONSE
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = _ST

    ecm_channel_id: int
    ecm_stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamError(_StreamEvent):
    """stream_error (§5.4.6): one or more error_status codes about a stream."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.STREAM_ERROR
    KIND: ClassVar[Kind] = Kind.STREAM_ERROR
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST,
        ("error_status", P.ERROR_STATUS), ("error_information", P.ERROR_INFORMATION))

    ecm_channel_id: int
    ecm_stream_id: int
    error_status: tuple[int, ...]
    error_information: tuple[bytes, ...] = ()

    def _validate(self) -> None:
        if not self.error_status:
            raise self._invalid("needs at least one error_status")


@dataclass(frozen=True, slots=True, kw_only=True)
class CwProvision(_StreamEvent):
    """CW_provision (§5.4.7): CWs for crypto-period CP_number (and the next ones)."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.CW_PROVISION
    KIND: ClassVar[Kind] = Kind.CW_PROVISION
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST,
        ("cp_number", P.CP_NUMBER), ("cw_encryption", P.CW_ENCRYPTION),
        ("cp_cw_combinations", P.CP_CW_COMBINATION), ("cp_duration_100ms", P.CP_DURATION),
        ("access_criteria", P.ACCESS_CRITERIA))
    _DECODERS: ClassVar[Mapping[int, Callable[[bytes], Any]]] = {
        P.CP_CW_COMBINATION: CpCw.from_bytes}

    ecm_channel_id: int
    ecm_stream_id: int
    cp_number: int
    cp_cw_combinations: tuple[CpCw, ...] = ()
    cp_duration_100ms: int | None = None
    access_criteria: bytes | None = None
    cw_encryption: bytes | None = field(default=None, repr=False)

    def _validate(self) -> None:
        seen: set[int] = set()
        for combo in self.cp_cw_combinations:
            if len(combo.cw) not in CW_LENGTHS:
                raise self._invalid(f"a CW of {len(combo.cw)} bytes (expected 8 or 16)")
            if combo.cp_number in seen:
                raise self._invalid(f"CP {combo.cp_number} is given twice")
            seen.add(combo.cp_number)
        if self.cp_duration_100ms == 0:
            raise self._invalid("CP_duration is 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmResponse(_StreamEvent):
    """ECM_response (§5.4.8): the ECM for CP_number, as one section or N TS packets."""

    MESSAGE_TYPE: ClassVar[int] = EcmgScsMessage.ECM_RESPONSE
    KIND: ClassVar[Kind] = Kind.ECM_RESPONSE
    _FIELDS: ClassVar[tuple[tuple[str, int], ...]] = (
        *_ST,
        ("cp_number", P.CP_NUMBER), ("ecm_datagram", P.ECM_DATAGRAM))

    ecm_channel_id: int
    ecm_stream_id: int
    cp_number: int
    ecm_datagram: bytes

    def _validate(self) -> None:
        if not self.ecm_datagram:
            raise self._invalid("ECM_datagram is empty")


EVENTS: dict[int, type[Event]] = {cls.MESSAGE_TYPE: cls for cls in (
    ChannelSetup, ChannelTest, ChannelStatus, ChannelClose, ChannelError,
    StreamSetup, StreamTest, StreamStatus, StreamCloseRequest, StreamCloseResponse,
    StreamError, CwProvision, EcmResponse)}
"""message_type -> event class."""
