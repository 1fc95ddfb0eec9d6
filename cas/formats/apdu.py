"""ISO/IEC 7816-4 command and response APDUs, and the status words the card speaks.

Command APDU (ISO/IEC 7816-4 §5.1, case detection as ISO/IEC 7816-3 §12.1.3)::

    CLA INS P1 P2                              case 1
    CLA INS P1 P2 Le                           case 2 short  (Le 00 = 256)
    CLA INS P1 P2 Lc data                      case 3 short  (Lc 1..255)
    CLA INS P1 P2 Lc data Le                   case 4 short
    CLA INS P1 P2 00 Le1 Le2                   case 2 extended (Le 0000 = 65536)
    CLA INS P1 P2 00 Lc1 Lc2 data              case 3 extended (Lc 1..65535)
    CLA INS P1 P2 00 Lc1 Lc2 data Le1 Le2      case 4 extended

Response APDU: ``data SW1 SW2``.  Status words are :class:`SW` (ISO ones and the proprietary
``98xx`` codes of docs/architecture.md); the ranges ``61xx``, ``6Cxx`` and ``63Cx`` carry a
number and have helper functions.  The construct-free parser here is hand-written because the
case detection is a decision on the total length, not a field layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from cas.errors import FormatError
from cas.formats._common import check_range
from cas.i18n import Msg
from cas.reasons import Reason
from cas.words import count, tries_left

#: The cas-sim card applet's AID (docs/architecture.md, "Card APDUs").
CAS_AID = bytes.fromhex("F0434153 53494D01".replace(" ", ""))
#: CLA of the interindustry commands (SELECT, GET RESPONSE, VERIFY, CHANGE REFERENCE DATA).
CLA_ISO = 0x00
#: CLA of the proprietary commands.
CLA_PROPRIETARY = 0x80
#: GET DATA P1: the only data object class the card has.
GET_DATA_P1 = 0x01
#: P2 of VERIFY / CHANGE REFERENCE DATA: specific reference data number 1 (the parental PIN).
PIN_REFERENCE = 0x81
#: Digits of the parental PIN.
PIN_LENGTH = 4

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_LC = 65535
EXTENDED_MAX_LE = 65536


class Ins(IntEnum):
    """Instruction bytes of the card applet (docs/architecture.md)."""

    SELECT = 0xA4
    GET_DATA = 0xCA
    READ_ENTITLEMENTS = 0x32
    PROCESS_EMM = 0x40
    PROCESS_ECM = 0x30
    VERIFY_PIN = 0x20
    CHANGE_PIN = 0x24
    GET_RESPONSE = 0xC0
    PPV_BUY = 0x50
    PPV_REPORT = 0x52
    # on-screen messages (docs/osd.md)
    ACK_OSD = 0x60


class GetDataTag(IntEnum):
    """P2 of GET DATA (``80 CA 01 tag 00``)."""

    SERIAL = 0x01
    CARD_INFO = 0x02
    STATUS = 0x03
    COUNTERS = 0x04
    PAIRING = 0x05
    OSD_MESSAGE = 0x06
    PURSE = 0x10
    # on-screen messages and fingerprints (docs/osd.md)
    OSD_MAIL = 0x20
    FINGERPRINT = 0x21
    # card-sharing detection on the card (docs/sharing.md)
    SHARING = 0x30


class ApduCase(IntEnum):
    """ISO/IEC 7816-3 §12.1.3 command cases; the short/extended variants are separate."""

    CASE_1 = 1
    CASE_2S = 2
    CASE_3S = 3
    CASE_4S = 4
    CASE_2E = 0x12
    CASE_3E = 0x13
    CASE_4E = 0x14


class SW(IntEnum):
    """Status words with a fixed value.  ``61xx``/``6Cxx``/``63Cx`` are built by functions."""

    OK = 0x9000
    # ISO/IEC 7816-4 §5.6
    WARNING_NO_INFO = 0x6200
    WRONG_LENGTH = 0x6700
    SECURITY_NOT_SATISFIED = 0x6982  # bad MAC / authentication failed
    PIN_BLOCKED = 0x6983  # authentication method blocked
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82  # application not found
    INCORRECT_P1P2 = 0x6A86
    DATA_NOT_FOUND = 0x6A88  # referenced data not found
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN_ERROR = 0x6F00
    # proprietary 98xx: access decisions (docs/architecture.md)
    NOT_SUBSCRIBED = 0x9801
    ENTITLEMENT_EXPIRED = 0x9802
    NOT_YET_VALID = 0x9803
    REGION_BLACKOUT = 0x9804
    MATURITY_LOCKED = 0x9805
    CARD_SUSPENDED = 0x9806
    FINANCIAL_BLOCK = 0x9807
    CARD_KILLED = 0x9808
    PAIRING_MISMATCH = 0x9809
    CARD_NOT_ACTIVE = 0x980A
    CHANNEL_NOT_IN_PACKAGE = 0x980B
    # proprietary 98xx: message handling
    EMM_REPLAYED = 0x9811
    EMM_NOT_ADDRESSED = 0x9812
    EMM_EXPIRED = 0x9813
    ECM_STALE = 0x9814
    KEY_INDEX_UNKNOWN = 0x9815
    # proprietary 98xx: pay-per-view (docs/ppv.md)
    PPV_NOT_PURCHASED = 0x9820
    PURSE_EMPTY = 0x9821
    PPV_EVENT_ENDED = 0x9822
    PPV_NOT_ON_AIR = 0x9823
    # proprietary 98xx: card-sharing detection (docs/sharing.md)
    SHARING_DETECTED = 0x9840


_SW_TO_REASON: dict[int, Reason] = {
    SW.NOT_SUBSCRIBED: Reason.NOT_SUBSCRIBED,
    SW.ENTITLEMENT_EXPIRED: Reason.ENTITLEMENT_EXPIRED,
    SW.NOT_YET_VALID: Reason.NOT_YET_VALID,
    SW.REGION_BLACKOUT: Reason.REGION_BLACKOUT,
    SW.MATURITY_LOCKED: Reason.MATURITY_LOCKED,
    SW.CARD_SUSPENDED: Reason.CARD_SUSPENDED,
    SW.FINANCIAL_BLOCK: Reason.FINANCIAL_BLOCK,
    SW.CARD_KILLED: Reason.CARD_KILLED,
    SW.PAIRING_MISMATCH: Reason.PAIRING_MISMATCH,
    SW.CARD_NOT_ACTIVE: Reason.CARD_NOT_ACTIVE,
    SW.CHANNEL_NOT_IN_PACKAGE: Reason.CHANNEL_NOT_IN_PACKAGE,
    SW.KEY_INDEX_UNKNOWN: Reason.ECM_KEY_UNKNOWN,
    SW.PPV_NOT_PURCHASED: Reason.PPV_NOT_PURCHASED,
    SW.PURSE_EMPTY: Reason.PURSE_EMPTY,
    SW.PPV_EVENT_ENDED: Reason.PPV_EVENT_ENDED,
    SW.PPV_NOT_ON_AIR: Reason.PPV_NOT_ON_AIR,
    SW.SHARING_DETECTED: Reason.SHARING_DETECTED,
    SW.OK: Reason.OPEN,
}
_REASON_TO_SW: dict[Reason, SW] = {r: SW(sw) for sw, r in _SW_TO_REASON.items()}


def reason_for_sw(sw: int) -> Reason | None:
    """The lock reason a PROCESS ECM status word stands for (``None`` if it is not one)."""
    return _SW_TO_REASON.get(sw)


def sw_for_reason(reason: Reason) -> SW:
    """The status word the card answers for an access decision.  KeyError if it has none."""
    return _REASON_TO_SW[reason]


def sw_more_data(available: int) -> int:
    """``61xx``: ``available`` more bytes to fetch with GET RESPONSE (256 and more -> 6100)."""
    return 0x6100 | (available if 0 < available < 256 else 0)


def sw_wrong_le(exact: int) -> int:
    """``6Cxx``: wrong Le, repeat with Le = ``exact`` (256 -> 6C00)."""
    return 0x6C00 | (exact & 0xFF)


def sw_pin_retries(left: int) -> int:
    """``63Cx``: PIN verification failed, ``left`` tries remain (0..15)."""
    return 0x63C0 | min(max(left, 0), 15)


def more_data_available(sw: int) -> int | None:
    """For ``61xx`` the number of bytes waiting (``6100`` = 256 or more), else None."""
    if sw >> 8 == 0x61:
        return (sw & 0xFF) or 256
    return None


def exact_le(sw: int) -> int | None:
    """For ``6Cxx`` the Le to retry with, else None."""
    if sw >> 8 == 0x6C:
        return (sw & 0xFF) or 256
    return None


def pin_retries_left(sw: int) -> int | None:
    """For ``63Cx`` the PIN tries left, else None."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    return None


def describe_sw(sw: int) -> str:
    """Short human text for a status word (for traces and ``cas decode``)."""
    if (n := more_data_available(sw)) is not None:
        return f"OK, {count(n, 'more byte', 'more bytes')} available"
    if (n := exact_le(sw)) is not None:
        return f"wrong Le, use {n}"
    if (n := pin_retries_left(sw)) is not None:
        return f"wrong PIN, {tries_left(n)}"
    try:
        return SW(sw).name
    except ValueError:
        return f"unknown status word {sw:04X}"


# --- command APDU --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class CommandApdu:
    """One command APDU.  ``le`` None = no Le field; ``le`` is the number of bytes expected
    (256 short / 65536 extended encode as 00 / 0000).  ``extended`` selects the extended-length
    encoding.  ``data`` can hold keys (PIN, sections), so it is left out of ``repr``."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = field(default=b"", repr=False)
    le: int | None = None
    extended: bool = False

    @property
    def case(self) -> ApduCase:
        """ISO/IEC 7816-3 case of this command."""
        n = 0x10 if self.extended else 0
        if not self.data:
            return ApduCase.CASE_1 if self.le is None else ApduCase(n | 2)
        return ApduCase(n | (3 if self.le is None else 4))


def _fail(message: str, path: str = "command_apdu", *, words: Msg) -> FormatError:
    """``path: message``; ``words`` is ``message`` as a catalogue message."""
    return FormatError(message, path=path).with_id("formats.apdu_field", field=path,
                                                   problem=words)


def parse_command_apdu(data: bytes) -> CommandApdu:
    """Parse a command APDU, detecting its case from the length (ISO/IEC 7816-3 §12.1.3)."""
    data = bytes(data)
    n = len(data)
    if n < 4:
        raise _fail(f"a command APDU has at least 4 bytes, got {n}",
            words=Msg("errors.formats.apdu.command_apdu_least_bytes", {"n": n}))
    cla, ins, p1, p2 = data[0], data[1], data[2], data[3]
    if cla == 0xFF:
        raise _fail("CLA FF is invalid (reserved for PPS)", "command_apdu.cla",
            words=Msg("errors.formats.apdu.cla_ff_invalid_reserved"))
    if ins >> 4 in (0x6, 0x9):
        raise _fail(f"INS {ins:02X} is invalid (6x/9x)", "command_apdu.ins",
            words=Msg("errors.formats.apdu.ins_invalid_x_x", {"ins": f"{ins:02X}"}))
    head: dict[str, Any] = dict(cla=cla, ins=ins, p1=p1, p2=p2)
    if n == 4:
        return CommandApdu(**head)
    b4 = data[4]
    if n == 5:  # case 2S
        return CommandApdu(**head, le=b4 or 256)
    if b4:  # short Lc
        if n == 5 + b4:
            return CommandApdu(**head, data=data[5:])
        if n == 6 + b4:
            return CommandApdu(**head, data=data[5:-1], le=data[-1] or 256)
        raise _fail(f"Lc={b4} does not match the APDU length {n}", "command_apdu.lc",
            words=Msg("errors.formats.apdu.lc_does_not_match", {"b4": b4, "n": n}))
    # b4 == 0 and n >= 6: extended length
    if n == 6:
        raise _fail("6-byte APDU with a 00 length byte is not a valid case", "command_apdu.lc",
            words=Msg("errors.formats.apdu.byte_apdu_length_byte"))
    ext = (data[5] << 8) | data[6]
    if n == 7:  # case 2E
        return CommandApdu(**head, le=ext or 65536, extended=True)
    if ext == 0:
        raise _fail("extended Lc must not be 0", "command_apdu.lc",
            words=Msg("errors.formats.apdu.extended_lc_not"))
    if n == 7 + ext:
        return CommandApdu(**head, data=data[7:], extended=True)
    if n == 9 + ext:
        le = (data[-2] << 8) | data[-1]
        return CommandApdu(**head, data=data[7:-2], le=le or 65536, extended=True)
    raise _fail(f"extended Lc={ext} does not match the APDU length {n}", "command_apdu.lc",
        words=Msg("errors.formats.apdu.extended_lc_does_not", {"ext": ext, "n": n}))


def build_command_apdu(apdu: CommandApdu) -> bytes:
    """Encode a command APDU (short or extended as ``apdu.extended`` says)."""
    p = "command_apdu"
    for name in ("cla", "ins", "p1", "p2"):
        check_range(getattr(apdu, name), 8, f"{p}.{name}")
    if apdu.cla == 0xFF:
        raise _fail("CLA FF is invalid (reserved for PPS)", f"{p}.cla",
            words=Msg("errors.formats.apdu.cla_ff_invalid_reserved"))
    if apdu.ins >> 4 in (0x6, 0x9):
        raise _fail(f"INS {apdu.ins:02X} is invalid (6x/9x)", f"{p}.ins",
            words=Msg("errors.formats.apdu.ins_invalid_x_x", {"ins": f"{apdu.ins:02X}"}))
    if not isinstance(apdu.data, bytes | bytearray):
        raise _fail("data must be bytes", f"{p}.data", words=Msg("errors.formats.apdu.data_bytes"))
    out = bytearray((apdu.cla, apdu.ins, apdu.p1, apdu.p2))
    lc = len(apdu.data)
    le = apdu.le
    if apdu.extended:
        if not lc and le is None:
            raise _fail("case 1 has no length fields: use extended=False", f"{p}.extended",
                words=Msg("errors.formats.apdu.case_no_length_fields"))
        if lc > EXTENDED_MAX_LC:
            raise _fail(f"Lc {lc} > {EXTENDED_MAX_LC}", f"{p}.data",
                words=Msg("errors.formats.apdu.lc", {"lc": lc, "extended_max_lc": EXTENDED_MAX_LC}))
        if le is not None and not 1 <= le <= EXTENDED_MAX_LE:
            raise _fail(f"extended Le must be 1..{EXTENDED_MAX_LE}", f"{p}.le",
                words=Msg("errors.formats.apdu.extended_le", {"extended_max_le": EXTENDED_MAX_LE}))
        if lc:
            out += bytes((0, lc >> 8, lc & 0xFF)) + apdu.data
            if le is not None:
                out += (le & 0xFFFF).to_bytes(2, "big")
        elif le is not None:
            out += bytes((0,)) + (le & 0xFFFF).to_bytes(2, "big")
        return bytes(out)
    if lc > SHORT_MAX_LC:
        raise _fail(f"Lc {lc} > {SHORT_MAX_LC} needs extended length", f"{p}.data",
            words=Msg("errors.formats.apdu.lc_needs_extended_length",
                      {"lc": lc, "short_max_lc": SHORT_MAX_LC}))
    if le is not None and not 1 <= le <= SHORT_MAX_LE:
        raise _fail(f"short Le must be 1..{SHORT_MAX_LE}", f"{p}.le",
            words=Msg("errors.formats.apdu.short_le", {"short_max_le": SHORT_MAX_LE}))
    if lc:
        out += bytes((lc,)) + apdu.data
    if le is not None:
        out.append(le & 0xFF)
    return bytes(out)


# --- response APDU -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseApdu:
    """``data`` + status word.  ``data`` may carry wrapped CWs, so it is left out of repr."""

    data: bytes = field(default=b"", repr=False)
    sw: int = SW.OK

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK


def parse_response_apdu(data: bytes) -> ResponseApdu:
    """Split ``data SW1 SW2``.  SW1 must be 6x or 9x (ISO/IEC 7816-4 §5.6)."""
    data = bytes(data)
    if len(data) < 2:
        raise _fail(f"a response APDU has at least 2 bytes, got {len(data)}", "response_apdu",
            words=Msg("errors.formats.apdu.response_apdu_least_bytes", {"data": len(data)}))
    sw = (data[-2] << 8) | data[-1]
    if sw >> 12 not in (0x6, 0x9) or sw >> 8 == 0x60:
        raise _fail(f"SW1 {sw >> 8:02X} is not a status byte", "response_apdu.sw1",
            words=Msg("errors.formats.apdu.sw1_not_status_byte", {"sw": f"{sw >> 8:02X}"}))
    return ResponseApdu(data=data[:-2], sw=sw)


def build_response_apdu(resp: ResponseApdu) -> bytes:
    """Encode ``data SW1 SW2``."""
    check_range(resp.sw, 16, "response_apdu.sw")
    if resp.sw >> 12 not in (0x6, 0x9) or resp.sw >> 8 == 0x60:
        raise _fail(f"SW1 {resp.sw >> 8:02X} is not a status byte", "response_apdu.sw1",
            words=Msg("errors.formats.apdu.sw1_not_status_byte", {"sw": f"{resp.sw >> 8:02X}"}))
    if not isinstance(resp.data, bytes | bytearray) or len(resp.data) > EXTENDED_MAX_LE:
        raise _fail("data must be bytes of at most 65536", "response_apdu.data",
            words=Msg("errors.formats.apdu.data_bytes_most"))
    return bytes(resp.data) + resp.sw.to_bytes(2, "big")


def describe(obj: CommandApdu | ResponseApdu) -> dict[str, Any]:
    """JSON-able tree for ``cas decode``.  Data is shown as length only: it can hold a PIN,
    an EMM with keys or wrapped CWs."""
    if isinstance(obj, CommandApdu):
        try:
            ins_name: str = Ins(obj.ins).name
        except ValueError:
            ins_name = f"{obj.ins:02X}"
        return {
            "type": "command_apdu",
            "case": obj.case.name,
            "cla": f"{obj.cla:02X}",
            "ins": f"{obj.ins:02X}",
            "ins_name": ins_name,
            "p1": f"{obj.p1:02X}",
            "p2": f"{obj.p2:02X}",
            "lc": len(obj.data),
            "le": obj.le,
            "extended": obj.extended,
        }
    if isinstance(obj, ResponseApdu):
        reason = reason_for_sw(obj.sw)
        return {
            "type": "response_apdu",
            "data_length": len(obj.data),
            "sw": f"{obj.sw:04X}",
            "meaning": describe_sw(obj.sw),
            "reason": None if reason is None else str(reason),
        }
    raise TypeError(f"cannot describe {type(obj).__name__}")
