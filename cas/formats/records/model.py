"""Smart-card record, Python side: the frozen value types and the layout's constants.

The byte layout is declared once in :mod:`cas.formats.records.declaration` (docs/formats.md
§2); this module holds what both the declaration and the fast path share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cas import DEFAULT_CA_SYSTEM_ID, DEFAULT_OPERATOR_ID
from cas.access import NO_MATURITY_LIMIT, CardStatus, Entitlement

CARD_RECORD_MAGIC = b"CASC"
CARD_RECORD_VERSION = 1
#: Length of an RFC 3394 wrap of a 16-byte key (8-byte integrity block + 16).
WRAPPED_KEY_SIZE = 24
CHIP_BLOB_SIZE = 24
PIN_HASH_SIZE = 16
ECM_KEY_SLOTS = 2
ENTITLEMENT_SLOTS = 32
#: OSD text area: 1 length byte + 63 bytes of UTF-8, zero-padded.
OSD_AREA_SIZE = 64
OSD_MAX_BYTES = OSD_AREA_SIZE - 1

#: Card status values a record may hold.
VALID_STATUS = frozenset(int(s) for s in CardStatus)


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmKeySlot:
    """One ECM key the card holds: the key index carried in ECMs and the key wrapped under the
    card's CUK (RFC 3394)."""

    index: int
    wrapped_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pairing:
    """The box this card is paired with (DESIGN §2, CWPK)."""

    chip_id: int
    #: CWPK wrapped under the card's CUK (RFC 3394, 24 bytes).
    wrapped_cwpk: bytes = field(repr=False)
    #: Enc(CSK, CWPK) as handed to the chipset (24 bytes).
    chip_blob: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CardRecord:
    """One smart card: its identity, keys (wrapped), state and entitlement table.

    The personalisation record that leaves the card factory and the card's EEPROM image are the
    same format; the factory record simply has zero counters and no entitlements.
    """

    serial: int
    shared_address: int
    member_position: int
    ca_system_id: int = DEFAULT_CA_SYSTEM_ID
    operator_id: int = DEFAULT_OPERATOR_ID
    card_os_version: int = 0x0100
    personalised_s: int = 0
    expiry_s: int = 0
    #: CUK wrapped under the card-factory transport key (RFC 3394).
    wrapped_cuk: bytes = field(repr=False, default=bytes(WRAPPED_KEY_SIZE))
    #: Group key of ``shared_address``, wrapped under the CUK.
    wrapped_group_key: bytes = field(repr=False, default=bytes(WRAPPED_KEY_SIZE))
    #: Global EMM key, wrapped under the CUK.
    wrapped_global_key: bytes = field(repr=False, default=bytes(WRAPPED_KEY_SIZE))
    #: At most :data:`ECM_KEY_SLOTS` ECM keys (current and next during a rollover).
    ecm_keys: tuple[EcmKeySlot, ...] = ()
    status: CardStatus = CardStatus.INACTIVE
    region: int = 0
    maturity_limit: int = NO_MATURITY_LIMIT
    pin_hash: bytes = field(repr=False, default=bytes(PIN_HASH_SIZE))
    pin_retries_left: int = 3
    pin_retries_max: int = 3
    emm_seq_unique: int = 0
    emm_seq_shared: int = 0
    emm_seq_global: int = 0
    last_ecm_s: int = 0
    pairing: Pairing | None = None
    last_osd_message: str = ""
    #: At most :data:`ENTITLEMENT_SLOTS` entries.
    entitlements: tuple[Entitlement, ...] = ()
