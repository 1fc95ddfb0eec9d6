"""The scrambler carries the catalog's channel numbers as logical_channel_descriptors in the
SDT (EACEM tag 0x83), and leaves the SDT alone without them."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace

import pytest

from cas.errors import FormatError, UsageError
from cas.formats import psi, ts
from cas.headend.scrambler import (
    Algorithm,
    ScrambleConfig,
    Scrambler,
    payload_cipher,
    rewrite_sdt,
    rewrite_sdt_table,
)
from cas.headend.teststream import TestService
from tests.fixtures.streams import clear_stream
from tests.unit.headend.helpers import FakeServiceCrypto, packets, pid, sections_on

SERVICES = (TestService(service_id=101, name="Alpha"), TestService(service_id=202, name="Beta"))
NUMBERS = {101: 1, 202: 12}


@pytest.fixture(scope="module")
def clear_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return clear_stream(tmp_path_factory, SERVICES, 2.5)


def _scramble(clear: bytes, **kw: object) -> bytes:
    crypto = {101: FakeServiceCrypto(channel_id=1, cw_length=8),
              202: FakeServiceCrypto(channel_id=2, cw_length=8)}
    cfg = ScrambleConfig(algorithm=Algorithm.CSA2, crypto_period_ms=1000,
                         ecm_repetition_ms=100, **kw)  # type: ignore[arg-type]
    out = io.BytesIO()
    Scrambler(cfg, crypto, payload_cipher(Algorithm.CSA2)).run(io.BytesIO(clear), out)
    return out.getvalue()


def _sdt_packets(data: bytes) -> list[bytes]:
    return [pk for pk in packets(data) if pid(pk) == psi.SDT_PID]


def test_sdt_carries_the_channel_numbers_with_a_valid_crc(clear_ts: bytes) -> None:
    clear_sdts = [s for _, s in sections_on(clear_ts, psi.SDT_PID)]
    assert clear_sdts, "ffmpeg's stream has an SDT to rewrite"
    out = _scramble(clear_ts, channel_numbers=NUMBERS)
    sdts = [s for _, s in sections_on(out, psi.SDT_PID)]
    assert len(sdts) == len(clear_sdts)  # one rewritten section for every input one
    for section in sdts:
        sdt = psi.parse_sdt(section)  # checks the CRC_32
        assert sdt.actual
        for sv in sdt.services:
            tags = [d.tag for d in sv.descriptors if isinstance(d, psi.RawDescriptor)]
            # the EACEM private_data_specifier puts tag 0x83 in scope, right before it
            assert tags[-2:] == [psi.PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG,
                                 psi.LOGICAL_CHANNEL_DESCRIPTOR_TAG]
            lcn = sv.descriptors[-1]
            assert isinstance(lcn, psi.RawDescriptor)
            assert psi.logical_channel_numbers(lcn) == {sv.service_id: NUMBERS[sv.service_id]}
            # bit layout: visible 1, reserved 11111, LCN 10 — what the box's parser reads
            assert lcn.data[2] >> 2 == 0b111111
            names = [d for d in sv.descriptors if isinstance(d, psi.ServiceDescriptor)]
            assert [d.name_text for d in names] == [
                next(s.name for s in SERVICES if s.service_id == sv.service_id)]
    ccs = [pk[3] & 0x0F for pk in _sdt_packets(out)]
    assert all((b - a) % 16 == 1 for a, b in itertools.pairwise(ccs))


def test_without_channel_numbers_the_sdt_bytes_are_unchanged(clear_ts: bytes) -> None:
    assert _sdt_packets(_scramble(clear_ts)) == _sdt_packets(clear_ts)


def test_rewrite_replaces_an_earlier_lcn_and_keeps_other_services() -> None:
    sdt = psi.Sdt(transport_stream_id=1, original_network_id=2, services=(
        psi.SdtService(service_id=7, descriptors=(
            psi.ServiceDescriptor.of(1, "p", "Seven"),
            psi.private_data_specifier_descriptor(psi.EACEM_PRIVATE_DATA_SPECIFIER),
            psi.logical_channel_descriptor([(7, 700)]))),
        psi.SdtService(service_id=8, descriptors=(psi.ServiceDescriptor.of(1, "p", "Eight"),)),
    ))
    section = psi.build_sdt(sdt)
    again = psi.parse_sdt(rewrite_sdt(section, {7: 3}))
    seven, eight = again.services
    assert [psi.logical_channel_numbers(d) for d in seven.descriptors] == [{}, {}, {7: 3}]
    assert eight == sdt.services[1]
    assert rewrite_sdt(section, {99: 1}) == section  # no listed service: byte for byte
    other = psi.build_sdt(psi.Sdt(transport_stream_id=1, original_network_id=2, actual=False,
                                  services=sdt.services))
    assert rewrite_sdt(other, {7: 3}) == other  # SDT other is not ours to renumber


def test_lcn_descriptor_round_trips_and_checks_its_range() -> None:
    d = psi.logical_channel_descriptor([(1001, 1), (1024, 1023)], visible=False)
    assert d.data == bytes.fromhex("03e9 7c01 0400 7fff")
    assert psi.parse_descriptors(psi.build_descriptors([d])) == (d,)
    assert psi.logical_channel_numbers(d) == {1001: 1, 1024: 1023}
    with pytest.raises(FormatError):
        psi.logical_channel_descriptor([(1, 1024)])
    with pytest.raises(UsageError):
        ScrambleConfig(channel_numbers={101: 0})
    with pytest.raises(UsageError):
        ScrambleConfig(channel_numbers={101: 1024})


def test_rewritten_sdt_marks_scrambled_services_free_ca_mode(clear_ts: bytes) -> None:
    # EN 300 468 §5.2.3 and docs/formats-transport.md: 1 = components controlled by a CA system
    assert not any(sv.free_ca_mode for _, s in sections_on(clear_ts, psi.SDT_PID)
                   for sv in psi.parse_sdt(s).services)
    out = _scramble(clear_ts, channel_numbers=NUMBERS)
    flags = {sv.service_id: sv.free_ca_mode for _, s in sections_on(out, psi.SDT_PID)
             for sv in psi.parse_sdt(s).services}
    assert flags == {101: True, 202: True}


def test_rewrite_sets_free_ca_mode_only_on_scrambled_services() -> None:
    sdt = psi.Sdt(transport_stream_id=1, original_network_id=2, services=(
        psi.SdtService(service_id=7), psi.SdtService(service_id=8)))
    again = psi.parse_sdt(rewrite_sdt(psi.build_sdt(sdt), {7: 3, 8: 4}, scrambled={7}))
    assert [(sv.service_id, sv.free_ca_mode) for sv in again.services] == [(7, True), (8, False)]
    # scrambled but without a number: still marked; not listed at all: byte for byte
    section = psi.build_sdt(sdt)
    only_flag = psi.parse_sdt(rewrite_sdt(section, {}, scrambled={8}))
    assert [sv.free_ca_mode for sv in only_flag.services] == [False, True]
    assert rewrite_sdt(section, {}, scrambled={99}) == section


def _big_sdt(count: int, **kw: object) -> psi.Sdt:
    return psi.Sdt(transport_stream_id=1, original_network_id=2, services=tuple(
        psi.SdtService(service_id=1001 + i, descriptors=(
            psi.ServiceDescriptor.of(1, "cas-sim", f"Channel name {i:03d}"),))
        for i in range(count)), **kw)  # type: ignore[arg-type]


def test_rewrite_spreads_a_full_sdt_over_more_sections() -> None:
    sdt = _big_sdt(27)
    section = psi.build_sdt(sdt)
    assert len(section) > 1024 - 27 * 12  # the LCNs cannot be added within one section
    numbers = {1001 + i: i + 1 for i in range(27)}
    out = rewrite_sdt_table([section], numbers, scrambled=set(numbers))
    assert len(out) == 2
    parsed = [psi.parse_sdt(s) for s in out]
    assert [(p.section_number, p.last_section_number) for p in parsed] == [(0, 1), (1, 1)]
    services = [sv for p in parsed for sv in p.services]
    assert [sv.service_id for sv in services] == list(numbers)
    for sv in services:
        lcn = [psi.logical_channel_numbers(d) for d in sv.descriptors]
        assert lcn[-1] == {sv.service_id: numbers[sv.service_id]} and sv.free_ca_mode
    with pytest.raises(FormatError):
        rewrite_sdt(section, numbers)  # the single-section form says so instead of hiding it


def test_rewrite_takes_a_multi_section_table_whole() -> None:
    parts = psi.split_sdt(_big_sdt(70, version_number=3))
    sections = [psi.build_sdt(p) for p in parts]
    assert len(sections) >= 2
    out = rewrite_sdt_table(sections, {1001: 1, 1070: 70})
    parsed = [psi.parse_sdt(s) for s in out]
    assert {p.version_number for p in parsed} == {3}
    numbers = {sv.service_id: psi.logical_channel_numbers(sv.descriptors[-1])
               for p in parsed for sv in p.services}
    assert numbers[1001] == {1001: 1} and numbers[1070] == {1070: 70}
    assert numbers[1002] == {}
    assert rewrite_sdt_table(sections, {}) == tuple(sections)


def test_scrambler_sends_a_multi_section_input_sdt_rewritten_whole(clear_ts: bytes) -> None:
    """An input SDT of several sections goes out once complete, all its sections, with CRCs."""
    own = psi.parse_sdt(next(s for _, s in sections_on(clear_ts, psi.SDT_PID)))
    table = psi.split_sdt(replace(own, services=(*own.services, *_big_sdt(60).services)))
    assert len(table) >= 2
    pk = ts.Packetizer(psi.SDT_PID)
    table_packets = b"".join(p for s in table for p in pk.packetize(psi.build_sdt(s)))
    with_table = bytearray()
    for packet in packets(clear_ts):  # the input's SDT replaced by the multi-section table
        if pid(packet) != psi.SDT_PID:
            with_table += packet
        elif packet[1] & 0x40:
            with_table += table_packets
    out = _scramble(bytes(with_table), channel_numbers=NUMBERS)
    sent = [psi.parse_sdt(s) for _, s in sections_on(out, psi.SDT_PID)]
    assert sent and len(sent) % len(table) == 0
    by_sid = {sv.service_id: sv for s in sent for sv in s.services}
    assert len(by_sid) == 62
    assert psi.logical_channel_numbers(by_sid[101].descriptors[-1]) == {101: 1}
    assert by_sid[101].free_ca_mode and not by_sid[1001].free_ca_mode
