"""Channel and stream state machines of both SimulCrypt interfaces, as tables.

ETSI TS 103 197 §4.4 (channels and streams), §5 (ECMG⇔SCS) and §6 (EMMG/PDG⇔MUX) share one
shape; the *client* is the SCS or the EMMG (it opens the TCP connection), the *server* is the
ECMG or the MUX.  The rules the tables below encode:

1. One channel per TCP connection.  The client opens it with channel_setup; the server answers
   channel_status (the channel is OPEN) or channel_error (refused: back to IDLE).
   A second channel_setup on the same connection is refused: ``channel_id_in_use`` when it
   names the open channel, ``too_many_channels`` otherwise.
2. channel_test may come from either side while the channel is OPEN; the other side answers
   channel_status (or channel_error).  channel_status in OPEN is always accepted.
3. channel_close comes from the client only, closes every stream and the channel (CLOSED); it
   has no answer and the connection ends.
4. channel_error and stream_error may be sent by either side at any time and may name ids
   that are not (or no longer) open: they answer messages that were refused.  They change no
   state, except as the answer to a pending setup, which they cancel.
5. Any other message names the open channel; otherwise it is refused with ``inv_channel_id``.
6. Streams live inside the OPEN channel.  The client opens one with stream_setup (OPENING);
   the server answers stream_status (OPEN) or stream_error (forgotten).  stream_setup for a
   stream id that exists is refused with ``stream_id_in_use``; any other message about a
   stream that does not exist with ``inv_stream_id``.
7. stream_test may come from either side on an OPEN stream; stream_status answers it.
8. Data on an OPEN stream: CW_provision (SCS→ECMG) answered by ECM_response;
   stream_BW_request (EMMG→MUX) answered by stream_BW_allocation, which the mux may also
   send on its own; data_provision (EMMG→MUX) has no answer.
9. stream_close_request (client) makes the stream CLOSING; the server answers
   stream_close_response and the stream is forgotten.  An ECM_response for a CW_provision
   sent before the close may still arrive while CLOSING.
10. Anything else (a message in the wrong direction or the wrong state) is refused with
    ``inv_message``: as :class:`cas.errors.LocalProtocolError` when we try to send it, as a
    :class:`~.events.PeerProtocolError` (answered with channel_error / stream_error) when the
    peer does.
"""

from __future__ import annotations

from enum import Enum

from .events import Kind


class Side(Enum):
    CLIENT = "client"   # SCS, EMMG/PDG: connects, sets up
    SERVER = "server"   # ECMG, MUX: accepts, answers


class ChannelState(Enum):
    IDLE = "idle"
    OPENING = "opening"    # channel_setup sent, no channel_status yet
    OPEN = "open"
    CLOSED = "closed"      # channel_close sent; the connection is over


class StreamState(Enum):
    ABSENT = "absent"
    OPENING = "opening"    # stream_setup sent, no stream_status yet
    OPEN = "open"
    CLOSING = "closing"    # stream_close_request sent, no stream_close_response yet


C, S = Side.CLIENT, Side.SERVER
K = Kind
IDLE, OPENING, OPEN, CLOSED = ChannelState
ABSENT, S_OPENING, S_OPEN, CLOSING = StreamState

CHANNEL_TABLE: dict[tuple[Side, Kind, ChannelState], ChannelState] = {
    # rule 1
    (C, K.CHANNEL_SETUP, IDLE): OPENING,
    (S, K.CHANNEL_STATUS, OPENING): OPEN,
    (S, K.CHANNEL_ERROR, OPENING): IDLE,
    # rule 2
    (C, K.CHANNEL_TEST, OPEN): OPEN,
    (S, K.CHANNEL_TEST, OPEN): OPEN,
    (S, K.CHANNEL_STATUS, OPEN): OPEN,
    (C, K.CHANNEL_STATUS, OPEN): OPEN,
    # rule 3
    (C, K.CHANNEL_CLOSE, OPEN): CLOSED,
}
"""(sender, kind, channel state) -> next channel state, for every channel-level message except
the errors (rule 4, see :data:`ERROR_KINDS`)."""

STREAM_TABLE: dict[tuple[Side, Kind, StreamState], StreamState] = {
    # rule 6
    (C, K.STREAM_SETUP, ABSENT): S_OPENING,
    (S, K.STREAM_STATUS, S_OPENING): S_OPEN,
    (S, K.STREAM_ERROR, S_OPENING): ABSENT,
    # rule 7
    (C, K.STREAM_TEST, S_OPEN): S_OPEN,
    (S, K.STREAM_TEST, S_OPEN): S_OPEN,
    (S, K.STREAM_STATUS, S_OPEN): S_OPEN,
    (C, K.STREAM_STATUS, S_OPEN): S_OPEN,
    # rule 8
    (C, K.CW_PROVISION, S_OPEN): S_OPEN,
    (S, K.ECM_RESPONSE, S_OPEN): S_OPEN,
    (C, K.STREAM_BW_REQUEST, S_OPEN): S_OPEN,
    (S, K.STREAM_BW_ALLOCATION, S_OPEN): S_OPEN,
    (C, K.DATA_PROVISION, S_OPEN): S_OPEN,
    # rule 9
    (C, K.STREAM_CLOSE_REQUEST, S_OPEN): CLOSING,
    (S, K.STREAM_CLOSE_RESPONSE, CLOSING): ABSENT,
    (S, K.ECM_RESPONSE, CLOSING): CLOSING,
}
"""(sender, kind, stream state) -> next stream state; ABSENT as a result forgets the stream."""

ERROR_KINDS = frozenset({Kind.CHANNEL_ERROR, Kind.STREAM_ERROR})
"""Rule 4: accepted from either side in any state; they only cancel a pending setup."""


def next_channel_state(sender: Side, kind: Kind, state: ChannelState) -> ChannelState | None:
    """The channel state after ``sender`` sends ``kind`` in ``state``; None if not allowed."""
    if kind is Kind.CHANNEL_ERROR:
        return IDLE if (sender is S and state is OPENING) else state
    return CHANNEL_TABLE.get((sender, kind, state))


def next_stream_state(sender: Side, kind: Kind, state: StreamState) -> StreamState | None:
    """The stream state after ``sender`` sends ``kind`` in ``state``; None if not allowed."""
    if kind is Kind.STREAM_ERROR:
        return ABSENT if (sender is S and state is S_OPENING) else state
    return STREAM_TABLE.get((sender, kind, state))
