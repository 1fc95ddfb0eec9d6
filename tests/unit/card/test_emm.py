"""PROCESS EMM: addressing, authentication, anti-replay, expiry, and atomic application of
every command (docs/architecture.md "Card APDUs")."""

from __future__ import annotations

import dataclasses

import pytest

from cas.access import CardStatus, Entitlement
from cas.card.errors import MessageRefusedError
from cas.card.personalise import CardSlot
from cas.crypto import Key, unwrap_cws
from cas.formats.emm import (
    SEQ_WINDOW,
    AddEntitlement,
    ClearEntitlements,
    EcmKeyUpdate,
    OsdMessage,
    RemoveEntitlement,
    SetMaturity,
    SetRegion,
    SetStatus,
    UnknownCommand,
)
from cas.formats.records import ENTITLEMENT_SLOTS, OSD_MAX_BYTES

from .helpers import (
    CHIP_ID,
    CWPK,
    DAY,
    KEYS,
    NOW,
    SERIAL,
    HeadEnd,
    activate,
    make_applet,
    make_client,
    make_record,
    pair_command,
)


def refused(client, section: bytes) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(MessageRefusedError) as info:
        client.process_emm(section)
    return info.value.sw


def test_unique_emm_applies_every_command() -> None:
    applet, client = make_client()
    head = HeadEnd()
    result = client.process_emm(head.unique(
        SERIAL,
        SetStatus(status=CardStatus.ACTIVE),
        AddEntitlement(package_id=10, start_s=NOW, end_s=NOW + DAY),
        AddEntitlement(package_id=11, start_s=NOW, end_s=NOW + 2 * DAY),
        SetRegion(region=7),
        SetMaturity(maturity_limit=12),
        OsdMessage(text="Привет"),
        pair_command(),
    ))
    rec = applet.record
    assert rec.status is CardStatus.ACTIVE
    assert rec.entitlements == (Entitlement(package_id=10, start_s=NOW, end_s=NOW + DAY),
                                Entitlement(package_id=11, start_s=NOW, end_s=NOW + 2 * DAY))
    assert (rec.region, rec.maturity_limit) == (7, 12)
    assert rec.last_osd_message == "Привет"
    assert rec.emm_seq_unique == 1
    # pairing answer: chip id + blob, and the CWPK is kept wrapped, never in clear
    assert result.pairing is not None and result.pairing.chip_id == CHIP_ID
    assert client.pairing() == result.pairing
    assert rec.pairing is not None and CWPK.raw() not in rec.pairing.wrapped_cwpk
    assert client.osd_message() == "Привет"
    assert client.counters().emm_seq_unique == 1


def test_entitlement_update_remove_clear() -> None:
    _applet, client = make_client()
    head = HeadEnd()
    client.process_emm(head.unique(SERIAL, AddEntitlement(package_id=1, start_s=0, end_s=5),
                                   AddEntitlement(package_id=2, start_s=0, end_s=5)))
    client.process_emm(head.unique(SERIAL, AddEntitlement(package_id=1, start_s=0, end_s=9)))
    assert client.entitlements() == (Entitlement(package_id=1, start_s=0, end_s=9),
                                     Entitlement(package_id=2, start_s=0, end_s=5))
    client.process_emm(head.unique(SERIAL, RemoveEntitlement(package_id=1)))
    assert [e.package_id for e in client.entitlements()] == [2]
    client.process_emm(head.unique(SERIAL, ClearEntitlements(),
                                   AddEntitlement(package_id=3, start_s=0, end_s=1)))
    assert [e.package_id for e in client.entitlements()] == [3]


def test_replayed_and_reordered_emms_are_9811() -> None:
    applet, client = make_client()
    head = HeadEnd()
    first = head.unique(SERIAL, SetRegion(region=1), seq=5)
    older = head.unique(SERIAL, SetRegion(region=2), seq=4)
    client.process_emm(first)
    assert refused(client, first) == 0x9811  # replay
    assert refused(client, older) == 0x9811  # reordered: older than the last applied
    assert applet.record.region == 1 and applet.record.emm_seq_unique == 5
    client.process_emm(head.unique(SERIAL, SetRegion(region=3), seq=6))
    assert applet.record.region == 3


def test_an_authentic_emm_at_the_end_of_the_sequence_space_cannot_wedge_the_card() -> None:
    applet, client = make_client()
    head = HeadEnd()
    # 2^32 - 1 is far beyond the window ahead of a new card's counter (0): refused, no change.
    assert refused(client, head.unique(SERIAL, SetRegion(region=9), seq=2**32 - 1)) == 0x9811
    assert applet.record.region == 0 and applet.record.emm_seq_unique == 0
    # ... and the head-end's next EMM still applies.
    client.process_emm(head.unique(SERIAL, SetRegion(region=1), seq=1))
    assert applet.record.region == 1 and applet.record.emm_seq_unique == 1


def test_sequence_window_edges() -> None:
    applet, client = make_client()
    head = HeadEnd()
    client.process_emm(head.unique(SERIAL, SetRegion(region=1), seq=10))
    assert refused(client, head.unique(SERIAL, SetRegion(region=2),
                                       seq=10 + SEQ_WINDOW + 1)) == 0x9811
    client.process_emm(head.unique(SERIAL, SetRegion(region=3), seq=10 + SEQ_WINDOW))
    assert applet.record.region == 3 and applet.record.emm_seq_unique == 10 + SEQ_WINDOW


@pytest.mark.parametrize("kind", ["unique", "shared", "global"])
def test_sequence_numbers_wrap_past_2_32(kind: str) -> None:
    near_end = 2**32 - 2
    applet, client = make_client(make_applet(dataclasses.replace(
        make_record(), emm_seq_unique=near_end, emm_seq_shared=near_end,
        emm_seq_global=near_end)))
    head = HeadEnd()
    rec = applet.record

    def emm(seq: int, region: int) -> bytes:
        if kind == "unique":
            return head.unique(SERIAL, SetRegion(region=region), seq=seq)
        if kind == "shared":
            return head.shared(rec.shared_address, [rec.member_position],
                               SetRegion(region=region), seq=seq)
        return head.global_(SetRegion(region=region), seq=seq)

    last = emm(2**32 - 1, 1)
    client.process_emm(last)
    client.process_emm(emm(0, 2))  # the head-end's counter went on: 2^32 is 0 on the wire
    client.process_emm(emm(1, 3))
    assert applet.record.region == 3
    assert refused(client, last) == 0x9811  # what came before the wrap is still old
    assert refused(client, emm(0, 4)) == 0x9811
    assert applet.record.region == 3


def test_sequence_counters_are_per_address_type() -> None:
    applet, client = make_client()
    head = HeadEnd()
    rec = applet.record
    client.process_emm(head.unique(SERIAL, SetRegion(region=1), seq=100))
    client.process_emm(head.shared(rec.shared_address, [rec.member_position],
                                   SetRegion(region=2), seq=1))
    client.process_emm(head.global_(SetRegion(region=3), seq=1))
    r = applet.record
    assert (r.emm_seq_unique, r.emm_seq_shared, r.emm_seq_global) == (100, 1, 1)
    assert r.region == 3
    assert refused(client, head.global_(SetRegion(region=4), seq=1)) == 0x9811


def test_tampered_emm_is_6982_and_changes_nothing() -> None:
    applet, client = make_client()
    section = bytearray(HeadEnd().unique(SERIAL, SetStatus(status=CardStatus.ACTIVE)))
    for pos in (len(section) - 1, 20, 8):  # tag, body, clear header (seq) — all authenticated
        bad = bytearray(section)
        bad[pos] ^= 0x01
        assert refused(client, bytes(bad)) == 0x6982
    assert applet.record.status is CardStatus.INACTIVE
    assert applet.eeprom.writes == 0
    # sealed with another card's key
    other = HeadEnd().unique(SERIAL, SetStatus(status=CardStatus.ACTIVE),
                             key=KEYS.cuk(SERIAL + 1))
    assert refused(client, other) == 0x6982


def test_wrongly_addressed_emms_are_9812() -> None:
    applet, client = make_client()
    head = HeadEnd()
    rec = applet.record
    assert refused(client, head.unique(SERIAL + 1, SetRegion(region=9))) == 0x9812
    assert refused(client, head.shared(rec.shared_address + 1, [rec.member_position],
                                       SetRegion(region=9))) == 0x9812
    # our group, but our member bit is not set
    others = [p for p in range(256) if p != rec.member_position]
    assert refused(client, head.shared(rec.shared_address, others, SetRegion(region=9))) == 0x9812
    assert applet.record.region == 0


def test_expired_emm_is_9813_by_the_cards_clock() -> None:
    applet, client = make_client()
    head = HeadEnd()
    activate(client, head)
    # the card learns the time from an ECM
    client.process_ecm(head.ecm(timestamp_s=NOW + 10 * DAY))
    late = head.unique(SERIAL, SetRegion(region=5), not_after_s=NOW + 10 * DAY - 1)
    assert refused(client, late) == 0x9813
    client.process_emm(head.unique(SERIAL, SetRegion(region=5), not_after_s=NOW + 10 * DAY))
    assert applet.record.region == 5


def test_group_and_global_emms_use_their_keys() -> None:
    slot = CardSlot(serial=SERIAL, shared_address=0x000102, member_position=200)
    applet, client = make_client(make_applet(make_record(slot=slot)))
    head = HeadEnd()
    client.process_emm(head.shared(0x000102, [3, 200], SetMaturity(maturity_limit=16)))
    assert applet.record.maturity_limit == 16
    client.process_emm(head.global_(OsdMessage(text="maintenance tonight")))
    assert applet.record.last_osd_message == "maintenance tonight"


def test_emm_is_all_or_nothing_when_the_table_is_full() -> None:
    applet, client = make_client()
    head = HeadEnd()
    far = NOW + 365 * DAY
    for first in range(0, ENTITLEMENT_SLOTS, 16):
        client.process_emm(head.unique(SERIAL, *[
            AddEntitlement(package_id=p, start_s=NOW, end_s=far)
            for p in range(first + 1, first + 17)]))
    before = applet.record
    section = head.unique(SERIAL, SetRegion(region=42),
                          AddEntitlement(package_id=999, start_s=NOW, end_s=far))
    assert refused_any(client, section) == 0x6A84
    assert applet.record == before  # the region change was not applied either


def refused_any(client, section: bytes) -> int:  # type: ignore[no-untyped-def]
    from cas.errors import StatusWordError

    with pytest.raises(StatusWordError) as info:
        client.process_emm(section)
    return info.value.sw


def test_full_table_makes_room_by_dropping_ended_entitlements() -> None:
    applet, client = make_client()
    head = HeadEnd()
    activate(client, head, packages=())
    for first in range(0, ENTITLEMENT_SLOTS, 16):
        client.process_emm(head.unique(SERIAL, *[
            AddEntitlement(package_id=p, start_s=0, end_s=NOW + p * DAY)
            for p in range(first + 1, first + 17)]))
    client.process_ecm(head.ecm(packages=(32,), timestamp_s=NOW + 3 * DAY))  # clock moves on
    client.process_emm(head.unique(SERIAL, AddEntitlement(package_id=500, start_s=0, end_s=2**31)))
    ids = [e.package_id for e in applet.record.entitlements]
    assert 1 not in ids and 2 not in ids and 3 not in ids and 500 in ids


def test_unknown_command_refuses_the_whole_emm() -> None:
    applet, client = make_client()
    section = HeadEnd().unique(SERIAL, SetRegion(region=4),
                               UnknownCommand(tag=0x7E, value=b"\x01"))
    assert refused_any(client, section) == 0x6A80
    assert applet.record.region == 0 and applet.record.emm_seq_unique == 0


def test_malformed_emm_is_6a80() -> None:
    _, client = make_client()
    assert refused_any(client, b"\x82\x70\x05\x00\x00\x00\x00\x00") == 0x6A80
    assert refused_any(client, b"\x50\x00") == 0x6A80


def test_osd_message_is_cut_to_the_eeprom_area() -> None:
    applet, client = make_client()
    client.process_emm(HeadEnd().unique(SERIAL, OsdMessage(text="я" * 40)))  # 80 bytes
    assert len(applet.record.last_osd_message.encode()) <= OSD_MAX_BYTES
    assert applet.record.last_osd_message == "я" * (OSD_MAX_BYTES // 2)


def test_ecm_key_update_rolls_over() -> None:
    applet, client = make_client()
    head = HeadEnd()
    activate(client, head)
    new_key = Key(bytes(range(200, 216)), label="ecm key 1")
    client.process_emm(head.unique(SERIAL, EcmKeyUpdate(index=1, key=new_key.raw())))
    assert [s.index for s in applet.record.ecm_keys] == [0, 1]
    wrapped = client.process_ecm(head.ecm(key_index=1, key=new_key))
    assert unwrap_cws(CWPK, wrapped)[0] == bytes.fromhex("0102030609080716")
    client.process_emm(head.unique(SERIAL, EcmKeyUpdate(index=2, key=new_key.raw())))
    assert [s.index for s in applet.record.ecm_keys] == [1, 2]  # oldest dropped


def test_emm_state_survives_a_restart_from_the_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cas.card.eeprom import load_image
    from cas.formats.records import build_card_record

    path = tmp_path / "card.img"
    path.write_bytes(build_card_record(make_record()))
    from cas.card.applet import Applet
    from cas.card.eeprom import Eeprom

    applet = Applet(Eeprom.open(path), rom_key=KEYS.transport_key())
    _, client = make_client(applet)
    activate(client, HeadEnd())
    reloaded = load_image(path)
    assert reloaded == applet.record
    assert dataclasses.replace(reloaded).status is CardStatus.ACTIVE
