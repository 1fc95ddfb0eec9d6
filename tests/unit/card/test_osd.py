"""The card's OSD mailbox: GET DATA 20 (next message), ACK OSD, GET DATA 21 (fingerprint
order); priority order, shown once, start times by the card's clock, a full mailbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.card.applet import Applet
from cas.card.client import CardClient, build_apdu
from cas.card.eeprom import Eeprom, load_card_image
from cas.card.errors import MessageRefusedError
from cas.card.osd import MAILBOX_SLOTS
from cas.card.transport import InProcessTransport
from cas.errors import StatusWordError
from cas.formats.apdu import CLA_PROPRIETARY, Ins
from cas.formats.emm import Fingerprint, FingerprintKind, OsdMail, OsdMessage
from cas.formats.records import CARD_RECORD_SIZE, build_card_record

from .helpers import KEYS, NOW, SERIAL, HeadEnd, make_client, make_record


def mail(message_id: int, priority: int = 0, *, start_s: int = 0, duration_s: int = 10,
         text: str = "") -> OsdMail:
    return OsdMail(message_id=message_id, priority=priority, start_s=start_s,
                   duration_s=duration_s, text=text or f"message {message_id}")


def test_highest_priority_first_each_once_after_acknowledgement() -> None:
    _applet, client = make_client()
    head = HeadEnd()
    client.process_emm(head.unique(SERIAL, mail(1, 1), mail(2, 9)))
    client.process_emm(head.global_(mail(3, 5, text="для всех")))
    order = []
    while (m := client.osd_mail()) is not None:
        order.append((m.message_id, m.text))
        client.ack_osd(m.message_id)
    assert order == [(2, "message 2"), (3, "для всех"), (1, "message 1")]
    # the same ids again (a carousel repeat, re-sealed): not shown a second time
    client.process_emm(head.global_(mail(3, 5, text="для всех")))
    client.process_emm(head.unique(SERIAL, mail(2, 9)))
    assert client.osd_mail() is None


def test_the_text_still_reaches_the_old_osd_area() -> None:
    applet, client = make_client()
    client.process_emm(HeadEnd().unique(SERIAL, OsdMessage(text="old"), mail(4, text="new")))
    assert client.osd_message() == "new"
    assert applet.record.last_osd_message == "new"


def test_a_message_waits_for_its_start_time_and_ends_after_its_display_time() -> None:
    applet, client = make_client()
    head = HeadEnd()
    client.process_emm(head.unique(SERIAL, mail(5, start_s=NOW + 100, duration_s=60)))
    applet.clock_s = NOW
    assert client.osd_mail() is None
    applet.clock_s = NOW + 100
    m = client.osd_mail()
    assert m is not None and m.message_id == 5
    applet.clock_s = NOW + 160
    assert client.osd_mail() is None


def test_a_full_mailbox_drops_the_lowest_priority() -> None:
    _applet, client = make_client()
    head = HeadEnd()
    for i in range(MAILBOX_SLOTS):
        client.process_emm(head.unique(SERIAL, mail(10 + i, priority=10 + i)))
    client.process_emm(head.unique(SERIAL, mail(99, priority=50)))
    seen = []
    while (m := client.osd_mail()) is not None:
        seen.append(m.message_id)
        client.ack_osd(m.message_id)
    assert len(seen) == MAILBOX_SLOTS
    assert seen[0] == 99 and 10 not in seen


def test_acknowledging_an_unknown_id_is_6a88() -> None:
    _applet, client = make_client()
    with pytest.raises(StatusWordError) as info:
        client.ack_osd(77)
    assert info.value.sw == 0x6A88
    resp = client.exchange(build_apdu(CLA_PROPRIETARY, Ins.ACK_OSD, 0, 0, b"\x00"))
    assert resp.sw == 0x6700


def test_message_for_another_card_is_refused() -> None:
    _applet, client = make_client()
    with pytest.raises(MessageRefusedError):
        client.process_emm(HeadEnd().unique(SERIAL + 1, mail(6, 9)))
    assert client.osd_mail() is None


def test_fingerprint_order() -> None:
    _applet, client = make_client()
    assert client.fingerprint() is None
    order = Fingerprint(kind=FingerprintKind.OVERT, start_s=NOW, duration_s=20, x_pct=5,
                        y_pct=95)
    client.process_emm(HeadEnd().global_(order))
    assert client.fingerprint() == order


def test_messages_and_acknowledgements_survive_a_reset_and_a_reopened_image(
        tmp_path: Path) -> None:
    """The mailbox is in the EEPROM image: a new card process on the same image still holds
    the unacknowledged message and the fingerprint order, and an acknowledged message stays
    acknowledged (a carousel repeat of it is not shown again)."""
    image = tmp_path / "card.img"
    image.write_bytes(build_card_record(make_record()))
    applet = Applet(Eeprom.open(image), rom_key=KEYS.transport_key())
    client = CardClient(InProcessTransport(applet))
    head = HeadEnd()
    order = Fingerprint(kind=FingerprintKind.COVERT, start_s=0, duration_s=30, x_pct=5, y_pct=5)
    client.process_emm(head.unique(SERIAL, mail(1, 9, text="seen"), mail(2, 1, text="waiting"),
                                   order))
    first = client.osd_mail()
    assert first is not None and first.message_id == 1
    client.ack_osd(1)
    applet.reset()
    applet.power_off()
    del applet, client

    again = Applet(Eeprom.open(image), rom_key=KEYS.transport_key())
    client = CardClient(InProcessTransport(again))
    waiting = client.osd_mail()
    assert waiting is not None and (waiting.message_id, waiting.text) == (2, "waiting")
    assert client.fingerprint() == order
    client.process_emm(head.unique(SERIAL, mail(1, 9, text="seen")))  # the carousel repeats it
    client.ack_osd(2)
    assert client.osd_mail() is None
    assert load_card_image(image)[1].acked == (1, 2)


def test_an_image_without_a_state_area_opens_with_an_empty_mailbox(tmp_path: Path) -> None:
    image = tmp_path / "old.img"
    image.write_bytes(build_card_record(make_record()))  # the layout before the state area
    client = CardClient(InProcessTransport(Applet(Eeprom.open(image),
                                                  rom_key=KEYS.transport_key())))
    assert client.osd_mail() is None and client.fingerprint() is None
    client.process_emm(HeadEnd().unique(SERIAL, mail(3)))
    assert len(image.read_bytes()) > CARD_RECORD_SIZE  # now it has one
    assert load_card_image(image)[1].mails[0].message_id == 3
