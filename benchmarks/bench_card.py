"""Card latency: APDU round trip and ECM→CW, in-process and through pcscd + vpcd + pyscard,
with a raw TCP echo over 127.0.0.1 in the same run as the baseline.

Run (needs pcscd and vsmartcard-vpcd, as the test suite does)::

    .venv/bin/python benchmarks/bench_card.py            # default iteration counts
    .venv/bin/python benchmarks/bench_card.py --quick    # fewer iterations

It starts a private pcscd (own socket and vpcd port, like the test fixture), personalises a
card, serves it with ``cas card serve`` in a subprocess, and prints a Markdown table.

What is measured (each sample one ``time.perf_counter_ns`` pair):

* **APDU round trip**: ``80 CA 01 01 00`` (GET DATA serial) → 4 bytes + 9000.
* **ECM→CW**: ``CardClient.process_ecm(section)`` (PROCESS ECM with a 70-byte ECM) and
  ``unwrap_cws`` with the pairing key, i.e. from the ECM bytes to both control words in hand.
  ECM timestamps advance 1 s every 10 ECMs (an ECM repetition rate of 10/s), so the card
  writes its clock to EEPROM (with fsync) once every 600 ECMs, as in a real stream.
  The card keeps its default sharing policy (``flag``: the check counts every ECM) with
  limits this stream stays within (:data:`TUNERS`); with the default 2 tuners its 100
  requests per 10 s window would raise the card's flag and write it to the EEPROM once per
  window, which is not what this benchmark measures.  The run checks the card never flagged.
* **raw echo baseline**: a 2-byte-length-framed 5-byte message to a Python echo server in
  another process over 127.0.0.1 (TCP_NODELAY), answered with 6 bytes — one hop of the path
  the APDU takes (pyscard → pcscd is a Unix socket, pcscd → vpcd → card is this TCP hop).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_SESSION = Path(tempfile.mkdtemp(prefix="cas-bench-card-"))
# libpcsclite reads this once per process, before pyscard first talks to pcscd
os.environ["PCSCLITE_CSOCK_NAME"] = str(_SESSION / "pcscd.comm")

from cas.access import CardStatus  # noqa: E402
from cas.card.client import CardClient  # noqa: E402
from cas.card.pcsc import PcscTransport  # noqa: E402
from cas.card.transport import CardTransport, InProcessTransport  # noqa: E402
from cas.crypto import unwrap_cws  # noqa: E402
from cas.formats.emm import AddEntitlement, SetStatus  # noqa: E402
from cas.sharing import SharingPolicy  # noqa: E402
from tests.fixtures import pcsc as pcsc_fixture  # noqa: E402
from tests.unit.card.helpers import (  # noqa: E402
    CWPK,
    DAY,
    KEYS,
    NOW,
    HeadEnd,
    pair_command,
)

GET_SERIAL = bytes.fromhex("80CA010100")
SERIAL = 3_000_000_001
#: The card's sharing limits (docs/sharing.md): 64 tuners allow 64 × (1 + 1) = 128 ECM requests
#: per 10 s window, above this stream's 100; the default 2 tuners allow 4.
TUNERS = 64

ECHO_SERVER = textwrap.dedent("""
    import socket, sys
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0)); srv.listen(1)
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        data = conn.recv(65538)
        if not data:
            break
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        buf += data
        while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
            n = int.from_bytes(buf[:2], "big")
            buf = buf[2 + n:]
            conn.sendall((n + 1).to_bytes(2, "big") + bytes(n + 1))
""")


def measure(fn: Callable[[int], object], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        fn(i)
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(warmup + i)
        out.append((clock() - t0) / 1000.0)
    return out


def summary(samples: list[float]) -> tuple[float, float, float]:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return statistics.median(s), p99, statistics.fmean(s)


def ecm_stream(head: HeadEnd, count: int) -> list[bytes]:
    return [head.ecm(packages=(10,), timestamp_s=NOW + i // 10) for i in range(count)]


def activate_emm(head: HeadEnd, serial: int) -> bytes:
    return head.unique(serial, SetStatus(status=CardStatus.ACTIVE),
                       AddEntitlement(package_id=10, start_s=NOW - DAY, end_s=NOW + 365 * DAY),
                       pair_command())


def bench_echo(n: int, warmup: int) -> list[float]:
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = (5).to_bytes(2, "big") + GET_SERIAL

        def once(_: int) -> None:
            sock.sendall(msg)
            got = b""
            while len(got) < 8:
                got += sock.recv(64)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

        samples = measure(once, n, warmup)
        sock.close()
        return samples
    finally:
        proc.wait(10)


def bench_in_process(n: int, warmup: int) -> tuple[list[float], list[float]]:
    from cas.card.applet import Applet
    from cas.card.eeprom import Eeprom
    from cas.card.personalise import default_slot, personalise_card
    from cas.formats.cardstate import CardState, SharingSettings

    record = personalise_card(KEYS, default_slot(SERIAL), now_s=NOW - DAY)
    state = CardState(sharing=SharingSettings(tuners=TUNERS))
    applet = Applet(Eeprom(record, state=state), rom_key=KEYS.transport_key())
    return _bench_card(InProcessTransport(applet), n, warmup)


def _bench_card(transport: CardTransport, n: int,
                warmup: int) -> tuple[list[float], list[float]]:
    """The card activated by an EMM, then: a GET DATA APDU's round trip, and an ECM's (PROCESS
    ECM and the box's CW unwrap)."""
    client = CardClient(transport)
    head = HeadEnd()
    client.process_emm(activate_emm(head, SERIAL))
    apdu = measure(lambda _: transport.transmit(GET_SERIAL), n, warmup)
    ecms = ecm_stream(head, n + warmup)
    ecm = measure(lambda i: unwrap_cws(CWPK, client.process_ecm(ecms[i])), n, warmup)
    sharing = client.sharing()
    if sharing is None or sharing.policy is not SharingPolicy.FLAG or sharing.flagged:
        raise SystemExit(f"the card's sharing check is not what this benchmark assumes: "
                         f"{sharing}")
    return apdu, ecm


def bench_pcsc(n: int, warmup: int) -> tuple[list[float], list[float], str]:
    service = pcsc_fixture.make_service(_SESSION)
    service.start()  # stops its pcscd itself if it cannot start
    try:
        return _bench_pcsc_card(service, n, warmup)
    finally:
        service.stop()


def _bench_pcsc_card(service: pcsc_fixture.PcscService, n: int,
                     warmup: int) -> tuple[list[float], list[float], str]:
    data_dir = _SESSION / "data"
    data_dir.mkdir()
    KEYS.save(data_dir / "operator-keys.toml")
    env = dict(service.env, CAS_DATA_DIR=str(data_dir))
    cas = str(Path(sys.executable).with_name("cas"))
    subprocess.run([cas, "card", "personalise", "--count", "1", "--start-serial", str(SERIAL),
                    "--no-register", "--sharing-policy", "flag", "--tuners", str(TUNERS),
                    "--out", str(data_dir / "cards")], env=env, check=True,
                   capture_output=True)
    image = data_dir / "cards" / f"{SERIAL:010d}.img"
    server = subprocess.Popen([cas, "card", "serve", "--image", str(image), "--vpcd",
                               service.slots[0].endpoint], env=env,
                              stderr=subprocess.DEVNULL)
    try:
        transport = PcscTransport(service.slots[0].reader, wait_s=20)
        apdu, ecm = _bench_card(transport, n, warmup)
        transport.close()
        return apdu, ecm, service.slots[0].reader
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    n_fast, n_pcsc = (2000, 500) if args.quick else (20000, 5000)
    warm = 200
    echo = bench_echo(n_pcsc, warm)
    ip_apdu, ip_ecm = bench_in_process(n_fast, warm)
    pc_apdu, pc_ecm, reader = bench_pcsc(n_pcsc, warm)
    rows = [
        ("raw TCP echo, 127.0.0.1, other process (baseline)", echo),
        ("APDU round trip, in-process", ip_apdu),
        ("ECM→CW, in-process", ip_ecm),
        (f"APDU round trip, pyscard → pcscd → vpcd → card ({reader})", pc_apdu),
        ("ECM→CW, pyscard → pcscd → vpcd → card", pc_ecm),
    ]
    base = summary(echo)[0]
    print(f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; "
          f"card: sharing policy flag, {TUNERS} tuners (never flagged)")
    print()
    print("| measurement | samples | median µs | p99 µs | mean µs | median / echo |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, samples in rows:
        med, p99, mean = summary(samples)
        print(f"| {name} | {len(samples)} | {med:.1f} | {p99:.1f} | {mean:.1f} | "
              f"{med / base:.1f}× |")
    goal_pcsc = summary(pc_ecm)[0] < 1000
    goal_ip = summary(ip_ecm)[0] < 100
    print()
    print(f"goal median ECM→CW through PC/SC < 1 ms: {'met' if goal_pcsc else 'NOT met'}; "
          f"in-process < 100 µs: {'met' if goal_ip else 'NOT met'}")


if __name__ == "__main__":
    try:
        main()
    finally:
        import shutil

        shutil.rmtree(_SESSION, ignore_errors=True)
