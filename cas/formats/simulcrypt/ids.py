"""The numbers of DVB SimulCrypt (ETSI TS 103 197), declared once.

Message types, parameter types and error statuses of the two interfaces cas-sim speaks
(ECMG⇔SCS, §5; EMMG/PDG⇔MUX, §6), as :class:`enum.IntEnum` s.  Everything else — the frame
codec (:mod:`.frame`), the schemas (:mod:`.tables`), the protocol engines in
:mod:`cas.headend.simulcrypt` — names them from here and never restates a number.
"""

from __future__ import annotations

from enum import Enum, IntEnum

USER_DEFINED_MIN = 0x8000
"""Message and parameter types from here on are user defined (TS 103 197 type tables)."""


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



class Interface(Enum):
    ECMG_SCS = "ECMG<>SCS"
    EMMG_MUX = "EMMG/PDG<>MUX"



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

