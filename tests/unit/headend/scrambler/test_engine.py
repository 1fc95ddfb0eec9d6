"""The scrambler against independent descramblers, PSI parsers and ffprobe."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
from pathlib import Path

import pytest

from cas.errors import StreamError, UsageError
from cas.formats import psi
from cas.formats.sections import ShortSection, build_section
from cas.headend.scrambler import (
    Algorithm,
    CwLogEntry,
    ScrambleConfig,
    Scrambler,
    ScrambleReport,
    payload_cipher,
    read_cw_log,
    rewrite_pmt,
    write_cw_log_line,
)
from cas.headend.teststream import TestService
from tests.fixtures.streams import clear_stream
from tests.unit.headend.helpers import (
    FakeServiceCrypto,
    descramble,
    fake_ecm_fields,
    packets,
    pid,
    sections_on,
    without_pids,
)

SERVICES = (TestService(service_id=101, name="Alpha"), TestService(service_id=202, name="Beta"))


@pytest.fixture(scope="module")
def clear_ts(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return clear_stream(tmp_path_factory, SERVICES, 3.5)


def _scramble(clear: bytes, algorithm: Algorithm, **kw: object
              ) -> tuple[bytes, ScrambleReport, list[dict[str, object]], dict[int, FakeServiceCrypto]]:
    crypto = {101: FakeServiceCrypto(channel_id=1, cw_length=algorithm.cw_length),
              202: FakeServiceCrypto(channel_id=2, cw_length=algorithm.cw_length)}
    emms = [build_section(ShortSection(table_id=0x82, payload=bytes([i]) * 90)) for i in range(3)]
    log = io.StringIO()
    cfg = ScrambleConfig(algorithm=algorithm, crypto_period_ms=1000, ecm_repetition_ms=100,
                         **kw)  # type: ignore[arg-type]
    scr = Scrambler(cfg, crypto, payload_cipher(algorithm), emm_sections=emms,
                    cw_log=lambda e: write_cw_log_line(log, e))
    out = io.BytesIO()
    report = scr.run(io.BytesIO(clear), out)
    return out.getvalue(), report, read_cw_log(log.getvalue().splitlines()), crypto


@pytest.mark.parametrize("algorithm", [Algorithm.CSA2, Algorithm.CISSA])
def test_descrambling_with_the_logged_cws_gives_back_the_clear_payloads(
        clear_ts: bytes, algorithm: Algorithm) -> None:
    scrambled, report, log, _ = _scramble(clear_ts, algorithm)
    es = {p: s.service_id for s in report.services for p in s.es_pids}
    assert report.scrambled_packets > 1000
    assert report.crypto_periods >= 4
    # Every ES packet with a payload worth scrambling is flagged in the output.
    flagged = [p for p in packets(scrambled) if pid(p) in es and p[3] >> 6]
    assert len(flagged) == report.scrambled_packets
    # The payloads are really changed...
    inserted = {1, report.emm_pid, *(s.ecm_pid for s in report.services),
                *(s.pmt_pid for s in report.services)}
    assert without_pids(scrambled, inserted) != without_pids(clear_ts, inserted)
    # ... and an independent descrambler with only the CW log restores them byte for byte.
    clear_again, count = descramble(scrambled, log, es, algorithm.value)
    assert count == report.scrambled_packets
    assert without_pids(clear_again, inserted) == without_pids(clear_ts, inserted)


def test_cw_log_has_one_line_per_channel_per_crypto_period(clear_ts: bytes) -> None:
    _, report, log, crypto = _scramble(clear_ts, Algorithm.CSA2)
    for svc in (101, 202):
        lines = [e for e in log if e["service_id"] == svc]
        cps = [e["cp"] for e in lines]
        assert cps == list(range(len(cps))) and len(cps) == report.crypto_periods
        for e in lines:
            assert e["parity"] == ("odd" if int(str(e["cp"])) % 2 else "even")
            assert bytes.fromhex(str(e["cw"])) == crypto[svc].cw(int(str(e["cp"])))
        ranges = [(int(str(e["first_packet"])), int(str(e["last_packet"]))) for e in lines]
        assert all(a <= b < c for (a, b), (c, _) in itertools.pairwise(ranges))


def test_ecms_carry_current_and_next_cw_and_precede_every_switch(clear_ts: bytes) -> None:
    scrambled, report, _, crypto = _scramble(clear_ts, Algorithm.CSA2)
    plist = packets(scrambled)
    for svc in report.services:
        es_pids = set(svc.es_pids)
        ecms = list(sections_on(scrambled, svc.ecm_pid))
        # ~ one ECM per 100 ms over 3.5 s
        assert 30 <= len(ecms) <= 40
        for index, section in ecms:
            table_id, channel, cp, even, odd = fake_ecm_fields(section, 8)
            assert table_id == 0x80 | (cp & 1)
            assert channel == crypto[svc.service_id].channel_id
            cur, nxt = (even, odd) if cp % 2 == 0 else (odd, even)
            assert cur == crypto[svc.service_id].cw(cp)
            assert nxt == crypto[svc.service_id].cw(cp + 1)
            # The next scrambled packet of the service uses this ECM's current parity.
            after = next((p for p in plist[index:] if pid(p) in es_pids and p[3] >> 6), None)
            if after is not None:
                assert after[3] >> 6 == 2 | (cp & 1)
        # Before any packet of crypto-period n+1 the box has seen an ECM holding CW(n+1).
        first_ecm = ecms[0][0]
        first_es = next(i for i, p in enumerate(plist) if pid(p) in es_pids and p[3] >> 6)
        assert first_ecm < first_es


def test_psi_announces_ecm_and_emm_pids(clear_ts: bytes) -> None:
    scrambled, report, _, _ = _scramble(clear_ts, Algorithm.CISSA)
    cats = [s for _, s in sections_on(scrambled, 1)]
    assert cats, "no CAT"
    refs = psi.find_ca_descriptors(cats[0], 0xDEAD)
    assert [r.ca_pid for r in refs] == [report.emm_pid]
    for svc in report.services:
        pmts = [s for _, s in sections_on(scrambled, svc.pmt_pid)]
        assert pmts
        pmt = psi.parse_pmt(pmts[0])
        assert pmt.program_number == svc.service_id
        cas_ = [d for d in pmt.descriptors if isinstance(d, psi.CaDescriptor)]
        assert [(d.ca_system_id, d.ca_pid) for d in cas_] == [(0xDEAD, svc.ecm_pid)]
        modes = [d.scrambling_mode for d in pmt.descriptors
                 if isinstance(d, psi.ScramblingDescriptor)]
        assert modes == [0x10]
        assert {s.elementary_pid for s in pmt.streams} == set(svc.es_pids)
    # Continuity counters of the inserted PIDs run without a gap.
    for p in (1, report.emm_pid, *(s.ecm_pid for s in report.services)):
        ccs = [pk[3] & 0x0F for pk in packets(scrambled) if pid(pk) == p]
        assert all((b - a) % 16 == 1 for a, b in itertools.pairwise(ccs)), hex(p)


def test_csa2_pmt_has_no_scrambling_descriptor_and_custom_pids(clear_ts: bytes) -> None:
    scrambled, report, _, _ = _scramble(clear_ts, Algorithm.CSA2, emm_pid=0x0777,
                                        ecm_pids={101: 0x0701}, ca_system_id=0x4ADE)
    assert report.emm_pid == 0x0777
    svc = next(s for s in report.services if s.service_id == 101)
    assert svc.ecm_pid == 0x0701
    pmt = psi.parse_pmt(next(s for _, s in sections_on(scrambled, svc.pmt_pid)))
    assert not [d for d in pmt.descriptors if isinstance(d, psi.ScramblingDescriptor)]
    assert [d.ca_system_id for d in pmt.descriptors if isinstance(d, psi.CaDescriptor)] == [0x4ADE]


def test_emm_carousel_carries_the_emm_sections(clear_ts: bytes) -> None:
    scrambled, report, _, _ = _scramble(clear_ts, Algorithm.CSA2, emm_bitrate_bps=16_000)
    emms = [s for _, s in sections_on(scrambled, report.emm_pid)]
    assert emms[:3] == [build_section(ShortSection(table_id=0x82, payload=bytes([i]) * 90))
                        for i in range(3)]
    assert len(emms) > 3  # the carousel loops
    # 16 kbit/s over 3.5 s is about 37 packets
    assert 25 <= report.emm_packets <= 45


def test_ffprobe_reads_the_scrambled_stream(clear_ts: bytes, tmp_path: Path) -> None:
    scrambled, _report, _, _ = _scramble(clear_ts, Algorithm.CSA2)
    f = tmp_path / "scr.ts"
    f.write_bytes(scrambled)
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_programs", "-of", "json", str(f)],
                          capture_output=True, text=True, check=True)
    progs = json.loads(proc.stdout)["programs"]
    assert sorted(p["program_num"] for p in progs) == [101, 202]
    names = {p["program_num"]: p["tags"]["service_name"] for p in progs}
    assert names == {101: "Alpha", 202: "Beta"}


def test_bitrate_timing_when_there_is_no_pcr(clear_ts: bytes) -> None:
    # Nominal 1 Mbit/s: 3.5 s of ~0.6 Mbit/s stream lasts ~2 "nominal" seconds.
    _, report, _log, _ = _scramble(clear_ts, Algorithm.CSA2, nominal_bitrate_bps=1_000_000)
    assert report.timing == "pcr"  # the test stream has PCR: bitrate mode is the fallback
    no_pcr = _strip_pcr(clear_ts)
    _, report2, _log2, _ = _scramble(no_pcr, Algorithm.CSA2, nominal_bitrate_bps=1_000_000)
    assert report2.timing == "bitrate"
    expected = len(no_pcr) * 8 / 1_000_000  # seconds at the nominal rate
    assert report2.crypto_periods == int(expected) + 1


def _strip_pcr(data: bytes) -> bytes:
    out = bytearray(data)
    for off in range(0, len(out), 188):
        if out[off + 3] & 0x20 and out[off + 4] >= 7:
            out[off + 5] &= ~0x10 & 0xFF  # PCR_flag off: the 6 PCR bytes become stuffing
    return bytes(out)


def test_rejects_already_scrambled_input(clear_ts: bytes) -> None:
    scrambled, _, _, _ = _scramble(clear_ts, Algorithm.CSA2)
    with pytest.raises(StreamError, match="already"):
        _scramble(scrambled, Algorithm.CSA2)


def test_rejects_garbage_and_truncated_input(clear_ts: bytes) -> None:
    with pytest.raises(StreamError):
        _scramble(b"\x00" * 188 * 10, Algorithm.CSA2)
    with pytest.raises(StreamError):
        _scramble(b"", Algorithm.CSA2)
    with pytest.raises(StreamError, match="partial"):
        _scramble(clear_ts + b"\x47\x00", Algorithm.CSA2)


def test_service_without_crypto_is_refused(clear_ts: bytes) -> None:
    cfg = ScrambleConfig()
    scr = Scrambler(cfg, {101: FakeServiceCrypto(channel_id=1)}, payload_cipher(Algorithm.CSA2))
    with pytest.raises(UsageError, match="202"):
        scr.run(io.BytesIO(clear_ts), io.BytesIO())


def test_config_validation() -> None:
    with pytest.raises(UsageError):
        ScrambleConfig(crypto_period_ms=0)
    with pytest.raises(UsageError):
        ScrambleConfig(crypto_period_ms=100, ecm_repetition_ms=200)
    with pytest.raises(UsageError):
        ScrambleConfig(emm_pid=0x1FFF)
    with pytest.raises(UsageError):
        ScrambleConfig(ca_system_id=0)


def test_rewrite_pmt_replaces_our_descriptor_and_keeps_others() -> None:
    pmt = psi.Pmt(program_number=7, pcr_pid=0x100, descriptors=(
        psi.CaDescriptor(ca_system_id=0x0B00, ca_pid=0x900),
        psi.CaDescriptor(ca_system_id=0xDEAD, ca_pid=0x901)),
        streams=(psi.PmtStream(stream_type=2, elementary_pid=0x100),))
    out = psi.parse_pmt(rewrite_pmt(psi.build_pmt(pmt), ca_system_id=0xDEAD, ecm_pid=0x555,
                                    scrambling_mode=None))
    assert out.descriptors == (psi.CaDescriptor(ca_system_id=0x0B00, ca_pid=0x900),
                               psi.CaDescriptor(ca_system_id=0xDEAD, ca_pid=0x555))
    assert out.streams == pmt.streams


def test_cw_log_line_round_trip() -> None:
    entry = CwLogEntry(channel_id=3, service_id=9, cp=4, parity="even", cw=bytes(range(8)),
                       first_packet=10, last_packet=20, packets=5)
    buf = io.StringIO()
    write_cw_log_line(buf, entry)
    assert read_cw_log(buf.getvalue().splitlines()) == [entry.to_json()]


def test_csa2_cipher_scrambles_with_the_reduced_cw() -> None:
    """Issue 12, item 17: whatever 8-byte CW a service gives (e.g. a full 64-bit CW from
    another vendor's SCS), the CSA2 scrambler keys libdvbcsa with its reduction — what every
    CSA2 receiver descrambles with."""
    from cas.crypto.csa2 import Csa2
    from cas.crypto.cw import reduce_cw

    full = bytes.fromhex("0102030405060708")
    clear = bytearray()
    for n in range(4):
        clear += bytes((0x47, 0x01, 0x00, 0x10 | n)) + bytes([n]) * 184
    ours = bytearray(clear)
    assert payload_cipher(Algorithm.CSA2).scramble(memoryview(ours), parity=0, pids={0x100},
                                                   cw=full) == 4
    reference = bytearray(clear)
    Csa2(reduce_cw(full), None).scramble(reference, 0)
    assert ours == reference
    unreduced = bytearray(clear)
    Csa2(full, None).scramble(unreduced, 0)
    assert ours != unreduced
