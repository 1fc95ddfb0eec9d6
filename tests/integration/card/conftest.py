"""Fixtures for card tests through real PC/SC: a data directory with operator keys and
personalised cards (made by the real ``cas card personalise``), and ``cas card serve``
subprocesses attached to the session's pcscd + vpcd."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cas.card.client import CardClient
from cas.card.pcsc import PcscTransport
from cas.errors import CardError
from cas.store.engine import open_store
from tests.fixtures.pcsc import PcscService, VpcdSlot
from tests.unit.card.helpers import KEYS

# The installed console script (``pip install -e .`` puts it next to the interpreter).
CAS = [str(Path(sys.executable).with_name("cas"))]


def cas_env(pcscd: PcscService, data_dir: Path) -> dict[str, str]:
    env = dict(pcscd.env)
    env["CAS_DATA_DIR"] = str(data_dir)
    env.pop("CAS_OPERATOR_KEY", None)
    env.pop("CAS_DB_URL", None)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3])
    return env


def run_cas(args: Sequence[str], env: dict[str, str], *, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CAS, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"cas {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


@dataclass
class CardWorkspace:
    """A data dir with the operator keys of the unit-test helpers and N personalised cards."""

    data_dir: Path
    env: dict[str, str]
    images: list[Path] = field(default_factory=list)
    serials: list[int] = field(default_factory=list)

    def personalise(self, count: int, start_serial: int) -> list[Path]:
        out = run_cas(["--json", "card", "personalise", "--count", str(count),
                       "--start-serial", str(start_serial), "--pin", "1234",
                       "--out", str(self.data_dir / "cards")], self.env)
        cards = json.loads(out.stdout)["cards"]
        paths = [Path(c["image"]) for c in cards]
        self.images += paths
        self.serials += [int(c["serial"]) for c in cards]
        return paths


@pytest.fixture
def workspace(pcscd: PcscService, tmp_path: Path) -> CardWorkspace:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # The helpers' fixed OMK, so tests can seal EMMs/ECMs for these cards.
    KEYS.save(data_dir / "operator-keys.toml")
    # `cas card personalise` registers cards in an existing store (only set-up commands
    # create one): a bare store, as a head-end before `cas operator use`.
    open_store(data_dir=data_dir, create=True).dispose()
    return CardWorkspace(data_dir=data_dir, env=cas_env(pcscd, data_dir))


class CardServer:
    """``cas card serve`` in a subprocess, cards on consecutive vpcd slots."""

    def __init__(self, images: Sequence[Path], slots: Sequence[VpcdSlot], env: dict[str, str],
                 log: Path, extra_args: Sequence[str] = ()) -> None:
        self.extra_args = list(extra_args)
        self.images = list(images)
        self.slots = list(slots)
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        args = [*CAS, "card", "serve", "--vpcd", self.slots[0].endpoint]
        for image in self.images:
            args += ["--image", str(image)]
        args += self.extra_args
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        for slot in self.slots[: len(self.images)]:
            # the bridge is connected to vpcd, then pcscd sees the card and it answers
            self._wait(lambda i=slot.index: f"slot {i}: connected" in self._log_since(offset),
                       deadline, f"slot {slot.index} to connect")
            self._wait(lambda r=slot.reader: _answers(r), deadline,
                       f"the card in {slot.reader} to answer")

    def _log_since(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def _wait(self, predicate: Callable[[], bool], deadline: float, what: str) -> None:
        while not predicate():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"cas card serve exited ({self.proc.returncode}):\n"
                                     f"{self.log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n"
                                     f"{self.log.read_text(errors='replace')}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up (a pulled card)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None


def _answers(reader: str) -> bool:
    """A card is in ``reader`` and answers SELECT (pcscd may lag behind a card swap)."""
    try:
        with PcscTransport(reader) as transport:
            CardClient(transport)
        return True
    except CardError:
        return False


StartServer = Callable[[Sequence[Path], dict[str, str]], CardServer]


@pytest.fixture
def card_server(pcscd: PcscService, tmp_path: Path) -> Iterator[StartServer]:
    """Factory: ``card_server(images, env)`` starts a server; all are stopped afterwards."""
    servers: list[CardServer] = []

    def start(images: Sequence[Path], env: dict[str, str]) -> CardServer:
        server = CardServer(images, pcscd.slots, env, tmp_path / f"serve-{len(servers)}.log")
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
    # let pcscd notice the cards are gone before the next test serves its own
    deadline = time.monotonic() + 5
    from cas.card.pcsc import card_states

    while time.monotonic() < deadline:
        if not any(card_states().values()):
            break
        time.sleep(0.05)
