"""Hypothesis strategies for sections, PSI tables and TS packets, plus the CRC reference."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import strategies as st

from cas.errors import FormatError
from cas.formats.psi import (
    CaDescriptor,
    Cat,
    Descriptor,
    Pat,
    PatProgram,
    Pmt,
    PmtStream,
    RawDescriptor,
    ScramblingDescriptor,
    Sdt,
    SdtService,
    ServiceDescriptor,
)
from cas.formats.sections import LongSection, ShortSection
from cas.formats.ts import AdaptationField, Pcr, TsPacket


def crc32_mpeg2_bitwise(data: bytes) -> int:
    """Independent slow reference: CRC-32/MPEG-2 one bit at a time, straight from the
    definition (poly 0x04C11DB7, init 0xFFFFFFFF, MSB first, no reflection, no final XOR)."""
    crc = 0xFFFFFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = (crc >> 31) & 1
            crc = (crc << 1) & 0xFFFFFFFF
            if top ^ ((byte >> bit) & 1):
                crc ^= 0x04C11DB7
    return crc


def only_format_errors(fn: Callable[[bytes], object], data: bytes) -> None:
    """Call a parser; anything but success or our FormatError fails the test."""
    with contextlib.suppress(FormatError):
        fn(data)


u8 = st.integers(0, 0xFF)
u13 = st.integers(0, 0x1FFF)
u16 = st.integers(0, 0xFFFF)
KNOWN_TAGS = {0x09, 0x48, 0x65}

descriptors: st.SearchStrategy[Descriptor] = st.one_of(
    st.builds(
        CaDescriptor,
        ca_system_id=u16,
        ca_pid=u13,
        private_data=st.binary(max_size=12),
    ),
    st.builds(ScramblingDescriptor, scrambling_mode=u8),
    st.builds(
        ServiceDescriptor,
        service_type=u8,
        service_provider_name=st.binary(max_size=16),
        service_name=st.binary(max_size=16),
    ),
    st.builds(
        RawDescriptor,
        tag=u8.filter(lambda t: t not in KNOWN_TAGS),
        data=st.binary(max_size=20),
    ),
)
descriptor_loops = st.lists(descriptors, max_size=4).map(tuple)

versions = st.integers(0, 31)


@st.composite
def section_numbers(draw: st.DrawFn) -> tuple[int, int]:
    last = draw(u8)
    return draw(st.integers(0, last)), last


@st.composite
def pats(draw: st.DrawFn) -> Pat:
    sn, last = draw(section_numbers())
    return Pat(
        transport_stream_id=draw(u16),
        version_number=draw(versions),
        current_next_indicator=draw(st.booleans()),
        section_number=sn,
        last_section_number=last,
        programs=tuple(
            draw(st.lists(st.builds(PatProgram, program_number=u16, pid=u13), max_size=60))
        ),
    )


@st.composite
def cats(draw: st.DrawFn) -> Cat:
    sn, last = draw(section_numbers())
    return Cat(
        version_number=draw(versions),
        current_next_indicator=draw(st.booleans()),
        section_number=sn,
        last_section_number=last,
        descriptors=draw(descriptor_loops),
    )


pmt_streams = st.builds(PmtStream, stream_type=u8, elementary_pid=u13, descriptors=descriptor_loops)
pmts = st.builds(
    Pmt,
    program_number=u16,
    version_number=versions,
    current_next_indicator=st.booleans(),
    pcr_pid=u13,
    descriptors=descriptor_loops,
    streams=st.lists(pmt_streams, max_size=5).map(tuple),
)
sdt_services = st.builds(
    SdtService,
    service_id=u16,
    eit_schedule_flag=st.booleans(),
    eit_present_following_flag=st.booleans(),
    running_status=st.integers(0, 7),
    free_ca_mode=st.booleans(),
    descriptors=descriptor_loops,
)


@st.composite
def sdts(draw: st.DrawFn) -> Sdt:
    sn, last = draw(section_numbers())
    return Sdt(
        transport_stream_id=draw(u16),
        original_network_id=draw(u16),
        version_number=draw(versions),
        current_next_indicator=draw(st.booleans()),
        section_number=sn,
        last_section_number=last,
        actual=draw(st.booleans()),
        services=tuple(draw(st.lists(sdt_services, max_size=5))),
    )


short_sections = st.builds(
    ShortSection, table_id=u8, private_indicator=st.booleans(), payload=st.binary(max_size=600)
)


@st.composite
def long_sections(draw: st.DrawFn) -> LongSection:
    sn, last = draw(section_numbers())
    return LongSection(
        table_id=draw(u8),
        private_indicator=draw(st.booleans()),
        table_id_extension=draw(u16),
        version_number=draw(versions),
        current_next_indicator=draw(st.booleans()),
        section_number=sn,
        last_section_number=last,
        payload=draw(st.binary(max_size=600)),
    )


pcrs = st.builds(Pcr, base=st.integers(0, (1 << 33) - 1), extension=st.integers(0, 511))
adaptation_fields = st.builds(
    AdaptationField,
    discontinuity_indicator=st.booleans(),
    random_access_indicator=st.booleans(),
    elementary_stream_priority_indicator=st.booleans(),
    pcr=st.none() | pcrs,
    opcr=st.none() | pcrs,
    splice_countdown=st.none() | st.integers(-128, 127),
    transport_private_data=st.none() | st.binary(max_size=20),
    extension=st.none() | st.binary(max_size=10),
)


@st.composite
def ts_packets(draw: st.DrawFn) -> TsPacket:
    af = draw(st.none() | adaptation_fields)
    if af is None:
        payload = draw(st.binary(min_size=184, max_size=184))
    else:
        payload = draw(st.binary(max_size=183 - af.encoded_length()))
    return TsPacket(
        pid=draw(u13),
        payload=payload,
        payload_unit_start_indicator=draw(st.booleans()),
        transport_error_indicator=draw(st.booleans()),
        transport_priority=draw(st.booleans()),
        transport_scrambling_control=draw(st.integers(0, 3)),
        continuity_counter=draw(st.integers(0, 15)),
        adaptation_field=af,
    )
