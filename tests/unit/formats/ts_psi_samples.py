"""Sample PSI tables and TS packets shared by the transport-format tests and golden vectors.

The golden file ``tests/vectors/transport/golden.json`` pins the bytes these objects build to.
"""

from __future__ import annotations

from cas.formats.psi import (
    CaDescriptor,
    Cat,
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

CA_ID = 0xDEAD

#: (program_number, PMT PID, video PID, audio PID, audio stream_type, ECM PID)
PROGRAMS = (
    (1, 0x1000, 0x0100, 0x0101, 0x03, 0x0600),
    (2, 0x1010, 0x0200, 0x0201, 0x0F, 0x0601),
    (7, 0x1020, 0x0300, 0x0301, 0x03, 0x0602),
)
EMM_PID = 0x0500

PAT = Pat(
    transport_stream_id=0x0042,
    version_number=3,
    programs=tuple(PatProgram(program_number=p[0], pid=p[1]) for p in PROGRAMS),
)

CAT = Cat(
    version_number=1,
    descriptors=(CaDescriptor(ca_system_id=CA_ID, ca_pid=EMM_PID, private_data=b"\x00\x01"),),
)


def pmt_for(index: int) -> Pmt:
    program, _pmt_pid, video, audio, audio_type, ecm = PROGRAMS[index]
    return Pmt(
        program_number=program,
        version_number=5,
        pcr_pid=video,
        descriptors=(CaDescriptor(ca_system_id=CA_ID, ca_pid=ecm),),
        streams=(
            PmtStream(stream_type=0x1B, elementary_pid=video),
            PmtStream(
                stream_type=audio_type,
                elementary_pid=audio,
                descriptors=(
                    # ISO_639_language_descriptor "eng", kept raw.
                    RawDescriptor(tag=0x0A, data=b"eng\x00"),
                    CaDescriptor(ca_system_id=CA_ID, ca_pid=ecm + 0x10, private_data=b"\x07"),
                ),
            ),
        ),
    )


PMT_CISSA = Pmt(
    program_number=9,
    pcr_pid=0x0900,
    descriptors=(
        ScramblingDescriptor(scrambling_mode=0x10),
        CaDescriptor(ca_system_id=0x0B00, ca_pid=0x0910),
        CaDescriptor(ca_system_id=CA_ID, ca_pid=0x0911),
    ),
    streams=(PmtStream(stream_type=0x02, elementary_pid=0x0900),),
)

SDT = Sdt(
    transport_stream_id=0x0042,
    original_network_id=0x2222,
    services=(
        SdtService(
            service_id=1,
            free_ca_mode=True,
            descriptors=(ServiceDescriptor.of(0x01, "cas-sim", "News 24"),),
        ),
        SdtService(
            service_id=2,
            eit_present_following_flag=True,
            free_ca_mode=True,
            descriptors=(ServiceDescriptor.of(0x19, "cas-sim", "Спорт HD"),),
        ),
        SdtService(
            service_id=7,
            running_status=1,
            descriptors=(ServiceDescriptor.of(0x02, "cas-sim", "Radio"),),
        ),
    ),
)

SHORT_SECTION = ShortSection(table_id=0x80, payload=bytes(range(16)))
LONG_SECTION = LongSection(
    table_id=0x90,
    private_indicator=True,
    table_id_extension=0xBEEF,
    version_number=31,
    current_next_indicator=False,
    section_number=1,
    last_section_number=2,
    payload=b"payload",
)

PCR_PACKET = TsPacket(
    pid=0x0100,
    payload_unit_start_indicator=True,
    continuity_counter=9,
    adaptation_field=AdaptationField(
        random_access_indicator=True, pcr=Pcr(base=0x1_2345_6789, extension=299)
    ),
    payload=b"\x00\x00\x01\xe0" + bytes(20),
)

#: A CAT large enough to span two TS packets.
BIG_CAT = Cat(
    descriptors=tuple(
        CaDescriptor(ca_system_id=CA_ID, ca_pid=0x0500 + i, private_data=bytes([i]) * 6)
        for i in range(20)
    )
)
