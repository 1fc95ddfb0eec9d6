"""The box's demux: lineup from PAT/PMT/CAT/SDT, ECM/EMM PIDs for our CA system, routing."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from firmware_stub.demux import SCRAMBLING_CISSA, Demux
from tests.unit.firmware_stub.tsutil import Mux, ca, cat, pat, pmt, scrambling, sdt

OURS = 0xDEAD
OTHER = 0x0B00


@dataclass
class Recorder:
    lineups: int = 0
    ecms: list[tuple[int, bytes]] = field(default_factory=list)
    emms: list[tuple[int, bytes]] = field(default_factory=list)
    es: list[tuple[int, bytes]] = field(default_factory=list)

    def on_lineup(self) -> None:
        self.lineups += 1

    def on_ecm(self, pid: int, section: bytes, packet_index: int) -> None:
        self.ecms.append((pid, section))

    def on_emm(self, pid: int, section: bytes, packet_index: int) -> None:
        self.emms.append((pid, section))

    def on_es(self, pid: int, packet: bytes, packet_index: int) -> None:
        self.es.append((pid, packet))


def _psi(mux: Mux) -> bytes:
    return b"".join([
        mux.sections(0, [pat({101: 0x1000, 102: 0x1001, 103: 0x1002})]),
        mux.sections(1, [cat({OURS: 0x300, OTHER: 0x301})]),
        mux.sections(0x11, [sdt({101: "News", 102: "Movies", 103: "Kids"})]),
        # 101: program-level ECM for us; 102: ES-level ECM on video only + another CA system,
        # CISSA; 103: clear
        mux.sections(0x1000, [pmt(101, [(0x100, 2), (0x101, 3)],
                                  program_descriptors=[ca(OURS, 0x200), ca(OTHER, 0x210)])]),
        mux.sections(0x1001, [pmt(102, [(0x110, 2), (0x111, 3)],
                                  program_descriptors=[scrambling(SCRAMBLING_CISSA)],
                                  es_descriptors={0x110: [ca(OURS, 0x201)]})]),
        mux.sections(0x1002, [pmt(103, [(0x120, 2)])]),
    ])


def _run(data: bytes, chunk: int = 777) -> tuple[Demux, Recorder]:
    rec = Recorder()
    dmx = Demux(rec, ca_system_id=OURS)
    for i in range(0, len(data), chunk):
        dmx.feed(data[i:i + chunk])
    dmx.finish()
    return dmx, rec


def test_lineup_names_pids_and_scrambling_modes() -> None:
    mux = Mux()
    dmx, rec = _run(_psi(mux))
    services = {s.service_id: s for s in dmx.services()}
    assert sorted(services) == [101, 102, 103]
    news, movies, kids = services[101], services[102], services[103]
    assert (news.name, movies.name, kids.name) == ("News", "Movies", "Kids")
    assert news.program_ecm_pid == 0x200
    assert [s.ecm_pid for s in news.streams] == [0x200, 0x200]
    assert news.other_ca_systems == (OTHER,)
    assert movies.program_ecm_pid is None
    assert [(s.pid, s.ecm_pid) for s in movies.streams] == [(0x110, 0x201), (0x111, None)]
    assert movies.scrambling_mode == SCRAMBLING_CISSA
    assert news.scrambling_mode == 0x02
    assert kids.ecm_pids == () and not kids.ca_signalled
    assert dmx.emm_pids == (0x300,)
    assert rec.lineups >= 1


def test_sections_and_es_packets_are_routed() -> None:
    mux = Mux()
    ecm = bytes([0x80, 0x70, 0x04]) + b"ecm!"
    emm = bytes([0x82, 0x70, 0x04]) + b"emm!"
    data = _psi(mux) + mux.sections(0x200, [ecm]) + mux.sections(0x300, [emm]) + \
        mux.sections(0x301, [emm]) + b"".join(mux.pes(0x100, b"video" * 50)) + \
        mux.packet(0x555, b"stray" * 10)
    _, rec = _run(data)
    assert rec.ecms == [(0x200, ecm)]
    assert rec.emms == [(0x300, emm)]  # the other CA system's EMM PID is not ours
    assert {pid for pid, _ in rec.es} == {0x100}
    assert len(rec.es) == 2


def test_bad_crc_is_counted_and_last_good_table_stays() -> None:
    mux = Mux()
    good = _psi(mux)
    broken = bytearray(pmt(101, [(0x100, 2)], program_descriptors=[ca(OURS, 0x2FF)], version=1))
    broken[-1] ^= 0xFF
    dmx, _ = _run(good + mux.sections(0x1000, [bytes(broken)]))
    assert dmx.stats.crc_errors == 1
    assert dmx.service(101).program_ecm_pid == 0x200
    assert any(i.kind == "crc_error" and i.pid == 0x1000 for i in dmx.stats.issues)


def test_new_pmt_version_changes_the_ecm_pid() -> None:
    mux = Mux()
    newer = pmt(101, [(0x100, 2)], program_descriptors=[ca(OURS, 0x2FF)], version=1)
    dmx, _ = _run(_psi(mux) + mux.sections(0x1000, [newer]))
    assert dmx.service(101).program_ecm_pid == 0x2FF
    assert 0x2FF in dmx.ecm_pids and 0x200 not in dmx.ecm_pids


def test_continuity_error_is_counted_and_reading_goes_on() -> None:
    mux = Mux()
    data = bytearray(_psi(mux))
    video = b"".join(mux.pes(0x100, b"v" * 400))
    mux.cc[0x100] += 3  # skip three packets
    video += b"".join(mux.pes(0x100, b"w" * 100))
    dmx, rec = _run(bytes(data) + video)
    assert dmx.stats.cc_errors == 1
    assert len(rec.es) == 4


def test_service_only_in_sdt_is_listed() -> None:
    mux = Mux()
    data = mux.sections(0, [pat({101: 0x1000})]) + mux.sections(0x11, [sdt({101: "A", 999: "Gone"})])
    dmx, _ = _run(data)
    gone = dmx.service(999)
    assert gone.in_sdt and not gone.in_pat and not gone.has_pmt
    assert [s.service_id for s in dmx.services()] == [101, 999]


class BulkRecorder(Recorder):
    """The same listener with the fast path: blocks are unpacked back into packets."""

    def on_es_block(self, block: bytes, packet_index: int) -> None:
        for i in range(0, len(block), 188):
            self.es.append((((block[i + 1] & 0x1F) << 8) | block[i + 2], block[i:i + 188]))


def _stream_for_bulk() -> bytes:
    mux = Mux()
    parts = [_psi(mux)]
    for k in range(30):
        parts += mux.pes(0x100, bytes([k]) * 900)
        parts += mux.pes(0x101, bytes([k]) * 300)
        if k % 7 == 0:
            parts.append(mux.sections(0x200, [bytes([0x80, 0x70, 0x02, k, k])]))
    return b"".join(parts)


@given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["cc", "drop", "dup", "tei",
                                                                 "junk"])), max_size=6))
def test_fast_path_sees_exactly_what_the_packet_path_sees(
        damage: list[tuple[int, str]]) -> None:
    data = bytearray(_stream_for_bulk())
    n = len(data) // 188
    for where, kind in damage:
        pos = (where % n) * 188
        if kind == "cc":
            data[pos + 3] ^= 0x05
        elif kind == "drop":
            del data[pos:pos + 188]
        elif kind == "dup":
            data[pos:pos] = data[pos:pos + 188]
        elif kind == "tei":
            data[pos + 1] |= 0x80
        else:
            data[pos:pos] = b"\x47\x00" * 40
        n = len(data) // 188
    results = []
    for listener in (Recorder(), BulkRecorder()):
        dmx = Demux(listener, ca_system_id=OURS)
        dmx.feed(bytes(data[:5000]))  # the lineup first, then the fast path on
        dmx.bulk_pids = frozenset({0x100, 0x101})
        dmx.feed(bytes(data[5000:]))
        dmx.finish()
        results.append((listener.es, listener.ecms, dmx.stats.counters()))
    assert results[0] == results[1]
