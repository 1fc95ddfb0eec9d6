"""``cas diag stream``: a transport stream probe for CA engineers.

What it measures (ISO/IEC 13818-1, EN 300 468, ETSI TR 101 290, TR 101 211):

* services from the PAT, PMTs and SDT (names), their PCR PIDs and CA_descriptors (program
  and ES level) and the CAT's CA_descriptors (EMM PIDs);
* every PID: packets, bitrate, clear / even / odd (transport_scrambling_control), continuity
  errors, PCRs;
* ECM PIDs: sections, bitrate, repetition, the longest gap, table_id parity changes
  (0x80 ↔ 0x81) and so the crypto-period, channel ids and ECM key indexes in our headers;
* EMM PIDs: sections, bitrate, by table_id and by address type (unique 0x82 / shared 0x83 /
  global 0x84, :mod:`cas.formats.emm`), the distinct cards and groups addressed;
* the scrambling parity of every scrambled PID: when it changes, so the measured crypto-period;
* alarms (:mod:`cas.diag.alarms`).

Time is the PCR of each program (:mod:`cas.diag.timebase`); without PCR a nominal bitrate.

The package, one idea per module (each imports only those above it):

* :mod:`.report` — the report's frozen types (:class:`ProbeReport` and its parts);
* :mod:`.columns` — constants and the byte-value lookup tables of the column scan;
* :mod:`.state` — what a scan has gathered (:class:`.state.ScanState`);
* :mod:`.assembly` — the scan state -> a :class:`ProbeReport` (time bases, bitrates, alarms);
* :mod:`.scanner` — :class:`StreamProbe`: bytes in, scan state out (``finish()`` assembles);
* here — the entry points (:func:`probe_stream`, :func:`probe_file`, :func:`probe_bytes`) and
  the public names, as they were when the probe was one module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from cas import DEFAULT_CA_SYSTEM_ID
from cas.diag.alarms import Thresholds
from cas.diag.probe.columns import CHUNK_PACKETS, MAX_CC_EVENTS, NULL_PID, PACKET_SIZE, SYNC_BYTE
from cas.diag.probe.report import (
    STREAM_TYPES,
    AddressStats,
    CaEntry,
    CardEmms,
    EcmReport,
    EmmReport,
    EsReport,
    PidReport,
    ProbeReport,
    ScramblingReport,
    ServiceReport,
)
from cas.diag.probe.scanner import StreamProbe
from cas.errors import StreamError

__all__ = [
    "CHUNK_PACKETS", "MAX_CC_EVENTS", "NULL_PID", "PACKET_SIZE", "STREAM_TYPES", "SYNC_BYTE",
    "AddressStats", "CaEntry", "CardEmms", "EcmReport", "EmmReport", "EsReport", "PidReport",
    "ProbeReport", "ScramblingReport", "ServiceReport", "StreamProbe", "probe_bytes",
    "probe_file", "probe_stream",
]

# --- entry points ----------------------------------------------------------------------------
def probe_stream(handle: BinaryIO, *, source: str = "<stream>",
                 ca_system_id: int = DEFAULT_CA_SYSTEM_ID, nominal_bitrate_bps: int | None = None,
                 thresholds: Thresholds | None = None,
                 progress: Callable[[int], None] | None = None) -> ProbeReport:
    """Probe everything ``handle`` yields (``progress(n)`` after every ``n`` bytes read)."""
    probe = StreamProbe(ca_system_id=ca_system_id, nominal_bitrate_bps=nominal_bitrate_bps,
                        thresholds=thresholds, source=source)
    size = CHUNK_PACKETS * PACKET_SIZE
    while True:
        try:
            data = handle.read(size)
        except OSError as exc:
            raise StreamError(f"cannot read {source}: {exc.strerror or exc}").with_id(
                "diag.cannot_read", source=source, value=exc.strerror or exc) from exc
        if not data:
            break
        probe.feed(data)
        if progress is not None:
            progress(len(data))
    return probe.finish()


def probe_file(path: Path | str, **kwargs: Any) -> ProbeReport:
    """Probe a TS file (see :func:`probe_stream` for the options)."""
    p = Path(path)
    try:
        with p.open("rb", buffering=0) as handle:
            return probe_stream(handle, source=str(p), **kwargs)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise StreamError(f"{p}: no such file").with_id("no_file", path=str(p)) from None
    except IsADirectoryError:
        raise StreamError(f"{p} is a directory").with_id("os.is_a_directory",
                                                          path=str(p)) from None
    except PermissionError:
        raise StreamError(f"{p}: permission denied").with_id("os.permission",
                                                             path=str(p)) from None


def probe_bytes(data: bytes, **kwargs: Any) -> ProbeReport:
    probe = StreamProbe(**kwargs)
    probe.feed(data)
    return probe.finish()
