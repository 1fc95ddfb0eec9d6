"""Smart-card record (card EEPROM image / card-factory personalisation record) and the
personalisation batch file.

Layouts are byte-exact in ``docs/formats.md`` §2 (card record) and §4 (batch files).  All
integers are big-endian.  A record is fixed-size (:data:`CARD_RECORD_SIZE` bytes) and ends in
a CRC-32 (ISO-HDLC, as ``zlib.crc32``) over every byte before it.

One layout, two parsers with one behaviour:

* :mod:`.declaration` — :data:`CARD_RECORD`, the construct declaration (``RawCopy`` +
  ``Checksum``) and the reference parser/builder;
* :mod:`.fast` — :func:`parse_card_record` / :func:`build_card_record`, ``struct`` layouts
  derived from that declaration, used for single records and batch files.
  ``tests/unit/formats/test_records.py`` checks with hypothesis that both accept and reject
  exactly the same inputs and give equal results.

:mod:`.model` holds the value types, :mod:`.card_batch` the batch file, :mod:`.describe`
the ``cas decode`` view.  This package re-exports all of them, so callers import from
``cas.formats.records``.
"""

from __future__ import annotations

from cas.formats.batch import (
    BATCH_DIGEST_SIZE,
    BATCH_HEADER,
    BATCH_HEADER_SIZE,
    BATCH_VERSION,
    CARD_BATCH_MAGIC,
    CHIP_BATCH_MAGIC,
    ISSUER_SIZE,
    BatchHeader,
    build_batch,
    parse_batch_header,
)
from cas.formats.records.card_batch import (
    CardBatch,
    build_card_batch,
    iter_card_records,
    parse_card_batch,
    read_card_batch_header,
)
from cas.formats.records.declaration import (
    CARD_RECORD,
    CARD_RECORD_BODY,
    CARD_RECORD_SIZE,
    ECM_KEY_SLOT,
    ENTITLEMENT,
    build_card_record_declarative,
    parse_card_record_declarative,
)
from cas.formats.records.describe import describe, describe_card_record
from cas.formats.records.fast import build_card_record, parse_card_record
from cas.formats.records.model import (
    CARD_RECORD_MAGIC,
    CARD_RECORD_VERSION,
    CHIP_BLOB_SIZE,
    ECM_KEY_SLOTS,
    ENTITLEMENT_SLOTS,
    OSD_AREA_SIZE,
    OSD_MAX_BYTES,
    PIN_HASH_SIZE,
    WRAPPED_KEY_SIZE,
    CardRecord,
    EcmKeySlot,
    Pairing,
)

__all__ = [
    "BATCH_DIGEST_SIZE",
    "BATCH_HEADER",
    "BATCH_HEADER_SIZE",
    "BATCH_VERSION",
    "CARD_BATCH_MAGIC",
    "CARD_RECORD",
    "CARD_RECORD_BODY",
    "CARD_RECORD_MAGIC",
    "CARD_RECORD_SIZE",
    "CARD_RECORD_VERSION",
    "CHIP_BATCH_MAGIC",
    "CHIP_BLOB_SIZE",
    "ECM_KEY_SLOT",
    "ECM_KEY_SLOTS",
    "ENTITLEMENT",
    "ENTITLEMENT_SLOTS",
    "ISSUER_SIZE",
    "OSD_AREA_SIZE",
    "OSD_MAX_BYTES",
    "PIN_HASH_SIZE",
    "WRAPPED_KEY_SIZE",
    "BatchHeader",
    "CardBatch",
    "CardRecord",
    "EcmKeySlot",
    "Pairing",
    "build_batch",
    "build_card_batch",
    "build_card_record",
    "build_card_record_declarative",
    "describe",
    "describe_card_record",
    "iter_card_records",
    "parse_batch_header",
    "parse_card_batch",
    "parse_card_record",
    "parse_card_record_declarative",
    "read_card_batch_header",
]
