"""The live head-end's MUX side without sockets: the section packer, the client lanes (pacing
at the allocation, bounded queue, drops counted), the sessions' decisions (refusals with the
right error_status, allocations never above the configured maximum) and the CAT."""

from __future__ import annotations

import random

import pytest

from cas.formats import psi, ts
from cas.formats.simulcrypt import EmmgMuxError as ME
from cas.formats.simulcrypt import EmmgMuxParam as MP
from cas.headend.simulcrypt import Connection, Role
from cas.headend.simulcrypt import emmgmux as M
from cas.headend.simulcrypt.events import Event
from cas.headend.simulcrypt.mux import MuxRegistry
from cas.live.config_simulcrypt import MuxClientConfig, MuxDataType, MuxListenConfig
from cas.live.metrics import LiveMetrics
from cas.live.muxin import (
    PAYLOAD_SIZE,
    ClientLane,
    LiveMuxServer,
    LiveMuxSession,
    MuxInputs,
    SectionPacker,
    cat_descriptors,
)
from cas.live.psi import CAT_PID, MuxSettings, build_tables
from tests.unit.headend.simulcrypt.helpers import deliver

EMMG = 0x4ADB0001
PDG = 0x00000007
PID = 0x0C40


def section(i: int, size: int = 60) -> bytes:
    body = i.to_bytes(4, "big") + bytes(size - 7)
    return bytes((0x88, 0x70 | (len(body) >> 8), len(body) & 0xFF)) + body


def numbers(sections: list[bytes]) -> list[int]:
    return [int.from_bytes(s[3:7], "big") for s in sections]


def reassemble(packets: list[bytes], pid: int = PID) -> tuple[list[bytes], ts.SectionReassembler]:
    r = ts.SectionReassembler(pid, check_crc=False)
    return r.feed_many(packets), r


def client(client_id: int = EMMG, *, pid: int = PID, kbps: int = 64,
           data_type: MuxDataType = MuxDataType.EMM, data_ids: frozenset[int] = frozenset({1}),
           private: bytes = b"") -> MuxClientConfig:
    return MuxClientConfig(index=1, client_id=client_id, pid=pid, max_bandwidth_kbps=kbps,
                           data_type=data_type, data_ids=data_ids,
                           ca_system_id=client_id >> 16, private_data=private)


# --- packing ---------------------------------------------------------------------------------

def test_packer_keeps_sections_across_calls_and_signals_every_start() -> None:
    rng = random.Random(7)
    sizes = [rng.randint(8, 500) for _ in range(400)]
    # plus the awkward case: a section starting on the last payload byte of a packet
    sizes[:2] = [550, 40]  # s1 starts at byte 183 of the third packet
    packer = SectionPacker(PID)
    packets: list[bytes] = []
    for i, size in enumerate(sizes):
        packer.add(section(i, size))
        while (p := packer.next_packet(flush=False)) is not None:
            packets.append(p)
        if rng.random() < 0.1:  # the lane ran dry: stuff and go on
            while (p := packer.next_packet(flush=True)) is not None:
                packets.append(p)
    while (p := packer.next_packet(flush=True)) is not None:
        packets.append(p)
    assert all(len(p) == 188 and p[0] == 0x47 for p in packets)
    got, r = reassemble(packets)
    assert numbers(got) == list(range(len(sizes)))
    assert not r.counts  # no continuity error, no bad pointer
    # back to back: the stuffing is at most one packet per flush, not one per section
    assert len(packets) < sum(sizes) / PAYLOAD_SIZE * 1.15


def test_packer_waits_for_a_full_packet_unless_flushed() -> None:
    packer = SectionPacker(PID)
    packer.add(section(0, 100))
    assert packer.next_packet(flush=False) is None
    packet = packer.next_packet(flush=True)
    assert packet is not None and packet[1] & 0x40 and packet[4] == 0  # PUSI, pointer 0
    assert packet[5 + 100:] == b"\xff" * 83


# --- lanes -------------------------------------------------------------------------------------

def _run(lane: ClientLane, seconds: float, window_s: float = 0.02) -> list[list[bytes]]:
    out = []
    t = 0.0
    for _ in range(round(seconds / window_s)):
        out.append(lane.window(t, t + window_s))
        t += window_s
    return out


def test_lane_airs_at_the_allocation_and_never_bursts_beyond_it() -> None:
    lane = ClientLane(client(kbps=64), queue_s=10)
    assert lane.put([section(i, 100) for i in range(300)], False) == 0  # 30 kB, 3.75 s at 64k
    windows = _run(lane, 6.0)
    per_window = [len(w) for w in windows]
    rate = 64_000 / 8  # payload bytes per second
    # every second of multiplex time: at most the allocation in payload (+ one burst)
    for start in range(0, len(windows) - 50 + 1):
        sent = sum(per_window[start:start + 50]) * PAYLOAD_SIZE
        assert sent <= rate * 1.0 + rate * 0.04 + 188
    got, r = reassemble([p for w in windows for p in w])
    assert numbers(got) == list(range(300)) and not r.counts
    # it did keep up with the allocation (30,000 bytes of sections ≈ 3.8 s at 64 kbit/s)
    busy = max(i for i, n in enumerate(per_window) if n) + 1
    assert busy * 0.02 <= 30_000 / rate + 0.05  # a saturated lane loses no credit


def test_lane_queue_is_bounded_and_drops_are_counted() -> None:
    metrics = LiveMetrics()
    cfg = MuxListenConfig(host="127.0.0.1", port=0, queue_s=0.5, clients=(client(kbps=64),))
    inputs = MuxInputs(cfg, metrics, clock=lambda: 100.0)
    lane = inputs.lanes[EMMG]
    assert lane.max_queue_bytes == 4096  # 0.5 s at 64 kbit/s is below the minimum
    dropped = inputs.put(EMMG, [section(i, 100) for i in range(60)], False)
    assert dropped == 60 - 4096 // 100
    assert metrics.value("mux_dropped_total", client_id="0x4ADB0001") == dropped
    assert metrics.value("mux_sections_total", client_id="0x4ADB0001") == 60 - dropped
    assert metrics.value("mux_bytes_total", client_id="0x4ADB0001") == (60 - dropped) * 100
    # what was kept goes on air in order; the dropped ones are the newest
    data = bytearray()
    for n in range(200):
        data += inputs.window(n * 0.02, (n + 1) * 0.02).data
    assert lane.queued_bytes == 0
    got, _ = reassemble([bytes(data[i:i + 188]) for i in range(0, len(data), 188)])
    assert numbers(got) == list(range(60 - dropped))


def test_ts_packet_datagrams_go_on_the_clients_pid_with_our_counter() -> None:
    lane = ClientLane(client(kbps=1000), queue_s=2)
    pk = ts.Packetizer(0x0999, continuity_counter=9)
    packets = [p for i in range(20) for p in pk.packetize(section(i, 300))]
    lane.put([b"".join(packets[:3]), *packets[3:]], True)
    aired = [p for w in _run(lane, 1.0) for p in w]
    assert len(aired) == len(packets)
    assert {((p[1] & 0x1F) << 8) | p[2] for p in aired} == {PID}
    got, r = reassemble(aired)
    assert numbers(got) == list(range(20)) and not r.counts


def test_ts_packet_lane_airs_exactly_its_allocation_in_ts_bytes() -> None:
    # the client counts 188 bytes per packet datagram: so does the lane (184 would fall
    # behind a client sending at its allocation, and its queue would overflow)
    lane = ClientLane(client(kbps=64), queue_s=60)
    pk = ts.Packetizer(PID)
    lane.put([p for i in range(200) for p in pk.packetize(section(i, 150))], True)
    aired = sum(len(w) for w in _run(lane, 2.0))
    assert 2.0 * 8000 / 188 - 1 <= aired <= (2.0 * 8000 + 320 + 188) / 188


def test_window_spreads_each_lane_over_the_window() -> None:
    cfg = MuxListenConfig(host="127.0.0.1", port=0,
                          clients=(client(kbps=2000), client(EMMG + 1, pid=PID + 1, kbps=2000)))
    inputs = MuxInputs(cfg)
    for cid in (EMMG, EMMG + 1):
        inputs.put(cid, [section(i, 180) for i in range(20)], False)
    block = inputs.window(1.0, 1.02)
    assert len(block) > 2 and all(1.0 <= t < 1.02 for t in block.times)


# --- CAT -----------------------------------------------------------------------------------------

def test_cat_has_a_descriptor_per_emm_client_and_none_for_private_data() -> None:
    clients = (client(private=b"\x01\x02"),
               client(PDG, pid=0x0C41, data_type=MuxDataType.PRIVATE))
    tables = build_tables([], MuxSettings(ca_system_id=0xDEAD, emm_pid=0x0C00,
                                          cat_descriptors=cat_descriptors(clients)))
    cat = psi.parse_cat(tables[CAT_PID][0])
    assert cat.descriptors == (
        psi.CaDescriptor(ca_system_id=0xDEAD, ca_pid=0x0C00),
        psi.CaDescriptor(ca_system_id=0x4ADB, ca_pid=PID, private_data=b"\x01\x02"))


# --- sessions ------------------------------------------------------------------------------------

class Wire:
    def __init__(self, session: LiveMuxSession, *, version: int = 2) -> None:
        self.session = session
        self.emmg = Connection(Role.EMMG, version=version)

    def send(self, event: Event) -> list[Event]:
        answer = self.session.receive(self.emmg.send(event))
        return [e for e in deliver(answer, self.emmg) if isinstance(e, Event)] if answer else []

    def one(self, event: Event) -> Event:
        got = self.send(event)
        assert len(got) == 1, got
        return got[0]

    def channel(self, cid: int = EMMG, channel: int = 1) -> Event:
        return self.one(M.ChannelSetup(client_id=cid, data_channel_id=channel,
                                       section_tspkt_flag=0))

    def stream(self, cid: int = EMMG, sid: int = 1, data_id: int = 1, data_type: int = 0,
               channel: int = 1) -> Event:
        return self.one(M.StreamSetup(client_id=cid, data_channel_id=channel, data_stream_id=sid,
                                      data_id=data_id, data_type=data_type))

    def bw(self, asked: int | None, cid: int = EMMG, sid: int = 1, channel: int = 1) -> Event:
        return self.one(M.StreamBwRequest(client_id=cid, data_channel_id=channel,
                                          data_stream_id=sid, bandwidth_kbps=asked))


def _inputs(*clients: MuxClientConfig, metrics: LiveMetrics | None = None,
            queue_s: float = 2.0) -> MuxInputs:
    cfg = MuxListenConfig(host="127.0.0.1", port=0, queue_s=queue_s,
                          clients=clients or (client(kbps=200, data_ids=frozenset({1, 2})),
                                              client(PDG, pid=0x0C41,
                                                     data_type=MuxDataType.PRIVATE,
                                                     data_ids=frozenset())))
    return MuxInputs(cfg, metrics)


def _wire(inputs: MuxInputs, registry: MuxRegistry | None = None, version: int = 2) -> Wire:
    server = LiveMuxServer(inputs)
    session = LiveMuxSession(server.config, inputs, registry or server.registry)
    return Wire(session, version=version)


def _status(event: Event) -> tuple[type, tuple[int, ...]]:
    return type(event), tuple(getattr(event, "error_status", ()))


def test_unknown_client_is_refused_with_inv_client_id() -> None:
    wire = _wire(_inputs())
    answer = wire.channel(0x12340001)
    assert _status(answer) == (M.ChannelError, (ME.INV_CLIENT_ID,))
    assert isinstance(answer, M.ChannelError)
    assert answer.error_information == (MP.CLIENT_ID.to_bytes(2, "big"),)


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_versions_2_to_5_are_accepted(version: int) -> None:
    assert isinstance(_wire(_inputs(), version=version).channel(), M.ChannelStatus)


def test_version_1_is_refused() -> None:
    answer = _wire(_inputs(), version=1).channel()
    assert _status(answer) == (M.ChannelError, (ME.INV_PROTO_VERSION,))


def test_stream_refusals() -> None:
    wire = _wire(_inputs())
    assert isinstance(wire.channel(), M.ChannelStatus)
    assert _status(wire.stream(data_id=9)) == (M.StreamError, (ME.INV_DATA_ID,))
    answer = wire.stream(data_type=1)  # private data from an EMM client
    assert _status(answer) == (M.StreamError, (ME.INV_PARAM_VALUE,))
    assert isinstance(answer, M.StreamError)
    assert answer.error_information == (MP.DATA_TYPE.to_bytes(2, "big"),)
    assert isinstance(wire.stream(), M.StreamStatus)
    pdg = _wire(_inputs())
    pdg.channel(PDG)
    assert isinstance(pdg.stream(PDG, data_id=77, data_type=1), M.StreamStatus)
    assert _status(pdg.stream(PDG, sid=2, data_id=78, data_type=0))[1] == (ME.INV_PARAM_VALUE,)


def test_allocation_never_exceeds_the_clients_maximum_over_its_streams() -> None:
    inputs = _inputs()
    wire = _wire(inputs)
    wire.channel()
    wire.stream(sid=1, data_id=1)
    wire.stream(sid=2, data_id=2)
    granted = [getattr(wire.bw(asked, sid=sid), "bandwidth_kbps", None)
               for asked, sid in ((500, 1), (None, 1), (120, 1))]
    assert granted == [200, 200, 120]
    assert inputs.lanes[EMMG].rate_bps == 120_000
    assert getattr(wire.bw(500, sid=2), "bandwidth_kbps", None) == 80  # 200 - 120
    assert inputs.lanes[EMMG].rate_bps == 200_000
    assert _status(wire.bw(10, sid=1)) == (M.StreamBwAllocation, ())
    wire.bw(200, sid=2)  # takes what stream 1 left: 190
    # nothing left for stream 1 beyond its own 10: a request is still answered with what is left
    assert getattr(wire.bw(300, sid=1), "bandwidth_kbps", None) == 10


def test_no_bandwidth_left_is_exceeded_bw() -> None:
    inputs = _inputs()
    wire = _wire(inputs)
    wire.channel()
    wire.stream(sid=1, data_id=1)
    wire.stream(sid=2, data_id=2)
    wire.bw(200, sid=1)
    assert _status(wire.bw(10, sid=2)) == (M.StreamError, (ME.EXCEEDED_BW,))


def test_overrun_drops_counts_and_tells_the_client() -> None:
    metrics = LiveMetrics()
    inputs = _inputs(client(kbps=16), metrics=metrics, queue_s=0.1)
    wire = _wire(inputs)
    wire.channel()
    wire.stream()
    answers = []
    for n in range(4):
        answers += wire.send(M.DataProvision(
            client_id=EMMG, data_channel_id=1, data_stream_id=1, data_id=1,
            datagrams=tuple(section(n * 20 + i, 200) for i in range(20))))
    assert [_status(a) for a in answers] == [(M.StreamError, (ME.EXCEEDED_BW,))]  # once a second
    assert metrics.value("mux_dropped_total", client_id="0x4ADB0001") == 80 - 4096 // 200
    assert inputs.lanes[EMMG].queued_bytes == 4096 // 200 * 200


def test_connected_gauge_follows_channels() -> None:
    metrics = LiveMetrics()
    inputs = _inputs(metrics=metrics)
    server = LiveMuxServer(inputs)
    wires = [Wire(LiveMuxSession(server.config, inputs, server.registry)) for _ in range(2)]
    for n, w in enumerate(wires, 1):
        w.channel(channel=n)
    assert metrics.value("mux_clients_connected", client_id="0x4ADB0001") == 2
    wires[0].send(M.ChannelClose(client_id=EMMG, data_channel_id=1))
    assert metrics.value("mux_clients_connected", client_id="0x4ADB0001") == 1
    wires[1].session.close(commit=False)
    assert metrics.value("mux_clients_connected", client_id="0x4ADB0001") == 0


def test_a_client_pid_on_a_service_pid_is_a_config_error() -> None:
    import tomllib
    from pathlib import Path

    from cas.errors import ConfigError
    from cas.live.config import parse_config
    from cas.live.psi import ServiceLayout
    from cas.live.service import HeadendService

    text = ("[output]\nurl = \"-\"\n[[service]]\nchannel = 1\nsource = \"lavfi:testsrc\"\n"
            "[mux]\nlisten = \"127.0.0.1:0\"\n[[mux.client]]\nclient_id = 0x4ADB0001\n"
            "pid = 0x0101\nmax_bandwidth_kbps = 10\n")
    cfg = parse_config(tomllib.loads(text), file="h.toml", base=Path("/nonexistent"))
    layout = ServiceLayout(service_id=1001, channel_number=1, name="x", pmt_pid=0x1000,
                           pcr_pid=0x0100, ecm_pid=0x0C10,
                           streams=(psi.PmtStream(stream_type=2, elementary_pid=0x0100),
                                    psi.PmtStream(stream_type=3, elementary_pid=0x0101)))
    with pytest.raises(ConfigError, match=r"\[mux.client.1\].pid: 0x101 is a PID of service 1001"):
        HeadendService(cfg)._mux_inputs([layout])
    ok = HeadendService(cfg)._mux_inputs([layout.__class__(
        service_id=1001, channel_number=1, name="x", pmt_pid=0x1000, pcr_pid=0x0100,
        streams=layout.streams[:1])])
    assert ok is not None and list(ok.lanes) == [0x4ADB0001]
