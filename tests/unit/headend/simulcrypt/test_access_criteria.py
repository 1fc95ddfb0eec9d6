"""Our access_criteria forms (full 0x01, lineup reference 0x02)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.access import AccessCriteria
from cas.billing.catalog import load_lineup
from cas.errors import FormatError
from cas.headend.simulcrypt import access_criteria as ac

u16s = st.lists(st.integers(0, 0xFFFF), max_size=20).map(tuple)


@given(st.builds(lambda c, p, r, m: AccessCriteria(channel_id=c, package_ids=p, regions=r,
                                                   maturity_rating=m),
                 st.integers(0, 0xFFFF), u16s, u16s, st.integers(0, 255)))
def test_full_form_round_trip(criteria: AccessCriteria) -> None:
    assert ac.decode(ac.encode_full(criteria)) == criteria


def test_full_form_bytes() -> None:
    raw = ac.encode_full(AccessCriteria(channel_id=0x0BB9, package_ids=(1, 2), regions=(7,),
                                        maturity_rating=18))
    assert raw.hex() == "010bb912020001000201" "0007"


@pytest.mark.parametrize("raw", [b"", b"\x03", b"\x01\x00", b"\x01\x00\x01\x00\x02\x00\x01",
                                 b"\x01\x00\x01\x00\x00\x00\xff", b"\x02\x00",
                                 b"\x02\x00\x01\x00"])
def test_malformed(raw: bytes) -> None:
    with pytest.raises(FormatError):
        ac.decode(raw, ac.resolver_from([]))


@given(st.binary(max_size=30))
def test_decoder_raises_only_format_errors(raw: bytes) -> None:
    try:
        found = ac.decode(raw, ac.resolver_from([]))
    except FormatError:
        return
    assert ac.encode_full(found) == raw     # what decodes is exactly one encoding


def test_reference_form_needs_the_lineup() -> None:
    lineup = load_lineup("atvplus.toml", minor_per_major=100)
    resolve = ac.lineup_resolver(lineup)
    channel = lineup.channels[0]
    found = ac.decode(ac.encode_reference(channel.service_id), resolve)
    assert found.channel_id == channel.service_id
    assert found.package_ids == tuple(sorted(
        p.id for p in lineup.packages if channel.number in p.channel_numbers))
    with pytest.raises(FormatError):
        ac.decode(ac.encode_reference(channel.service_id))        # no resolver
    with pytest.raises(FormatError):
        ac.decode(ac.encode_reference(0xFFFE), resolve)          # not in the lineup


def test_encoder_ranges() -> None:
    with pytest.raises(FormatError):
        ac.encode_full(AccessCriteria(channel_id=1, package_ids=tuple(range(256))))
    with pytest.raises(FormatError):
        ac.encode_full(AccessCriteria(channel_id=0x10000, package_ids=()))
    with pytest.raises(FormatError):
        ac.encode_reference(-1)
