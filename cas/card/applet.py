"""The smart-card applet: an ISO/IEC 7816-4 command dispatcher over the card's EEPROM record.

Commands (docs/architecture.md "Card APDUs"; byte layouts in ``docs/card.md``):

====================  =================  ==========================================
command               CLA INS P1 P2      notes
====================  =================  ==========================================
SELECT                00  A4  04 00/0C   by AID (DF name), partial names accepted
GET RESPONSE          00  C0  00 00      next chunk of a long answer (61xx)
VERIFY                00  20  00 81      parental PIN; 63Cx / 6983; no data: tries left
CHANGE REF. DATA      00  24  00 81      old PIN || new PIN
GET DATA              80  CA  01 tag     tags in :class:`~cas.card.data.DataTag`
READ ENTITLEMENTS     80  32  00 00      count + entries; chained when > Ne
PROCESS ECM           80  30  00 00      wrapped CWs (40 bytes) or a 98xx reason
PROCESS EMM           80  40  00 00      9000, + pairing info after a PAIR command
PPV BUY               80  50  00 00      PIN || event id || ECM: impulse purchase
PPV REPORT            80  52  00 00      the signed purchase report (docs/ppv.md)
ACK OSD               80  60  00 00      message id (u16) shown; 6A88 if not held
====================  =================  ==========================================

Besides its record the card keeps a state area in its EEPROM (:mod:`cas.formats.cardstate`):
the OSD mailbox (:mod:`cas.card.osd`), its sharing check (:mod:`cas.card.sharing`: the
last ECMs answered, the flag, GET DATA 30, refusal ``9840`` under the ``REFUSE`` policy) and
the late-EMM window below each EMM counter (:mod:`cas.card.emm_window`: a command EMM whose
datagram was lost is applied once when it comes round again).

Length rules (ISO/IEC 7816-4 §5.1 and §5.3.4): a command that is not one of the four cases
(short or extended) is ``6700``.  An answer of Na bytes against Ne expected: Na <= Ne is
returned; Ne = 0 (no Le) gets ``61xx`` and the data wait for GET RESPONSE; Na <= 256 but
> Ne gets ``6Cxx`` (repeat with Le = Na); longer answers are cut into chunks of Ne (at most
256) bytes, each followed by ``61xx`` while data remain.

Keys: the EEPROM holds the CUK wrapped under the card OS's ROM key (the card-factory
transport key, given at construction — see ``docs/card.md``), and every other key wrapped
under the CUK.  Unwrapped keys live only in this object's memory.

Here: the dispatch, the response-length rules and each command's checks in their stated
order.  Command parsing and :class:`Refusal` are in :mod:`cas.card.command`; what an
accepted EMM's commands do to the record is the pure :func:`cas.card.emm_apply.apply_emm_commands`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cas.access import CardRights, CardStatus, decide
from cas.card.atr import build_atr
from cas.card.command import OK, Command, Refusal, parse_command, sw_bytes
from cas.card.data import (
    GET_DATA_P1,
    CardInfo,
    CardStatusInfo,
    Counters,
    DataTag,
    PairingInfo,
    build_card_info,
    build_counters,
    build_entitlements,
    build_pairing,
    build_sharing_info,
    build_status,
)
from cas.card.eeprom import Eeprom
from cas.card.emm_apply import apply_emm_commands
from cas.card.emm_window import (
    advance,
    is_late_command_emm,
    late_position,
    mark_late,
    marks_of,
    superseded,
    window_for,
    with_window,
    without_superseded,
)
from cas.card.fastecm import parse_ecm_body_fast, parse_ecm_fast
from cas.card.osd import accept_osd, ack_mail, build_mail_answer, next_mail
from cas.card.ppv import (
    PpvFile,
    apply_ppv_commands,
    build_purse_info,
    event_on_air,
    next_report,
    parse_buy_data,
    purchase,
    split_commands,
)
from cas.card.sharing import apply_sharing_commands, clear, judge, sharing_info
from cas.card.sw import SW, SW_BYTES_REMAINING, SW_VERIFY_FAILED, SW_WRONG_LE
from cas.crypto import Key, aead_open, pin_hash, unwrap_key, wrap_cws
from cas.errors import AuthenticationError, CasError, FormatError
from cas.formats.apdu import (
    CAS_AID,
    CLA_ISO,
    CLA_PROPRIETARY,
    PIN_LENGTH,
    PIN_REFERENCE,
    Ins,
    sw_for_reason,
)
from cas.formats.cardstate import CardState, EmmMark
from cas.formats.ecm import EcmBody, EcmHeader
from cas.formats.emm import (
    EmmAddressType,
    SharedAddress,
    UniqueAddress,
    parse_emm,
    seq_is_newer,
)
from cas.formats.records import CardRecord
from cas.messages import open_emm_section
from cas.reasons import Reason

__all__ = [
    "AID",
    "CLOCK_PERSIST_STEP_S",
    "ECM_STALE_TOLERANCE_S",
    "Applet",
    "Command",
    "Refusal",
    "parse_command",
]

log = logging.getLogger(__name__)

_Message = TypeVar("_Message")

#: The applet's AID (docs/architecture.md): RID-less proprietary F0 + "CASSIM" + version 01.
AID = CAS_AID

#: The card's clock (last accepted ECM timestamp) is written to EEPROM when it has moved by at
#: least this much since the last write — like a real card sparing its EEPROM cycles.  A crash
#: loses at most this much clock, which the ECM staleness tolerance absorbs.
CLOCK_PERSIST_STEP_S = 60
#: An ECM older than the newest accepted one by more than this is stale (9814).
ECM_STALE_TOLERANCE_S = 300



@dataclass(slots=True)
class _Keys:
    """The card's keys, unwrapped from the record (RAM only)."""

    cuk: Key
    group: Key | None
    global_: Key | None
    ecm: dict[int, Key]
    cwpk: Key | None


class Applet:
    """One smart card.  Implements :class:`~cas.card.vpcd.VirtualCard`.

    ``rom_key`` is the card OS's ROM key, i.e. the card-factory transport key the CUK in the
    image is wrapped under.  A wrong ``rom_key`` raises :class:`AuthenticationError` at once:
    such a card could never open a message.
    """

    def __init__(self, eeprom: Eeprom, *, rom_key: Key,
                 ecm_stale_tolerance_s: int = ECM_STALE_TOLERANCE_S,
                 ppv: PpvFile | None = None) -> None:
        self.eeprom = eeprom
        #: the PPV file (purse, event rights, purchases): docs/ppv.md
        self.ppv = ppv if ppv is not None else PpvFile.beside(eeprom.path, sync=eeprom.sync)
        self._rom_key = rom_key
        self.ecm_stale_tolerance_s = ecm_stale_tolerance_s
        self._keys_for: CardRecord | None = None
        self._rights_for: CardRecord | None = None
        self._rights_ppv: object = None
        self._rights_cache = CardRights(status=eeprom.record.status, region=0)
        self._keys: _Keys = self._unwrap_keys(eeprom.record)
        self._atr = build_atr(eeprom.record.card_os_version)
        # session state (cleared on power-off / reset)
        self.powered = False
        self.selected = False
        self.pin_verified = False
        self._pending = b""
        #: The card's clock: the newest accepted ECM timestamp (RAM; persisted stepwise).
        self.clock_s = eeprom.record.last_ecm_s
        #: called with (ECM time, serial, channel) after every ECM answered with control words
        #: (the card's ECM log, cas.card.ecmlog; docs/sharing.md)
        self.on_ecm_answered: Callable[[int, int, int], None] | None = None
        self._handlers: dict[tuple[int, int], Callable[[Command], bytes]] = {
            (CLA_ISO, Ins.SELECT): self._select,
            (CLA_ISO, Ins.GET_RESPONSE): self._get_response,
            (CLA_ISO, Ins.VERIFY_PIN): self._verify,
            (CLA_ISO, Ins.CHANGE_PIN): self._change_pin,
            (CLA_PROPRIETARY, Ins.GET_DATA): self._get_data,
            (CLA_PROPRIETARY, Ins.READ_ENTITLEMENTS): self._read_entitlements,
            (CLA_PROPRIETARY, Ins.PROCESS_ECM): self._process_ecm,
            (CLA_PROPRIETARY, Ins.PROCESS_EMM): self._process_emm,
            (CLA_PROPRIETARY, Ins.PPV_BUY): self._ppv_buy,
            (CLA_PROPRIETARY, Ins.PPV_REPORT): self._ppv_report,
            (CLA_PROPRIETARY, Ins.ACK_OSD): self._ack_osd,
        }
        self._ins_any_class = {ins for _, ins in self._handlers}

    def __repr__(self) -> str:
        return f"Applet(serial={self.record.serial:010d})"

    # --- state --------------------------------------------------------------------------------
    @property
    def record(self) -> CardRecord:
        return self.eeprom.record

    def _unwrap_keys(self, rec: CardRecord) -> _Keys:
        cuk = unwrap_key(self._rom_key, rec.wrapped_cuk, label="cuk")
        zero = bytes(len(rec.wrapped_group_key))

        def maybe(wrapped: bytes, label: str) -> Key | None:
            if wrapped == zero:
                return None
            return unwrap_key(cuk, wrapped, label=label)

        keys = _Keys(
            cuk=cuk,
            group=maybe(rec.wrapped_group_key, "group key"),
            global_=maybe(rec.wrapped_global_key, "global key"),
            ecm={s.index: unwrap_key(cuk, s.wrapped_key, label=f"ecm key {s.index}")
                 for s in rec.ecm_keys},
            cwpk=(unwrap_key(cuk, rec.pairing.wrapped_cwpk, label="cwpk")
                  if rec.pairing is not None else None),
        )
        self._keys_for = rec
        return keys

    def _commit(self, rec: CardRecord, state: CardState | None = None) -> None:
        """Persist ``rec`` (and ``state``, or the state as it is) in one atomic write, and
        refresh the key cache if keys changed."""
        old = self.eeprom.record
        self.eeprom.commit(rec, state)
        if (rec.ecm_keys != old.ecm_keys or rec.pairing != old.pairing
                or rec.wrapped_cuk != old.wrapped_cuk
                or rec.wrapped_group_key != old.wrapped_group_key
                or rec.wrapped_global_key != old.wrapped_global_key):
            self._keys = self._unwrap_keys(rec)

    def rights(self) -> CardRights:
        """What the card holds now, as :func:`cas.access.decide` reads it."""
        return self._rights()

    # --- VirtualCard --------------------------------------------------------------------------
    def atr(self) -> bytes:
        return self._atr

    def _new_session(self) -> None:
        self.selected = False
        self.pin_verified = False
        self._pending = b""

    def power_on(self) -> None:
        self.powered = True
        self._new_session()

    def power_off(self) -> None:
        self.powered = False
        self._new_session()
        self._flush_clock()

    def reset(self) -> None:
        self.powered = True
        self._new_session()

    def _flush_clock(self) -> None:
        """Save the clock and the staged ECM record (power-off)."""
        try:
            if self.clock_s > self.record.last_ecm_s:
                self._commit(dataclasses.replace(self.record, last_ecm_s=self.clock_s))
            else:
                self.eeprom.flush()
        except CasError as exc:  # power-off path: nothing to answer to
            log.warning("card %010d: could not save its clock: %s", self.record.serial, exc)

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; always returns a response APDU (data + SW)."""
        try:
            cmd = parse_command(apdu)
            if cmd.ins == Ins.GET_RESPONSE and cmd.cla == CLA_ISO:
                return self._get_response(cmd)
            self._pending = b""
            handler = self._handlers.get((cmd.cla, cmd.ins))
            if handler is None:
                if cmd.cla not in (CLA_ISO, CLA_PROPRIETARY) or cmd.ins in self._ins_any_class:
                    return sw_bytes(SW.CLA_NOT_SUPPORTED)
                return sw_bytes(SW.INS_NOT_SUPPORTED)
            if not self.selected and cmd.ins != Ins.SELECT:
                return sw_bytes(SW.CONDITIONS_NOT_SATISFIED)
            return handler(cmd)
        except Refusal as refusal:
            return sw_bytes(refusal.sw)
        except CasError as exc:
            # e.g. the EEPROM could not be written: the change did not happen.
            log.error("card %010d: %s", self.record.serial, exc)
            return sw_bytes(SW.UNKNOWN_ERROR)
        except Exception:
            log.exception("card %010d: internal error", self.record.serial)
            return sw_bytes(SW.UNKNOWN_ERROR)

    # --- response length handling (ISO/IEC 7816-4 §5.3.4) -------------------------------------
    def _answer(self, data: bytes, ne: int) -> bytes:
        na = len(data)
        if na == 0:
            return OK
        if na <= ne:
            return data + OK
        if ne == 0:
            self._pending = data
            return sw_bytes(SW_BYTES_REMAINING | (na & 0xFF if na < 256 else 0))
        if na <= 256:  # fits one response, the host just asked for too little
            return sw_bytes(SW_WRONG_LE | (na & 0xFF))
        chunk = min(ne, 256)
        self._pending = data[chunk:]
        rest = len(self._pending)
        return data[:chunk] + sw_bytes(SW_BYTES_REMAINING | (rest if rest < 256 else 0))

    def _get_response(self, cmd: Command) -> bytes:
        if cmd.p1 or cmd.p2:
            raise Refusal(SW.INCORRECT_P1P2)
        if cmd.data:
            raise Refusal(SW.WRONG_LENGTH)
        pending = self._pending
        if not pending:
            raise Refusal(SW.CONDITIONS_NOT_SATISFIED)
        ne = cmd.ne or 256
        chunk = min(ne, 256, len(pending))
        if ne < len(pending) and len(pending) <= 256 and ne != 256:
            return sw_bytes(SW_WRONG_LE | len(pending))
        self._pending = pending[chunk:]
        rest = len(self._pending)
        if rest:
            return pending[:chunk] + sw_bytes(SW_BYTES_REMAINING | (rest if rest < 256 else 0))
        return pending[:chunk] + OK

    # --- SELECT -------------------------------------------------------------------------------
    def _select(self, cmd: Command) -> bytes:
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x0C):
            raise Refusal(SW.INCORRECT_P1P2)
        if not cmd.data or not AID.startswith(cmd.data):
            self.selected = False
            raise Refusal(SW.FILE_NOT_FOUND)
        self.selected = True
        if cmd.p2 == 0x0C or cmd.ne == 0:
            return OK
        # FCI template (ISO/IEC 7816-4 §7.4.1): DF name.
        fci = b"\x6f" + bytes([len(AID) + 2]) + b"\x84" + bytes([len(AID)]) + AID
        return self._answer(fci, cmd.ne)

    # --- GET DATA -----------------------------------------------------------------------------
    def card_info(self) -> CardInfo:
        rec = self.record
        return CardInfo(
            serial=rec.serial, shared_address=rec.shared_address,
            member_position=rec.member_position, ca_system_id=rec.ca_system_id,
            operator_id=rec.operator_id, card_os_version=rec.card_os_version,
            personalised_s=rec.personalised_s, expiry_s=rec.expiry_s, status=rec.status,
            region=rec.region, maturity_limit=rec.maturity_limit,
            pin_retries_left=rec.pin_retries_left, pin_retries_max=rec.pin_retries_max,
            paired=rec.pairing is not None,
            chip_id=rec.pairing.chip_id if rec.pairing is not None else 0,
            emm_seq_unique=rec.emm_seq_unique, emm_seq_shared=rec.emm_seq_shared,
            emm_seq_global=rec.emm_seq_global, last_ecm_s=max(self.clock_s, rec.last_ecm_s),
            entitlement_count=len(rec.entitlements),
            ecm_key_indexes=tuple(s.index for s in rec.ecm_keys),
        )

    def _get_data(self, cmd: Command) -> bytes:
        if cmd.p1 != GET_DATA_P1:
            raise Refusal(SW.INCORRECT_P1P2)
        if cmd.data:
            raise Refusal(SW.WRONG_LENGTH)
        rec = self.record
        tag = cmd.p2
        if tag == DataTag.SERIAL:
            data = rec.serial.to_bytes(4, "big")
        elif tag == DataTag.CARD_INFO:
            data = build_card_info(self.card_info())
        elif tag == DataTag.STATUS:
            data = build_status(CardStatusInfo(status=rec.status, region=rec.region,
                                               maturity_limit=rec.maturity_limit,
                                               paired=rec.pairing is not None))
        elif tag == DataTag.COUNTERS:
            data = build_counters(Counters(
                emm_seq_unique=rec.emm_seq_unique, emm_seq_shared=rec.emm_seq_shared,
                emm_seq_global=rec.emm_seq_global,
                last_ecm_s=max(self.clock_s, rec.last_ecm_s),
                pin_retries_left=rec.pin_retries_left, pin_retries_max=rec.pin_retries_max))
        elif tag == DataTag.PAIRING:
            if rec.pairing is None:
                raise Refusal(SW.DATA_NOT_FOUND)
            data = build_pairing(PairingInfo(chip_id=rec.pairing.chip_id,
                                             chip_blob=rec.pairing.chip_blob))
        elif tag == DataTag.PURSE:
            data = build_purse_info(self.ppv.state)
        elif tag == DataTag.OSD_MESSAGE:
            data = rec.last_osd_message.encode("utf-8")
            if not data:
                return OK
        elif tag == DataTag.OSD_MAIL:
            mail = next_mail(self.eeprom.state, max(self.clock_s, rec.last_ecm_s))
            if mail is None:
                raise Refusal(SW.DATA_NOT_FOUND)
            data = build_mail_answer(mail)
        elif tag == DataTag.FINGERPRINT:
            fingerprint = self.eeprom.state.fingerprint
            if fingerprint is None:
                raise Refusal(SW.DATA_NOT_FOUND)
            data = build_mail_answer(fingerprint)
        elif tag == DataTag.SHARING:
            data = build_sharing_info(sharing_info(self.eeprom.state))
        else:
            raise Refusal(SW.DATA_NOT_FOUND)
        return self._answer(data, cmd.ne)

    # --- ACK OSD --------------------------------------------------------------------------
    def _ack_osd(self, cmd: Command) -> bytes:
        """The box showed message ``id`` (u16): it leaves the mailbox for good."""
        if cmd.p1 or cmd.p2:
            raise Refusal(SW.INCORRECT_P1P2)
        if len(cmd.data) != 2 or cmd.ne:
            raise Refusal(SW.WRONG_LENGTH)
        state = ack_mail(self.eeprom.state, int.from_bytes(cmd.data, "big"))
        if state is None:
            raise Refusal(SW.DATA_NOT_FOUND)
        self.eeprom.commit(state=state)
        return OK

    # --- READ ENTITLEMENTS --------------------------------------------------------------------
    def _read_entitlements(self, cmd: Command) -> bytes:
        if cmd.p1 or cmd.p2:
            raise Refusal(SW.INCORRECT_P1P2)
        if cmd.data:
            raise Refusal(SW.WRONG_LENGTH)
        return self._answer(build_entitlements(self.record.entitlements), cmd.ne)

    # --- PIN ----------------------------------------------------------------------------------
    def _pin_checks(self, cmd: Command, length: int) -> None:
        if cmd.p1 != 0x00:
            raise Refusal(SW.INCORRECT_P1P2)
        if cmd.p2 != PIN_REFERENCE:
            raise Refusal(SW.DATA_NOT_FOUND)
        if cmd.ne:
            raise Refusal(SW.WRONG_LENGTH)
        if cmd.data and len(cmd.data) != length:
            raise Refusal(SW.WRONG_LENGTH)

    def _check_pin(self, pin: bytes) -> None:
        """Compare ``pin``; on a mismatch count the try down (persisted) and refuse."""
        rec = self.record
        if rec.pin_retries_left == 0:
            raise Refusal(SW.PIN_BLOCKED)
        if not pin.isdigit():
            raise Refusal(SW.WRONG_DATA)
        if pin_hash(self._keys.cuk, pin) != rec.pin_hash:
            left = rec.pin_retries_left - 1
            self._commit(dataclasses.replace(rec, pin_retries_left=left))
            self.pin_verified = False
            raise Refusal(SW.PIN_BLOCKED if left == 0 else SW_VERIFY_FAILED | left)

    def _verify(self, cmd: Command) -> bytes:
        self._pin_checks(cmd, PIN_LENGTH)
        rec = self.record
        if not cmd.data:  # ISO 7816-4 §7.5.6: no data = ask for the verification status
            if rec.pin_retries_left == 0:
                raise Refusal(SW.PIN_BLOCKED)
            if self.pin_verified:
                return OK
            raise Refusal(SW_VERIFY_FAILED | min(rec.pin_retries_left, 15))
        self._check_pin(cmd.data)
        if rec.pin_retries_left != rec.pin_retries_max:
            self._commit(dataclasses.replace(rec, pin_retries_left=rec.pin_retries_max))
        self.pin_verified = True
        return OK

    def _change_pin(self, cmd: Command) -> bytes:
        self._pin_checks(cmd, 2 * PIN_LENGTH)
        if not cmd.data:
            raise Refusal(SW.WRONG_LENGTH)
        old, new = cmd.data[:PIN_LENGTH], cmd.data[PIN_LENGTH:]
        if not new.isdigit():
            raise Refusal(SW.WRONG_DATA)
        self._check_pin(old)
        rec = self.record
        self._commit(dataclasses.replace(rec, pin_hash=pin_hash(self._keys.cuk, new),
                                         pin_retries_left=rec.pin_retries_max))
        self.pin_verified = True
        return OK

    # --- PROCESS ECM ------------------------------------------------------------------------
    def _rights(self) -> CardRights:
        rec = self.record
        ppv = self.ppv.state
        if self._rights_for is not rec or self._rights_ppv is not ppv:
            self._rights_cache = CardRights(status=rec.status, region=rec.region,
                                            maturity_limit=rec.maturity_limit,
                                            entitlements=rec.entitlements, events=ppv.rights)
            self._rights_for = rec
            self._rights_ppv = ppv
        return self._rights_cache

    def _advance_clock(self, now_s: int) -> None:
        """Move the card's clock to ``now_s`` (an authenticated ECM time) if it is newer."""
        if now_s <= self.clock_s:
            return
        self.clock_s = now_s
        if now_s - self.record.last_ecm_s >= CLOCK_PERSIST_STEP_S:
            try:
                self._commit(dataclasses.replace(self.record, last_ecm_s=now_s))
            except CasError as exc:  # best effort: the clock in RAM is still right
                log.warning("card %010d: could not save its clock: %s", self.record.serial, exc)

    def _process_ecm(self, cmd: Command) -> bytes:
        """Key index known (9815) → authentic (6982) → fresh (9814) → access decision
        (:func:`cas.access.decide`, 98xx) → paired (9809) → the sharing check
        (:func:`cas.card.sharing.judge`, 9840 under ``REFUSE``) → CWs wrapped under the
        CWPK."""
        section, ecm = _section_of(cmd, parse_ecm_fast)
        header, body = self._open_ecm(section, ecm.header, ecm.body)
        now_s = header.timestamp_s
        self._advance_clock(now_s)
        reason = decide(self._rights(), body.criteria(header.channel_id), now_s,
                        pin_ok=self.pin_verified)
        if reason is not Reason.OPEN:
            raise Refusal(sw_for_reason(reason))
        cwpk = self._keys.cwpk
        if cwpk is None:
            raise Refusal(SW.PAIRING_MISMATCH)
        self._judge_sharing(header.channel_id, now_s)
        answer = self._answer(wrap_cws(cwpk, body.cw_even, body.cw_odd), cmd.ne)
        if self.on_ecm_answered is not None:
            self.on_ecm_answered(now_s, self.record.serial, header.channel_id)
        return answer

    def _judge_sharing(self, channel_id: int, now_s: int) -> None:
        """Count this ECM in the card's sharing record; refuse it (9840) when the policy
        says so.  The record is written with the clock (stepwise) and at power-off; a flag
        raised (or tripped in a new window) at once, so it is on the card before the answer
        leaves."""
        judgement = judge(self.eeprom.state, channel_id, now_s)
        if judgement.flag_changed:
            self.eeprom.commit(state=judgement.state)
        else:
            self.eeprom.stage(judgement.state)
        if not judgement.answer:
            raise Refusal(SW.SHARING_DETECTED)

    def _open_ecm(self, section: bytes, header: EcmHeader, sealed: bytes) -> tuple[EcmHeader,
                                                                                 EcmBody]:
        """Key index known (9815) → authentic (6982) → fresh (9814) → body parses (6A80)."""
        key = self._keys.ecm.get(header.ecm_key_index)
        if key is None:
            raise Refusal(SW.KEY_INDEX_UNKNOWN)
        try:
            plain = aead_open(key, header.nonce, sealed, section[: len(section) - len(sealed)])
        except AuthenticationError:
            raise Refusal(SW.SECURITY_NOT_SATISFIED) from None
        if header.timestamp_s + self.ecm_stale_tolerance_s < self.clock_s:
            raise Refusal(SW.ECM_STALE)
        try:
            return header, parse_ecm_body_fast(plain)
        except FormatError:
            raise Refusal(SW.WRONG_DATA) from None

    # --- PPV ------------------------------------------------------------------------------
    def _ppv_buy(self, cmd: Command) -> bytes:
        """The checks of :mod:`cas.card.ppv` (module doc), in its order."""
        if cmd.p1 or cmd.p2:
            raise Refusal(SW.INCORRECT_P1P2)
        pin, event_id, section = parse_buy_data(cmd.data)
        try:
            ecm = parse_ecm_fast(section)
        except FormatError:
            raise Refusal(SW.WRONG_DATA) from None
        if self.record.pin_retries_left == 0:
            raise Refusal(SW.PIN_BLOCKED)
        header, body = self._open_ecm(section, ecm.header, ecm.body)
        now_s = header.timestamp_s
        self._advance_clock(now_s)
        event = event_on_air(body.ppv_event, event_id, now_s)
        rights = self._rights()
        if rights.status != CardStatus.ACTIVE or (body.regions
                                                 and rights.region not in body.regions):
            raise Refusal(sw_for_reason(decide(rights, body.criteria(header.channel_id), now_s)))
        self._check_pin(pin)
        rec = self.record
        if rec.pin_retries_left != rec.pin_retries_max:
            self._commit(dataclasses.replace(rec, pin_retries_left=rec.pin_retries_max))
        self.pin_verified = True
        new = purchase(self.ppv.state, event, header.channel_id, now_s)
        if new is not None:
            self.ppv.commit(new)
        return self._answer(build_purse_info(self.ppv.state), cmd.ne)

    def _ppv_report(self, cmd: Command) -> bytes:
        if cmd.p1 or cmd.p2:
            raise Refusal(SW.INCORRECT_P1P2)
        if cmd.data:
            raise Refusal(SW.WRONG_LENGTH)
        state, report = next_report(self.ppv.state, self.record.serial, self._keys.cuk)
        self.ppv.commit(state)
        return self._answer(report, cmd.ne)

    # --- PROCESS EMM ------------------------------------------------------------------------
    def _process_emm(self, cmd: Command) -> bytes:
        """Addressed to us (9812) → authentic under the key of its address type (6982) →
        newer than the last applied for that type, by at most ``SEQ_WINDOW`` modulo 2^32, or
        a late command EMM: in that type's window, not yet applied, no rights-state command
        (:mod:`cas.card.emm_window`; else 9811) → not expired by the card's clock
        (9813) → every command applied, and its number marked in the window, in one EEPROM
        write, or none (6A80/6A84)."""
        section, emm = _section_of(cmd, parse_emm)
        rec = self.record
        header = emm.header
        address = header.address
        key: Key | None
        if isinstance(address, UniqueAddress):
            if address.serial != rec.serial:
                raise Refusal(SW.EMM_NOT_ADDRESSED)
            key, last_seq, seq_field = self._keys.cuk, rec.emm_seq_unique, "emm_seq_unique"
        elif isinstance(address, SharedAddress):
            if (address.shared_address != rec.shared_address
                    or not address.includes(rec.member_position)):
                raise Refusal(SW.EMM_NOT_ADDRESSED)
            key, last_seq, seq_field = self._keys.group, rec.emm_seq_shared, "emm_seq_shared"
        else:
            key, last_seq, seq_field = self._keys.global_, rec.emm_seq_global, "emm_seq_global"
        if key is None:  # personalised without that key: it can open nothing of this type
            raise Refusal(SW.KEY_INDEX_UNKNOWN)
        try:
            commands = open_emm_section(key, emm, section)
        except AuthenticationError:
            raise Refusal(SW.SECURITY_NOT_SATISFIED) from None
        except FormatError:  # authentic, but the commands do not parse
            raise Refusal(SW.WRONG_DATA) from None
        window = window_for(self.eeprom.state, EmmAddressType(header.table_id), last_seq)
        behind: int | None = None  # how far a late EMM is behind the counter
        if not seq_is_newer(header.seq, last_seq):  # behind the counter, or too far ahead
            behind = late_position(window, header.seq)
            if behind is None or not is_late_command_emm(commands):
                # replayed, applied, older than the window, or it would roll rights back
                raise Refusal(SW.EMM_REPLAYED)
        now_s = max(self.clock_s, rec.last_ecm_s)
        if header.not_after_s < now_s:
            raise Refusal(SW.EMM_EXPIRED)
        mark = marks_of(commands)
        skip = EmmMark(0)
        if behind is not None:  # settings newer EMMs set are theirs (emm_window rule 3)
            skip = superseded(window, behind)
            commands = without_superseded(commands, skip, self.ppv.state.credit_limit_tokens)
        ppv_commands, commands = split_commands(commands)
        new, pairing = apply_emm_commands(rec, commands, now_s, self._keys.cuk)
        if EmmMark.OSD_TEXT in skip:  # a late OSD_MAIL: the mailbox keeps it, not the text
            new = dataclasses.replace(new, last_osd_message=rec.last_osd_message)
        ppv = self.ppv.state
        if ppv_commands and (ppv.last_emm_kind, ppv.last_emm_seq) != (header.table_id, header.seq):
            # the PPV file first, marked with this EMM: if the record write below is lost,
            # the EMM comes again (its seq not yet recorded) and is not applied twice
            self.ppv.commit(dataclasses.replace(
                apply_ppv_commands(ppv, ppv_commands, now_s),
                last_emm_kind=header.table_id, last_emm_seq=header.seq))
        seq_update: dict[str, int] = {"last_ecm_s": max(new.last_ecm_s, self.clock_s)}
        if behind is None:
            seq_update[seq_field] = header.seq
            window = advance(window, header.seq, mark)
        else:
            window = mark_late(window, behind, mark)
        new = dataclasses.replace(new, **seq_update)  # type: ignore[arg-type]
        state = apply_sharing_commands(accept_osd(self.eeprom.state, commands), commands)
        state = with_window(state, window)
        if rec.status == CardStatus.KILLED and new.status != CardStatus.KILLED:
            # the operator took the card back (cas card unblock): its sharing record and
            # flag belong to the time before
            state = clear(state)
        self._commit(new, state)
        if new.pin_hash != rec.pin_hash:
            self.pin_verified = False
        if pairing is None:
            return OK
        return self._answer(build_pairing(pairing), cmd.ne)


def _section_of(cmd: Command, parse: Callable[[bytes], _Message]) -> tuple[bytes, _Message]:
    """The section a PROCESS ECM or PROCESS EMM carries, and what ``parse`` reads from it:
    P1 = P2 = 00 (6A86), a section at all (6700) that parses (6A80) — the first checks of
    both commands."""
    if cmd.p1 or cmd.p2:
        raise Refusal(SW.INCORRECT_P1P2)
    section = cmd.data
    if not section:
        raise Refusal(SW.WRONG_LENGTH)
    try:
        return section, parse(section)
    except FormatError:
        raise Refusal(SW.WRONG_DATA) from None
