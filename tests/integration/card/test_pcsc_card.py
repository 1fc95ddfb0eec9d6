"""The card through real PC/SC: pcscd + vsmartcard-vpcd + ``cas card serve`` + pyscard.

Every exchange here goes through pyscard (``cas.card.pcsc``) to pcscd, which forwards it to
the vpcd driver, which sends it over TCP to the ``cas card serve`` process.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cas.access import CardStatus, Entitlement
from cas.card.applet import AID
from cas.card.client import CardClient
from cas.card.eeprom import load_image
from cas.card.errors import AccessDeniedError, MessageRefusedError
from cas.card.pcsc import PcscTransport, list_readers, wait_for_card
from cas.card.transport import ApduTracer
from cas.crypto import Key, unwrap_cws
from cas.errors import CardTransportError, StatusWordError
from cas.formats.emm import AddEntitlement, OsdMessage, SetRegion, SetStatus
from cas.reasons import Reason
from tests.fixtures.pcsc import PcscService
from tests.unit.card.helpers import (
    CW_EVEN,
    CW_ODD,
    CWPK,
    DAY,
    NOW,
    HeadEnd,
    make_applet,
    make_client,
    make_record,
    pair_command,
)

from .conftest import CardWorkspace, StartServer, run_cas

pytestmark = pytest.mark.pcsc

START = 2_000_000_001


def _client(reader: str) -> tuple[PcscTransport, CardClient]:
    transport = PcscTransport(reader, wait_s=10)
    return transport, CardClient(transport)


def test_personalise_emm_entitlements_ecm_cw_through_pcsc(
        pcscd: PcscService, workspace: CardWorkspace, card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    card_server([image], workspace.env)
    head = HeadEnd()
    transport, client = _client(pcscd.slots[0].reader)
    try:
        assert transport.protocol == 2  # SCARD_PROTOCOL_T1
        assert client.serial() == START
        info = client.info()
        assert info.status is CardStatus.INACTIVE and info.ca_system_id == 0xDEAD
        result = client.process_emm(head.unique(
            START, SetStatus(status=CardStatus.ACTIVE),
            AddEntitlement(package_id=10, start_s=NOW - DAY, end_s=NOW + 30 * DAY),
            AddEntitlement(package_id=11, start_s=NOW - 9 * DAY, end_s=NOW - DAY),
            pair_command()))
        assert result.pairing is not None and result.pairing.chip_id == 0x1234ABCD
        assert client.entitlements() == (
            Entitlement(package_id=10, start_s=NOW - DAY, end_s=NOW + 30 * DAY),
            Entitlement(package_id=11, start_s=NOW - 9 * DAY, end_s=NOW - DAY),
        )
        wrapped = client.process_ecm(head.ecm(packages=(10,)))
        assert unwrap_cws(CWPK, wrapped) == (CW_EVEN, CW_ODD)
        with pytest.raises(AccessDeniedError) as denied:
            client.process_ecm(head.ecm(packages=(11,)))
        assert denied.value.reason is Reason.ENTITLEMENT_EXPIRED
    finally:
        transport.close()
    # the state is in the card's EEPROM image
    rec = load_image(image)
    assert rec.status is CardStatus.ACTIVE and rec.emm_seq_unique == 1
    assert rec.last_ecm_s == NOW


def test_card_refuses_bad_messages_each_with_its_own_sw(
        pcscd: PcscService, workspace: CardWorkspace, card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    card_server([image], workspace.env)
    head = HeadEnd()
    transport, client = _client(pcscd.slots[0].reader)
    rec = load_image(image)

    def emm_sw(section: bytes) -> int:
        with pytest.raises(StatusWordError) as info:
            client.process_emm(section)
        return info.value.sw

    def ecm_sw(section: bytes) -> int:
        with pytest.raises(StatusWordError) as info:
            client.process_ecm(section)
        return info.value.sw

    try:
        good = head.unique(START, SetStatus(status=CardStatus.ACTIVE), pair_command(),
                           AddEntitlement(package_id=10, start_s=0, end_s=NOW + DAY), seq=10)
        older = head.unique(START, SetRegion(region=9), seq=9)
        client.process_emm(good)
        assert emm_sw(good) == 0x9811  # replayed
        assert emm_sw(older) == 0x9811  # reordered
        tampered = bytearray(head.unique(START, SetRegion(region=9), seq=11))
        tampered[-5] ^= 0xFF
        assert emm_sw(bytes(tampered)) == 0x6982
        assert emm_sw(head.unique(START + 1, SetRegion(region=9), seq=12)) == 0x9812
        assert emm_sw(head.shared(rec.shared_address + 7, [rec.member_position],
                                  SetRegion(region=9), seq=12)) == 0x9812
        client.process_ecm(head.ecm(timestamp_s=NOW))  # card clock := NOW
        assert emm_sw(head.unique(START, SetRegion(region=9), seq=13,
                                  not_after_s=NOW - 1)) == 0x9813  # expired
        # ECMs
        assert ecm_sw(head.ecm(key_index=77)) == 0x9815
        bad_ecm = bytearray(head.ecm())
        bad_ecm[10] ^= 0x01
        assert ecm_sw(bytes(bad_ecm)) == 0x6982
        assert ecm_sw(head.ecm(key=Key(bytes(16), label="forged"))) == 0x6982
        assert ecm_sw(head.ecm(timestamp_s=NOW - 3600)) == 0x9814  # stale
        assert ecm_sw(head.ecm(packages=(55,))) == 0x980B
        assert ecm_sw(head.ecm(regions=(3,))) == 0x9804
        # nothing refused changed the card
        state = client.info()
        assert state.region == 0 and state.emm_seq_unique == 10
    finally:
        transport.close()


def test_kill_during_emm_stream_leaves_a_prefix(
        pcscd: PcscService, workspace: CardWorkspace, card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    head = HeadEnd()
    n = 300
    sections = [
        head.unique(START, SetRegion(region=i), OsdMessage(text=f"emm {i}"),
                    AddEntitlement(package_id=i % 20 + 1, start_s=i, end_s=NOW + i), seq=i)
        for i in range(1, n + 1)
    ]
    server = card_server([image], workspace.env)
    transport, client = _client(pcscd.slots[0].reader)
    acked = 0

    def killer() -> None:
        # let a good part of the stream through, then pull the plug mid-stream
        while acked < n // 3:
            time.sleep(0.001)
        server.kill()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        for section in sections:
            client.process_emm(section)
            acked += 1
    except (CardTransportError, StatusWordError):
        pass
    finally:
        thread.join()
        transport.close()
    assert n // 3 <= acked < n, "the kill should land in the middle of the stream"
    # the image is valid (CRC checked on load) and equals the state after a prefix of the EMMs
    rec = load_image(image)
    applied = rec.emm_seq_unique
    assert applied in (acked, acked + 1)  # the EMM in flight may or may not have landed
    reference, ref_client = make_client(make_applet(make_record(START, slot=_slot_of(rec))))
    for section in sections[:applied]:
        ref_client.process_emm(section)
    assert rec == _with_personalisation_times(reference.record, rec)
    # restarted, the card carries on from where it stopped
    card_server([image], workspace.env)
    transport, client = _client(pcscd.slots[0].reader)
    try:
        with pytest.raises(MessageRefusedError) as replay:
            client.process_emm(sections[applied - 1])
        assert replay.value.sw == 0x9811
        client.process_emm(sections[applied])
        assert client.info().region == applied + 1
    finally:
        transport.close()


def _slot_of(rec):  # type: ignore[no-untyped-def]
    from cas.card.personalise import CardSlot

    return CardSlot(serial=rec.serial, shared_address=rec.shared_address,
                    member_position=rec.member_position)


def _with_personalisation_times(reference, actual):  # type: ignore[no-untyped-def]
    """The reference card was personalised by the helpers, the real one by the CLI: same keys
    and slot, different personalisation time and PIN hash input — compare the rest."""
    import dataclasses

    return dataclasses.replace(reference, personalised_s=actual.personalised_s,
                               expiry_s=actual.expiry_s, pin_hash=actual.pin_hash)


def test_generic_pcsc_tools_see_reader_atr_and_answer(
        pcscd: PcscService, workspace: CardWorkspace, card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    card_server([image], workspace.env)
    reader = pcscd.slots[0].reader
    env = workspace.env
    listed = subprocess.run(["opensc-tool", "--list-readers"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if reader in row)
    assert "Yes" in line  # a card is present
    atr = subprocess.run(["opensc-tool", "--reader", "0", "--atr"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert atr.returncode == 0, atr.stderr
    assert atr.stdout.strip().splitlines()[-1].replace(":", "").upper() == \
        "3B9B138131FE45805643415353494D62010030"
    # scriptor (pcsc-tools): SELECT by AID and GET DATA serial
    script = f"00 A4 04 00 08 {AID.hex(' ')}\n80 CA 01 01 00\n"
    out = subprocess.run(["scriptor", "-r", reader], input=script, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    responses = [row[2:].strip() for row in out.stdout.splitlines() if row.startswith("< ")]
    assert responses[0].startswith("90 00")
    assert responses[1].startswith(START.to_bytes(4, "big").hex(" ").upper() + " 90 00")
    # opensc-tool sends the same APDUs its own way
    sent = subprocess.run(["opensc-tool", "--reader", "0", "--send-apdu",
                           "00:A4:04:00:08:" + AID.hex(":"), "--send-apdu", "80:CA:01:01:00"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    assert "SW1=0x90, SW2=0x00" in sent.stdout
    assert START.to_bytes(4, "big").hex(" ").upper() in sent.stdout


def test_diag_card_over_pcsc(pcscd: PcscService, workspace: CardWorkspace,
                             card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    card_server([image], workspace.env)
    head = HeadEnd()
    transport, client = _client(pcscd.slots[0].reader)
    far = 4_000_000_000
    try:
        client.process_emm(head.unique(
            START, SetStatus(status=CardStatus.ACTIVE), SetRegion(region=5), pair_command(),
            AddEntitlement(package_id=10, start_s=NOW - DAY, end_s=far),
            AddEntitlement(package_id=11, start_s=NOW - 9 * DAY, end_s=NOW - DAY),
            OsdMessage(text="Пополните счёт")))
    finally:
        transport.close()
    out = run_cas(["diag", "card", "--reader", pcscd.slots[0].reader, "--json"], workspace.env)
    report = json.loads(out.stdout)
    assert report["serial"] == f"{START:010d}"
    assert report["atr"]["card_name"] == "CASSIM" and report["atr"]["tck_ok"] is True
    assert report["status"] == "ACTIVE" and report["region"] == 5
    assert report["pairing"] == {"paired": True, "chip_id": "1234ABCD"}
    assert report["emm_sequence"] == {"unique": 1, "shared": 0, "global": 0}
    assert report["osd_message"] == "Пополните счёт"
    ents = {e["package_id"]: e for e in report["entitlements"]}
    assert ents[10]["expired"] is False and ents[11]["expired"] is True
    assert ents[11]["end"] == "2025-12-31T00:00:00Z"
    # the table for people, with the APDU trace on stderr
    table = run_cas(["diag", "card", "--trace"], workspace.env)
    assert f"{START:010d}" in table.stdout and "expired" in table.stdout
    assert "> 80 CA 01 02 00" in table.stderr and "< " in table.stderr


def test_several_cards_on_several_slots(pcscd: PcscService, workspace: CardWorkspace,
                                        card_server: StartServer) -> None:
    images = workspace.personalise(2, START)
    card_server(images, workspace.env)
    serials = []
    for slot in pcscd.slots[:2]:
        transport, client = _client(slot.reader)
        try:
            serials.append(client.serial())
        finally:
            transport.close()
    assert serials == [START, START + 1]


def test_card_comes_back_after_pcscd_restart(pcscd: PcscService, workspace: CardWorkspace,
                                             card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    server = card_server([image], workspace.env)
    reader = pcscd.slots[0].reader
    pcscd.restart()
    assert reader in list_readers()
    wait_for_card(reader, timeout_s=15)  # the bridge reconnected on its own
    transport, client = _client(reader)
    try:
        assert client.serial() == START
    finally:
        transport.close()
    assert server.proc is not None and server.proc.poll() is None


def test_pin_through_pcsc_and_trace_masks_it(pcscd: PcscService, workspace: CardWorkspace,
                                              card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    card_server([image], workspace.env)
    lines: list[str] = []
    transport, client = _client(pcscd.slots[0].reader)
    transport.add_observer(ApduTracer(lines.append))
    try:
        client.verify_pin("1234")
        assert client.pin_tries_left() is None
        transport.reconnect(reset=True)  # warm reset: a new card session
        client.select()
        assert client.pin_tries_left() == 3
    finally:
        transport.close()
    trace = "\n".join(lines)
    assert "31 32 33 34" not in trace and "> 00 20 00 81 04 FF FF FF FF" in trace


def test_serving_one_image_twice_is_refused(pcscd: PcscService, workspace: CardWorkspace,
                                            card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, START)
    card_server([image], workspace.env)
    second = run_cas(["card", "serve", "--image", str(image), "--vpcd",
                      pcscd.slots[1].endpoint], workspace.env, check=False, timeout=30)
    assert second.returncode == 5
    assert "already being served" in second.stderr


def test_personalise_from_a_factory_batch(workspace: CardWorkspace, tmp_path: Path) -> None:
    batch = tmp_path / "factory.casb"
    run_cas(["card", "personalise", "--count", "3", "--start-serial", str(START),
             "--no-register", "--out", str(tmp_path / "factory"), "--batch-out", str(batch)],
            workspace.env)
    out = run_cas(["--json", "card", "personalise", "--batch", str(batch), "--out",
                   str(tmp_path / "field")], workspace.env)
    cards = json.loads(out.stdout)["cards"]
    assert [c["serial"] for c in cards] == [f"{s:010d}" for s in range(START, START + 3)]
    for c in cards:
        assert load_image(c["image"]) == load_image(tmp_path / "factory" / Path(c["image"]).name)
    again = run_cas(["card", "personalise", "--batch", str(batch), "--out",
                     str(tmp_path / "field")], workspace.env, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_card_serve_stops_on_sigterm_with_the_card_in_use(
        pcscd: PcscService, workspace: CardWorkspace, card_server: StartServer) -> None:
    """SIGTERM: `cas card serve` ends its vpcd connection (the card leaves the reader),
    says so in one line and exits 0, never with a traceback."""
    (image,) = workspace.personalise(1, START)
    server = card_server([image], workspace.env)
    transport, client = _client(pcscd.slots[0].reader)
    try:
        client.select()
        assert server.stop() == 0
        with pytest.raises((CardTransportError, StatusWordError)):
            client.select()                  # the card is gone with its server
    finally:
        transport.close()
    log = server.log.read_text(errors="replace")
    assert log.rstrip().endswith("stopped") and "Traceback" not in log
