"""Live mode of ``cas kit run --live``: the kit played through the live head-end.

The runner sets up, in a temporary directory:

1. **the head-end's store**, rebuilt from the kit's ``scenario.toml`` and seed with the same
   code as ``cas kit build`` (operator keys, profile, lineup, boxes, cards, accounts and
   pairings), so the cards in the kit's images belong to it (checked: the rebuilt
   personalisation batch must equal the kit's);
2. **``cas headend run``** on a config written for the kit: every catalogue channel looped
   from one clear test stream, short crypto-periods (:data:`CRYPTO_PERIOD_S`), a fast EMM
   carousel, UDP to the relay on 127.0.0.1;
3. **the relay** (:class:`Relay`), the injection hook between the head-end and the boxes: it
   forwards every datagram to every box's UDP port, takes the ECM PIDs of a lost channel
   out, and re-packs the EMM PID so that it can tamper with, drop, replay or add EMMs;
4. **one box process per subscriber**, the box command with ``udp://127.0.0.1:PORT`` as its
   last argument, its ``KIT_*`` files as in file mode; it runs until SIGTERM and reports
   every change of a channel's state (a JSON line on stdout, or a POST to
   ``KIT_REPORT_URL``).  A box whose card changes between steps, or whose viewer enters a
   PIN in the step (once per step, as in file mode), is restarted (its NVRAM and the card's
   EEPROM image carry over).

Each step: the stream events set the relay (or restart the head-end on a new ECM key, or
queue the ECM-key EMM in the store as ``cas headend`` does), the billing events are committed
to the store through the same functions as the API and CLI (the head-end's carousel airs
their EMMs), then the runner waits: the step is graded when every (box, channel) shows its
expected state and at least :data:`MIN_DWELL_S` have passed (time for a wrong change to
show), or after the settle window at the latest (docs/kit.md, "Live mode").  A step whose
stream clock is offset (``stream_offset_s``) is skipped with the reason in the report: the
head-end stamps its ECMs with the store's clock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cas.billing.clock import clock_now
from cas.crypto import OperatorKeys
from cas.errors import ConfigError, UsageError
from cas.formats.boxreport import Seen, parse_line
from cas.formats.emm import EmmCommand
from cas.formats.ts.carriage import Packetizer, SectionReassembler
from cas.headend.emmgen import ecm_key_update_command
from cas.headend.osd import OsdTarget, command_bytes
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.kit.build import _Rng
from cas.kit.checks import rebuild_world
from cas.kit.emms import CARD_EMM_VALIDITY_S, KitEmms, tamper
from cas.kit.httpreport import ReportServer
from cas.kit.run import CaseResult, ReportVia, RunResult, box_env, open_kit
from cas.kit.scenario import Event, EventKind, Scenario, Step, load_scenario
from cas.live.outbox import queue_card_emm, queue_global_emm
from cas.store.engine import Store

#: The head-end's crypto-period in live mode (a compressed timeline: seconds, not minutes).
CRYPTO_PERIOD_S = 1.0
#: A step is graded no earlier than this after its events: a wrong change has time to show.
MIN_DWELL_S = 3.0
#: ... and no later than this (the first step: :data:`FIRST_SETTLE_S`, the head-end starts).
SETTLE_S = 30.0
FIRST_SETTLE_S = 90.0
EMM_PID = 0x0C00
FIRST_ECM_PID = 0x0C10
TS_PACKET = 188
PACKETS_PER_DATAGRAM = 7
#: Injected EMMs (replayed, another card's) go out again this often during their step.
INJECT_EVERY_S = 1.0
HEADEND_START_S = 60.0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid(packet: bytes) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


class Relay:
    """UDP from the head-end in, to every box out; the stream events applied on the way."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.port = int(self._sock.getsockname()[1])
        self._lock = threading.Lock()
        self._targets: dict[str, int] = {}
        self._drop_pids: set[int] = set()
        self._emm_mode = ""  # "", "drop", "tamper"
        self._inject: list[bytes] = []
        self._next_inject = 0.0
        self._record: list[bytes] = []
        self._reasm = SectionReassembler(EMM_PID, check_crc=False)
        self._pack = Packetizer(EMM_PID)
        self.datagrams = 0
        #: packets taken out (a lost ECM PID)
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kit-relay", daemon=True)
        self._thread.start()

    # --- control (the runner's thread) -------------------------------------------------
    def set_target(self, box: str, port: int | None) -> None:
        with self._lock:
            if port is None:
                self._targets.pop(box, None)
            else:
                self._targets[box] = port

    def step(self, *, drop_pids: set[int], emm_mode: str, inject: Sequence[bytes]) -> list[bytes]:
        """This step's stream events; returns the EMM sections the last step carried."""
        with self._lock:
            recorded, self._record = self._record, []
            self._drop_pids = set(drop_pids)
            self._emm_mode = emm_mode
            self._inject = list(inject)
            self._next_inject = 0.0
        return recorded

    # --- the relay thread ------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1
            with self._lock:
                packets = self._packets(data)
                targets = list(self._targets.values())
            size = TS_PACKET * PACKETS_PER_DATAGRAM
            payload = b"".join(packets)
            for port in targets:
                for pos in range(0, len(payload), size):
                    with contextlib.suppress(OSError):
                        self._out.sendto(payload[pos : pos + size], ("127.0.0.1", port))

    def _packets(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for pos in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
            packet = data[pos : pos + TS_PACKET]
            pid = _pid(packet)
            if pid in self._drop_pids:
                self.dropped += 1
                continue
            if pid != EMM_PID:
                out.append(packet)
                continue
            for section in self._reasm.feed(packet):
                self._record.append(section)
                if self._emm_mode == "drop":
                    continue
                out += self._pack.packetize(tamper(section) if self._emm_mode == "tamper"
                                            else section)
        now = time.monotonic()
        if self._inject and now >= self._next_inject:
            self._next_inject = now + INJECT_EVERY_S
            out += self._pack.packetize_many(self._inject)
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        self._out.close()


@dataclass
class LiveBox:
    """One box under test, running on the relay's output until stopped."""

    key: str
    proc: subprocess.Popen[str]
    port: int
    card: str | None
    pin: str | None
    server: ReportServer | None
    states: dict[int, Seen]
    stderr_tail: list[str]

    @classmethod
    def start(cls, key: str, command: Sequence[str], env: Mapping[str, str], *,
              card: str | None, pin: str | None, server: ReportServer | None) -> LiveBox:
        port = _free_udp_port()
        env = dict(env)
        if server is not None:
            env["KIT_REPORT_URL"] = server.expect(0, key)
        try:
            proc = subprocess.Popen([*command, f"udp://127.0.0.1:{port}"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        except FileNotFoundError:
            raise UsageError(f"box command not found: {command[0]}").with_id(
                "kit.box_command_not_found", command=command[0]) from None
        box = cls(key=key, proc=proc, port=port, card=card, pin=pin, server=server,
                  states={}, stderr_tail=[])
        threading.Thread(target=box._read_stdout, daemon=True).start()
        threading.Thread(target=box._read_stderr, daemon=True).start()
        return box

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            for seen in parse_line(line):
                self.states[seen.channel] = seen

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_tail = [*self.stderr_tail[-4:], line.rstrip()]

    def seen(self) -> dict[int, Seen]:
        if self.server is not None:
            return self.server.peek(0, self.key)
        return dict(self.states)

    def problem(self) -> str:
        code = self.proc.poll()
        if code is None:
            return ""
        last = self.stderr_tail[-1] if self.stderr_tail else ""
        return f"the box exited {code}: {last}".rstrip(": ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.server is not None:
            self.server.take(0, self.key)


def _cas_command() -> list[str]:
    cas = Path(sys.executable).with_name("cas")
    return [str(cas)] if cas.exists() else [sys.executable, "-m", "cas.cli.main"]


class _Headend:
    """``cas headend run`` on a config written for the kit."""

    def __init__(self, work: Path, data_dir: Path, channels: Sequence[Mapping[str, Any]],
                 relay_port: int) -> None:
        self.work = work
        self.data_dir = data_dir
        self.channels = channels
        self.relay_port = relay_port
        self.clear = work / "clear.ts"
        make_test_stream([TestService(service_id=ch["service_id"], name=ch["name"])
                          for ch in channels], self.clear,
                         TestStreamOptions(duration_s=4.0, video_bitrate_kbps=150))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / "headend.log"

    def ecm_pids(self) -> dict[int, int]:
        return {ch["number"]: FIRST_ECM_PID + k for k, ch in enumerate(self.channels)}

    def _config(self, ecm_key_index: int) -> Path:
        lines = ["[headend]", f'data_dir = "{self.data_dir}"', "",
                 "[output]", f'url = "udp://127.0.0.1:{self.relay_port}"', "",
                 "[scrambling]", 'algorithm = "csa2"', f"crypto_period_s = {CRYPTO_PERIOD_S}",
                 f"ecm_key_index = {ecm_key_index}", ""]
        for k, ch in enumerate(self.channels):
            lines += ["[[service]]", f"channel = {ch['number']}",
                      f'source = "loop:{self.clear}"', f"program = {ch['service_id']}",
                      f"ecm_pid = {FIRST_ECM_PID + k}", ""]
        lines += ["[emm]", f"pid = {EMM_PID}", "poll_interval_s = 0.2", "repeat_count = 3",
                  "repeat_window_s = 1.5", "cycle_bitrate_bps = 50000", "",
                  "[ops]", 'listen = ""', 'log = "json"', ""]
        path = self.work / f"headend-{ecm_key_index}.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        return path

    def start(self, ecm_key_index: int, relay: Relay) -> None:
        self.stop()
        config = self._config(ecm_key_index)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAS_", "KIT_"))}
        before = relay.datagrams
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*_cas_command(), "headend", "run", str(config)],
                                         env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + HEADEND_START_S
        while relay.datagrams == before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").strip().splitlines()
                raise ConfigError("live mode: the head-end did not start"
                                  + (f": {tail[-1][:300]}" if tail else ""))
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


#: Events live mode does not play (docs/kit.md, "Live mode"): the box actions need the box
#: to stop and act on its card; a sharing policy's refusals depend on how many channels the
#: box decodes within the card's window, and the live box decodes every channel of the
#: multiplex at once (the card counts it as more receivers than the file-mode scan); the live
#: carousel has no group (shared) EMMs, so a message or fingerprint to a group slot is played
#: in file mode only (:func:`file_mode_only`).  Bookings, top-ups, and messages and
#: fingerprints to one card or to all are queued in the head-end's outbox and aired by its
#: carousel.
#: (A PPV event is played: the head-end is restarted, it reads the catalogue at its start.)
FILE_MODE_ONLY = frozenset({EventKind.BUY, EventKind.UPLOAD_REPORT, EventKind.SHARE_CARD,
                            EventKind.SHARING_POLICY})
#: ... and these when addressed to a group (``address = "shared"``)
_GROUP_ADDRESSED = frozenset({EventKind.MESSAGE, EventKind.FINGERPRINT})
FILE_MODE_ONLY_REASON = (
    "live mode: box actions (buy, upload-report, share-card), sharing policies, and messages "
    "and fingerprints to a group are played in file mode only; so is every later step (the "
    "cards' state depends on them)")


def file_mode_only(event: Event) -> bool:
    """Live mode cannot play ``event`` (:data:`FILE_MODE_ONLY`)."""
    return event.kind in FILE_MODE_ONLY or (
        event.kind in _GROUP_ADDRESSED and event.args.get("address") == "shared")


CHECKS_SKIP_REASON = ("live mode: the checks besides the channels (messages, fingerprint, "
                      "purchase report, sharing) are made in file mode only")


def file_mode_from(scenario: Scenario) -> int:
    """The index of the first step live mode cannot play (len(steps): none)."""
    for i, step in enumerate(scenario.steps):
        if any(file_mode_only(e) for e in step.events):
            return i
    return len(scenario.steps)


def skip_reason(step: Step, *, file_mode_only: bool = False) -> str:
    """Why live mode does not grade ``step`` ("" when it does)."""
    if file_mode_only:
        return FILE_MODE_ONLY_REASON
    if step.stream_offset_s:
        return ("live mode: the head-end stamps ECMs with the store's clock; a stream clock "
                f"offset ({step.stream_offset_s} s) is played in file mode only")
    return ""


def run_live(kit: Path, timeline: Mapping[str, Any], expected: Mapping[str, Any],
             command: Sequence[str], result: RunResult, *,
             box_env: Callable[..., dict[str, str]], http: bool, settle_s: float = SETTLE_S,
             say: Callable[[str], None] = lambda _m: None) -> None:
    """Play the kit live; the graded cases go to ``result``."""
    scenario = load_scenario(kit / "scenario.toml")
    names = {ch["number"]: ch["name"] for ch in timeline["channels"]}
    with tempfile.TemporaryDirectory(prefix="cas-kit-live-") as tmp, \
            contextlib.ExitStack() as stack:
        work = Path(tmp)
        (work / "nvram").mkdir()
        (work / "data").mkdir()
        (work / "scratch").mkdir()
        shutil.copytree(kit / "cards", work / "cards")
        say("live: the head-end's store from the kit's scenario")
        world, store, keys = rebuild_world(kit, scenario, work / "data", work / "scratch")
        stack.callback(store.dispose)
        relay = Relay()
        stack.callback(relay.close)
        server = stack.enter_context(ReportServer()) if http else None
        headend = _Headend(work, work / "data", timeline["channels"], relay.port)
        stack.callback(headend.stop)
        ecm_pids = headend.ecm_pids()
        boxes: dict[str, LiveBox] = {}

        def stop_boxes() -> None:
            for b in boxes.values():
                b.stop()

        stack.callback(stop_boxes)
        extra = KitEmms(keys, _Rng(scenario.seed ^ 0x5A5A))
        recorded: dict[str, list[bytes]] = {}
        ecm_key_index = 0
        headend_up = False
        previous = ""
        file_only_from = file_mode_from(scenario)
        for number, (spec, step, exp) in enumerate(zip(scenario.steps, timeline["steps"],
                                                       expected["steps"], strict=True)):
            say(f"step {step['index']}: {step['name']} (live)")
            drop: set[int] = set()
            emm_mode = ""
            inject: list[bytes] = []
            new_key = ecm_key_index
            send_keys: list[int] = []
            with store.reader() as session:
                now = clock_now(session)
                for event in spec.events:
                    kind = event.kind
                    if kind is EventKind.LOSE_ECM:
                        drop |= {ecm_pids[int(c)] for c in event.args["channels"]
                                 if int(c) in ecm_pids}
                    elif kind is EventKind.DROP_EMM:
                        emm_mode = "drop"
                    elif kind is EventKind.TAMPER_EMM:
                        emm_mode = "tamper"
                    elif kind is EventKind.REPLAY_EMM:
                        inject += recorded.get(str(event.args["step"]), [])
                    elif kind is EventKind.OTHER_CARD_EMM:
                        inject += extra.for_other_card(session, now)
                    elif kind is EventKind.ECM_KEY:
                        new_key = int(event.args["index"])
                    elif kind is EventKind.SEND_ECM_KEY:
                        send_keys.append(int(event.args["index"]))
            recorded[previous] = relay.step(drop_pids=drop, emm_mode=emm_mode, inject=inject)
            if not headend_up or new_key != ecm_key_index:
                ecm_key_index = new_key
                headend.start(ecm_key_index, relay)
                headend_up = True
            # the billing events, committed as the API and the CLI commit them
            with store.transaction() as session:
                for j, event in enumerate(spec.events):
                    if event.kind not in _STREAM_KINDS:
                        world.apply(session, event, f"{spec.name}-{j}")
            _queue_commands(store, keys, world.command_emms)
            world.command_emms = []
            if any(e.kind is EventKind.PPV_EVENT for e in spec.events):
                headend.start(ecm_key_index, relay)  # it reads the PPV catalogue at its start
            for index in send_keys:
                with store.reader() as session:
                    at = clock_now(session)
                queue_global_emm(store, keys, [ecm_key_update_command(index,
                                                                      keys.ecm_key(index))],
                                 at=at, cause="kit ecm key")
            # the boxes: started, or restarted with another card or PIN
            # (a viewer with a PIN enters it once per step, as in file mode: restarted)
            keep = {key for key, b in boxes.items()
                    if b.proc.poll() is None and not step["boxes"][key].get("pin")
                    and (b.card, b.pin) == (step["boxes"][key].get("card"), None)}
            for box_key, running in boxes.items():
                if box_key not in keep:
                    relay.set_target(box_key, None)
                    running.stop()
            for box_key in exp["boxes"]:
                inside = step["boxes"][box_key]
                if box_key in keep:
                    continue
                env = box_env(kit, timeline, work, step, box_key)
                env.pop("KIT_STREAM", None)
                box = LiveBox.start(box_key, command, env, card=inside.get("card"),
                                    pin=inside.get("pin"), server=server)
                boxes[box_key] = box
                relay.set_target(box_key, box.port)
            previous = step["name"]
            _grade(result, step, exp, boxes, names,
                   skip_reason(spec, file_mode_only=number >= file_only_from),
                   settle_s=FIRST_SETTLE_S if number == 0 else settle_s)
            result.cases.extend(
                CaseResult(step=step["index"], step_name=step["name"],
                           step_title=step["title"], box=box_key, channel=0,
                           channel_name=name, check=name, expected=str(check["expected"]),
                           seen="", message="", skipped=CHECKS_SKIP_REASON)
                for box_key, checks in exp.get("checks", {}).items()
                for name, check in checks.items())


def _queue_commands(store: Store, keys: OperatorKeys,
                    emms: Sequence[tuple[OsdTarget, list[EmmCommand]]]) -> None:
    """The step's messages, fingerprints (and sharing policies: their steps are not graded
    live, but their events still run), queued for the head-end's carousel; a group's are
    file-mode only and not queued."""
    for target, commands in emms:
        with store.reader() as session:
            at = clock_now(session)
        if target.serial is not None:
            with store.transaction() as session:
                queue_card_emm(session, keys, target.serial, commands, at=at,
                               cause="kit command", validity_s=CARD_EMM_VALIDITY_S)
        elif target.shared_address is None:
            queue_global_emm(store, keys, [command_bytes(commands)], at=at,
                             cause="kit command", validity_s=CARD_EMM_VALIDITY_S)


_STREAM_KINDS = frozenset({EventKind.DROP_EMM, EventKind.REPLAY_EMM, EventKind.TAMPER_EMM,
                           EventKind.LOSE_ECM, EventKind.ECM_KEY, EventKind.SEND_ECM_KEY,
                           EventKind.OTHER_CARD_EMM})


def _grade(result: RunResult, step: Mapping[str, Any], exp: Mapping[str, Any],
           boxes: Mapping[str, LiveBox], names: Mapping[int, str], skipped: str, *,
           settle_s: float) -> None:
    """Wait for the step to settle, then grade what every box shows."""
    want = {(box, int(ch)): v["reason"] for box, chans in exp["boxes"].items()
            for ch, v in chans.items()}
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        if skipped and elapsed >= MIN_DWELL_S:
            break
        seen = {key: b.seen() for key, b in boxes.items()}
        matches = all(seen[box].get(ch) is not None and seen[box][ch].reason == reason
                      for (box, ch), reason in want.items())
        if (matches and elapsed >= MIN_DWELL_S) or elapsed >= settle_s:
            break
        if any(b.proc.poll() is not None for b in boxes.values()):
            break
        time.sleep(0.1)
    for (box, ch), reason in want.items():
        got = boxes[box].seen().get(ch)
        result.cases.append(CaseResult(
            step=step["index"], step_name=step["name"], step_title=step["title"], box=box,
            channel=ch, channel_name=names.get(ch, ""), expected=reason,
            seen=got.reason if got is not None else "NOT_REPORTED",
            message=got.message if got is not None else boxes[box].problem(),
            skipped=skipped))


def run_kit_live(kit: Path, box: str, *, report: ReportVia = ReportVia.STDOUT,
                 settle_s: float | None = None,
                 progress: Callable[[str], None] | None = None) -> RunResult:
    """Grade the box command ``box`` (``stub`` for ours) on ``kit`` through the live
    head-end, each step within ``settle_s`` (:data:`SETTLE_S`)."""
    timeline, expected, command = open_kit(kit, box)
    result = RunResult(kit=timeline["kit"], box_command=box)
    t0 = time.monotonic()
    run_live(kit, timeline, expected, command, result, box_env=box_env,
             http=report is ReportVia.HTTP, settle_s=settle_s or SETTLE_S,
             say=progress or (lambda _m: None))
    result.duration_s = time.monotonic() - t0
    return result
