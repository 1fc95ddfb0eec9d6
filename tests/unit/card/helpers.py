"""Shared test helpers for the card: fixed operator keys, cards, and a tiny head-end that
seals EMMs and ECMs with :mod:`cas.messages` (the head-end's own sealing code)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cas.access import CardStatus, PpvEvent
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom
from cas.card.personalise import CardSlot, default_slot, personalise_card
from cas.card.transport import InProcessTransport
from cas.crypto import Key, OperatorKeys, chip_blob, pin_hash
from cas.formats.ecm import ECM_TABLE_EVEN, EcmBody, EcmHeader
from cas.formats.emm import (
    AddEntitlement,
    EmmCommand,
    EmmHeader,
    GlobalAddress,
    Pair,
    SetStatus,
    SharedAddress,
    UniqueAddress,
)
from cas.formats.records import CardRecord
from cas.messages import seal_ecm, seal_emm

#: Fixed operator master key: tests are deterministic and never touch a real key file.
KEYS = OperatorKeys(Key(bytes(range(16)), label="omk"))
#: 2026-01-01T00:00:00Z
NOW = 1_767_225_600
DAY = 86_400
SERIAL = 1_000_000_001
CHIP_ID = 0x1234ABCD
CSK = Key(bytes(range(100, 116)), label="csk")
CWPK = Key(bytes(range(50, 66)), label="cwpk")
CW_EVEN = bytes.fromhex("0102030609080716")
CW_ODD = bytes.fromhex("1112133624252670")
PIN = "1234"


def make_record(serial: int = SERIAL, *, pin: str = PIN, slot: CardSlot | None = None,
                **kwargs: object) -> CardRecord:
    return personalise_card(KEYS, slot or default_slot(serial), now_s=NOW - 30 * DAY, pin=pin,
                            **kwargs)  # type: ignore[arg-type]


def make_applet(record: CardRecord | None = None, path: Path | None = None) -> Applet:
    record = record or make_record()
    return Applet(Eeprom(record, path), rom_key=KEYS.transport_key())


def make_client(applet: Applet | None = None) -> tuple[Applet, CardClient]:
    applet = applet or make_applet()
    return applet, CardClient(InProcessTransport(applet))


@dataclass
class HeadEnd:
    """Seals EMMs/ECMs the way the head-end does, with strictly increasing sequence numbers."""

    keys: OperatorKeys = KEYS
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _nonce: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def nonce(self) -> bytes:
        return next(self._nonce).to_bytes(12, "big")

    def next_seq(self) -> int:
        return next(self._seq)

    def unique(self, serial: int, *commands: EmmCommand, seq: int | None = None,
               not_after_s: int = NOW + 30 * DAY, key: Key | None = None) -> bytes:
        header = EmmHeader(address=UniqueAddress(serial=serial),
                           seq=self.next_seq() if seq is None else seq, not_after_s=not_after_s)
        return seal_emm(key or self.keys.cuk(serial), header, commands, self.nonce())

    def shared(self, shared_address: int, positions: Sequence[int], *commands: EmmCommand,
               seq: int | None = None, not_after_s: int = NOW + 30 * DAY) -> bytes:
        header = EmmHeader(address=SharedAddress.of(shared_address, positions),
                           seq=self.next_seq() if seq is None else seq, not_after_s=not_after_s)
        return seal_emm(self.keys.group_key(shared_address), header, commands, self.nonce())

    def global_(self, *commands: EmmCommand, seq: int | None = None,
                not_after_s: int = NOW + 30 * DAY) -> bytes:
        header = EmmHeader(address=GlobalAddress(),
                           seq=self.next_seq() if seq is None else seq, not_after_s=not_after_s)
        return seal_emm(self.keys.global_key(), header, commands, self.nonce())

    def ecm(self, *, channel_id: int = 7, packages: Sequence[int] = (10,),
            regions: Sequence[int] = (), maturity: int = 0, timestamp_s: int = NOW,
            key_index: int = 0, key: Key | None = None, cw_even: bytes = CW_EVEN,
            cw_odd: bytes = CW_ODD, table_id: int = ECM_TABLE_EVEN,
            ppv_event: PpvEvent | None = None) -> bytes:
        header = EcmHeader(channel_id=channel_id, ecm_key_index=key_index,
                           timestamp_s=timestamp_s, table_id=table_id)
        body = EcmBody(crypto_period=timestamp_s // 10, cw_even=cw_even, cw_odd=cw_odd,
                       package_ids=tuple(packages), regions=tuple(regions),
                       maturity_rating=maturity, ppv_event=ppv_event)
        return seal_ecm(key or self.keys.ecm_key(key_index), header, body, self.nonce())


def pair_command(chip_id: int = CHIP_ID, cwpk: Key = CWPK, csk: Key = CSK) -> Pair:
    return Pair(chip_id=chip_id, cwpk=cwpk.raw(), chip_blob=chip_blob(csk, cwpk))


def activate(client: CardClient, head: HeadEnd, serial: int = SERIAL, *,
             packages: Sequence[int] = (10,), start_s: int = NOW - DAY,
             end_s: int = NOW + 30 * DAY, pair: bool = True) -> None:
    """Activate, entitle and pair a card with one unique EMM (as the head-end would)."""
    commands: list[EmmCommand] = [SetStatus(status=CardStatus.ACTIVE)]
    commands += [AddEntitlement(package_id=p, start_s=start_s, end_s=end_s) for p in packages]
    if pair:
        commands.append(pair_command())
    client.process_emm(head.unique(serial, *commands))


def hashed_pin(pin: str, serial: int = SERIAL) -> bytes:
    return pin_hash(KEYS.cuk(serial), pin)
