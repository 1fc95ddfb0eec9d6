"""DVB SimulCrypt (ETSI TS 103 197) for cas-sim: ECMG⇔SCS and EMMG/PDG⇔MUX.

* :mod:`.connection` — the sans-I/O protocol core (:class:`Connection`): bytes in, events
  out, bytes to send; :mod:`.state` holds its state tables, :mod:`.ecmgscs` and
  :mod:`.emmgmux` its events.
* :mod:`.session` — the servers' event loop without I/O; :mod:`.endpoint` — the asyncio
  edge the four peers share (server: listen, a task per connection, idle timeout, close;
  client: connect, reader task, close).
* :mod:`.ecmg` — the asyncio ECMG server (``cas ecmg serve``) and the pluggable ECM builder.
* :mod:`.emmg` — the EMMG client with its acknowledged outbox (``cas emmg run``).
* :mod:`.scs` — an SCS client (asyncio and blocking) for scramblers, tests and benches.
* :mod:`.mux` — a minimal MUX server that writes what an EMMG sends into a TS file.

The frame and parameter syntax live in :mod:`cas.formats.simulcrypt`.
"""

from __future__ import annotations

from .connection import NEED_DATA, Connection, ConnectionClosed, NeedData, Role, StreamInfo
from .events import CpCw, Event, Kind, PeerProtocolError
from .state import ChannelState, Side, StreamState

__all__ = [
    "NEED_DATA",
    "ChannelState",
    "Connection",
    "ConnectionClosed",
    "CpCw",
    "Event",
    "Kind",
    "NeedData",
    "PeerProtocolError",
    "Role",
    "Side",
    "StreamInfo",
    "StreamState",
]
