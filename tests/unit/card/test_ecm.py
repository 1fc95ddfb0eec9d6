"""PROCESS ECM: key index, authentication, staleness, the shared access decision and its
status words, maturity with the session PIN, and the pairing-encrypted answer."""

from __future__ import annotations

import pytest

from cas.access import AccessCriteria, CardRights, CardStatus, Entitlement, decide
from cas.card.errors import AccessDeniedError, MessageRefusedError
from cas.card.sw import REASON_SW
from cas.crypto import Key, unwrap_cws
from cas.errors import AuthenticationError, StatusWordError
from cas.formats.emm import SetMaturity, SetRegion, SetStatus
from cas.reasons import Reason

from .helpers import (
    CW_EVEN,
    CW_ODD,
    CWPK,
    DAY,
    NOW,
    PIN,
    SERIAL,
    HeadEnd,
    activate,
    make_client,
)


def ready():  # type: ignore[no-untyped-def]
    applet, client = make_client()
    head = HeadEnd()
    activate(client, head)
    return applet, client, head


def denied(client, section: bytes) -> AccessDeniedError:  # type: ignore[no-untyped-def]
    with pytest.raises(AccessDeniedError) as info:
        client.process_ecm(section)
    return info.value


def test_open_channel_returns_cws_wrapped_under_the_pairing_key() -> None:
    _, client, head = ready()
    wrapped = client.process_ecm(head.ecm())
    assert len(wrapped) == 40
    assert CW_EVEN not in wrapped and CW_ODD not in wrapped
    assert unwrap_cws(CWPK, wrapped) == (CW_EVEN, CW_ODD)
    with pytest.raises(AuthenticationError):  # another box's key gets nothing
        unwrap_cws(Key(bytes(16), label="other"), wrapped)


def test_cissa_cws() -> None:
    _, client, head = ready()
    even, odd = bytes(range(1, 17)), bytes(range(17, 33))
    assert unwrap_cws(CWPK, client.process_ecm(head.ecm(cw_even=even, cw_odd=odd))) == (even, odd)


def test_unknown_key_index_is_9815() -> None:
    _, client, head = ready()
    err = denied(client, head.ecm(key_index=9))
    assert err.sw == 0x9815 and err.reason is Reason.ECM_KEY_UNKNOWN


def test_tampered_ecm_is_6982() -> None:
    _, client, head = ready()
    section = bytearray(head.ecm())
    section[6] ^= 0x40  # timestamp byte in the clear header
    with pytest.raises(MessageRefusedError) as info:
        client.process_ecm(bytes(section))
    assert info.value.sw == 0x6982
    wrong_key = head.ecm(key=Key(bytes(16), label="forged"))
    with pytest.raises(MessageRefusedError) as info2:
        client.process_ecm(wrong_key)
    assert info2.value.sw == 0x6982


def test_stale_ecm_is_9814_and_replay_within_tolerance_is_fine() -> None:
    applet, client, head = ready()
    client.process_ecm(head.ecm(timestamp_s=NOW + 1000))
    client.process_ecm(head.ecm(timestamp_s=NOW + 1000 - applet.ecm_stale_tolerance_s))
    with pytest.raises(MessageRefusedError) as info:
        client.process_ecm(head.ecm(timestamp_s=NOW + 999 - applet.ecm_stale_tolerance_s))
    assert info.value.sw == 0x9814


def test_malformed_ecm_is_6a80() -> None:
    _, client, _ = ready()
    with pytest.raises(StatusWordError) as info:
        client.process_ecm(b"\x80\x70\x02\x00\x01")
    assert info.value.sw == 0x6A80


@pytest.mark.parametrize(("setup", "ecm_kwargs", "reason"), [
    ([SetStatus(status=CardStatus.SUSPENDED)], {}, Reason.CARD_SUSPENDED),
    ([SetStatus(status=CardStatus.FINANCIAL_BLOCK)], {}, Reason.FINANCIAL_BLOCK),
    ([SetStatus(status=CardStatus.KILLED)], {}, Reason.CARD_KILLED),
    ([SetStatus(status=CardStatus.INACTIVE)], {}, Reason.CARD_NOT_ACTIVE),
    ([SetRegion(region=2)], {"regions": (1, 3)}, Reason.REGION_BLACKOUT),
    ([], {"packages": (99,)}, Reason.CHANNEL_NOT_IN_PACKAGE),
    ([], {"timestamp_s": NOW + 31 * DAY}, Reason.ENTITLEMENT_EXPIRED),
    ([], {"timestamp_s": NOW - 2 * DAY}, Reason.NOT_YET_VALID),
    ([SetMaturity(maturity_limit=12)], {"maturity": 18}, Reason.MATURITY_LOCKED),
])
def test_each_lock_reason_has_its_status_word(setup, ecm_kwargs, reason) -> None:  # type: ignore[no-untyped-def]
    applet, client, head = ready()
    if setup:
        client.process_emm(head.unique(SERIAL, *setup))
    err = denied(client, head.ecm(**ecm_kwargs))
    assert err.reason is reason
    assert err.sw == REASON_SW[reason]
    # and it is exactly what the shared decision function says
    rec = applet.record
    rights = CardRights(status=rec.status, region=rec.region, maturity_limit=rec.maturity_limit,
                        entitlements=rec.entitlements)
    criteria = AccessCriteria(channel_id=7, package_ids=ecm_kwargs.get("packages", (10,)),
                              regions=ecm_kwargs.get("regions", ()),
                              maturity_rating=ecm_kwargs.get("maturity", 0))
    assert decide(rights, criteria, ecm_kwargs.get("timestamp_s", NOW)) is reason


def test_not_subscribed_is_9801() -> None:
    _, client = make_client()
    head = HeadEnd()
    activate(client, head, packages=())
    assert denied(client, head.ecm()).sw == 0x9801


def test_not_paired_is_9809() -> None:
    _, client = make_client()
    head = HeadEnd()
    activate(client, head, pair=False)
    err = denied(client, head.ecm())
    assert err.sw == 0x9809 and err.reason is Reason.PAIRING_MISMATCH


def test_maturity_opens_with_pin_for_this_session_only() -> None:
    applet, client, head = ready()
    client.process_emm(head.unique(SERIAL, SetMaturity(maturity_limit=12)))
    assert denied(client, head.ecm(maturity=18)).sw == 0x9805
    client.verify_pin(PIN)
    assert unwrap_cws(CWPK, client.process_ecm(head.ecm(maturity=18))) == (CW_EVEN, CW_ODD)
    applet.power_off()
    applet.power_on()
    client.select()
    assert denied(client, head.ecm(maturity=18)).sw == 0x9805


def test_entitlement_boundaries_follow_decide() -> None:
    _, client = make_client()
    head = HeadEnd()
    activate(client, head, start_s=NOW, end_s=NOW + 100)
    client.process_ecm(head.ecm(timestamp_s=NOW))  # start inclusive
    client.process_ecm(head.ecm(timestamp_s=NOW + 99))
    assert denied(client, head.ecm(timestamp_s=NOW + 100)).reason is Reason.ENTITLEMENT_EXPIRED


def test_clock_advances_and_is_persisted_stepwise() -> None:
    applet, client, head = ready()
    writes = applet.eeprom.writes
    client.process_ecm(head.ecm(timestamp_s=NOW + 1))
    client.process_ecm(head.ecm(timestamp_s=NOW + 2))
    assert applet.clock_s == NOW + 2
    assert client.counters().last_ecm_s == NOW + 2
    assert applet.eeprom.writes <= writes + 1
    client.process_ecm(head.ecm(timestamp_s=NOW + 10_000))
    assert applet.record.last_ecm_s == NOW + 10_000
    # power-off saves whatever the clock gained since the last write
    client.process_ecm(head.ecm(timestamp_s=NOW + 10_005))
    applet.power_off()
    assert applet.record.last_ecm_s == NOW + 10_005


def test_entitlement_rights_view() -> None:
    applet, _, _ = ready()
    assert applet.rights().entitlements == (Entitlement(package_id=10, start_s=NOW - DAY,
                                                        end_s=NOW + 30 * DAY),)
