"""Clear TS sources of the live head-end: one program each, timed on the multiplex clock.

A source hands the playout :class:`Block` s: whole TS packets of its program's elementary
streams (PIDs already renumbered to the service's output PIDs) and, per packet, the time in
seconds on the multiplex clock at which it is due on the wire.  One idea per module:

* :mod:`~cas.live.sources.program` — :class:`Source` (what the playout needs),
  :class:`Block`, :class:`ProgramInfo` and :class:`ProgramProbe` (PAT + PMT);
* :mod:`~cas.live.sources.stamps` — PCR and PTS/DTS fields: read, rewrite, find;
* :mod:`~cas.live.sources.loop` — :class:`FileLoop`, a clear TS file in a seamless loop
  (CC, PCR and PTS/DTS moved on every loop);
* :mod:`~cas.live.sources.live` — :class:`~cas.live.sources.live.LiveSource`, the shared
  part of the live sources (reader thread, probe, PCR timing);
* :mod:`~cas.live.sources.ffmpeg` — :class:`FfmpegSource`, ffmpeg's lavfi test pattern;
* :mod:`~cas.live.sources.udp` — :class:`UdpSource`, a TS on UDP (RTP stripped).

The names are re-exported here: callers import from :mod:`cas.live.sources`.
"""

from __future__ import annotations

from cas.live.sources.ffmpeg import FfmpegSource, ffmpeg_argv
from cas.live.sources.live import LiveSource, PcrTimer
from cas.live.sources.loop import PCR_MAX_INTERVAL_S, FileLoop
from cas.live.sources.program import (
    NULL_PID,
    PACKET_SIZE,
    PAT_PID,
    PROBE_LIMIT_BYTES,
    SYNC_BYTE,
    Block,
    ProgramInfo,
    ProgramProbe,
    Source,
    SourceFactory,
)
from cas.live.sources.stamps import (
    PCR_HZ,
    PCR_MODULUS,
    PTS_MODULUS,
    pcr_of,
    pes_timestamp_offsets,
    read_timestamp,
    write_pcr,
    write_timestamp,
)
from cas.live.sources.udp import UdpSource, strip_rtp

__all__ = [
    "NULL_PID",
    "PACKET_SIZE",
    "PAT_PID",
    "PCR_HZ",
    "PCR_MAX_INTERVAL_S",
    "PCR_MODULUS",
    "PROBE_LIMIT_BYTES",
    "PTS_MODULUS",
    "SYNC_BYTE",
    "Block",
    "FfmpegSource",
    "FileLoop",
    "LiveSource",
    "PcrTimer",
    "ProgramInfo",
    "ProgramProbe",
    "Source",
    "SourceFactory",
    "UdpSource",
    "ffmpeg_argv",
    "pcr_of",
    "pes_timestamp_offsets",
    "read_timestamp",
    "strip_rtp",
    "write_pcr",
    "write_timestamp",
]
