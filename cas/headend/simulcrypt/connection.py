"""The sans-I/O SimulCrypt connection: bytes in, events out, bytes to send.

::

    conn = Connection(Role.ECMG)
    conn.receive_data(data)            # b"" means the peer closed its side
    while True:
        try:
            event = conn.next_event()  # an Event, NEED_DATA or ConnectionClosed
        except PeerProtocolError as exc:
            transport.write(conn.send(conn.error_event(exc)))   # and carry on
            continue
        ...
    transport.write(conn.send(ecmgscs.ChannelStatus(...)))

No sockets, no clocks: the asyncio servers and clients in this package (and the blocking SCS
client) drive it.  The rules on which message may go where are in :mod:`.state`.

Protocol versions (TS 103 197 §4.4.1, WIRE-FACTS §2.5): a client speaks the version it was
built with.  A server adopts the version of the first message it receives whose version it
supports and answers in it from then on; a message in another version is refused with
``inv_proto_version``.  When the very first messages come in a version we do not support, the
error is sent in the peer's own version byte, so that the peer can read why.

Every refused message is consumed whole (the frame length is in its header), so one bad
message never desynchronises the stream: the connection survives every error status.  A
frame longer than ``max_message_length`` is refused with ``message_too_long`` as soon as its
header arrives, and its body is skipped as it comes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from cas.errors import LocalProtocolError
from cas.formats.simulcrypt import (
    ECMG_SCS,
    EMMG_MUX,
    HEADER_SIZE,
    ErrorKind,
    InterfaceSpec,
    SimulcryptFormatError,
    build_message,
    parse_message,
)
from cas.formats.simulcrypt import EcmgScsError as EE
from cas.formats.simulcrypt import EmmgMuxError as ME

from . import ecmgscs, emmgmux
from .events import (
    Event,
    Kind,
    PeerProtocolError,
    decode_event,
    error_information_for,
    ids_from,
)
from .state import ChannelState, Side, StreamState, next_channel_state, next_stream_state

DEFAULT_VERSION = 2
"""What our clients speak unless told otherwise (TSDuck's default too)."""


class Role(Enum):
    """Who we are on the connection."""

    ECMG = "ECMG"
    SCS = "SCS"
    EMMG = "EMMG"
    MUX = "MUX"

    @property
    def side(self) -> Side:
        return Side.SERVER if self in (Role.ECMG, Role.MUX) else Side.CLIENT

    @property
    def spec(self) -> InterfaceSpec:
        return ECMG_SCS if self in (Role.ECMG, Role.SCS) else EMMG_MUX


class NeedData:
    """Sentinel: more bytes are needed before the next event."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed its side; ``truncated`` when a partial frame was left over."""

    truncated: bool = False


@dataclass(slots=True, kw_only=True)
class StreamInfo:
    """What the connection remembers about one stream."""

    state: StreamState
    ecm_id: int | None = None        # ECMG⇔SCS
    data_id: int | None = None       # EMMG⇔MUX


@dataclass(slots=True)
class _Channel:
    state: ChannelState = ChannelState.IDLE
    channel_id: int | None = None
    client_id: int | None = None          # EMMG⇔MUX
    section_tspkt_flag: int | None = None
    streams: dict[int, StreamInfo] = field(default_factory=dict)


_EVENTS = {Role.ECMG: ecmgscs.EVENTS, Role.SCS: ecmgscs.EVENTS,
           Role.EMMG: emmgmux.EVENTS, Role.MUX: emmgmux.EVENTS}


class Connection:
    """One SimulCrypt connection seen from ``role``."""

    def __init__(self, role: Role, *, version: int | None = None,
                 max_message_length: int | None = None) -> None:
        self.role = role
        self.spec = role.spec
        self._events = _EVENTS[role]
        if role.side is Side.CLIENT:
            version = DEFAULT_VERSION if version is None else version
        if version is not None and version not in self.spec.versions:
            raise LocalProtocolError(
                f"{self.spec.interface.value} version {version} is not supported",
                error_status=self.spec.status(ErrorKind.INV_PROTO_VERSION)).with_id(
                "headend.version_not_supported", value=self.spec.interface.value, version=version)
        self._version = version
        self._reply_version: int | None = None
        if max_message_length is None:
            max_message_length = 8192 if role is Role.ECMG else 0xFFFF
        self.max_message_length = max_message_length
        self._buffer = bytearray()
        self._skip = 0
        self._eof = False
        self._closed_reported = False
        self._channel = _Channel()

    # --- state, read-only -------------------------------------------------------------------
    @property
    def our_side(self) -> Side:
        return self.role.side

    @property
    def their_side(self) -> Side:
        return Side.SERVER if self.role.side is Side.CLIENT else Side.CLIENT

    @property
    def version(self) -> int | None:
        """The protocol version in use (None on a server until the peer's first message)."""
        return self._version

    @property
    def channel_state(self) -> ChannelState:
        return self._channel.state

    @property
    def channel_id(self) -> int | None:
        return self._channel.channel_id

    @property
    def client_id(self) -> int | None:
        return self._channel.client_id

    @property
    def section_tspkt_flag(self) -> int | None:
        return self._channel.section_tspkt_flag

    @property
    def streams(self) -> dict[int, StreamInfo]:
        """Streams by id (a copy)."""
        return dict(self._channel.streams)

    def stream_state(self, stream_id: int) -> StreamState:
        info = self._channel.streams.get(stream_id)
        return info.state if info else StreamState.ABSENT

    # --- bytes in ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means end of stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after end of stream",
                                     error_status=self.spec.status(ErrorKind.UNKNOWN_ERROR)).with_id(
                "headend.data_received_after_end")
        self._buffer += data

    @property
    def trailing_data(self) -> int:
        """Bytes buffered but not yet turned into events."""
        return len(self._buffer)

    def next_event(self) -> Event | NeedData | ConnectionClosed:
        """The next event from the peer.

        Raises :class:`PeerProtocolError` for a refused message (already consumed: keep
        calling); answer it with ``send(error_event(exc))``.
        """
        buf = self._buffer
        if self._skip:
            n = min(self._skip, len(buf))
            del buf[:n]
            self._skip -= n
            if self._skip:
                return self._closed(True) if self._eof else NEED_DATA
        if len(buf) < HEADER_SIZE:
            return self._closed(bool(buf)) if self._eof else NEED_DATA
        length = HEADER_SIZE + ((buf[3] << 8) | buf[4])
        if length - HEADER_SIZE > self.max_message_length:
            self._skip = length
            if self._reply_version is None:
                self._reply_version = buf[0]
            raise PeerProtocolError(
                f"message of {length - HEADER_SIZE} bytes exceeds our limit of "
                f"{self.max_message_length}", message_type=(buf[1] << 8) | buf[2],
                error_status=self.spec.status(ErrorKind.MESSAGE_TOO_LONG),
                channel_id=self._channel.channel_id).with_id(
                "headend.message_bytes_exceeds_our", value=length - HEADER_SIZE,
                max_message_length=self.max_message_length)
        if len(buf) < length:
            return self._closed(True) if self._eof else NEED_DATA
        frame = bytes(buf[:length])
        del buf[:length]
        return self._handle_frame(frame)

    def _closed(self, truncated: bool) -> ConnectionClosed:
        self._buffer.clear()
        self._skip = 0
        return ConnectionClosed(truncated=truncated)

    def _handle_frame(self, frame: bytes) -> Event:
        try:
            message = parse_message(frame)
        except SimulcryptFormatError as exc:
            raise PeerProtocolError(str(exc), error_status=exc.error_status,
                                    parameter_type=exc.parameter_type,
                                    channel_id=self._channel.channel_id).with_message_of(exc) from exc
        peer_version = message.protocol_version
        if self._version is None:
            if peer_version in self.spec.versions:
                self._version = peer_version          # answer in the version the peer speaks
            else:
                self._reply_version = peer_version
        if peer_version != self._version:
            channel_id, _ = ids_from(message, self._events.get(message.message_type))
            raise PeerProtocolError(
                f"protocol_version {peer_version} (this connection speaks "
                f"{self._version if self._version is not None else 'one of ' + str(sorted(self.spec.versions))})",
                error_status=self.spec.status(ErrorKind.INV_PROTO_VERSION),
                message_type=message.message_type,
                channel_id=channel_id if channel_id is not None else self._channel.channel_id).with_id(
                "headend.protocol_version_connection_speaks", peer_version=peer_version,
                value=self._version if self._version is not None else "one of " + str(sorted(self.spec.versions)))
        event = decode_event(message, self._events, self.spec)
        self._apply(self.their_side, event)
        return event

    # --- bytes out --------------------------------------------------------------------------
    def send(self, event: Event) -> bytes:
        """Bytes for ``event``; LocalProtocolError if it is not allowed now."""
        if event.SPEC is not self.spec:
            raise LocalProtocolError(
                f"{type(event).__name__} belongs to {event.SPEC.interface.value}",
                error_status=self.spec.status(ErrorKind.INV_MESSAGE_TYPE)).with_id(
                "headend.belongs", name__=type(event).__name__, value=event.SPEC.interface.value)
        version = self._send_version()
        syntax = version if version in self.spec.versions else DEFAULT_VERSION
        message = event.to_message(version, syntax=syntax)
        self._apply(self.our_side, event)
        try:
            return build_message(message)
        except SimulcryptFormatError as exc:
            raise LocalProtocolError(str(exc), error_status=exc.error_status) from exc

    def _send_version(self) -> int:
        if self._version is not None:
            return self._version
        return self._reply_version if self._reply_version is not None else DEFAULT_VERSION

    def error_event(self, exc: PeerProtocolError) -> Event:
        """The channel_error or stream_error that answers ``exc``."""
        status = (exc.error_status,)
        info = error_information_for(exc.parameter_type)
        ch = self._channel
        channel_id = exc.channel_id if exc.channel_id is not None else (ch.channel_id or 0)
        as_stream = (exc.stream_level and exc.stream_id is not None
                     and exc.error_status != self.spec.status(ErrorKind.INV_CHANNEL_ID)
                     and ch.state is ChannelState.OPEN and channel_id == ch.channel_id)
        if self.spec is ECMG_SCS:
            if as_stream:
                assert exc.stream_id is not None
                return ecmgscs.StreamError(ecm_channel_id=channel_id, ecm_stream_id=exc.stream_id,
                                           error_status=status, error_information=info)
            return ecmgscs.ChannelError(ecm_channel_id=channel_id, error_status=status,
                                        error_information=info)
        client_id = ch.client_id or 0
        if as_stream:
            assert exc.stream_id is not None
            return emmgmux.StreamError(client_id=client_id, data_channel_id=channel_id,
                                       data_stream_id=exc.stream_id, error_status=status,
                                       error_information=info)
        return emmgmux.ChannelError(client_id=client_id, data_channel_id=channel_id,
                                    error_status=status, error_information=info)

    # --- the state machine ------------------------------------------------------------------
    def _refuse(self, sender: Side, event: Event, kind: ErrorKind, text: str, *,
                stream_level: bool = False, status: int | None = None) -> Exception:
        code = self.spec.status(kind) if status is None else status
        where = f"{event.KIND.value}: {text}"
        if sender is self.our_side:
            return LocalProtocolError(where, error_status=code)
        return PeerProtocolError(where, error_status=code, channel_id=event.channel_id,
                                 stream_id=event.stream_id, stream_level=stream_level,
                                 message_type=event.MESSAGE_TYPE)

    def _apply(self, sender: Side, event: Event) -> None:
        if event.KIND.is_channel_level:
            self._apply_channel(sender, event)
        else:
            self._apply_stream(sender, event)

    def _apply_channel(self, sender: Side, event: Event) -> None:
        ch = self._channel
        kind = event.KIND
        cid = event.channel_id
        if kind is Kind.CHANNEL_SETUP and ch.state is not ChannelState.IDLE:
            if cid == ch.channel_id:
                raise self._refuse(sender, event, ErrorKind.CHANNEL_ID_IN_USE,
                                   f"channel {cid} is already set up on this connection")
            raise self._refuse(sender, event, ErrorKind.TOO_MANY_CHANNELS,
                               "one channel per connection (TS 103 197 §4.4)")
        if kind is Kind.CHANNEL_ERROR:
            # Rule 4: errors may name any id; they only cancel a pending setup of that id.
            if cid == ch.channel_id:
                new = next_channel_state(sender, kind, ch.state)
                if new is ChannelState.IDLE:
                    ch.state, ch.channel_id, ch.client_id = new, None, None
            return
        if kind is not Kind.CHANNEL_SETUP and (ch.state is ChannelState.IDLE
                                               or cid != ch.channel_id):
            raise self._refuse(sender, event, ErrorKind.INV_CHANNEL_ID,
                               f"channel {cid} is not set up on this connection")
        self._check_client_id(sender, event)
        new = next_channel_state(sender, kind, ch.state)
        if new is None:
            raise self._refuse(sender, event, ErrorKind.INV_MESSAGE,
                               f"not allowed from the {sender.value} while the channel is "
                               f"{ch.state.value}")
        if kind is Kind.CHANNEL_SETUP:
            ch.channel_id = cid
            ch.client_id = getattr(event, "client_id", None)
            ch.section_tspkt_flag = getattr(event, "section_tspkt_flag", None)
        elif kind is Kind.CHANNEL_STATUS and ch.state is ChannelState.OPENING:
            ch.section_tspkt_flag = getattr(event, "section_tspkt_flag", None)
        if new is ChannelState.CLOSED:
            ch.streams.clear()
        ch.state = new

    def _check_client_id(self, sender: Side, event: Event) -> None:
        ch = self._channel
        client_id = getattr(event, "client_id", None)
        if (client_id is not None and ch.client_id is not None and client_id != ch.client_id
                and event.KIND is not Kind.CHANNEL_SETUP):
            raise self._refuse(sender, event, ErrorKind.INV_MESSAGE,
                               f"client_id 0x{client_id:08X} is not this channel's "
                               f"0x{ch.client_id:08X}", status=ME.INV_CLIENT_ID,
                               stream_level=not event.KIND.is_channel_level)

    def _apply_stream(self, sender: Side, event: Event) -> None:
        ch = self._channel
        kind = event.KIND
        cid = event.channel_id
        sid = event.stream_id
        if kind is Kind.STREAM_ERROR:
            if ch.state is ChannelState.OPEN and cid == ch.channel_id and sid in ch.streams:
                assert sid is not None
                new_error_state = next_stream_state(sender, kind, ch.streams[sid].state)
                if new_error_state is StreamState.ABSENT:
                    del ch.streams[sid]
            return
        if kind is Kind.DATA_PROVISION and (cid is None or sid is None):
            # V2+ data_provision may omit the ids (TS 103 197 §6.2.14): find by data_id.
            sid = self._stream_for_data_id(sender, event)
            cid = ch.channel_id
        if ch.state is not ChannelState.OPEN or cid != ch.channel_id:
            raise self._refuse(sender, event, ErrorKind.INV_CHANNEL_ID,
                               f"channel {cid} is not open on this connection")
        self._check_client_id(sender, event)
        assert sid is not None
        info = ch.streams.get(sid)
        state = info.state if info else StreamState.ABSENT
        if kind is Kind.STREAM_SETUP and info is not None:
            raise self._refuse(sender, event, ErrorKind.STREAM_ID_IN_USE,
                               f"stream {sid} is already set up", stream_level=True)
        if kind is not Kind.STREAM_SETUP and info is None:
            raise self._refuse(sender, event, ErrorKind.INV_STREAM_ID,
                               f"stream {sid} is not set up", stream_level=True)
        if kind is Kind.STREAM_SETUP:
            self._check_unique_stream_key(sender, event)
        new = next_stream_state(sender, kind, state)
        if new is None:
            raise self._refuse(sender, event, ErrorKind.INV_MESSAGE,
                               f"not allowed from the {sender.value} while stream {sid} is "
                               f"{state.value}", stream_level=True)
        if kind is Kind.DATA_PROVISION and info is not None and info.data_id is not None:
            data_id = getattr(event, "data_id", None)
            if data_id is not None and data_id != info.data_id:
                raise self._refuse(sender, event, ErrorKind.INV_MESSAGE,
                                   f"data_id {data_id} is not stream {sid}'s {info.data_id}",
                                   status=ME.INV_DATA_ID, stream_level=True)
        if new is StreamState.ABSENT:
            ch.streams.pop(sid, None)
        elif info is None:
            ch.streams[sid] = StreamInfo(state=new, ecm_id=getattr(event, "ecm_id", None),
                                         data_id=getattr(event, "data_id", None))
        else:
            info.state = new

    def _check_unique_stream_key(self, sender: Side, event: Event) -> None:
        """ECM_id / data_id must be unique among the channel's streams."""
        for attr, status in (("ecm_id", EE.ECM_ID_IN_USE), ("data_id", ME.DATA_ID_IN_USE)):
            value = getattr(event, attr, None)
            if value is None:
                continue
            if any(getattr(s, attr) == value for s in self._channel.streams.values()):
                raise self._refuse(sender, event, ErrorKind.INV_MESSAGE,
                                   f"{attr} {value} is already used on this channel",
                                   status=status, stream_level=True)

    def _stream_for_data_id(self, sender: Side, event: Event) -> int:
        data_id = getattr(event, "data_id", None)
        for sid, info in self._channel.streams.items():
            if info.data_id is not None and info.data_id == data_id:
                return sid
        raise self._refuse(sender, event, ErrorKind.INV_MESSAGE,
                           f"no stream carries data_id {data_id}", status=ME.INV_DATA_ID)
