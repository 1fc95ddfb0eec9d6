"""The mux's decisions (MuxSession) wired to an EMMG Connection in memory, and the sinks."""

from __future__ import annotations

import io

import pytest

from cas.errors import FormatError
from cas.formats import ts
from cas.formats.simulcrypt import EmmgMuxError as ME
from cas.formats.simulcrypt import EmmgMuxParam as MP
from cas.headend.simulcrypt import Connection, Role
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.emmg import TokenBucket
from cas.headend.simulcrypt.events import Event
from cas.headend.simulcrypt.mux import (
    MemorySink,
    MuxConfig,
    MuxRegistry,
    MuxSession,
    TsFileSink,
    check_datagram,
)

from .helpers import deliver, u16

CLIENT = 0xDEAD0001


def section(i: int) -> bytes:
    body = i.to_bytes(4, "big") + bytes(8)
    return bytes((0x82, 0x70, len(body))) + body


class Wire:
    def __init__(self, session: MuxSession, *, flag: int = 0) -> None:
        self.session = session
        self.emmg = Connection(Role.EMMG)
        self.flag = flag

    def send(self, event: Event) -> list[Event]:
        answer = self.session.receive(self.emmg.send(event))
        got = deliver(answer, self.emmg) if answer else []
        return [e for e in got if isinstance(e, Event)]

    def one(self, event: Event) -> Event:
        got = self.send(event)
        assert len(got) == 1, got
        return got[0]

    def open(self, *, data_id: int = 9) -> None:
        assert isinstance(self.one(M.ChannelSetup(client_id=CLIENT, data_channel_id=1,
                                                  section_tspkt_flag=self.flag)), M.ChannelStatus)
        status = self.one(M.StreamSetup(client_id=CLIENT, data_channel_id=1, data_stream_id=1,
                                        data_id=data_id, data_type=0))
        assert isinstance(status, M.StreamStatus), status

    def provision(self, *datagrams: bytes) -> list[Event]:
        return self.send(M.DataProvision(client_id=CLIENT, data_channel_id=1, data_stream_id=1,
                                         data_id=9, datagrams=datagrams))

    def test_stream(self) -> Event:
        return self.one(M.StreamTest(client_id=CLIENT, data_channel_id=1, data_stream_id=1))


def _session(sink: MemorySink, registry: MuxRegistry | None = None,
             config: MuxConfig | None = None) -> MuxSession:
    return MuxSession(config or MuxConfig(), sink, registry or MuxRegistry())


def test_allocation_is_capped() -> None:
    wire = Wire(_session(MemorySink(), config=MuxConfig(max_bandwidth_kbps=300)))
    wire.open()
    for asked, granted in ((100, 100), (5000, 300), (None, 300)):
        answer = wire.one(M.StreamBwRequest(client_id=CLIENT, data_channel_id=1,
                                            data_stream_id=1, bandwidth_kbps=asked))
        assert answer == M.StreamBwAllocation(client_id=CLIENT, data_channel_id=1,
                                              data_stream_id=1, bandwidth_kbps=granted)


def test_written_as_they_come_until_the_stream_confirms() -> None:
    sink = MemorySink()
    wire = Wire(_session(sink))
    wire.open()
    assert wire.provision(section(0), section(1)) == []
    assert sink.datagrams == [section(0), section(1)]
    assert isinstance(wire.test_stream(), M.StreamStatus)
    # confirming mode: held until the next stream_test
    wire.provision(section(2))
    assert len(sink.datagrams) == 2
    wire.test_stream()
    assert sink.datagrams[-1] == section(2)
    assert sink.by_stream[(CLIENT, 9)] == [section(i) for i in range(3)]


def test_held_datagrams_are_dropped_when_the_connection_breaks() -> None:
    sink = MemorySink()
    wire = Wire(_session(sink))
    wire.open()
    wire.test_stream()
    wire.provision(section(0))
    wire.session.receive(b"")                 # end of stream without confirmation
    assert sink.datagrams == []
    assert wire.session.closed and wire.session.registry.data_ids == {}


def test_close_commits() -> None:
    sink = MemorySink()
    wire = Wire(_session(sink))
    wire.open()
    wire.test_stream()
    wire.provision(section(5))
    assert isinstance(wire.one(M.StreamCloseRequest(client_id=CLIENT, data_channel_id=1,
                                                    data_stream_id=1)), M.StreamCloseResponse)
    assert sink.datagrams == [section(5)]
    assert wire.send(M.ChannelClose(client_id=CLIENT, data_channel_id=1)) == []
    assert wire.session.closed and wire.session.registry.channels == set()


def test_bad_datagrams_are_refused() -> None:
    sink = MemorySink()
    wire = Wire(_session(sink))
    wire.open()
    answer = wire.provision(section(1)[:-1])
    assert answer == [M.StreamError(client_id=CLIENT, data_channel_id=1, data_stream_id=1,
                                    error_status=(ME.INV_PARAM_VALUE,),
                                    error_information=(u16(MP.DATAGRAM),))]
    assert sink.datagrams == []


def test_mux_wide_refusals() -> None:
    registry = MuxRegistry()
    first = Wire(_session(MemorySink(), registry))
    first.open()
    second = Wire(_session(MemorySink(), registry))
    answer = second.one(M.ChannelSetup(client_id=CLIENT, data_channel_id=1, section_tspkt_flag=0))
    assert isinstance(answer, M.ChannelError) and answer.error_status == (ME.CHANNEL_ID_IN_USE,)
    second.one(M.ChannelSetup(client_id=CLIENT, data_channel_id=2, section_tspkt_flag=0))
    answer = second.one(M.StreamSetup(client_id=CLIENT, data_channel_id=2, data_stream_id=1,
                                      data_id=9, data_type=0))
    assert isinstance(answer, M.StreamError) and answer.error_status == (ME.DATA_ID_IN_USE,)
    picky = Wire(_session(MemorySink(), config=MuxConfig(client_ids=frozenset({1}))))
    answer = picky.one(M.ChannelSetup(client_id=CLIENT, data_channel_id=1, section_tspkt_flag=0))
    assert isinstance(answer, M.ChannelError) and answer.error_status == (ME.INV_CLIENT_ID,)


def test_udp_provision_reaches_the_right_session() -> None:
    sink = MemorySink()
    wire = Wire(_session(sink))
    wire.open()
    wire.test_stream()
    udp = M.DataProvision(client_id=CLIENT, data_id=9, datagrams=(section(3),))
    assert wire.session.receive_udp(udp)
    assert sink.datagrams == [section(3)]           # UDP is never held
    assert not wire.session.receive_udp(M.DataProvision(client_id=1, data_id=9,
                                                        datagrams=(section(4),)))


def test_check_datagram() -> None:
    check_datagram(section(1), False)
    check_datagram(b"\x47" + bytes(187), True)
    for bad, packets in ((b"\x47" + bytes(100), True), (bytes(188), True),
                         (section(1) + b"\x00", False), (b"\xff\x70\x00", False)):
        with pytest.raises(FormatError):
            check_datagram(bad, packets)


def test_ts_file_sink_packetises_sections_and_keeps_packets() -> None:
    out = io.BytesIO()
    sink = TsFileSink(out, pid=0x0C00, pids={7: 0x0C07})
    sink.write(client_id=1, data_id=9, datagrams=[section(1), section(2)], ts_packets=False)
    sink.write(client_id=1, data_id=7, datagrams=[section(3)], ts_packets=False)
    packet = bytes((0x47, 0x1F, 0xFF, 0x10)) + bytes(184)
    sink.write(client_id=1, data_id=9, datagrams=[packet], ts_packets=True)
    data = out.getvalue()
    packets = [data[i:i + 188] for i in range(0, len(data), 188)]
    assert [ts.pid_of(p) for p in packets] == [0x0C00, 0x0C07, 0x1FFF]
    reassembler = ts.SectionReassembler(0x0C00, check_crc=False)
    assert reassembler.feed(packets[0]) == [section(1), section(2)]
    assert (sink.packets, sink.sections) == (3, 3)


def test_token_bucket_paces_at_the_rate() -> None:
    """A message goes when the bucket is full and leaves a debt the next ones wait for, so
    the average never exceeds the rate."""
    now = [0.0]
    bucket = TokenBucket(80_000, burst_s=0.0, clock=lambda: now[0])   # 10 000 bytes/s
    assert bucket.delay_for(1000) == 0.0
    assert bucket.delay_for(1000) == pytest.approx(0.2)
    now[0] = 0.2
    assert bucket.delay_for(1000) == 0.0
    sent, t = 0, 0.2
    for _ in range(100):
        delay = bucket.delay_for(500)
        while delay > 0:
            t += delay
            now[0] = t
            delay = bucket.delay_for(500)
        sent += 500
    assert sent <= 10_000 * (t - 0.2) + 1500
    bucket.set_rate(8_000)
    assert bucket.delay_for(1000) == pytest.approx(1000 * 8 / 8_000 + 0.5, rel=0.2)
