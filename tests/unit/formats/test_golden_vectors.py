"""Golden vectors: fixed inputs -> pinned bytes, for every record and message format.

The vectors live in ``tests/vectors/formats/*.json``; each has the input object (as JSON) and
the expected hex.  The test builds each object and compares the bytes, then parses the bytes
and compares the object.  A change of any byte layout shows up here first.

Regenerate (only when a layout change is intended, and say so in docs/formats.md)::

    .venv/bin/python -m tests.unit.formats.test_golden_vectors
"""

from __future__ import annotations

import dataclasses
import json
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cas.access import CardStatus, Entitlement, PpvEvent
from cas.crypto import Key
from cas.formats import apdu, chipid, ecm, emm, records
from cas.messages import open_ecm, open_emm, seal_ecm, seal_emm

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "formats"

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for module in (records, chipid, apdu, emm, ecm)
    for cls in vars(module).values()
    if isinstance(cls, type)
    and dataclasses.is_dataclass(cls)
    # defined in the module, or in the package's own submodules (records.model)
    and f"{cls.__module__}.".startswith(f"{module.__name__}.")
}
_TYPES["Entitlement"] = Entitlement
_TYPES["PpvEvent"] = PpvEvent


# --- tiny JSON codec for our dataclasses -------------------------------------------------------
def to_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = to_json(getattr(obj, f.name))
        return out
    if isinstance(obj, bytes):
        return {"hex": obj.hex()}
    if isinstance(obj, IntEnum):
        return int(obj)
    if isinstance(obj, list | tuple):
        return [to_json(x) for x in obj]
    return obj


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return bytes.fromhex(value["hex"])
        cls = _TYPES[value["type"]]
        kwargs = {k: from_json(v) for k, v in value.items() if k != "type"}
        if cls is records.CardRecord:
            kwargs["status"] = CardStatus(kwargs["status"])
        if cls is emm.SetStatus:
            kwargs["status"] = CardStatus(kwargs["status"])
        return cls(**kwargs)
    if isinstance(value, list):
        return tuple(from_json(x) for x in value)
    return value


# --- the fixed inputs ------------------------------------------------------------------------
def _k(n: int, size: int = 24) -> bytes:
    return bytes((n + i) & 0xFF for i in range(size))


FACTORY = records.CardRecord(
    serial=2256884759, shared_address=0x000102, member_position=23, personalised_s=1_704_067_200,
    expiry_s=1_861_920_000, wrapped_cuk=_k(0x10), wrapped_group_key=_k(0x30),
    wrapped_global_key=_k(0x50), pin_hash=_k(0x70, 16),
)
EEPROM = dataclasses.replace(
    FACTORY,
    ecm_keys=(
        records.EcmKeySlot(index=4, wrapped_key=_k(0x90)),
        records.EcmKeySlot(index=5, wrapped_key=_k(0xB0)),
    ),
    status=CardStatus.ACTIVE,
    region=77,
    maturity_limit=16,
    pin_retries_left=2,
    emm_seq_unique=12,
    emm_seq_shared=3,
    emm_seq_global=40,
    last_ecm_s=1_714_000_000,
    pairing=records.Pairing(chip_id=0x1A2B3C4D, wrapped_cwpk=_k(0xC0), chip_blob=_k(0xE0)),
    last_osd_message="Оплатите подписку",
    entitlements=(
        Entitlement(package_id=1, start_s=1_711_929_600, end_s=1_714_521_600),
        Entitlement(package_id=20, start_s=1_711_929_600, end_s=1_714_521_600),
        Entitlement(package_id=301, start_s=1_714_521_600, end_s=1_717_200_000),
    ),
)
FULL = dataclasses.replace(
    EEPROM,
    serial=0xFFFFFFFF,
    shared_address=0xFFFFFF,
    member_position=255,
    status=CardStatus.KILLED,
    last_osd_message="x" * 63,
    entitlements=tuple(
        Entitlement(package_id=0xFFFF - i, start_s=i, end_s=0xFFFFFFFF) for i in range(32)
    ),
)
CHIPS = (
    chipid.ChipIdRecord(chip_id=0x1A2B3C4D, vendor="Acme Silicon", model="AS-7100",
                        wrapped_csk=_k(0x21), firmware_version=0x02010003,
                        manufactured_s=1_690_000_000),
    chipid.ChipIdRecord(chip_id=0x00000001, vendor="", model="M" * 16, wrapped_csk=_k(0x41)),
)
APDUS = (
    apdu.CommandApdu(cla=0x00, ins=0xA4, p1=0x04, p2=0x00, data=apdu.CAS_AID),
    apdu.CommandApdu(cla=0x80, ins=0xCA, p1=0x01, p2=0x01, le=256),
    apdu.CommandApdu(cla=0x80, ins=0x32, p1=0x00, p2=0x00, le=256),
    apdu.CommandApdu(cla=0x80, ins=0x30, p1=0x00, p2=0x00, data=_k(0, 40), le=256),
    apdu.CommandApdu(cla=0x00, ins=0x20, p1=0x00, p2=0x81, data=b"1234"),
    apdu.CommandApdu(cla=0x00, ins=0x24, p1=0x00, p2=0x81, data=b"12345678"),
    apdu.CommandApdu(cla=0x00, ins=0xC0, p1=0x00, p2=0x00, le=0x28),
    apdu.CommandApdu(cla=0x80, ins=0x40, p1=0x00, p2=0x00, data=_k(0, 300), extended=True),
    apdu.CommandApdu(cla=0x80, ins=0x30, p1=0, p2=0, data=_k(1, 3), le=65536, extended=True),
)
RESPONSES = (
    apdu.ResponseApdu(data=b"", sw=apdu.SW.OK),
    apdu.ResponseApdu(data=_k(0, 40), sw=apdu.SW.OK),
    apdu.ResponseApdu(data=b"", sw=apdu.SW.REGION_BLACKOUT),
    apdu.ResponseApdu(data=_k(3, 10), sw=0x6128),
    apdu.ResponseApdu(data=b"", sw=0x63C2),
)
ALL_COMMANDS: tuple[emm.EmmCommand, ...] = (
    emm.AddEntitlement(package_id=301, start_s=1_714_521_600, end_s=1_717_200_000),
    emm.RemoveEntitlement(package_id=20),
    emm.ClearEntitlements(),
    emm.SetStatus(status=CardStatus.FINANCIAL_BLOCK),
    emm.SetRegion(region=77),
    emm.SetMaturity(maturity_limit=18),
    emm.ResetPin(pin_hash=_k(0x70, 16)),
    emm.Pair(chip_id=0x1A2B3C4D, cwpk=_k(0x80, 16), chip_blob=_k(0xE0)),
    emm.EcmKeyUpdate(index=6, key=_k(0xA0, 16)),
    emm.OsdMessage(text="Пополните баланс"),
    emm.UnknownCommand(tag=0x7F, value=b"\x01\x02"),
)
EMM_HEADERS = (
    emm.EmmHeader(address=emm.UniqueAddress(serial=2256884759), seq=13,
                  not_after_s=1_714_600_000, nonce=_k(0x01, 12)),
    emm.EmmHeader(address=emm.SharedAddress.of(0x000102, [0, 23, 255]), seq=4,
                  not_after_s=1_714_600_000, nonce=_k(0x02, 12)),
    emm.EmmHeader(address=emm.GlobalAddress(), seq=41, not_after_s=1_714_600_000,
                  nonce=_k(0x03, 12)),
)
ECM_HEADER = ecm.EcmHeader(channel_id=101, ecm_key_index=5, timestamp_s=1_714_000_000,
                           table_id=0x81, nonce=_k(0x04, 12))
ECM_BODIES = (
    ecm.EcmBody(crypto_period=171400, cw_even=bytes.fromhex("0102030604050611"),
                cw_odd=bytes.fromhex("1112133614151640"), package_ids=(1, 20),
                regions=(), maturity_rating=0),
    ecm.EcmBody(crypto_period=171401, cw_even=_k(0x11, 16), cw_odd=_k(0x21, 16),
                package_ids=(301,), regions=(77, 78), maturity_rating=18),
    # body extensions (§6.2.1): a PPV event on air and an extension of a later version, kept
    ecm.EcmBody(crypto_period=171402, cw_even=_k(0x31, 8), cw_odd=_k(0x41, 8),
                package_ids=(), regions=(), maturity_rating=16,
                ppv_event=PpvEvent(event_id=0x00C0FFEE, start_s=1_714_521_600,
                                   end_s=1_714_528_800, price_tokens=150, impulse=True),
                extensions=(ecm.EcmExtension(tag=0x7E, value=b"\x01\x02"),)),
)
MESSAGE_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def _vectors() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    out["card_records"] = [
        {"name": n, "object": to_json(r), "hex": records.build_card_record(r).hex()}
        for n, r in (("factory", FACTORY), ("eeprom", EEPROM), ("full", FULL))
    ]
    card_batch = records.CardBatch(created_s=1_704_067_200, issuer="Card Factory 1",
                                   records=(FACTORY, EEPROM))
    out["card_batch"] = [
        {"name": "two", "object": to_json(card_batch),
         "hex": records.build_card_batch(card_batch).hex()}
    ]
    out["chip_id_records"] = [
        {"name": f"chip{i}", "object": to_json(c), "hex": chipid.build_chip_id_record(c).hex()}
        for i, c in enumerate(CHIPS)
    ]
    chip_batch = chipid.ChipBatch(created_s=1_690_000_000, issuer="Acme Silicon", records=CHIPS)
    out["chip_batch"] = [
        {"name": "two", "object": to_json(chip_batch),
         "hex": chipid.build_chip_batch(chip_batch).hex()}
    ]
    out["command_apdus"] = [
        {"name": f"c{i}", "object": to_json(a), "hex": apdu.build_command_apdu(a).hex()}
        for i, a in enumerate(APDUS)
    ]
    out["response_apdus"] = [
        {"name": f"r{i}", "object": to_json(r), "hex": apdu.build_response_apdu(r).hex()}
        for i, r in enumerate(RESPONSES)
    ]
    out["emm_sections"] = [
        {"name": h.address.address_type.name.lower(),
         "object": to_json(emm.Emm(header=h, body=_k(0x55, 20))),
         "hex": emm.build_emm(emm.Emm(header=h, body=_k(0x55, 20))).hex()}
        for h in EMM_HEADERS
    ]
    out["emm_commands"] = [
        {"name": "all", "object": to_json(ALL_COMMANDS),
         "hex": emm.build_emm_commands(ALL_COMMANDS).hex()}
    ]
    out["ecm_sections"] = [
        {"name": "odd", "object": to_json(ecm.Ecm(header=ECM_HEADER, body=_k(0x66, 30))),
         "hex": ecm.build_ecm(ecm.Ecm(header=ECM_HEADER, body=_k(0x66, 30))).hex()}
    ]
    out["ecm_bodies"] = [
        {"name": f"cw{len(b.cw_even)}", "object": to_json(b), "hex": ecm.build_ecm_body(b).hex()}
        for b in ECM_BODIES
    ]
    key = Key(MESSAGE_KEY, label="vector")
    out["sealed_emms"] = [
        {"name": h.address.address_type.name.lower(), "key": MESSAGE_KEY.hex(),
         "header": to_json(h), "commands": to_json(ALL_COMMANDS[i::3]),
         "hex": seal_emm(key, h, ALL_COMMANDS[i::3], h.nonce).hex()}
        for i, h in enumerate(EMM_HEADERS)
    ]
    out["sealed_ecms"] = [
        {"name": f"cw{len(b.cw_even)}", "key": MESSAGE_KEY.hex(), "header": to_json(ECM_HEADER),
         "body": to_json(b), "hex": seal_ecm(key, ECM_HEADER, b, ECM_HEADER.nonce).hex()}
        for b in ECM_BODIES
    ]
    return out


_CODECS: dict[str, tuple[Any, Any]] = {
    "card_records": (records.build_card_record, records.parse_card_record),
    "card_batch": (records.build_card_batch, records.parse_card_batch),
    "chip_id_records": (chipid.build_chip_id_record, chipid.parse_chip_id_record),
    "chip_batch": (chipid.build_chip_batch, chipid.parse_chip_batch),
    "command_apdus": (apdu.build_command_apdu, apdu.parse_command_apdu),
    "response_apdus": (apdu.build_response_apdu, apdu.parse_response_apdu),
    "emm_sections": (emm.build_emm, emm.parse_emm),
    "emm_commands": (emm.build_emm_commands, lambda b: tuple(emm.parse_emm_commands(b))),
    "ecm_sections": (ecm.build_ecm, ecm.parse_ecm),
    "ecm_bodies": (ecm.build_ecm_body, ecm.parse_ecm_body),
}


def _load(kind: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((VECTORS / f"{kind}.json").read_text())
    assert data, kind
    return data


@pytest.mark.parametrize("kind", sorted(_CODECS))
def test_format_vectors(kind: str) -> None:
    build, parse = _CODECS[kind]
    for vector in _load(kind):
        obj = from_json(vector["object"])
        raw = bytes.fromhex(vector["hex"])
        assert build(obj) == raw, (kind, vector["name"])
        assert parse(raw) == obj, (kind, vector["name"])


def test_record_fast_and_declarative_agree_on_vectors() -> None:
    for vector in _load("card_records"):
        raw = bytes.fromhex(vector["hex"])
        assert records.parse_card_record_declarative(raw) == records.parse_card_record(raw)
    for vector in _load("chip_id_records"):
        raw = bytes.fromhex(vector["hex"])
        assert chipid.parse_chip_id_record_declarative(raw) == chipid.parse_chip_id_record(raw)


def test_sealed_emm_vectors() -> None:
    for vector in _load("sealed_emms"):
        key = Key(bytes.fromhex(vector["key"]), label="vector")
        header = from_json(vector["header"])
        commands = list(from_json(vector["commands"]))
        raw = bytes.fromhex(vector["hex"])
        assert seal_emm(key, header, commands, header.nonce) == raw
        assert open_emm(key, raw) == (header, commands)
        # independently: plain AES-128-GCM over the documented split (AAD = clear bytes)
        clear = len(raw) - len(emm.parse_emm(raw).body)
        plain = AESGCM(key.raw()).decrypt(header.nonce, raw[clear:], raw[:clear])
        assert plain == emm.build_emm_commands(commands)


def test_sealed_ecm_vectors() -> None:
    for vector in _load("sealed_ecms"):
        key = Key(bytes.fromhex(vector["key"]), label="vector")
        header = from_json(vector["header"])
        body = from_json(vector["body"])
        raw = bytes.fromhex(vector["hex"])
        assert seal_ecm(key, header, body, header.nonce) == raw
        assert open_ecm(key, raw) == (header, body)
        clear = 3 + ecm.ECM_HEADER_SIZE
        plain = AESGCM(key.raw()).decrypt(header.nonce, raw[clear:], raw[:clear])
        assert plain == ecm.build_ecm_body(body)


def test_vectors_are_current() -> None:
    """The stored files equal what the code would generate (no silent drift of the inputs)."""
    for kind, vectors in _vectors().items():
        assert _load(kind) == json.loads(json.dumps(vectors)), kind


if __name__ == "__main__":
    VECTORS.mkdir(parents=True, exist_ok=True)
    for kind, vectors in _vectors().items():
        (VECTORS / f"{kind}.json").write_text(
            json.dumps(vectors, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"wrote {kind}.json ({len(vectors)} vectors)")
