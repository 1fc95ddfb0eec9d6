"""The EMM commands applied to a card record as a pure function (:mod:`cas.card.emm_apply`):
the record comes back changed and the input record is left alone."""

from __future__ import annotations

import pytest

from cas.access import Entitlement
from cas.card.command import Refusal
from cas.card.data import PairingInfo
from cas.card.emm_apply import apply_emm_commands
from cas.crypto import unwrap_key
from cas.formats.emm import AddEntitlement, Pair, SetRegion, UnknownCommand

from .helpers import CWPK, DAY, KEYS, NOW, SERIAL, make_record

CUK = KEYS.cuk(SERIAL)


def test_commands_change_a_copy_of_the_record() -> None:
    rec = make_record()
    new, pairing = apply_emm_commands(
        rec, [SetRegion(region=7), AddEntitlement(package_id=3, start_s=NOW, end_s=NOW + DAY)],
        NOW, CUK)
    assert pairing is None
    assert new.region == 7
    assert new.entitlements == (Entitlement(package_id=3, start_s=NOW, end_s=NOW + DAY),)
    assert rec.region == 0 and rec.entitlements == ()  # the input is not touched


def test_pair_wraps_the_cwpk_under_the_cuk_and_answers_the_pairing() -> None:
    new, pairing = apply_emm_commands(
        make_record(), [Pair(chip_id=0x42, cwpk=CWPK.raw(), chip_blob=b"\x01" * 16)], NOW, CUK)
    assert pairing == PairingInfo(chip_id=0x42, chip_blob=b"\x01" * 16)
    assert new.pairing is not None
    assert unwrap_key(CUK, new.pairing.wrapped_cwpk, label="cwpk").raw() == CWPK.raw()


def test_an_unknown_command_refuses_all_with_6a80() -> None:
    with pytest.raises(Refusal) as info:
        apply_emm_commands(make_record(), [SetRegion(region=7),
                                           UnknownCommand(tag=0x7E, value=b"\x01")], NOW, CUK)
    assert info.value.sw == 0x6A80

