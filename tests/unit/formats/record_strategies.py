"""Hypothesis strategies for the card / Chip ID records, APDUs, EMMs and ECMs."""

from __future__ import annotations

from hypothesis import strategies as st

from cas.access import CardStatus, Entitlement, PpvEvent
from cas.formats.apdu import CommandApdu, ResponseApdu
from cas.formats.chipid import ChipIdRecord
from cas.formats.ecm import EcmBody, EcmExtension, EcmHeader
from cas.formats.emm import (
    AddEntitlement,
    ClearEntitlements,
    EcmKeyUpdate,
    EmmHeader,
    EmmTag,
    Fingerprint,
    FingerprintKind,
    GlobalAddress,
    OsdMail,
    OsdMessage,
    Pair,
    PpvEventRight,
    PpvReportAck,
    PurseCredit,
    RemoveEntitlement,
    ResetPin,
    SetMaturity,
    SetRegion,
    SetStatus,
    SharedAddress,
    UniqueAddress,
    UnknownCommand,
)
from cas.formats.records import CardRecord, EcmKeySlot, Pairing

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
key24 = st.binary(min_size=24, max_size=24)
key16 = st.binary(min_size=16, max_size=16)
statuses = st.sampled_from(list(CardStatus))
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16)


def _utf8_max(n: int) -> st.SearchStrategy[str]:
    return st.text(max_size=n).filter(lambda s: len(s.encode("utf-8", "surrogatepass")) <= n).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
    )


entitlements = st.builds(Entitlement, package_id=u16, start_s=u32, end_s=u32)


@st.composite
def card_records(draw: st.DrawFn) -> CardRecord:
    most = draw(u8)
    return CardRecord(
        serial=draw(u32),
        shared_address=draw(u24),
        member_position=draw(u8),
        ca_system_id=draw(u16),
        operator_id=draw(u16),
        card_os_version=draw(u16),
        personalised_s=draw(u32),
        expiry_s=draw(u32),
        wrapped_cuk=draw(key24),
        wrapped_group_key=draw(key24),
        wrapped_global_key=draw(key24),
        ecm_keys=tuple(
            draw(st.lists(st.builds(EcmKeySlot, index=u8, wrapped_key=key24), max_size=2))
        ),
        status=draw(statuses),
        region=draw(u16),
        maturity_limit=draw(u8),
        pin_hash=draw(key16),
        pin_retries_left=draw(st.integers(0, most)),
        pin_retries_max=most,
        emm_seq_unique=draw(u32),
        emm_seq_shared=draw(u32),
        emm_seq_global=draw(u32),
        last_ecm_s=draw(u32),
        pairing=draw(
            st.none() | st.builds(Pairing, chip_id=u32, wrapped_cwpk=key24, chip_blob=key24)
        ),
        last_osd_message=draw(_utf8_max(63)),
        entitlements=tuple(draw(st.lists(entitlements, max_size=32))),
    )


chip_id_records = st.builds(
    ChipIdRecord,
    chip_id=u32,
    vendor=ascii_text,
    model=ascii_text,
    wrapped_csk=key24,
    firmware_version=u32,
    manufactured_s=u32,
)


@st.composite
def command_apdus(draw: st.DrawFn) -> CommandApdu:
    extended = draw(st.booleans())
    cla = draw(st.integers(0, 0xFE))
    ins = draw(u8.filter(lambda i: i >> 4 not in (6, 9)))
    data = draw(st.binary(max_size=300 if extended else 255))
    le = draw(st.none() | st.integers(1, 65536 if extended else 256))
    if extended and not data and le is None:
        extended = False
    return CommandApdu(cla=cla, ins=ins, p1=draw(u8), p2=draw(u8), data=data, le=le,
                       extended=extended)


status_words = st.integers(0x6100, 0x6FFF) | st.integers(0x9000, 0x9FFF)
response_apdus = st.builds(ResponseApdu, data=st.binary(max_size=300), sw=status_words)

emm_addresses = (
    st.builds(UniqueAddress, serial=u32)
    | st.builds(
        SharedAddress, shared_address=u24, members=st.binary(min_size=32, max_size=32)
    )
    | st.just(GlobalAddress())
)
emm_headers = st.builds(
    EmmHeader,
    address=emm_addresses,
    seq=u32,
    not_after_s=u32,
    nonce=st.binary(min_size=12, max_size=12),
)

_KNOWN_TAGS = frozenset(int(t) for t in EmmTag)

emm_commands = st.one_of(
    st.builds(AddEntitlement, package_id=u16, start_s=u32, end_s=u32),
    st.builds(RemoveEntitlement, package_id=u16),
    st.just(ClearEntitlements()),
    st.builds(SetStatus, status=statuses),
    st.builds(SetRegion, region=u16),
    st.builds(SetMaturity, maturity_limit=u8),
    st.builds(ResetPin, pin_hash=key16),
    st.builds(Pair, chip_id=u32, cwpk=key16, chip_blob=key24),
    st.builds(EcmKeyUpdate, index=u8, key=key16),
    st.builds(OsdMessage, text=_utf8_max(60)),
    st.builds(PpvEventRight, event_id=u32, channel_id=u16, start_s=u32, end_s=u32),
    st.builds(PurseCredit, tokens=u32, credit_limit_tokens=u32),
    st.builds(PpvReportAck, up_to_purchase_seq=u32),
    st.builds(OsdMail, message_id=u16, priority=u8, start_s=u32,
              duration_s=u16, text=_utf8_max(60)),
    st.builds(Fingerprint, kind=st.sampled_from(FingerprintKind), start_s=u32,
              duration_s=u16, x_pct=st.integers(0, 100), y_pct=st.integers(0, 100)),
    st.builds(UnknownCommand, tag=st.integers(0x0B, 0xFF).filter(lambda t: t not in _KNOWN_TAGS),
              value=st.binary(max_size=40)),
)

ecm_headers = st.builds(
    EcmHeader,
    channel_id=u16,
    ecm_key_index=u8,
    timestamp_s=u32,
    table_id=st.sampled_from([0x80, 0x81]),
    nonce=st.binary(min_size=12, max_size=12),
)


@st.composite
def ecm_bodies(draw: st.DrawFn) -> EcmBody:
    n = draw(st.sampled_from([8, 16]))
    return EcmBody(
        crypto_period=draw(u32),
        cw_even=draw(st.binary(min_size=n, max_size=n)),
        cw_odd=draw(st.binary(min_size=n, max_size=n)),
        package_ids=tuple(draw(st.lists(u16, max_size=30))),
        regions=tuple(draw(st.lists(u16, max_size=30))),
        maturity_rating=draw(u8),
        # body extensions (docs/formats.md §6.2.1): the PPV event and unknown tags, kept
        ppv_event=draw(st.none() | st.builds(PpvEvent, event_id=u32, start_s=u32, end_s=u32,
                                              price_tokens=u16, impulse=st.booleans())),
        extensions=tuple(draw(st.lists(st.builds(
            EcmExtension, tag=st.integers(0x02, 0xFF), value=st.binary(max_size=8)),
            max_size=2))),
    )
