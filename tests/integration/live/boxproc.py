"""The box as a process: ``stb scan|watch udp://…`` started for a test, its JSON lines read
as they come, stopped by a signal like an operator would.

Shared by the box's live tests (``test_box_live.py``) and the end-to-end tests against the
live head-end (``test_live_e2e.py``); also ``udp_send`` plays a TS file to a port in
datagrams of 7 packets (plain or with an RTP header), as a minimal stand-in head-end.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STB = [sys.executable, "-c", "from firmware_stub.cli import main; main()"]
PACKETS_PER_DATAGRAM = 7
Event = dict[str, Any]


@dataclass(frozen=True)
class BoxFiles:
    """What a box is booted from (as on the bench: files)."""

    chip_record: Path
    vendor_key: Path
    nvram: Path
    card_image: Path
    rom_key: Path

    def args(self) -> list[str]:
        return ["--chip-record", str(self.chip_record), "--vendor-key", str(self.vendor_key),
                "--nvram", str(self.nvram), "--card-image", str(self.card_image),
                "--rom-key-file", str(self.rom_key)]


@dataclass
class StbProcess:
    """A running ``stb``; ``events`` fills from its stdout (one JSON object per line)."""

    proc: subprocess.Popen[bytes]
    lines: queue.Queue[Event | None] = field(default_factory=queue.Queue)
    events: list[Event] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, command: str, stream: str, box: BoxFiles, *extra: str,
              cwd: Path | None = None) -> StbProcess:
        proc = subprocess.Popen([*STB, "--json", command, stream, *box.args(), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
        me = cls(proc=proc)
        threading.Thread(target=me._read_stdout, daemon=True).start()
        threading.Thread(target=me._read_stderr, daemon=True).start()
        return me

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode().rstrip())

    def wait_for(self, match: Callable[[Event], bool], timeout_s: float,
                 what: str = "event") -> Event:
        """The first event (already seen or still to come) that ``match``es."""
        for event in self.events:
            if match(event):
                return event
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout_s} s; events: "
                                     f"{self.events[-12:]}; stderr: {self.stderr[-5:]}")
            try:
                event = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if event is None:
                raise AssertionError(f"stb ended before {what} (rc {self.proc.wait()}): "
                                     f"{self.events[-12:]}; stderr: {self.stderr[-5:]}")
            self.events.append(event)
            if match(event):
                return event

    def started(self, timeout_s: float = 30.0) -> str:
        """The input URL the box listens on (port 0 resolved)."""
        return str(self.wait_for(lambda e: e.get("event") == "start", timeout_s,
                                 "start line")["input"])

    def channel_event(self, channel: int, *, state: str | None = None,
                      reason: str | None = None, after: Event | None = None,
                      timeout_s: float = 30.0) -> Event:
        floor = self.events.index(after) + 1 if after is not None else 0

        def match(e: Event) -> bool:
            return (e.get("event") == "channel" and e["channel"] == channel
                    and (state is None or e["state"] == state)
                    and (reason is None or e["reason"] == reason)
                    and (after is None or self.events.index(e) >= floor))

        return self.wait_for(match, timeout_s, f"channel {channel} {state or ''} {reason or ''}")

    def channel_events(self, channel: int) -> list[Event]:
        return [e for e in self.events if e.get("event") == "channel"
                and e["channel"] == channel]

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 60.0) -> Event:
        """Signal the box and return its final report line; it must exit 0 or 10."""
        self.proc.send_signal(sig)
        report = self.wait_for(lambda e: e.get("event") == "report", timeout_s, "report")
        rc = self.proc.wait(timeout=timeout_s)
        assert rc in (0, 10), (rc, self.stderr)
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def datagrams(stream: bytes, *, rtp: bool = False, ssrc: int = 0x1234,
              drop: Sequence[int] = ()) -> list[bytes]:
    """``stream`` cut into datagrams of 7 packets; with ``rtp``, each behind an RTP header
    (version 2, payload type 33 MP2T, sequence numbers from 0; ``drop``: numbers skipped)."""
    size = 188 * PACKETS_PER_DATAGRAM
    out = []
    dropped = set(drop)
    for n, pos in enumerate(range(0, len(stream), size)):
        if n in dropped:
            continue
        payload = stream[pos:pos + size]
        if rtp:
            payload = struct.pack(">BBHII", 0x80, 33, n & 0xFFFF, n * 900, ssrc) + payload
        out.append(payload)
    return out


def udp_send(port: int, chunks: Sequence[bytes], *, host: str = "127.0.0.1",
             seconds: float = 1.0, multicast_if: str | None = None) -> None:
    """Send ``chunks`` to ``host:port`` spread over about ``seconds`` (no precise pacing:
    the box does not need it, only a receive buffer that is not flooded).  For a
    multicast ``host``, ``multicast_if`` is the interface address to send from."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if multicast_if is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            socket.inet_aton(multicast_if))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        burst = 16
        pause = seconds / max(len(chunks) / burst, 1)
        for i in range(0, len(chunks), burst):
            for chunk in chunks[i:i + burst]:
                sock.sendto(chunk, (host, port))
            time.sleep(pause)
    finally:
        sock.close()
