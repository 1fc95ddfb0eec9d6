"""EMM filter, the card slot's reading of status words, and the key slots."""

from __future__ import annotations

import pytest

from cas.card.errors import error_for
from cas.crypto import Key
from cas.crypto.csa2 import Csa2
from cas.crypto.cw import reduce_cw
from cas.errors import CardTransportError, CryptoError, NoCardError
from cas.formats.emm import EmmHeader, GlobalAddress, SetRegion, SharedAddress, UniqueAddress
from cas.messages import seal_emm
from cas.reasons import Reason
from firmware_stub.cardslot import CardSlot, EcmKind, PinKind
from firmware_stub.descrambler import KeySlot, pes_start_ok
from firmware_stub.emmfilter import EmmFilter
from tests.unit.firmware_stub.tsutil import Mux

KEY = Key(bytes(16), label="k")
SERIAL, GROUP, POSITION = 1_000_000_300, 0x0F4240, 44


def _emm(address: UniqueAddress | SharedAddress | GlobalAddress, seq: int = 1) -> bytes:
    header = EmmHeader(address=address, seq=seq, not_after_s=2_000_000_000)
    return seal_emm(KEY, header, [SetRegion(region=3)], bytes(12))


def test_emm_filter_passes_only_our_addresses() -> None:
    flt = EmmFilter(serial=SERIAL, shared_address=GROUP, member_position=POSITION)
    cases = {
        "ours unique": (_emm(UniqueAddress(serial=SERIAL)), True),
        "other unique": (_emm(UniqueAddress(serial=SERIAL + 1)), False),
        "our group, our bit": (_emm(SharedAddress.of(GROUP, [1, POSITION, 200])), True),
        "our group, not our bit": (_emm(SharedAddress.of(GROUP, [POSITION + 1])), False),
        "other group, our bit": (_emm(SharedAddress.of(GROUP + 1, [POSITION])), False),
        "global": (_emm(GlobalAddress()), True),
    }
    got = {name: flt.accept(section) for name, (section, _) in cases.items()}
    assert got == {name: want for name, (_, want) in cases.items()}
    assert flt.counts.passed == {"unique": 1, "shared": 1, "global": 1}
    assert flt.counts.filtered == {"unique": 1, "shared": 2, "global": 0}
    # the carousel repeats: the copy is not handed over again
    assert not flt.accept(cases["ours unique"][0])
    assert flt.counts.repeated == 1
    # another CA system's table id on the same PID, and a damaged EMM for us
    assert not flt.accept(b"\x85\x70\x03abc")
    assert not flt.accept(_emm(UniqueAddress(serial=SERIAL), seq=2)[:30])
    assert (flt.counts.foreign, flt.counts.malformed) == (1, 1)


class _Card:
    """A card double that answers with one status word (the slot's mapping is the subject)."""

    def __init__(self, exc: Exception | None = None, answer: bytes = bytes(40)) -> None:
        self.exc = exc
        self.answer = answer

    def _raise(self) -> None:
        if self.exc is not None:
            raise self.exc

    def info(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def pairing(self) -> None:
        return None

    def process_emm(self, section: bytes) -> object:
        self._raise()
        return None

    def process_ecm(self, section: bytes) -> bytes:
        self._raise()
        return self.answer

    def verify_pin(self, pin: str) -> None:
        self._raise()


@pytest.mark.parametrize(("sw", "reason"), [
    (0x9801, Reason.NOT_SUBSCRIBED), (0x9802, Reason.ENTITLEMENT_EXPIRED),
    (0x9803, Reason.NOT_YET_VALID), (0x9804, Reason.REGION_BLACKOUT),
    (0x9805, Reason.MATURITY_LOCKED), (0x9806, Reason.CARD_SUSPENDED),
    (0x9807, Reason.FINANCIAL_BLOCK), (0x9808, Reason.CARD_KILLED),
    (0x9809, Reason.PAIRING_MISMATCH), (0x980A, Reason.CARD_NOT_ACTIVE),
    (0x980B, Reason.CHANNEL_NOT_IN_PACKAGE), (0x9815, Reason.ECM_KEY_UNKNOWN),
    (0x6983, Reason.PIN_BLOCKED),
])
def test_ecm_refusals_map_to_the_architecture_sw_table(sw: int, reason: Reason) -> None:
    slot = CardSlot(_Card(error_for(sw, command="PROCESS ECM")))
    answer = slot.ecm(b"ecm")
    assert (answer.kind, answer.reason, answer.sw) == (EcmKind.DENIED, reason, sw)


@pytest.mark.parametrize("sw", [0x6982, 0x6A80, 0x6700, 0x9814, 0x9812])
def test_unusable_ecms_are_rejections_not_locks(sw: int) -> None:
    answer = CardSlot(_Card(error_for(sw, command="PROCESS ECM"))).ecm(b"ecm")
    assert answer.kind is EcmKind.REJECTED and answer.reason is None


def test_card_faults_and_empty_slot() -> None:
    assert CardSlot(None).ecm(b"x").reason is Reason.NO_CARD
    assert CardSlot(_Card(NoCardError("pulled out"))).ecm(b"x").reason is Reason.NO_CARD
    assert CardSlot(_Card(CardTransportError("pcscd gone"))).ecm(b"x").reason is Reason.CARD_ERROR
    assert CardSlot(_Card(error_for(0x6D00))).ecm(b"x").reason is Reason.CARD_ERROR
    short = CardSlot(_Card(answer=b"\x00" * 7)).ecm(b"x")
    assert short.reason is Reason.CARD_ERROR and "7 bytes" in short.detail
    assert CardSlot(_Card()).ecm(b"x").kind is EcmKind.CWS


def test_pin_answers() -> None:
    assert CardSlot(_Card()).verify_pin("1234").kind is PinKind.OK
    wrong = CardSlot(_Card(error_for(0x63C2))).verify_pin("1234")
    assert (wrong.kind, wrong.tries_left, wrong.text()) == (PinKind.WRONG, 2,
                                                           "wrong PIN (2 tries left)")
    one = CardSlot(_Card(error_for(0x63C1))).verify_pin("1234")
    assert one.text() == "wrong PIN (1 try left)"
    assert CardSlot(_Card(error_for(0x6983))).verify_pin("1234").kind is PinKind.BLOCKED
    assert CardSlot(None).verify_pin("1234").kind is PinKind.ERROR


def test_emm_answers() -> None:
    assert CardSlot(_Card()).emm(b"e").result == "applied"
    assert CardSlot(_Card(error_for(0x9811, command="PROCESS EMM"))).emm(b"e").result == "replayed"
    assert CardSlot(_Card(error_for(0x6982, command="PROCESS EMM"))).emm(b"e").result == "bad_mac"


def test_key_slot_descrambles_by_parity_and_checks_pes_starts() -> None:
    even, odd = bytes.fromhex("0102030605060712"), bytes.fromhex("11121336363738a5")  # reduced
    mux = Mux()
    clear = b"".join(mux.pes(0x100, bytes(range(256)) * 2))
    buf = bytearray(clear)
    Csa2(even, odd).scramble(buf, bytes([1, 0, 1]))
    assert buf != bytearray(clear)
    slot = KeySlot(0x02)
    with pytest.raises(CryptoError):
        slot.descramble(bytearray(buf))
    assert slot.install(even, odd) and not slot.install(even, odd)
    generation = slot.generation
    assert pes_start_ok(buf[:188]) is False  # scrambled: no start code visible
    out = bytearray(buf)
    slot.descramble(out)
    assert out == bytearray(clear)
    assert pes_start_ok(out[:188]) is True and pes_start_ok(out[188:376]) is None
    slot.install(odd, even)  # wrong way round: the check sees it
    assert slot.generation == generation + 1
    wrong = bytearray(buf)
    slot.descramble(wrong)
    assert pes_start_ok(wrong[:188]) is False
    with pytest.raises(CryptoError):
        slot.install(b"\x00" * 16, b"\x00" * 16)  # CISSA-sized CWs for a CSA2 slot
    with pytest.raises(CryptoError):
        KeySlot(0x03)  # CSA3: not a mode this box has


def test_csa2_key_slot_reduces_full_64_bit_control_words() -> None:
    """A CSA2 receiver reduces the CW before descrambling (issue 12, item 17): a stream
    scrambled with the reduced CWs opens with the full 64-bit CWs the ECM carried, and
    reducing an already-reduced CW changes nothing."""
    full_even, full_odd = bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")
    even, odd = reduce_cw(full_even), reduce_cw(full_odd)
    assert (even, odd) != (full_even, full_odd)
    clear = b"".join(Mux().pes(0x100, bytes(range(256)) * 2))
    buf = bytearray(clear)
    Csa2(even, odd).scramble(buf, bytes([1, 0, 1]))
    slot = KeySlot(0x02)
    slot.install(full_even, full_odd)
    out = bytearray(buf)
    slot.descramble(out)
    assert out == bytearray(clear)
    assert not slot.install(even, odd)           # the same keys once reduced: no change
    out = bytearray(buf)
    slot.descramble(out)
    assert out == bytearray(clear)


def test_cissa_key_slot_uses_its_keys_as_given() -> None:
    slot = KeySlot(0x10)
    key_even, key_odd = bytes(range(16)), bytes(range(16, 32))
    assert slot.install(key_even, key_odd)
    assert not slot.install(key_even, key_odd)
