"""PSI/SI tables: PAT, CAT, PMT (ISO/IEC 13818-1 §2.4.4) and SDT (ETSI EN 300 468 §5.2.3),
with their descriptors: CA_descriptor (tag 0x09, ISO/IEC 13818-1 §2.6.16),
scrambling_descriptor (0x65, EN 300 468 §6.2.32) and service_descriptor (0x48, §6.2.33).

Each table is one long section (:mod:`cas.formats.sections`): ``parse_<table>`` checks the
table_id, the section lengths and the CRC_32, ``build_<table>`` computes them.  Table bodies
are declared with ``construct``; 12/13-bit length and PID fields share a 16-bit word with
reserved bits, which are ignored on parse and written as ones on build.  Descriptors with a
tag we do not model are kept as :class:`RawDescriptor` (tag + bytes) and rebuilt unchanged.

:func:`find_ca_descriptors` is the hand-written fast path the STB demux and the stream probe
use to pull ECM/EMM PIDs out of a PMT or CAT without building any objects.

The package holds one idea per module: :mod:`.descriptors` (descriptor types, DVB text, the
descriptor loop), :mod:`.tables` (PAT/CAT/PMT/SDT declarations, parse/build, SDT splitting),
:mod:`.scan` (the fast CA_descriptor scanner) and :mod:`.describe` (``cas decode`` views).
Everything is re-exported here, so callers keep importing from ``cas.formats.psi``.
"""

from __future__ import annotations

from cas.formats.psi.describe import (
    SCRAMBLING_MODE_NAMES,
    STREAM_TYPE_NAMES,
    describe,
)
from cas.formats.psi.descriptors import (
    DESCRIPTOR,
    DESCRIPTOR_LOOP,
    EACEM_PRIVATE_DATA_SPECIFIER,
    LOGICAL_CHANNEL_DESCRIPTOR_TAG,
    PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG,
    CaDescriptor,
    Descriptor,
    RawDescriptor,
    ScramblingDescriptor,
    ServiceDescriptor,
    build_descriptors,
    decode_dvb_text,
    encode_dvb_text,
    logical_channel_descriptor,
    logical_channel_numbers,
    parse_descriptors,
    private_data_specifier_descriptor,
)
from cas.formats.psi.scan import (
    CaRef,
    find_ca_descriptors,
    has_ca_system,
)
from cas.formats.psi.tables import (
    CAT_BODY,
    CAT_PID,
    PAT_BODY,
    PAT_PID,
    PMT_BODY,
    SDT_BODY,
    SDT_PID,
    TABLE_ID_CAT,
    TABLE_ID_PAT,
    TABLE_ID_PMT,
    TABLE_ID_SDT_ACTUAL,
    TABLE_ID_SDT_OTHER,
    Cat,
    Pat,
    PatProgram,
    Pmt,
    PmtStream,
    Sdt,
    SdtService,
    build_cat,
    build_pat,
    build_pmt,
    build_sdt,
    parse_cat,
    parse_pat,
    parse_pmt,
    parse_psi,
    parse_sdt,
    split_sdt,
)

__all__ = [
    "CAT_BODY",
    "CAT_PID",
    "DESCRIPTOR",
    "DESCRIPTOR_LOOP",
    "EACEM_PRIVATE_DATA_SPECIFIER",
    "LOGICAL_CHANNEL_DESCRIPTOR_TAG",
    "PAT_BODY",
    "PAT_PID",
    "PMT_BODY",
    "PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG",
    "SCRAMBLING_MODE_NAMES",
    "SDT_BODY",
    "SDT_PID",
    "STREAM_TYPE_NAMES",
    "TABLE_ID_CAT",
    "TABLE_ID_PAT",
    "TABLE_ID_PMT",
    "TABLE_ID_SDT_ACTUAL",
    "TABLE_ID_SDT_OTHER",
    "CaDescriptor",
    "CaRef",
    "Cat",
    "Descriptor",
    "Pat",
    "PatProgram",
    "Pmt",
    "PmtStream",
    "RawDescriptor",
    "ScramblingDescriptor",
    "Sdt",
    "SdtService",
    "ServiceDescriptor",
    "build_cat",
    "build_descriptors",
    "build_pat",
    "build_pmt",
    "build_sdt",
    "decode_dvb_text",
    "describe",
    "encode_dvb_text",
    "find_ca_descriptors",
    "has_ca_system",
    "logical_channel_descriptor",
    "logical_channel_numbers",
    "parse_cat",
    "parse_descriptors",
    "parse_pat",
    "parse_pmt",
    "parse_psi",
    "parse_sdt",
    "private_data_specifier_descriptor",
    "split_sdt",
]
