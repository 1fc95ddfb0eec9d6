"""High-level card access over any :class:`~cas.card.transport.CardTransport`.

:class:`CardClient` builds the command APDUs of docs/architecture.md "Card APDUs", follows
``61xx`` with GET RESPONSE and ``6Cxx`` with a repeated command (ISO/IEC 7816-4 §5.3.4),
parses the answers (:mod:`cas.card.data`) and turns every other status word into a typed
:class:`~cas.errors.StatusWordError` (:mod:`cas.card.errors`).  It behaves the same over the
in-process transport and over PC/SC.
"""

from __future__ import annotations

from dataclasses import dataclass

from cas.access import Entitlement
from cas.card.data import (
    GET_DATA_P1,
    CardInfo,
    CardStatusInfo,
    Counters,
    DataTag,
    PairingInfo,
    SharingInfo,
    parse_card_info,
    parse_counters,
    parse_entitlements,
    parse_pairing,
    parse_sharing_info,
    parse_status,
)
from cas.card.errors import WrongPinError, error_for
from cas.card.osd import parse_fingerprint_answer, parse_mail_answer
from cas.card.ppv import PurseInfo, build_buy_data, parse_purse_info
from cas.card.sw import SW
from cas.card.transport import CardTransport
from cas.errors import CardError, CardTransportError, FormatError, UsageError
from cas.formats.apdu import (
    CAS_AID,
    CLA_ISO,
    CLA_PROPRIETARY,
    PIN_LENGTH,
    PIN_REFERENCE,
    Ins,
)
from cas.formats.emm import Fingerprint, OsdMail

#: How many GET RESPONSE rounds we follow before calling the card broken.
_MAX_CHAIN = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmResult:
    """What PROCESS EMM answered: pairing info when the EMM carried a PAIR command."""

    pairing: PairingInfo | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    data: bytes
    sw: int


def build_apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"",
               le: int | None = None) -> bytes:
    """A short command APDU (``le`` 1..256, 256 encoded as 00; None = absent)."""
    if len(data) > 255:
        raise UsageError(f"command data of {len(data)} bytes needs an extended APDU").with_id(
            "card.command_data_bytes_needs", n=len(data))
    out = bytes((cla, ins, p1, p2))
    if data:
        out += bytes((len(data),)) + data
    if le is not None:
        if not 1 <= le <= 256:
            raise UsageError(f"Le {le} out of range 1..256").with_id("card.le_out_range", le=le)
        out += bytes((le & 0xFF,))
    return out


def _pin_bytes(pin: str | bytes) -> bytes:
    raw = pin.encode("ascii", "replace") if isinstance(pin, str) else bytes(pin)
    if len(raw) != PIN_LENGTH or not raw.isdigit():
        raise UsageError(f"a PIN is {PIN_LENGTH} digits").with_id(
            "card.pin_digits", pin_length=PIN_LENGTH)
    return raw


class CardClient:
    """Talk to our card applet through ``transport``.

    ``select=True`` selects the applet at once (as every host does after power-up).
    """

    def __init__(self, transport: CardTransport, *, select: bool = True) -> None:
        self.transport = transport
        if select:
            self.select()

    # --- plumbing -----------------------------------------------------------------------------
    def exchange(self, apdu: bytes) -> Response:
        """Send ``apdu``; follow 61xx / 6Cxx; return the whole answer and the final SW."""
        rapdu = self.transport.transmit(apdu)
        if len(rapdu) < 2:
            raise CardTransportError(f"card answered {len(rapdu)} bytes, not even a status word").with_id(
                "card.card_answered_bytes_not", n=len(rapdu))
        sw = (rapdu[-2] << 8) | rapdu[-1]
        if sw >> 8 == 0x6C:  # wrong Le: repeat with the exact length
            if len(apdu) < 5:
                raise CardError(f"card asked for Le={sw & 0xFF} on a command without Le").with_id(
                    "card.card_asked_le_command", value=sw & 255)
            rapdu = self.transport.transmit(apdu[:-1] + bytes((sw & 0xFF,)))
            if len(rapdu) < 2:
                raise CardError("card answered without a status word").with_id(
                    "card.card_answered_without_status")
            sw = (rapdu[-2] << 8) | rapdu[-1]
        data = bytearray(rapdu[:-2])
        rounds = 0
        while sw >> 8 == 0x61:
            rounds += 1
            if rounds > _MAX_CHAIN:
                raise CardError("card keeps answering 61xx: response chaining never ends").with_id(
                    "card.card_keeps_answering_xx")
            rapdu = self.transport.transmit(
                bytes((CLA_ISO, Ins.GET_RESPONSE, 0, 0, sw & 0xFF)))
            if len(rapdu) < 2:
                raise CardError("card answered without a status word").with_id(
                    "card.card_answered_without_status")
            sw = (rapdu[-2] << 8) | rapdu[-1]
            data += rapdu[:-2]
        return Response(data=bytes(data), sw=sw)

    def send(self, apdu: bytes, *, command: str = "command") -> bytes:
        """Like :meth:`exchange` but any SW other than 9000 raises a typed error."""
        resp = self.exchange(apdu)
        if resp.sw != SW.OK:
            raise error_for(resp.sw, resp.data, command=command)
        return resp.data

    # --- commands -----------------------------------------------------------------------------
    def select(self) -> None:
        self.send(build_apdu(CLA_ISO, Ins.SELECT, 0x04, 0x00, CAS_AID), command="SELECT")

    def get_data(self, tag: int) -> bytes:
        return self.send(build_apdu(CLA_PROPRIETARY, Ins.GET_DATA, GET_DATA_P1, tag, le=256),
                         command=f"GET DATA {tag:02X}")

    def serial(self) -> int:
        data = self.get_data(DataTag.SERIAL)
        if len(data) != 4:
            raise FormatError(f"serial is 4 bytes, got {len(data)}", path="serial").with_id(
                "card.serial_serial_bytes", n=len(data))
        return int.from_bytes(data, "big")

    def info(self) -> CardInfo:
        return parse_card_info(self.get_data(DataTag.CARD_INFO))

    def status(self) -> CardStatusInfo:
        return parse_status(self.get_data(DataTag.STATUS))

    def counters(self) -> Counters:
        return parse_counters(self.get_data(DataTag.COUNTERS))

    def pairing(self) -> PairingInfo | None:
        resp = self.exchange(build_apdu(CLA_PROPRIETARY, Ins.GET_DATA, GET_DATA_P1,
                                        DataTag.PAIRING, le=256))
        if resp.sw == SW.DATA_NOT_FOUND:
            return None
        if resp.sw != SW.OK:
            raise error_for(resp.sw, resp.data, command="GET DATA 05")
        return parse_pairing(resp.data)

    def osd_message(self) -> str:
        try:
            return self.get_data(DataTag.OSD_MESSAGE).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError("OSD message is not UTF-8", path="osd_message").with_id(
                "card.osd_message_osd_message") from exc

    def _optional_data(self, tag: int) -> bytes | None:
        resp = self.exchange(build_apdu(CLA_PROPRIETARY, Ins.GET_DATA, GET_DATA_P1, tag, le=256))
        if resp.sw == SW.DATA_NOT_FOUND:
            return None
        if resp.sw != SW.OK:
            raise error_for(resp.sw, resp.data, command=f"GET DATA {tag:02X}")
        return resp.data

    def osd_mail(self) -> OsdMail | None:
        """The message the box should show now (GET DATA 20), or None (docs/osd.md)."""
        data = self._optional_data(DataTag.OSD_MAIL)
        return parse_mail_answer(data) if data is not None else None

    def ack_osd(self, message_id: int) -> None:
        """Tell the card message ``message_id`` was shown (ACK OSD)."""
        self.send(build_apdu(CLA_PROPRIETARY, Ins.ACK_OSD, 0, 0,
                             (message_id & 0xFFFF).to_bytes(2, "big")), command="ACK OSD")

    def fingerprint(self) -> Fingerprint | None:
        """The head-end's fingerprint order (GET DATA 21), or None."""
        data = self._optional_data(DataTag.FINGERPRINT)
        return parse_fingerprint_answer(data) if data is not None else None

    def sharing(self) -> SharingInfo | None:
        """The card's sharing check (GET DATA 30, docs/sharing.md), or None from a card OS
        without one."""
        data = self._optional_data(DataTag.SHARING)
        return parse_sharing_info(data) if data is not None else None

    def entitlements(self) -> tuple[Entitlement, ...]:
        data = self.send(build_apdu(CLA_PROPRIETARY, Ins.READ_ENTITLEMENTS, 0, 0, le=256),
                         command="READ ENTITLEMENTS")
        return parse_entitlements(data)

    def process_emm(self, section: bytes) -> EmmResult:
        """Hand an EMM section to the card; :class:`MessageRefusedError` & co if refused."""
        data = self.send(build_apdu(CLA_PROPRIETARY, Ins.PROCESS_EMM, 0, 0, section),
                         command="PROCESS EMM")
        return EmmResult(pairing=parse_pairing(data) if data else None)

    def process_ecm(self, section: bytes) -> bytes:
        """Hand an ECM section to the card; the CWs wrapped under the pairing key (40 bytes).

        Locks raise :class:`~cas.card.errors.AccessDeniedError` (``.reason``).
        """
        return self.send(build_apdu(CLA_PROPRIETARY, Ins.PROCESS_ECM, 0, 0, section, le=256),
                         command="PROCESS ECM")

    def verify_pin(self, pin: str | bytes) -> None:
        """:class:`WrongPinError` (``tries_left``) or :class:`PinBlockedError` if refused."""
        self.send(build_apdu(CLA_ISO, Ins.VERIFY_PIN, 0x00, PIN_REFERENCE, _pin_bytes(pin)),
                  command="VERIFY")

    def pin_tries_left(self) -> int | None:
        """Tries left, or ``None`` when the PIN is already verified in this card session."""
        resp = self.exchange(build_apdu(CLA_ISO, Ins.VERIFY_PIN, 0x00, PIN_REFERENCE))
        if resp.sw == SW.OK:
            return None
        err = error_for(resp.sw, resp.data, command="VERIFY")
        if isinstance(err, WrongPinError):
            return err.tries_left
        if resp.sw == SW.PIN_BLOCKED:
            return 0
        raise err

    # --- pay-per-view (docs/ppv.md) -------------------------------------------------------
    def purse(self) -> PurseInfo:
        """GET DATA 10: the IPPV purse, its credit limit and the report state."""
        return parse_purse_info(self.get_data(DataTag.PURSE))

    def ppv_buy(self, pin: str | bytes, event_id: int, ecm_section: bytes) -> PurseInfo:
        """Buy ``event_id`` (on air in ``ecm_section``, the channel's current ECM) with the
        purchase PIN.  Refusals: :class:`AccessDeniedError` (``.reason`` PURSE_EMPTY,
        PPV_NOT_ON_AIR, PPV_EVENT_ENDED, ...), :class:`WrongPinError`, :class:`PinBlockedError`.
        """
        if not 0 <= event_id <= 0xFFFFFFFF:
            raise UsageError("an event id is a u32").with_id("card.event_id_u32")
        data = build_buy_data(_pin_bytes(pin), event_id, ecm_section)
        if len(data) > 255:
            raise UsageError("ECM too long for PPV BUY").with_id("card.ecm_too_long_ppv")
        return parse_purse_info(self.send(
            build_apdu(CLA_PROPRIETARY, Ins.PPV_BUY, 0, 0, data, le=256), command="PPV BUY"))

    def ppv_report(self) -> bytes:
        """PPV REPORT: the card-authenticated purchase report (each read a new counter)."""
        return self.send(build_apdu(CLA_PROPRIETARY, Ins.PPV_REPORT, 0, 0, le=256),
                         command="PPV REPORT")

    def change_pin(self, old: str | bytes, new: str | bytes) -> None:
        self.send(build_apdu(CLA_ISO, Ins.CHANGE_PIN, 0x00, PIN_REFERENCE,
                             _pin_bytes(old) + _pin_bytes(new)), command="CHANGE PIN")
