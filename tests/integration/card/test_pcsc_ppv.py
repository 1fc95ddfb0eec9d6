"""Pay-per-view through real PC/SC (pcscd + vpcd + ``cas card serve`` + pyscard): top-up EMM,
IPPV purchase with the PIN (chained answers included), the channel opening, the signed
report verified by the head-end's code, and the PPV file on the card's EEPROM."""

from __future__ import annotations

import pytest

from cas.access import CardStatus, PpvEvent
from cas.billing.ppv import verify_report
from cas.card.client import CardClient
from cas.card.errors import AccessDeniedError, WrongPinError
from cas.card.pcsc import PcscTransport
from cas.formats.emm import AddEntitlement, PurseCredit, SetStatus
from cas.formats.ppv import parse_ppv_file
from cas.reasons import Reason
from tests.fixtures.pcsc import PcscService
from tests.unit.card.helpers import DAY, KEYS, NOW, HeadEnd, pair_command

from .conftest import CardWorkspace, StartServer

pytestmark = pytest.mark.pcsc

SERIAL = 2_000_000_301
EVENT = PpvEvent(event_id=31337, start_s=NOW - 60, end_s=NOW + 7200, price_tokens=250)


def test_ippv_purchase_and_report_through_pcsc(
        pcscd: PcscService, workspace: CardWorkspace, card_server: StartServer) -> None:
    (image,) = workspace.personalise(1, SERIAL)
    card_server([image], workspace.env)
    head = HeadEnd()
    transport = PcscTransport(pcscd.slots[0].reader, wait_s=10)
    client = CardClient(transport)
    try:
        client.process_emm(head.unique(
            SERIAL, SetStatus(status=CardStatus.ACTIVE),
            AddEntitlement(package_id=10, start_s=NOW - DAY, end_s=NOW + 30 * DAY),
            pair_command(), PurseCredit(tokens=300, credit_limit_tokens=0)))
        ecm = head.ecm(channel_id=9, packages=(), ppv_event=EVENT)
        with pytest.raises(AccessDeniedError) as denied:
            client.process_ecm(ecm)
        assert denied.value.reason is Reason.PPV_NOT_PURCHASED
        with pytest.raises(WrongPinError):
            client.ppv_buy("0000", EVENT.event_id, ecm)
        assert client.ppv_buy("1234", EVENT.event_id, ecm).purse_tokens == 50
        assert len(client.process_ecm(ecm)) == 40
        with pytest.raises(AccessDeniedError) as again:
            other = PpvEvent(event_id=1, start_s=NOW - 60, end_s=NOW + 60, price_tokens=51)
            client.ppv_buy("1234", 1, head.ecm(channel_id=8, packages=(), ppv_event=other))
        assert again.value.reason is Reason.PURSE_EMPTY
        report = verify_report(KEYS, client.ppv_report())
        assert report.serial == SERIAL and report.report_counter == 1
        assert [(p.event_id, p.price_tokens) for p in report.purchases] == [(31337, 250)]
    finally:
        transport.close()
    on_card = parse_ppv_file(image.with_name(image.name + ".ppv").read_bytes())
    assert on_card.purse_tokens == 50 and on_card.report_counter == 1
