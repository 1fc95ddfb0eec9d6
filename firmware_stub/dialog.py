"""The box's conversation with its card during one pass over a stream (the I/O side).

* Each new ECM of a channel the box wants goes to the card (:meth:`CardDialog.process_ecm`):
  an unreadable one is counted as garbage; wrapped CWs are opened by the chipset and
  installed in the ECM stream's key slot; a refusal is kept with its reason.  A card that
  asks for the parental PIN gets it (VERIFY PIN) when the user gave one.
* EMMs addressed to the card (:mod:`firmware_stub.emmfilter`) go to the card
  (:meth:`CardDialog.process_emm`); after one was applied the box re-reads the pairing (a
  PAIR EMM gives a new chip blob) and asks again for the current ECMs, because the card's
  rights may have changed.

What came of it is kept per ECM PID (:class:`EcmState`); the verdict reads it as
:class:`~firmware_stub.observations.EcmFacts` (:meth:`EcmState.facts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cas.errors import CasError, FormatError
from cas.formats.ecm import parse_ecm
from cas.reasons import Reason
from firmware_stub.cardslot import EcmKind, PinAnswer, PinKind
from firmware_stub.demux import Demux
from firmware_stub.descrambler import KeySlot, scrambling_name, supported
from firmware_stub.emmfilter import EmmFilter
from firmware_stub.errors import PairingError
from firmware_stub.faults import Fault
from firmware_stub.nvram import LastEcm, LastEmm
from firmware_stub.observations import EcmFacts

if TYPE_CHECKING:
    from firmware_stub.boxview import BoxView


@dataclass(slots=True)
class EcmState:
    """One ECM PID during a pass."""

    pid: int
    last_section: bytes = b""
    sections: int = 0
    sent: int = 0
    garbage: int = 0
    rejected: int = 0
    problem: str = ""  # the last garbage / rejection, for NO_ECM details
    reason: Reason | None = None  # None: no usable answer yet
    detail: str = ""
    keys: KeySlot | None = None
    refused_sw: int | None = None

    def facts(self) -> EcmFacts:
        return EcmFacts(pid=self.pid, sections=self.sections, problem=self.problem,
                        reason=self.reason, detail=self.detail)


@dataclass(slots=True)
class Counters:
    """The card dialog's NVRAM counters for one pass."""

    ecm_sent: int = 0
    ecm_cws: int = 0
    ecm_denied: int = 0
    ecm_rejected: int = 0
    ecm_garbage: int = 0
    cw_unwrap_failed: int = 0
    card_errors: int = 0
    emm_results: dict[str, int] = field(default_factory=dict)


class CardDialog:
    """ECMs and EMMs to the card, the answers into key slots and per-PID state.

    ``before_key_change`` is called before a key slot's control words change or are
    forgotten: packets gathered for the output under the old ones go out first."""

    def __init__(self, box: BoxView, demux: Demux, *, pin: str | None,
                 before_key_change: Callable[[], None]) -> None:
        self.box = box
        self.slot = box.slot
        self.demux = demux
        self.pin = pin
        self.pin_answer: PinAnswer | None = None
        self.before_key_change = before_key_change
        info = box.slot.info
        self.filter = (EmmFilter(serial=info.serial, shared_address=info.shared_address,
                                 member_position=info.member_position)
                       if info is not None and box.slot.usable else None)
        self.ecm: dict[int, EcmState] = {}
        self.counters = Counters()
        self.last_emm: LastEmm | None = None
        self.last_ecm: LastEcm | None = None
        #: live mode: called after every card answer to an ECM (a verdict may have changed)
        self.on_ecm_answer: Callable[[], None] | None = None
        #: live mode: called after the card answered an EMM (address type, section, SW, result)
        self.on_emm_answer: Callable[[str, bytes, int, str], None] | None = None
        #: called after the card applied an EMM (the OSD asks for new messages)
        self.on_emm_applied: Callable[[], None] | None = None
        #: ECM time (card clock) of the first ECM of the pass: the clip's start in card time
        self.first_ecm_time_s: int | None = None

    # --- ECM -----------------------------------------------------------------------------------
    def receive_ecm(self, pid: int, section: bytes) -> EcmState | None:
        """Count an ECM section; its PID's state when it is a new ECM, None for the usual
        repetition of the current one."""
        st = self.ecm.get(pid)
        if st is None:
            st = self.ecm[pid] = EcmState(pid=pid)
        st.sections += 1
        if section == st.last_section:
            return None
        if Fault.STALE_ECM_KEY in self.box.faults and st.reason is not None:
            return None  # injected fault: the first answer stays, whatever comes after
        st.last_section = section
        return st

    def process_ecm(self, st: EcmState, section: bytes, packet_index: int) -> None:
        """A new ECM the box wants an answer to: check it, ask the card."""
        try:
            ecm = parse_ecm(section)
        except FormatError as exc:
            st.garbage += 1
            self.counters.ecm_garbage += 1
            st.problem = f"unreadable ECM: {exc}"
            self.demux.stats.note(packet_index, st.pid, "bad_ecm", str(exc))
            return
        if self.first_ecm_time_s is None:
            self.first_ecm_time_s = ecm.header.timestamp_s
        self._ask_card(st, section)
        if self.on_ecm_answer is not None:
            self.on_ecm_answer()

    def _ask_card(self, st: EcmState, section: bytes) -> None:
        self.counters.ecm_sent += 1
        st.sent += 1
        answer = self.slot.ecm(section)
        # VERIFY PIN: a wrong PIN is tried once per run (it costs the card a try); a right
        # one again whenever the card asks (e.g. it was reset in between).
        if (answer.kind is EcmKind.DENIED and answer.reason is Reason.MATURITY_LOCKED
                and self.pin is not None
                and (self.pin_answer is None or self.pin_answer.kind is PinKind.OK)):
            self.pin_answer = self.slot.verify_pin(self.pin)
            if self.pin_answer.kind is PinKind.OK:
                answer = self.slot.ecm(section)
        if answer.kind is EcmKind.REJECTED:
            st.rejected += 1
            self.counters.ecm_rejected += 1
            st.problem = answer.detail
            return
        if answer.kind is EcmKind.CWS:
            self.counters.ecm_cws += 1
            try:
                even, odd = self.box.chipset.unwrap_cws(answer.wrapped)
            except PairingError as exc:
                self.counters.cw_unwrap_failed += 1
                self._lock(st, Reason.PAIRING_MISMATCH, self.box.pairing_note or str(exc))
                return
            if Fault.WRONG_CW_PARITY in self.box.faults:
                even, odd = odd, even
            mode = self._mode_of(st.pid)
            if not supported(mode):
                self._lock(st, Reason.NO_ECM,
                           f"{scrambling_name(mode)} scrambling: not supported by this box")
                return
            self.before_key_change()  # packets gathered so far belong to the old keys
            keys = st.keys
            if keys is None or keys.mode != mode:
                keys = st.keys = KeySlot(mode)
            try:
                keys.install(even, odd)
            except CasError as exc:
                self._lock(st, Reason.CARD_ERROR, str(exc))
                return
            st.reason, st.detail, st.refused_sw = Reason.OPEN, "", None
            self._note_ecm(st, Reason.OPEN)
            return
        if answer.kind is EcmKind.DENIED:
            self.counters.ecm_denied += 1
        else:
            self.counters.card_errors += 1
        reason = answer.reason or Reason.CARD_ERROR
        detail = answer.detail
        if reason is Reason.MATURITY_LOCKED and self.pin_answer is not None:
            if self.pin_answer.kind is PinKind.BLOCKED:
                reason = Reason.PIN_BLOCKED
            detail = self.pin_answer.text()
        elif reason is Reason.PAIRING_MISMATCH and self.box.pairing_note:
            detail = self.box.pairing_note
        st.refused_sw = answer.sw
        self._lock(st, reason, detail)

    def _lock(self, st: EcmState, reason: Reason, detail: str) -> None:
        if self._fault_opens(reason):
            st.reason, st.detail = Reason.OPEN, f"{reason.value} ignored (injected fault)"
            self._note_ecm(st, Reason.OPEN)
            return
        if st.keys is not None and st.keys.cws_installed:
            self.before_key_change()
            st.keys.forget()
        st.reason, st.detail = reason, detail
        self._note_ecm(st, reason)

    def _fault_opens(self, reason: Reason) -> bool:
        faults = self.box.faults
        return ((reason is Reason.MATURITY_LOCKED and Fault.SKIP_MATURITY in faults)
                or (reason is Reason.PAIRING_MISMATCH and Fault.IGNORE_PAIRING in faults))

    def _note_ecm(self, st: EcmState, reason: Reason) -> None:
        sids = self.demux.services_for_ecm_pid(st.pid)
        channel = self.demux.service(sids[0]).channel if sids else st.pid
        self.last_ecm = LastEcm(at_s=int(self.box.clock()), channel=channel,
                                reason=reason.value)

    def _mode_of(self, ecm_pid: int) -> int:
        sids = self.demux.services_for_ecm_pid(ecm_pid)
        return self.demux.service(sids[0]).scrambling_mode if sids else 0x02

    def keys_for(self, ecm_pid: int | None) -> KeySlot | None:
        """The key slot of ``ecm_pid`` when it holds control words."""
        st = self.ecm.get(ecm_pid) if ecm_pid is not None else None
        keys = st.keys if st is not None else None
        return keys if keys is not None and keys.cws_installed else None

    # --- EMM -----------------------------------------------------------------------------------
    def process_emm(self, section: bytes) -> None:
        flt = self.filter
        if Fault.IGNORE_EMMS in self.box.faults:
            return
        if flt is None or not flt.accept(section):
            return
        kind = flt.address_type(section) or "?"
        answer = self.slot.emm(section)
        results = self.counters.emm_results
        results[answer.result] = results.get(answer.result, 0) + 1
        self.last_emm = LastEmm(at_s=int(self.box.clock()), address_type=kind, sw=answer.sw,
                                result=answer.result)
        if self.on_emm_answer is not None:
            self.on_emm_answer(kind, section, answer.sw, answer.result)
        if answer.result != "applied":
            return
        if self.on_emm_applied is not None:
            self.on_emm_applied()
        # The card's rights may have changed: ask again for every channel's current ECM,
        # and pick up a new pairing if this was a PAIR.
        if kind == "unique" or answer.pairing_changed:
            self._refresh_pairing()
        for st in self.ecm.values():
            st.last_section = b""

    def _refresh_pairing(self) -> None:
        box = self.box
        before = box.chipset.chip_blob
        box.slot.read_info()
        box.pair_from_card()
        if box.chipset.chip_blob != before:
            for st in self.ecm.values():
                if st.reason is Reason.PAIRING_MISMATCH:
                    st.reason = None

    # --- the pass's end ------------------------------------------------------------------------
    def pin_text(self) -> str | None:
        """What became of the PIN the user gave, for the report."""
        if self.pin_answer is not None:
            return self.pin_answer.text()
        if self.pin is not None:
            return "not needed"
        return None
