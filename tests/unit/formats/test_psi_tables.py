"""PAT, CAT, PMT, SDT and their descriptors: round trips, golden bytes (ours and ffmpeg's),
the fast CA_descriptor lookup and ``describe``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given

from cas.errors import ChecksumError, FormatError
from cas.formats import psi
from cas.formats.psi import (
    CaDescriptor,
    CaRef,
    Cat,
    Pat,
    Pmt,
    PmtStream,
    RawDescriptor,
    Sdt,
    ServiceDescriptor,
    build_cat,
    build_descriptors,
    build_pat,
    build_pmt,
    build_sdt,
    decode_dvb_text,
    encode_dvb_text,
    find_ca_descriptors,
    has_ca_system,
    parse_cat,
    parse_descriptors,
    parse_pat,
    parse_pmt,
    parse_psi,
    parse_sdt,
)
from tests.unit.formats import ts_psi_samples as samples
from tests.unit.formats.ts_psi_strategies import (
    cats,
    crc32_mpeg2_bitwise,
    descriptor_loops,
    pats,
    pmts,
    sdts,
)

VECTORS = Path(__file__).parents[2] / "vectors" / "transport"
GOLDEN = json.loads((VECTORS / "golden.json").read_text())
FFMPEG = json.loads((VECTORS / "ffmpeg_psi.json").read_text())


# --- round trips ---------------------------------------------------------------------------


@given(pats())
def test_pat_round_trip(pat: Pat) -> None:
    data = build_pat(pat)
    assert parse_pat(data) == pat
    assert parse_psi(data) == pat
    json.dumps(psi.describe(pat))


@given(cats())
def test_cat_round_trip(cat: Cat) -> None:
    data = build_cat(cat)
    assert parse_cat(data) == cat
    json.dumps(psi.describe(cat))


@given(pmts)
def test_pmt_round_trip(pmt: Pmt) -> None:
    data = build_pmt(pmt)
    assert parse_pmt(data) == pmt
    json.dumps(psi.describe(pmt))


@given(sdts())
def test_sdt_round_trip(sdt: Sdt) -> None:
    data = build_sdt(sdt)
    assert parse_sdt(data) == sdt
    json.dumps(psi.describe(sdt))


@given(descriptor_loops)
def test_descriptor_loop_round_trip(loop: tuple[psi.Descriptor, ...]) -> None:
    assert parse_descriptors(build_descriptors(loop)) == loop


@given(pmts)
def test_find_ca_descriptors_agrees_with_full_parse(pmt: Pmt) -> None:
    expected = [
        CaRef(ca_system_id=d.ca_system_id, ca_pid=d.ca_pid, private_data=d.private_data)
        for d in pmt.descriptors
        if isinstance(d, CaDescriptor)
    ] + [
        CaRef(
            ca_system_id=d.ca_system_id,
            ca_pid=d.ca_pid,
            elementary_pid=s.elementary_pid,
            private_data=d.private_data,
        )
        for s in pmt.streams
        for d in s.descriptors
        if isinstance(d, CaDescriptor)
    ]
    data = build_pmt(pmt)
    assert find_ca_descriptors(data) == expected
    for system in {r.ca_system_id for r in expected}:
        assert find_ca_descriptors(data, system) == [
            r for r in expected if r.ca_system_id == system
        ]
        assert has_ca_system(data, system)


# --- golden vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("pat", lambda: build_pat(samples.PAT)),
        ("cat", lambda: build_cat(samples.CAT)),
        ("pmt_program_1", lambda: build_pmt(samples.pmt_for(0))),
        ("pmt_cissa", lambda: build_pmt(samples.PMT_CISSA)),
        ("sdt", lambda: build_sdt(samples.SDT)),
    ],
)
def test_golden_bytes_and_independent_crc(name: str, build: object) -> None:
    assert callable(build)
    data = build()
    assert data.hex() == GOLDEN[name]
    assert int.from_bytes(data[-4:], "big") == crc32_mpeg2_bitwise(data[:-4])


def test_golden_pat_layout_by_hand() -> None:
    data = bytes.fromhex(GOLDEN["pat"])
    # table_id 0, SSI 1 / '0' / '11' / section_length 0x015 = 21 = 5 + 3*4 + 4
    assert data[:3] == bytes.fromhex("00b015")
    assert data[3:5] == b"\x00\x42"  # transport_stream_id
    assert data[5] == 0xC0 | (3 << 1) | 1  # reserved, version 3, current_next 1
    assert data[8:12] == bytes.fromhex("0001f000")  # program 1 -> PMT PID 0x1000


def test_golden_cat_layout_by_hand() -> None:
    data = bytes.fromhex(GOLDEN["cat"])
    assert data[3:5] == b"\xff\xff"  # reserved table_id_extension
    # CA_descriptor: tag 9, length 6, CA_system_ID DEAD, '111' + CA_PID 0x500, private 0001
    assert data[8:16] == bytes.fromhex("0906deade5000001")


def test_golden_pmt_layout_by_hand() -> None:
    data = bytes.fromhex(GOLDEN["pmt_program_1"])
    assert data[3:5] == b"\x00\x01"  # program_number
    assert data[8:10] == bytes.fromhex("e100")  # PCR_PID 0x100
    assert data[10:12] == bytes.fromhex("f006")  # program_info_length 6
    assert data[12:18] == bytes.fromhex("0904deade600")  # ECM PID 0x600
    assert data[18:23] == bytes.fromhex("1be100f000")  # H.264 on 0x100, no ES_info


@pytest.mark.parametrize(
    ("name", "parse", "build"),
    [("pat", parse_pat, build_pat), ("pmt", parse_pmt, build_pmt), ("sdt", parse_sdt, build_sdt)],
)
def test_ffmpeg_sections_rebuild_byte_for_byte(name: str, parse: object, build: object) -> None:
    assert callable(parse) and callable(build)
    data = bytes.fromhex(FFMPEG[name])
    assert build(parse(data)) == data


def test_ffmpeg_sdt_fields() -> None:
    sdt = parse_sdt(bytes.fromhex(FFMPEG["sdt"]))
    (service,) = sdt.services
    (desc,) = service.descriptors
    assert isinstance(desc, ServiceDescriptor)
    assert (desc.provider_text, desc.name_text, desc.service_type) == ("FFmpeg", "Service01", 1)
    assert sdt.original_network_id == 0xFF01


# --- descriptors ---------------------------------------------------------------------------


def test_unknown_descriptors_are_kept() -> None:
    pmt = samples.pmt_for(0)
    back = parse_pmt(build_pmt(pmt))
    assert RawDescriptor(tag=0x0A, data=b"eng\x00") in back.streams[1].descriptors


def test_dvb_text() -> None:
    assert encode_dvb_text("News") == b"News"
    assert encode_dvb_text("Спорт")[0] == 0x15
    assert decode_dvb_text(encode_dvb_text("Спорт HD")) == "Спорт HD"
    assert decode_dvb_text(b"\x01\xbf\xe0\xde") == "Про"  # ISO 8859-5
    assert decode_dvb_text(b"\x10\x00\x05\xbf") == "П"
    assert decode_dvb_text(b"\x11\x04\x1f") == "П"
    assert decode_dvb_text(b"") == ""
    assert isinstance(decode_dvb_text(b"\x1f\xff\xfe"), str)
    assert isinstance(decode_dvb_text(b"\x10\x00\x63x"), str)


def test_describe_names_things() -> None:
    d = psi.describe(parse_pmt(build_pmt(samples.PMT_CISSA)))
    assert d["program_info"][0]["scrambling_mode_name"] == "DVB-CISSA v1"
    assert d["streams"][0]["stream_type_name"] == "MPEG-2 video"
    sdt = psi.describe(samples.SDT)
    assert sdt["services"][1]["descriptors"][0]["service_name"] == "Спорт HD"
    pat = psi.describe(samples.PAT)
    assert pat["programs"][0] == {"program_number": 1, "program_map_PID": 0x1000}


# --- errors --------------------------------------------------------------------------------


def test_wrong_table_id_is_format_error() -> None:
    with pytest.raises(FormatError) as info:
        parse_pmt(build_pat(samples.PAT))
    assert info.value.path == "pmt.table_id"
    with pytest.raises(FormatError, match="not a PSI table"):
        parse_psi(bytes.fromhex("807000"))


def test_bad_crc_is_checksum_error() -> None:
    data = bytearray(build_pmt(samples.pmt_for(1)))
    data[-1] ^= 1
    with pytest.raises(ChecksumError):
        parse_pmt(bytes(data))
    with pytest.raises(ChecksumError):
        find_ca_descriptors(bytes(data))
    assert find_ca_descriptors(bytes(data), check_crc=False)


def test_find_ca_descriptors_on_cat() -> None:
    refs = find_ca_descriptors(build_cat(samples.CAT), samples.CA_ID)
    assert refs == [
        CaRef(ca_system_id=samples.CA_ID, ca_pid=samples.EMM_PID, private_data=b"\x00\x01")
    ]
    assert find_ca_descriptors(build_cat(samples.CAT), 0x0100) == []
    assert not has_ca_system(build_pmt(samples.PMT_CISSA), 0x0100)
    with pytest.raises(FormatError, match="neither CAT nor PMT"):
        find_ca_descriptors(build_pat(samples.PAT))


def test_pmt_must_be_single_section() -> None:
    from cas.formats.sections import LongSection, build_section

    body = bytes.fromhex(GOLDEN["pmt_program_1"])[8:-4]
    data = build_section(
        LongSection(
            table_id=2, table_id_extension=1, section_number=0, last_section_number=1, payload=body
        )
    )
    with pytest.raises(FormatError, match="single section"):
        parse_pmt(data)


def test_build_rejects_out_of_range_and_oversize() -> None:
    with pytest.raises(FormatError, match="CA_PID"):
        CaDescriptor(ca_system_id=1, ca_pid=0x2000)
    with pytest.raises(FormatError, match="elementary_PID"):
        PmtStream(stream_type=2, elementary_pid=-1)
    huge = Pmt(
        program_number=1,
        streams=tuple(
            PmtStream(
                stream_type=2,
                elementary_pid=i,
                descriptors=(RawDescriptor(tag=0x80, data=bytes(100)),),
            )
            for i in range(10)
        ),
    )
    with pytest.raises(FormatError, match="limit"):
        build_pmt(huge)
    with pytest.raises(FormatError):
        ServiceDescriptor(service_type=1, service_provider_name=bytes(200), service_name=bytes(60))


def test_lists_become_tuples() -> None:
    pmt = Pmt(program_number=1, streams=[PmtStream(stream_type=2, elementary_pid=5)])  # type: ignore[arg-type]
    assert isinstance(pmt.streams, tuple)
    assert hash(pmt) == hash(parse_pmt(build_pmt(pmt)))


def _named_services(count: int, name_len: int = 20) -> tuple[psi.SdtService, ...]:
    return tuple(psi.SdtService(service_id=1000 + i, descriptors=(
        psi.ServiceDescriptor.of(1, "provider", f"{i:0{name_len}d}"),)) for i in range(count))


def test_split_sdt_keeps_one_section_when_it_fits() -> None:
    sdt = Sdt(transport_stream_id=1, original_network_id=2, services=_named_services(3))
    assert psi.split_sdt(sdt) == (sdt,)
    assert psi.split_sdt(Sdt(transport_stream_id=1, original_network_id=2)) == (
        Sdt(transport_stream_id=1, original_network_id=2),)


def test_split_sdt_spreads_services_over_sections_that_each_fit() -> None:
    sdt = Sdt(transport_stream_id=1, original_network_id=2, version_number=5,
              services=_named_services(160))
    with pytest.raises(FormatError):
        psi.build_sdt(sdt)  # one section cannot carry them
    parts = psi.split_sdt(sdt)
    assert len(parts) > 1
    built = [psi.build_sdt(p) for p in parts]
    assert all(len(b) <= 1024 for b in built)
    assert max(len(b) for b in built) > 1024 - 40  # filled, not one service per section
    back = [psi.parse_sdt(b) for b in built]
    assert [b.section_number for b in back] == list(range(len(parts)))
    assert {b.last_section_number for b in back} == {len(parts) - 1}
    assert {(b.version_number, b.transport_stream_id) for b in back} == {(5, 1)}
    assert tuple(sv for b in back for sv in b.services) == sdt.services


def test_split_sdt_refuses_a_service_no_section_can_carry() -> None:
    huge = psi.SdtService(service_id=1, descriptors=tuple(
        psi.RawDescriptor(tag=0x80, data=bytes(250)) for _ in range(5)))
    with pytest.raises(FormatError):
        psi.split_sdt(Sdt(transport_stream_id=1, original_network_id=2, services=(huge,)))
