"""DVB SimulCrypt (ETSI TS 103 197) on the wire: the message frame and the interface schemas.

Every SimulCrypt command/response interface uses one frame (TS 103 197 §4.4.1)::

    protocol_version  u8
    message_type      u16
    message_length    u16     bytes after this field
    parameters        TLV*    parameter_type u16 | parameter_length u16 | value

and cas-sim speaks two of them: ECMG⇔SCS (§5) and EMMG/PDG⇔MUX (§6).  The package, one idea
per module:

* :mod:`.ids` — message types, parameter types and error statuses, declared once;
* :mod:`.frame` — the frame codec (struct fast path, construct declaration, the error type);
* :mod:`.schema` — what an interface's syntax is, and :func:`check_message`;
* :mod:`.tables` — the two interfaces' schemas, as data;
* :mod:`.describe` — a message as a JSON-ready tree for ``cas decode``.

It does not know the protocol's *states* (that is :mod:`cas.headend.simulcrypt`).  Import
from here: the names below are the package's interface.
"""

from __future__ import annotations

from .describe import describe, looks_like_simulcrypt
from .frame import (
    HEADER_SIZE,
    MAX_MESSAGE_LENGTH,
    SIMULCRYPT_MESSAGE,
    TLV_PARAMETER,
    Message,
    Parameter,
    SimulcryptFormatError,
    build_message,
    frame_length,
    iter_frames,
    parse_message,
    parse_message_declarative,
)
from .ids import (
    USER_DEFINED_MIN,
    EcmgScsError,
    EcmgScsMessage,
    EcmgScsParam,
    EmmgMuxError,
    EmmgMuxMessage,
    EmmgMuxParam,
    ErrorKind,
    Interface,
)
from .schema import InterfaceSpec, MessageSpec, ParamKind, ParamRule, ParamSpec, check_message
from .tables import ECMG_SCS, EMMG_MUX, INTERFACES, interface_of

__all__ = [
    "ECMG_SCS",
    "EMMG_MUX",
    "HEADER_SIZE",
    "INTERFACES",
    "MAX_MESSAGE_LENGTH",
    "SIMULCRYPT_MESSAGE",
    "TLV_PARAMETER",
    "USER_DEFINED_MIN",
    "EcmgScsError",
    "EcmgScsMessage",
    "EcmgScsParam",
    "EmmgMuxError",
    "EmmgMuxMessage",
    "EmmgMuxParam",
    "ErrorKind",
    "Interface",
    "InterfaceSpec",
    "Message",
    "MessageSpec",
    "ParamKind",
    "ParamRule",
    "ParamSpec",
    "Parameter",
    "SimulcryptFormatError",
    "build_message",
    "check_message",
    "describe",
    "frame_length",
    "interface_of",
    "iter_frames",
    "looks_like_simulcrypt",
    "parse_message",
    "parse_message_declarative",
]
