"""``cas headend run`` on real sockets, checked by a receiver written here (not our box) and by
ffprobe: a continuous stream (no CC error, PCR monotonic across loop boundaries), an ECM for
every scrambled service within each repetition period, parity switching at the crypto-period
boundaries; multicast inside a network namespace this test creates; a capture to a file with
the CW log descrambles (libdvbcsa's own single-packet API, bound here) to the source payloads.

The head-end is the real command, started as a subprocess with a TOML file; the store is
SQLite in a temporary data dir with the demo-like ``tvplus`` profile.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import pytest

from cas.billing.setup import use_profile
from cas.crypto import OperatorKeys
from cas.crypto.keys import default_key_path
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.store.engine import open_store
from tests.fixtures.net import free_tcp_port
from tests.unit.headend.helpers import (
    cissa_decrypt_payload,
    csa2_decrypt_payload,
    payload_start,
    sections_on,
)

CAS = str(Path(sys.executable).parent / "cas")
PACKET = 188
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
#: tvplus channels 1 and 2 (service ids 1001, 1002).
SERVICES = {1: 1001, 2: 1002}
CP_S = 1.0
REP_S = 0.1
LOOP_S = 2.0



# --- the operator's side ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir (keys + SQLite store with the tvplus catalogue) and a 2 s clear stream of
    channels 1 and 2."""
    root = tmp_path_factory.mktemp("live-conformance")
    data = root / "data"
    data.mkdir()
    r = random.Random(1)
    OperatorKeys.generate(lambda n: r.randbytes(n)).save(default_key_path(data))
    store = open_store(data_dir=data)
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=T0)
    store.dispose()
    make_test_stream([TestService(service_id=sid, name=f"ch{n}") for n, sid in SERVICES.items()],
                     root / "clear.ts", TestStreamOptions(duration_s=LOOP_S))
    return root


def _config(lab: Path, name: str, *, url: str, algorithm: str = "csa2",
            cw_log: str = "", extra: str = "") -> Path:
    services = "".join(f'[[service]]\nchannel = {n}\nsource = "loop:clear.ts"\nprogram = {sid}\n'
                       for n, sid in SERVICES.items())
    text = (f'[headend]\ndata_dir = "data"\n[output]\nurl = "{url}"\n{extra}\n'
            f'[scrambling]\nalgorithm = "{algorithm}"\ncrypto_period_s = {CP_S}\n'
            f'ecm_repetition_ms = {int(REP_S * 1000)}\n'
            + (f'cw_log = "{cw_log}"\n' if cw_log else "")
            + services + '[ops]\nlisten = ""\nlog = "json"\n')
    path = lab / name
    path.write_text(text, encoding="utf-8")
    return path


def _headend(config: Path, duration_s: float) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("CAS_DATA_DIR", None)
    return subprocess.Popen([CAS, "headend", "run", str(config), "--duration", str(duration_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _finish(proc: subprocess.Popen[bytes]) -> list[dict[str, object]]:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")
    return [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]


# --- an independent receiver ----------------------------------------------------------------

def _pid(pkt: bytes) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def _pcr(pkt: bytes) -> int | None:
    if not pkt[3] & 0x20 or pkt[4] < 7 or not pkt[5] & 0x10:
        return None
    return (int.from_bytes(pkt[6:10], "big") << 1 | pkt[10] >> 7) * 300 + (
        (pkt[10] & 1) << 8 | pkt[11])


@dataclass
class Program:
    number: int
    pcr_pid: int
    es_pids: list[int]
    ecm_pids: list[int]


@dataclass
class Capture:
    """What the receiver saw, read with nothing but ISO/IEC 13818-1."""

    data: bytes
    datagram_sizes: list[int] = field(default_factory=list)

    @cached_property
    def packets(self) -> list[bytes]:
        return [self.data[i : i + PACKET] for i in range(0, len(self.data), PACKET)]

    def programs(self) -> dict[int, Program]:
        pat = next(sec for _, sec in sections_on(self.data, 0) if sec[0] == 0x00)
        body = pat[8:-4]
        pmt_pids = {int.from_bytes(body[i : i + 2], "big"):
                    int.from_bytes(body[i + 2 : i + 4], "big") & 0x1FFF
                    for i in range(0, len(body), 4)}
        out = {}
        for number, pmt_pid in pmt_pids.items():
            if number == 0:
                continue
            pmt = next(sec for _, sec in sections_on(self.data, pmt_pid) if sec[0] == 0x02)
            pcr_pid = int.from_bytes(pmt[8:10], "big") & 0x1FFF
            info_len = int.from_bytes(pmt[10:12], "big") & 0x0FFF
            ecm_pids = []
            pos = 12
            while pos < 12 + info_len:
                tag, length = pmt[pos], pmt[pos + 1]
                if tag == 0x09:
                    ecm_pids.append(int.from_bytes(pmt[pos + 4 : pos + 6], "big") & 0x1FFF)
                pos += 2 + length
            es = []
            while pos < len(pmt) - 4:
                es.append(int.from_bytes(pmt[pos + 1 : pos + 3], "big") & 0x1FFF)
                pos += 5 + (int.from_bytes(pmt[pos + 3 : pos + 5], "big") & 0x0FFF)
            out[number] = Program(number=number, pcr_pid=pcr_pid, es_pids=es, ecm_pids=ecm_pids)
        return out

    def cc_errors(self) -> int:
        last: dict[int, int] = {}
        errors = 0
        for p in self.packets:
            pid = _pid(p)
            if pid == 0x1FFF or not p[3] & 0x10:
                continue
            if pid in last and p[3] & 0x0F != (last[pid] + 1) & 0x0F:
                errors += 1
            last[pid] = p[3] & 0x0F
        return errors

    def pcr_seconds(self, pcr_pid: int) -> list[float]:
        """Every packet's time from the PCRs of ``pcr_pid`` (linear between two PCRs)."""
        pkts = self.packets
        marks = [(i, v / 27e6) for i, p in enumerate(pkts)
                 if _pid(p) == pcr_pid and (v := _pcr(p)) is not None]
        times = [0.0] * len(pkts)
        for (i0, t0), (i1, t1) in itertools.pairwise(marks):
            for i in range(i0, i1):
                times[i] = t0 + (t1 - t0) * (i - i0) / (i1 - i0)
        for i in range(marks[-1][0], len(pkts)):
            times[i] = marks[-1][1]
        for i in range(marks[0][0]):
            times[i] = marks[0][1]
        return times


def _receive(sock: socket.socket, proc: subprocess.Popen[bytes]) -> Capture:
    sock.settimeout(0.5)
    chunks: list[bytes] = []
    sizes: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            d = sock.recv(65536)
        except TimeoutError:
            if proc.poll() is not None:
                break
            continue
        chunks.append(d)
        sizes.append(len(d))
    return Capture(data=b"".join(chunks), datagram_sizes=sizes)


def _check_continuous(cap: Capture) -> dict[int, Program]:
    programs = cap.programs()
    assert set(programs) == set(SERVICES.values())
    assert cap.cc_errors() == 0
    for prog in programs.values():
        pcrs = [v for p in cap.packets if _pid(p) == prog.pcr_pid and (v := _pcr(p)) is not None]
        steps = [b - a for a, b in itertools.pairwise(pcrs)]
        assert steps and min(steps) > 0, "PCR went backwards"
        assert max(steps) < 0.1 * 27e6, "PCR jumped"
        # the run lasted several loops of the file: PCR spans well beyond one loop
        assert (pcrs[-1] - pcrs[0]) / 27e6 > 2 * LOOP_S
    return programs


def _check_ecms_and_parity(cap: Capture, programs: dict[int, Program]) -> None:
    ref = next(iter(programs.values()))
    times = cap.pcr_seconds(ref.pcr_pid)
    pkts = cap.packets
    for prog in programs.values():
        assert len(prog.ecm_pids) == 1, "scrambled service without its CA_descriptor"
        ecm_pid = prog.ecm_pids[0]
        ecms = [(times[i], sec[0]) for i, sec in sections_on(cap.data, ecm_pid)]
        assert {tid for _, tid in ecms} == {0x80, 0x81}
        first, last = ecms[0][0], ecms[-1][0]
        # The receiver's clock is the PCR, interpolated by packet position between two PCRs
        # (at most 35 ms apart): that is as precise as a time can be read off a VBR stream.
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(ecms)]
        assert max(gaps) <= REP_S + 0.035, f"ECM gap {max(gaps):.3f} s on PID {ecm_pid:#x}"
        assert last - first > 4 * CP_S
        # Exactly: every whole crypto-period carries CP/REP ECMs (the repetition grid starts
        # at each boundary).
        runs = [len(list(group)) for _, group in itertools.groupby(tid for _, tid in ecms)]
        assert runs[1:-1] and set(runs[1:-1]) == {round(CP_S / REP_S)}, runs
        ecm_switches = [t for (_, a), (t, b) in itertools.pairwise(ecms) if a != b]
        video = prog.es_pids[0]
        # (packets without a payload of at least a block stay clear: PCR-only ones, short
        # payloads behind a long adaptation field — TS 100 289 / TS 103 127 leave them)
        parity = [(times[i], p[3] >> 6) for i, p in enumerate(pkts)
                  if _pid(p) == video and p[3] & 0x10 and PACKET - payload_start(p) >= 16]
        assert {v for _, v in parity} == {0b10, 0b11}
        switches = [t for (_, a), (t, b) in itertools.pairwise(parity) if a != b]
        assert len(switches) >= 4
        for a, b in itertools.pairwise(switches):
            assert abs((b - a) - CP_S) < 0.05, f"crypto-period of {b - a:.3f} s"
        for t in switches:  # the ES switch sits on an ECM table_id switch: the boundary
            assert min(abs(t - e) for e in ecm_switches) < 0.02


def _ffprobe_cc_messages(path: Path) -> list[str]:
    run = subprocess.run(["ffprobe", "-v", "debug", "-hide_banner", "-show_entries",
                          "stream=index", "-of", "csv", str(path)],
                         capture_output=True, text=True, timeout=120, check=False)
    return [line for line in run.stderr.splitlines() if "Continuity check failed" in line]


# --- the tests -------------------------------------------------------------------------------

def test_unicast_udp_conformance(lab: Path, tmp_path: Path) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    try:
        proc = _headend(_config(lab, "unicast.toml", url=f"udp://127.0.0.1:{port}"), 7.5)
        cap = _receive(rx, proc)
        logs = _finish(proc)
    finally:
        rx.close()
    assert {e["event"] for e in logs} >= {"head-end started", "head-end stopped"}
    sizes = cap.datagram_sizes
    assert sizes and all(s == 7 * PACKET for s in sizes[:-1])
    assert sizes[-1] % PACKET == 0 and sizes[-1] <= 7 * PACKET  # no half datagram at the stop
    programs = _check_continuous(cap)
    _check_ecms_and_parity(cap, programs)
    capture = tmp_path / "capture.ts"
    capture.write_bytes(cap.data)
    assert _ffprobe_cc_messages(capture) == []


def _netns_reason() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip missing"
    run = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if run.returncode:
        return f"unshare -n refused: {run.stderr.strip()}"
    return None


#: Run inside the namespace: loopback up, a multicast route on it, then this module's
#: ``_multicast_child`` (receiver + head-end).
_CHILD = ("ip link set lo up && ip route add 239.0.0.0/8 dev lo && exec {python} -c "
          "'import sys; from tests.integration.live.test_stream_conformance import "
          "_multicast_child as m; m(sys.argv[1], sys.argv[2])' {config} {out}")


def _multicast_child(config: str, out: str) -> None:
    """Inside the namespace: join the group, run the head-end, save what arrived."""
    import struct

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rx.bind(("239.7.7.7", 5700))
    rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                  struct.pack("4s4s", socket.inet_aton("239.7.7.7"), socket.inet_aton("127.0.0.1")))
    proc = _headend(Path(config), 5.0)
    cap = _receive(rx, proc)
    proc.communicate(timeout=60)
    Path(out).write_bytes(cap.data)
    Path(out + ".rc").write_text(str(proc.returncode))


def test_multicast_in_a_network_namespace(lab: Path, tmp_path: Path) -> None:
    reason = _netns_reason()
    if reason is not None:
        pytest.fail(f"cannot create a network namespace for the multicast test: {reason}")
    config = _config(lab, "multicast.toml", url="udp://239.7.7.7:5700",
                     extra='ttl = 1\ninterface = "127.0.0.1"')
    out = tmp_path / "mcast.ts"
    root = Path(__file__).resolve().parents[3]
    cmd = _CHILD.format(python=sys.executable, config=config, out=out)
    run = subprocess.run(["unshare", "-n", "sh", "-c", cmd], cwd=root, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "mcast.ts.rc").read_text() == "0"
    cap = Capture(data=out.read_bytes())
    assert len(cap.data) > 100 * PACKET
    programs = cap.programs()
    assert set(programs) == set(SERVICES.values())
    assert cap.cc_errors() == 0


def _descramble(cap: Capture, programs: dict[int, Program], cw_log: list[dict[str, object]],
                algorithm: str) -> dict[int, list[bytes]]:
    """Each ES PID's payloads in the clear, using only the CW log: a service's periods are
    walked in log order, moving to the next one at each parity switch."""
    decrypt = csa2_decrypt_payload if algorithm == "csa2" else cissa_decrypt_payload
    out: dict[int, list[bytes]] = {}
    for prog in programs.values():
        entries = [e for e in cw_log if e["service_id"] == prog.number]
        for pid in prog.es_pids:
            k = 0
            last_parity = None
            clear = []
            for p in cap.packets:
                if _pid(p) != pid:
                    continue
                tsc = p[3] >> 6
                if not p[3] & 0x10 or (tsc == 0 and PACKET - payload_start(p) < 16):
                    clear.append(p)  # no payload, or too short to scramble: left clear
                    continue
                assert tsc in (0b10, 0b11), "clear packet in a scrambled service"
                if last_parity is not None and tsc != last_parity:
                    k += 1
                last_parity = tsc
                entry = entries[k]
                assert entry["parity"] == ("odd" if tsc == 0b11 else "even")
                start = payload_start(p)
                clear.append(p[:3] + bytes((p[3] & 0x3F,)) + p[4:start]
                             + decrypt(bytes.fromhex(str(entry["cw"])), p[start:]))
            out[pid] = clear
    return out


@pytest.mark.parametrize("algorithm", ["csa2", "cissa"])
def test_file_capture_descrambles_to_the_source(lab: Path, tmp_path: Path,
                                                algorithm: str) -> None:
    out = tmp_path / "capture.ts"
    cw_log = tmp_path / "cw.jsonl"
    config = _config(lab, f"file-{algorithm}.toml", url=f"file://{out}", algorithm=algorithm,
                     cw_log=str(cw_log))
    _finish(_headend(config, 5.0))
    cap = Capture(data=out.read_bytes())
    programs = _check_continuous(cap)
    log = [json.loads(line) for line in cw_log.read_text().splitlines()]
    clear = _descramble(cap, programs, log, algorithm)
    # the source, read the same way: the program's ES packets in file order, looped
    src = Capture(data=(lab / "clear.ts").read_bytes())
    src_programs = src.programs()
    checked = 0
    for number, prog in programs.items():
        for out_pid, src_pid in zip(prog.es_pids, src_programs[number].es_pids, strict=True):
            source = [p for p in src.packets if _pid(p) == src_pid and p[3] & 0x10]
            for i, pkt in enumerate(p for p in clear[out_pid] if p[3] & 0x10):
                orig = source[i % len(source)]
                if pkt[1] & 0x40:
                    continue  # PES header: its PTS/DTS moved on with the loop
                assert pkt[payload_start(pkt):] == orig[payload_start(orig):], (number, i)
                checked += 1
    assert checked > 100  # enough to span several crypto-periods even on a loaded machine
    # ffprobe reads the descrambled capture as one stream: no CC error, DTS never going back
    clear_ts = bytearray(cap.data)
    index = {pid: iter(pkts) for pid, pkts in clear.items()}
    for n in range(len(cap.packets)):
        pkt = cap.packets[n]
        if _pid(pkt) in index:
            clear_ts[n * PACKET : (n + 1) * PACKET] = next(index[_pid(pkt)])
    path = tmp_path / "clear-capture.ts"
    path.write_bytes(bytes(clear_ts))
    assert _ffprobe_cc_messages(path) == []
    run = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,dts",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         timeout=120, check=True)
    last: dict[str, int] = {}
    rows = 0
    for line in run.stdout.splitlines():
        idx, dts = [*line.split(","), ""][:2]
        if not dts or dts == "N/A":
            continue
        rows += 1
        assert int(dts) > last.get(idx, -1), f"DTS went back on stream {idx}"
        last[idx] = int(dts)
    assert rows > 100


def test_ecms_from_an_ecmg_over_simulcrypt(lab: Path, tmp_path: Path) -> None:
    """``ecm_source = "simulcrypt"``: the CWs go to ``cas ecmg serve`` (a separate process, real
    TCP) in CW_provisions; its ECMs are on air, open with the operator's ECM key and carry the
    CWs that scrambled the service."""
    from cas.crypto.keys import OperatorKeys as Keys
    from cas.messages import open_ecm

    port = free_tcp_port()
    env = dict(os.environ)
    env.pop("CAS_DATA_DIR", None)
    ecmg = subprocess.Popen([CAS, "--data-dir", str(lab / "data"), "ecmg", "serve", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        out = tmp_path / "capture.ts"
        cw_log = tmp_path / "cw.jsonl"
        config = _config(lab, "simulcrypt.toml", url=f"file://{out}", cw_log=str(cw_log))
        text = config.read_text().replace(
            "[scrambling]\n", f'[scrambling]\necm_source = "simulcrypt"\necmg = "127.0.0.1:{port}"\n')
        config.write_text(text)
        _finish(_headend(config, 5.0))
    finally:
        ecmg.terminate()
        ecmg.wait(timeout=10)
    cap = Capture(data=out.read_bytes())
    programs = _check_continuous(cap)
    keys = Keys.load(default_key_path(lab / "data"))
    log = [json.loads(line) for line in cw_log.read_text().splitlines()]
    for prog in programs.values():
        # SimulCrypt's CP_number is 16 bits (TS 103 197): the ECMG puts it in the ECM
        cws = {int(str(e["cp"])) & 0xFFFF: bytes.fromhex(str(e["cw"])) for e in log
               if e["service_id"] == prog.number}
        opened = 0
        for _, section in sections_on(cap.data, prog.ecm_pids[0]):
            header, body = open_ecm(keys.ecm_key(0), section)
            assert header.channel_id == prog.number
            cp = body.crypto_period
            slots = (body.cw_even, body.cw_odd)
            if cp in cws:
                assert slots[cp & 1] == cws[cp]
                opened += 1
        assert opened > 10
    clear = _descramble(cap, programs, log, "csa2")
    assert all(clear.values())


def test_sigterm_stops_between_datagrams(lab: Path, tmp_path: Path) -> None:
    """SIGTERM: exit 0, the stop is logged, the capture ends on a whole packet."""
    import signal

    out = tmp_path / "capture.ts"
    env = dict(os.environ)
    env.pop("CAS_DATA_DIR", None)
    proc = subprocess.Popen([CAS, "headend", "run", str(_config(lab, "term.toml",
                                                                url=f"file://{out}"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 50_000):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    logs = _finish(proc)
    assert [e["event"] for e in logs][-1] == "head-end stopped"
    data = out.read_bytes()
    assert len(data) % PACKET == 0
    assert Capture(data=data).cc_errors() == 0
