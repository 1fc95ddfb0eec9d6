"""An operator's world for the end-to-end tests of the live head-end, as it would be set up
in a lab: a data dir with operator keys and a store (SQLite in the data dir, or PostgreSQL),
the demo operator profile and lineup, one box (chip from the chipset vendor, imported), one
card (personalised by the card factory code, registered, linked to an account and paired
with the box), an API key and a portal password; a clear test stream per played channel.

The processes are the real commands: ``cas serve all`` (operator API and portal, real TCP),
``cas headend run CONFIG.toml`` (live playout over UDP) and ``stb scan udp://…`` (the box).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from cas.billing import accounts
from cas.billing.clock import clock_now
from cas.billing.setup import use_profile
from cas.card.eeprom import write_image_atomic
from cas.card.personalise import CardSlot, personalise_card
from cas.crypto import Key, OperatorKeys, wrap_key
from cas.crypto.keys import default_key_path
from cas.formats.chipid import ChipIdRecord, build_chip_id_record
from cas.formats.records import build_card_record
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.store.engine import Store, open_store
from cas.store.repo import register_card, to_s
from cas.web.domain import create_api_key, set_portal_password
from firmware_stub.chipset import save_vendor_key
from tests.fixtures.net import free_tcp_port
from tests.fixtures.net import free_udp_port as free_udp_port  # the live tests take it from here
from tests.integration.live.boxproc import BoxFiles

ROOT = Path(__file__).resolve().parents[3]
CAS = str(Path(sys.executable).parent / "cas")
OPERATOR = "demo"
PROFILE = ROOT / "cas" / "demo" / "profile.toml"
LINEUP = ROOT / "cas" / "demo" / "lineup.toml"
VENDOR_ID = 0x0001
HOME_REGION = 398
#: Channel 1 "Qazaqstan" (service 1001) is in the "start" package, 2490 KZT a month.
CHANNEL = 1
SERVICE_ID = 1001
PACKAGE = "start"
PRICE_MINOR = 249_000
PASSWORD = "live-e2e-secret"


@dataclass
class World:
    root: Path
    data_dir: Path
    db_url: str | None
    store: Store
    keys: OperatorKeys
    api_key: str
    account_number: str
    serial: int
    chip_id: int
    box: BoxFiles
    sources: dict[int, Path]

    @property
    def dialect(self) -> str:
        return "postgresql" if self.db_url else "sqlite"

    def now(self) -> datetime:
        with self.store.reader() as s:
            return clock_now(s)

    def env(self) -> dict[str, str]:
        """The commands' environment: no CAS_* from the developer's shell."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
        env["CAS_WEB_SECRET"] = "cd" * 32
        return env

    def cas_args(self) -> list[str]:
        return ["--data-dir", str(self.data_dir)] + (
            ["--db-url", self.db_url] if self.db_url else [])

    def close(self) -> None:
        self.store.dispose()


def build_world(root: Path, *, db_url: str | None, serial: int = 2_256_900_001,
                chip_id: int = 0x5A0E2E01, channels: Sequence[int] = (CHANNEL,)) -> World:
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    keys = OperatorKeys.generate()
    keys.save(default_key_path(data_dir))
    store = open_store(db_url=db_url, data_dir=None if db_url else data_dir)
    vendor_key = keys.chipset_vendor_key(VENDOR_ID)
    chip = ChipIdRecord(chip_id=chip_id, vendor="cas-sim chips", model="STB-LIVE",
                        wrapped_csk=wrap_key(vendor_key, Key(os.urandom(16), label="csk")),
                        firmware_version=0x02010000, manufactured_s=int(time.time()) - 86_400)
    with store.transaction() as s:
        use_profile(s, PROFILE, lineup=LINEUP)
        at = clock_now(s)
        accounts.import_boxes(s, [chip], at=at)
        slot = register_card(s, serial, at=at, region=HOME_REGION)
        record = personalise_card(keys, CardSlot(serial=serial, shared_address=slot.shared_address,
                                                 member_position=slot.member_position),
                                  now_s=to_s(at) - 86_400, region=HOME_REGION)
        acc = accounts.create_account(s, surname="Live", name="Viewer", at=at,
                                      phone="+77015550101", region=HOME_REGION)
        accounts.link_box(s, chip_id=chip_id, account_number=acc.account_number, at=at)
        accounts.link_card(s, serial=serial, account_number=acc.account_number, at=at)
        accounts.pair_card(s, serial=serial, chip_id=chip_id, at=at)
        set_portal_password(s, account_number=acc.account_number, password=PASSWORD,
                            wall_s=int(time.time()))
        api_key = create_api_key(s, operator=OPERATOR, label="live-e2e",
                                 wall_s=int(time.time())).full
    box_dir = root / "box"
    box_dir.mkdir()
    (box_dir / "chip.rec").write_bytes(build_chip_id_record(chip))
    save_vendor_key(box_dir / "vendor.key", vendor_key)
    (box_dir / "rom.key").write_text(keys.transport_key().raw().hex() + "\n")
    write_image_atomic(box_dir / "card.img", build_card_record(record))
    box = BoxFiles(chip_record=box_dir / "chip.rec", vendor_key=box_dir / "vendor.key",
                   nvram=box_dir / "nvram.json", card_image=box_dir / "card.img",
                   rom_key=box_dir / "rom.key")
    sources = {}
    for number in channels:
        path = root / f"clear-{number}.ts"
        make_test_stream([TestService(service_id=1000 + number, name=f"source {number}")],
                         path, TestStreamOptions(duration_s=4.0))
        sources[number] = path
    return World(root=root, data_dir=data_dir, db_url=db_url, store=store, keys=keys,
                 api_key=api_key, account_number=acc.account_number, serial=serial,
                 chip_id=chip_id, box=box, sources=sources)


def headend_config(world: World, port: int, *, crypto_period_s: float = 2.0,
                   poll_interval_s: float = 0.2, name: str = "headend.toml") -> Path:
    """The live head-end's TOML file (docs/live.md): the world's channels to the box's port."""
    lines = ["[headend]", f'data_dir = "{world.data_dir}"']
    if world.db_url:
        lines.append(f'db_url = "{world.db_url}"')
    lines += ["", "[output]", f'url = "udp://127.0.0.1:{port}"', "",
              "[scrambling]", 'algorithm = "csa2"', f"crypto_period_s = {crypto_period_s}", ""]
    for number, path in world.sources.items():
        lines += ["[[service]]", f"channel = {number}", f'source = "loop:{path}"', ""]
    lines += ["[emm]", f"poll_interval_s = {poll_interval_s}", "repeat_count = 3", "repeat_window_s = 3.0",
              "cycle_bitrate_bps = 50000", "", "[ops]", "listen = \"127.0.0.1:0\"",
              'log = "json"', ""]
    path = world.root / name
    path.write_text("\n".join(lines))
    return path


@dataclass
class Proc:
    """A command started for a test, its output kept in a file (read on failure)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                return self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=timeout_s)

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its state but runs no more (until killed)."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def kill9(self) -> None:
        """SIGKILL, no chance to clean up (a power cut, the OOM killer)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def start(args: list[str], world: World, log_name: str) -> Proc:
    log = world.root / log_name
    handle = log.open("ab")
    proc = subprocess.Popen(args, cwd=world.root, env=world.env(), stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    return Proc(proc=proc, log=log)


def start_headend(world: World, config: Path, log_name: str = "headend.log") -> Proc:
    return start([CAS, *world.cas_args(), "headend", "run", str(config)], world, log_name)


def start_web(world: World, timeout_s: float = 60.0) -> tuple[Proc, str]:
    """``cas serve all`` on 127.0.0.1 (API + portal); returns it and its base URL."""
    port = free_tcp_port()
    args = [CAS, "--data-dir", str(world.data_dir), "serve", "all", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    if world.db_url:
        args += ["--db-url", world.db_url]
    web = start(args, world, "web.log")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not web.alive():
            raise AssertionError(f"cas serve exited: {web.tail()}")
        try:
            if httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200:
                return web, base
        except httpx.HTTPError:
            time.sleep(0.1)
    web.stop()
    raise AssertionError(f"cas serve did not answer: {web.tail()}")


