"""The schemas of ECMG⇔SCS (TS 103 197 §5) and EMMG/PDG⇔MUX (§6), as data.

One row per parameter (its type from :mod:`.ids`, the spec's name, value kind, width and
unit) and one entry per message (the parameters it carries, how often, by version).
:func:`cas.formats.simulcrypt.check_message` and the events of
:mod:`cas.headend.simulcrypt` read these tables; nothing restates them.
"""

from __future__ import annotations

from .ids import (
    EcmgScsError,
    EcmgScsMessage,
    EcmgScsParam,
    EmmgMuxError,
    EmmgMuxMessage,
    EmmgMuxParam,
    Interface,
)
from .schema import InterfaceSpec, MessageSpec, ParamKind, ParamRule, ParamSpec


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


_FAMILIES: dict[int, InterfaceSpec] = {
    message_type & 0xFFF0: spec for spec in INTERFACES.values() for message_type in spec.messages}
"""``message_type & 0xFFF0`` -> interface: each interface's message types come in families
(channel, stream, data), told apart as Wireshark does."""


def interface_of(message_type: int) -> InterfaceSpec | None:
    """Which interface a message_type belongs to (by its family, as Wireshark does)."""
    return _FAMILIES.get(message_type & 0xFFF0)
