"""``cas diag stream``'s report per CA system (SimulCrypt: several CA systems on one service):
ECM PIDs and rates, the ECM parity per crypto-period of the payload, how far the ECM parity
change runs ahead of the payload's switch, EMM PIDs and rates from the CAT.

The stream is built here slot by slot at a nominal bitrate of one packet per millisecond (no
PCR: the probe's time is the packet position): crypto-period 1 s, our ECMs (0xDEAD) from each
boundary, the other system's (0x4AD0) 200 ms ahead of it (an ECMG with delay_start −200 ms),
every 100 ms each."""

from __future__ import annotations

import io

from rich.console import Console

from cas.diag.probe import probe_bytes
from cas.diag.render import render_probe
from cas.formats import psi
from cas.formats.ts import Packetizer
from cas.i18n import Translator

BITRATE = 188 * 8 * 1000  # one packet per ms
OURS, OTHER = 0xDEAD, 0x4AD0
VIDEO = 0x0100


def _short_section(table_id: int, body: bytes) -> bytes:
    return bytes([table_id, 0x70 | (len(body) >> 8), len(body) & 0xFF]) + body


def _video(cc: int, parity: int) -> bytes:
    return bytes([0x47, VIDEO >> 8, VIDEO & 0xFF, (0b10 | parity) << 6 | 0x10 | cc]) + bytes(184)


def _stream(seconds: int = 10, other_stops_at_s: float | None = None) -> bytes:
    pk = {pid: Packetizer(pid) for pid in (0, 1, 0x1000, 0x0C10, 0x0D00, 0x0C00, 0x0E00)}
    pat = psi.build_pat(psi.Pat(transport_stream_id=1,
                                programs=(psi.PatProgram(program_number=101, pid=0x1000),)))
    cat = psi.build_cat(psi.Cat(descriptors=(
        psi.CaDescriptor(ca_system_id=OURS, ca_pid=0x0C00),
        psi.CaDescriptor(ca_system_id=OTHER, ca_pid=0x0E00))))
    pmt = psi.build_pmt(psi.Pmt(program_number=101, pcr_pid=VIDEO, descriptors=(
        psi.CaDescriptor(ca_system_id=OURS, ca_pid=0x0C10),
        psi.CaDescriptor(ca_system_id=OTHER, ca_pid=0x0D00, private_data=b"\x01")),
        streams=(psi.PmtStream(stream_type=0x02, elementary_pid=VIDEO),)))
    out = bytearray()
    cc = 0
    for k in range(seconds * 1000):
        t = k / 1000
        slot = k % 100
        if slot == 0:
            out += pk[0].packetize(pat)[0]
        elif slot == 1:
            out += pk[1].packetize(cat)[0]
        elif slot == 2:
            out += pk[0x1000].packetize(pmt)[0]
        elif slot == 3:
            cp = int(t)
            out += pk[0x0C10].packetize(_short_section(0x80 | cp & 1, bytes(20)))[0]
        elif slot == 4 and (other_stops_at_s is None or t < other_stops_at_s):
            cp = int(t + 0.2)  # delay_start −200 ms: ECM(n) from 200 ms before n
            out += pk[0x0D00].packetize(_short_section(0x80 | cp & 1, bytes(30)))[0]
        elif slot == 5:
            out += pk[0x0C00].packetize(_short_section(0x82, bytes(40)))[0]
        elif slot == 6:
            out += pk[0x0E00].packetize(_short_section(0x88, bytes(40)))[0]
        else:
            out += _video(cc, int(t) & 1)
            cc = (cc + 1) & 0x0F
    return bytes(out)


def test_each_ca_system_with_its_ecm_timing() -> None:
    report = probe_bytes(_stream(), nominal_bitrate_bps=BITRATE)
    systems = {c.ca_system_id: c for c in report.ca_systems}
    assert set(systems) == {OURS, OTHER}
    ours, other = systems[OURS], systems[OTHER]
    assert ours.ours and not other.ours
    assert (ours.ecm_pids, other.ecm_pids) == ((0x0C10,), (0x0D00,))
    assert (ours.emm_pids, other.emm_pids) == ((0x0C00,), (0x0E00,))
    for c in (ours, other):
        assert abs(c.ecm_sections_per_s - 10) < 0.2
        assert c.ecm_interval_ms is not None and abs(c.ecm_interval_ms - 100) < 1
        # 9 payload switches (1.007 s, 2.007 s, …): 8 whole periods, each of the right parity
        assert (c.switches, c.switches_aligned) == (9, 9)
        assert c.periods == 8 and c.periods_matching == 8 and c.periods_without_ecm == 0
        assert c.emm_sections == 100 and c.emm_bitrate_bps > 0
    # ours switches at the boundary (the payload's first packet of the period is 4 ms later);
    # the other system's ECM of the next period is on air 203 ms before the switch
    assert ours.lead_ms is not None and other.lead_ms is not None
    assert [round(v, 3) for v in ours.lead_ms] == [4.0, 4.0, 4.0]
    assert [round(v, 3) for v in other.lead_ms] == [203.0, 203.0, 203.0]
    assert other.periods_both_parities == 8  # its switch falls inside each period
    data = report.to_json()["ca_systems"]
    assert [c["ca_system_id"] for c in data] == ["0x4AD0", "0xDEAD"]
    assert data[0]["lead_ms"] == {"min": 203.0, "median": 203.0, "max": 203.0}
    assert data[0]["periods_matching"] == 8 and data[0]["emm_pids"] == [0x0E00]


def test_ecms_that_stop_show_as_periods_without_ecm() -> None:
    report = probe_bytes(_stream(other_stops_at_s=6.0), nominal_bitrate_bps=BITRATE)
    other = next(c for c in report.ca_systems if c.ca_system_id == OTHER)
    ours = next(c for c in report.ca_systems if c.ca_system_id == OURS)
    assert other.periods_without_ecm == 3 and other.periods_matching == 5
    assert ours.periods_without_ecm == 0 and ours.periods_matching == 8


def test_text_report_in_both_languages() -> None:
    report = probe_bytes(_stream(seconds=4), nominal_bitrate_bps=BITRATE)
    for lang, title in (("en", "CA systems"), ("ru", "CA-системы")):
        buf = io.StringIO()
        render_probe(report, Console(file=buf, width=240), Translator(lang))
        text = buf.getvalue()
        assert title in text and "0x4AD0" in text and "0xDEAD *" in text
