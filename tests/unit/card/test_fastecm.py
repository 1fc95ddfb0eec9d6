"""The card's struct-based ECM parsers accept and reject exactly what the declarative
construct parsers of :mod:`cas.formats.ecm` do, with equal results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cas.access import PpvEvent
from cas.card.fastecm import parse_ecm_body_fast, parse_ecm_fast
from cas.errors import FormatError
from cas.formats.ecm import (
    EcmBody,
    EcmExtension,
    EcmHeader,
    build_ecm_body,
    ecm_clear_bytes,
    parse_ecm,
    parse_ecm_body,
)


def outcome(fn, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(data))
    except FormatError as exc:
        return ("error", type(exc))


bodies = st.builds(
    EcmBody,
    crypto_period=st.integers(0, 2**32 - 1),
    cw_even=st.shared(st.sampled_from([8, 16]), key="cw").flatmap(
        lambda n: st.binary(min_size=n, max_size=n)),
    cw_odd=st.shared(st.sampled_from([8, 16]), key="cw").flatmap(
        lambda n: st.binary(min_size=n, max_size=n)),
    package_ids=st.lists(st.integers(0, 0xFFFF), max_size=20).map(tuple),
    regions=st.lists(st.integers(0, 0xFFFF), max_size=10).map(tuple),
    maturity_rating=st.integers(0, 255),
    # the PPV event extension (the fast path's own case) and unknown ones (declarative)
    ppv_event=st.none() | st.builds(
        PpvEvent, event_id=st.integers(0, 2**32 - 1), start_s=st.integers(0, 2**32 - 1),
        end_s=st.integers(0, 2**32 - 1), price_tokens=st.integers(0, 0xFFFF),
        impulse=st.booleans()),
    extensions=st.lists(st.builds(EcmExtension, tag=st.integers(2, 255),
                                  value=st.binary(max_size=6)), max_size=1).map(tuple),
)


@given(bodies)
def test_valid_bodies_parse_the_same(body: EcmBody) -> None:
    data = build_ecm_body(body)
    assert parse_ecm_body_fast(data) == parse_ecm_body(data) == body


@given(bodies, st.data())
def test_mutated_bodies_agree(body: EcmBody, data: st.DataObject) -> None:
    raw = bytearray(build_ecm_body(body))
    op = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if op == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif op == "cut":
        del raw[data.draw(st.integers(0, len(raw))):]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=4))
    assert outcome(parse_ecm_body_fast, bytes(raw)) == outcome(parse_ecm_body, bytes(raw))


@given(st.binary(max_size=80))
def test_random_bodies_agree(raw: bytes) -> None:
    assert outcome(parse_ecm_body_fast, raw) == outcome(parse_ecm_body, raw)


@given(st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 2**32 - 1),
       st.binary(min_size=12, max_size=12), st.sampled_from([0x80, 0x81]),
       st.binary(min_size=16, max_size=200))
def test_valid_sections_parse_the_same(channel: int, key_index: int, ts: int, nonce: bytes,
                                       table_id: int, sealed: bytes) -> None:
    header = EcmHeader(channel_id=channel, ecm_key_index=key_index, timestamp_s=ts,
                       nonce=nonce, table_id=table_id)
    section = ecm_clear_bytes(header, len(sealed)) + sealed
    assert parse_ecm_fast(section) == parse_ecm(section)


@given(st.binary(max_size=260), st.data())
def test_random_sections_agree(raw: bytes, data: st.DataObject) -> None:
    if raw and data.draw(st.booleans()):
        # steer towards plausible headers so the interesting branches run
        raw = bytes([data.draw(st.sampled_from([0x80, 0x81, 0x82]))]) + raw[1:]
        if len(raw) >= 3 and data.draw(st.booleans()):
            n = len(raw) - 3
            raw = raw[:1] + bytes([0x70 | (n >> 8), n & 0xFF]) + raw[3:]
    assert outcome(parse_ecm_fast, raw) == outcome(parse_ecm, raw)
