"""EMM generation: the precompiled fast path equals ``cas.messages.seal_emm`` byte for byte,
commands round-trip, big rights split, shared grouping, pairing, and the card round trips
(EMM → card → rights; ECM from the scrambled stream → card → the CW the scrambler used)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.access import CardRights, CardStatus, Entitlement
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom
from cas.card.personalise import CardSlot, personalise_card
from cas.card.transport import InProcessTransport
from cas.crypto import Key, OperatorKeys, unwrap_cws
from cas.errors import UsageError
from cas.formats.emm import (
    EmmHeader,
    GlobalAddress,
    SharedAddress,
    UniqueAddress,
    parse_emm,
    parse_emm_commands,
)
from cas.headend.ecmgen import EcmSettings, channel_ecms_for, current_cw
from cas.headend.emmgen import (
    MAX_UNIQUE_PLAINTEXT,
    CardTarget,
    EmmSettings,
    PairingTarget,
    build_batch,
    chunk_bounds,
    cwpk_for,
    ecm_key_rotation_emm,
    generate_parallel,
    rights_plaintexts,
    seal_global,
    seal_shared,
    seal_unique,
    sections_to_ts,
)
from cas.messages import open_emm, seal_emm
from tests.fixtures.seeded import seeded_keys, seeded_rng

NOW_S = 1_772_000_000


@pytest.fixture(scope="module")
def keys() -> OperatorKeys:
    return seeded_keys(42)


def _rights(n: int = 2, status: CardStatus = CardStatus.ACTIVE) -> CardRights:
    return CardRights(status=status, region=398, maturity_limit=16, entitlements=tuple(
        Entitlement(package_id=10 + i, start_s=NOW_S - 86400, end_s=NOW_S + 86400 * (i + 1))
        for i in range(n)))


entitlements = st.lists(st.builds(Entitlement, package_id=st.integers(0, 0xFFFF),
                                  start_s=st.integers(0, 2**32 - 1),
                                  end_s=st.integers(0, 2**32 - 1)), max_size=40)


@given(st.sampled_from(list(CardStatus)), st.integers(0, 0xFFFF), st.integers(0, 255),
       entitlements, st.integers(0, 2**32 - 1), st.integers(1, 2**31), st.binary(min_size=12,
                                                                                  max_size=12))
def test_fast_unique_path_equals_seal_emm(status: CardStatus, region: int, maturity: int,
                                          ents: list[Entitlement], serial: int, seq: int,
                                          nonce: bytes) -> None:
    keys = OperatorKeys(Key(bytes(range(16)), label="omk"))
    rights = CardRights(status=status, region=region, maturity_limit=maturity,
                        entitlements=tuple(ents))
    texts = rights_plaintexts(rights)
    assert all(len(t) <= MAX_UNIQUE_PLAINTEXT for t in texts)
    commands = [c for t in texts for c in parse_emm_commands(t)]
    # The commands say exactly the rights, in order.
    assert [type(c).__name__ for c in commands[:4]] == ["ClearEntitlements", "SetStatus",
                                                        "SetRegion", "SetMaturity"]
    assert [(c.package_id, c.start_s, c.end_s) for c in commands[4:]] == [  # type: ignore[union-attr]
        (e.package_id, e.start_s, e.end_s) for e in ents]
    cuk = keys.cuk(serial)
    for i, t in enumerate(texts):
        fast = seal_unique(cuk, serial, seq + i, NOW_S, nonce, t)
        slow = seal_emm(cuk, EmmHeader(address=UniqueAddress(serial=serial), seq=seq + i,
                                       not_after_s=NOW_S), parse_emm_commands(t), nonce)
        assert fast == slow


def test_fast_shared_and_global_paths_equal_seal_emm(keys: OperatorKeys) -> None:
    nonce = bytes(12)
    text = rights_plaintexts(_rights(1))[0]
    addr = SharedAddress.of(0x123456, [0, 7, 255])
    fast = seal_shared(keys.group_key(0x123456), 0x123456, addr.members, 5, NOW_S, nonce, text)
    slow = seal_emm(keys.group_key(0x123456), EmmHeader(address=addr, seq=5, not_after_s=NOW_S),
                    parse_emm_commands(text), nonce)
    assert fast == slow
    g = seal_global(keys.global_key(), 9, NOW_S, nonce, text)
    assert g == seal_emm(keys.global_key(), EmmHeader(address=GlobalAddress(), seq=9,
                                                      not_after_s=NOW_S),
                         parse_emm_commands(text), nonce)


def test_many_entitlements_split_over_consecutive_seqs(keys: OperatorKeys) -> None:
    card = CardTarget(serial=77, rights=_rights(40))
    res = build_batch(keys, [card], at_s=NOW_S, unique_seq=lambda s: 10,
                      shared_seq=lambda g: 1, rng=seeded_rng())
    assert len(res.sections) == 3 and res.unique_next == {77: 13}
    assert [parse_emm(s).header.seq for s in res.sections] == [10, 11, 12]
    assert all(len(s) <= 256 for s in res.sections)
    adds = []
    for s in res.sections:
        _, cmds = open_emm(keys.cuk(77), s)
        adds += [c for c in cmds if type(c).__name__ == "AddEntitlement"]
    assert len(adds) == 40


def test_shared_grouping_only_for_identical_commands(keys: OperatorKeys) -> None:
    same = _rights(1, CardStatus.FINANCIAL_BLOCK)
    cards = [CardTarget(serial=100 + p, shared_address=5, member_position=p, rights=same)
             for p in range(4)]
    cards.append(CardTarget(serial=200, shared_address=5, member_position=9, rights=_rights(2)))
    cards.append(CardTarget(serial=300, shared_address=6, member_position=0, rights=same))
    res = build_batch(keys, cards, at_s=NOW_S, unique_seq=lambda s: 1,
                      shared_seq=lambda g: 40, settings=EmmSettings(shared_min_members=2),
                      rng=seeded_rng())
    assert res.shared_count == 1 and res.shared_next == {5: 41}
    assert sorted(res.unique_next) == [200, 300]
    shared = parse_emm(res.sections[0]).header.address
    assert isinstance(shared, SharedAddress) and shared.positions() == [0, 1, 2, 3]
    off = build_batch(keys, cards, at_s=NOW_S, unique_seq=lambda s: 1, shared_seq=lambda g: 1,
                      settings=EmmSettings(shared_min_members=0), rng=seeded_rng())
    assert off.shared_count == 0 and off.unique_count == 6


def test_parallel_generation_equals_serial(keys: OperatorKeys) -> None:
    cards = [CardTarget(serial=1000 + i, shared_address=i // 256, member_position=i % 256,
                        rights=_rights(1 + i % 3)) for i in range(1200)]
    seqs = {c.serial: 5 for c in cards}
    serial = list(generate_parallel(keys, cards, at_s=NOW_S, unique_next=seqs, workers=1,
                                    chunk=300, settings=EmmSettings(shared_min_members=0)))
    par = list(generate_parallel(keys, cards, at_s=NOW_S, unique_next=seqs, workers=2,
                                 chunk=300, settings=EmmSettings(shared_min_members=0)))
    assert [b for b, _ in serial] == [b for b, _ in par]
    for (_, a), (_, b) in zip(serial, par, strict=True):
        assert a.unique_next == b.unique_next
        # random nonces differ; the decrypted content does not
        for x, y in zip(a.sections, b.sections, strict=True):
            sx = parse_emm(x).header.address
            assert isinstance(sx, UniqueAddress)
            cuk = keys.cuk(sx.serial)
            assert open_emm(cuk, x)[1] == open_emm(cuk, y)[1]


def test_chunks_never_split_a_group() -> None:
    cards = [CardTarget(serial=i, shared_address=i // 10, rights=_rights(0)) for i in range(95)]
    bounds = chunk_bounds(cards, 25)
    assert bounds[0] == (0, 30) and bounds[-1][1] == 95
    for lo, _ in bounds[1:]:
        assert cards[lo].shared_address != cards[lo - 1].shared_address


def test_settings_validation() -> None:
    with pytest.raises(UsageError):
        EmmSettings(shared_min_members=1)
    with pytest.raises(UsageError):
        EmmSettings(validity_s=0)


# --- through the card ---------------------------------------------------------------------

def _card(keys: OperatorKeys, serial: int, *, seq_unique: int = 0) -> CardClient:
    rec = personalise_card(keys, CardSlot(serial=serial, shared_address=serial >> 8,
                                          member_position=serial & 0xFF), now_s=NOW_S - 86400)
    rec = dataclasses.replace(rec, emm_seq_unique=seq_unique)
    return CardClient(InProcessTransport(Applet(Eeprom(rec), rom_key=keys.transport_key())))


def test_emm_to_card_gives_the_rights_and_the_pairing(keys: OperatorKeys) -> None:
    csk = Key(bytes(range(1, 17)), label="csk")
    target = CardTarget(serial=0x01020304, shared_address=0x010203, member_position=4,
                        rights=_rights(3), pairing=PairingTarget(chip_id=0xCAFE0001, csk=csk))
    res = build_batch(keys, [target], at_s=NOW_S, unique_seq=lambda s: 1,
                      shared_seq=lambda g: 1, rng=seeded_rng())
    card = _card(keys, target.serial)
    for s in res.sections:
        card.process_emm(s)
    assert card.entitlements() == target.rights.entitlements
    status = card.status()
    assert status.region == 398 and status.maturity_limit == 16
    assert int(status.status) == int(CardStatus.ACTIVE)
    pairing = card.pairing()
    assert pairing is not None and pairing.chip_id == 0xCAFE0001
    # The chip blob opens with the chip's key to the CWPK the head-end derived.
    from cas.crypto import open_chip_blob

    assert open_chip_blob(csk, pairing.chip_blob) == cwpk_for(keys.cuk(target.serial),
                                                              0xCAFE0001)
    # Replaying the same EMM is refused by the card (sequence numbers).
    from cas.errors import StatusWordError

    with pytest.raises(StatusWordError) as err:
        card.process_emm(res.sections[0])
    assert err.value.sw == 0x9811


def test_head_end_counters_past_2_32_wrap_on_the_wire_and_the_card_follows(
        keys: OperatorKeys) -> None:
    serial = 4242
    card = _card(keys, serial, seq_unique=2**32 - 2)  # a card near the end of the space
    targets = [CardTarget(serial=serial, rights=_rights(1))]
    for counter, region_seq in ((2**32 - 1, 2**32 - 1), (2**32, 0), (2**32 + 1, 1)):
        # Before the rule a counter of 2^32 could not be packed into the u32 at all.
        res = build_batch(keys, targets, at_s=NOW_S, unique_seq=lambda s, c=counter: c,
                          shared_seq=lambda g: 1, rng=seeded_rng(counter))
        assert [parse_emm(s).header.seq for s in res.sections] == [region_seq]
        assert res.unique_next == {serial: counter + 1}
        card.process_emm(res.sections[0])
        assert card.info().emm_seq_unique == region_seq
    nonce = bytes(12)
    text = rights_plaintexts(_rights(1))[0]
    assert parse_emm(seal_global(keys.global_key(), 2**32 + 7, NOW_S, nonce,
                                 text)).header.seq == 7
    addr = SharedAddress.of(0x123456, [1])
    assert parse_emm(seal_shared(keys.group_key(0x123456), 0x123456, addr.members, 2**33 + 3,
                                 NOW_S, nonce, text)).header.seq == 3
    assert parse_emm(seal_unique(keys.cuk(serial), serial, 2**32, NOW_S, nonce,
                                 text)).header.seq == 0


def test_ecm_key_rotation_reaches_the_card(keys: OperatorKeys) -> None:
    from datetime import UTC, datetime

    card = _card(keys, 555)
    emm = ecm_key_rotation_emm(keys, 7, seq=1, at=datetime.fromtimestamp(NOW_S, UTC),
                               rng=seeded_rng())
    assert 7 not in card.info().ecm_key_indexes
    card.process_emm(emm)
    info = card.info()
    assert 7 in info.ecm_key_indexes and info.emm_seq_global == 1


def test_ecm_from_scrambled_stream_gives_the_card_the_scrambler_cw(keys: OperatorKeys,
                                                                    tmp_path: Path) -> None:
    from cas.access import AccessCriteria
    from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
    from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
    from tests.unit.headend.helpers import sections_on

    clear = make_test_stream([TestService(service_id=1001, name="Q")], tmp_path / "c.ts",
                             TestStreamOptions(duration_s=2.5)).read_bytes()
    crit = AccessCriteria(channel_id=1001, package_ids=(11, 99), regions=(398,),
                          maturity_rating=12)
    for algorithm in (Algorithm.CSA2, Algorithm.CISSA):
        services = channel_ecms_for(keys, {1001: crit}, settings=EcmSettings(
            crypto_period_ms=1000, cw_length=algorithm.cw_length), start_s=NOW_S, rng=seeded_rng(3))
        log: list[object] = []
        out = io.BytesIO()
        report = Scrambler(ScrambleConfig(algorithm=algorithm, crypto_period_ms=1000),
                           services, payload_cipher(algorithm), cw_log=log.append
                           ).run(io.BytesIO(clear), out)
        logged = {e.cp: e.cw for e in log}  # type: ignore[attr-defined]
        chip = 0xC0FFEE01
        serial = 0x00ABCDEF
        target = CardTarget(serial=serial, shared_address=serial >> 8,
                            member_position=serial & 0xFF, rights=_rights(2),
                            pairing=PairingTarget(chip_id=chip, csk=Key(bytes(16), label="csk")))
        card = _card(keys, serial)
        for s in build_batch(keys, [target], at_s=NOW_S, unique_seq=lambda s: 1,
                             shared_seq=lambda g: 1, rng=seeded_rng()).sections:
            card.process_emm(s)
        cwpk = cwpk_for(keys.cuk(serial), chip)
        checked = set()
        for _, section in sections_on(out.getvalue(), report.services[0].ecm_pid):
            even, odd = unwrap_cws(cwpk, card.process_ecm(section))
            cp = parse_ecm_cp(keys, section)
            assert current_cw(cp, even, odd) == logged[cp]
            if cp + 1 in logged:
                assert current_cw(cp + 1, even, odd) == logged[cp + 1]
            checked.add(cp)
        assert checked == set(logged) and len(checked) >= 3


def parse_ecm_cp(keys: OperatorKeys, section: bytes) -> int:
    from cas.messages import open_ecm

    return open_ecm(keys.ecm_key(0), section)[1].crypto_period


def test_sections_to_ts_announces_the_emm_pid(keys: OperatorKeys) -> None:
    from cas.formats import psi
    from tests.unit.headend.helpers import sections_on

    res = build_batch(keys, [CardTarget(serial=i, rights=_rights(1)) for i in range(1, 30)],
                      at_s=NOW_S, unique_seq=lambda s: 1, shared_seq=lambda g: 1, rng=seeded_rng())
    data = sections_to_ts(res.sections, emm_pid=0x0ABC, ca_system_id=0x4ADE)
    cat = next(s for _, s in sections_on(data, 1))
    assert [r.ca_pid for r in psi.find_ca_descriptors(cat, 0x4ADE)] == [0x0ABC]
    assert [s for _, s in sections_on(data, 0x0ABC)] == res.sections


def test_csk_of_opens_a_transport_or_vendor_wrapped_csk(keys: OperatorKeys) -> None:
    from cas.crypto import Key, wrap_key
    from cas.headend.emmgen import _csk_of, csk_of

    csk = Key(seeded_rng(7)(16), label="csk")
    vendor = next(iter(keys.vendor_keys.values()))
    assert csk_of(keys, wrap_key(keys.transport_key(), csk)) == csk
    assert csk_of(keys, wrap_key(vendor, csk)) == csk
    assert csk_of(keys, wrap_key(Key(seeded_rng(8)(16)), csk)) is None
    assert _csk_of is csk_of  # the name the live head-end imports


def test_emmgen_is_pure_no_store_import() -> None:
    """The generator is card rights in, EMM sections out: no import of the store, billing or
    SQLAlchemy anywhere in the module, not even inside a function or under TYPE_CHECKING (the
    store-driven run is cas.headend.emmrun)."""
    import ast
    import inspect

    import cas.headend.emmgen as emmgen

    names: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(emmgen))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    assert "cas.crypto" in names  # the walk sees the module's imports
    assert sorted(n for n in names if n.split(".")[0] == "sqlalchemy"
                  or n.startswith(("cas.store", "cas.billing"))) == []
