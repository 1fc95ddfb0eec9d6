"""A subscriber's home and its operator, built from the real layers, for ``cas diag visit``.

The head-end is a SQLite store running the TV+ rules on a small lineup (four channels, a base
package and the "Viasat Sport HD" add-on); EMMs come from the head-end's own EMM run over
that store; ECMs from :mod:`cas.headend.ecmgen` with the catalog's access criteria; the
stream from :mod:`cas.headend.scrambler` over an ffmpeg test stream.  A home is a card
personalised by the card factory code (run by the real applet, in process), a box with its
Chip ID record and NVRAM file, and an account with subscriptions and payments.  Each fault
is made the way it happens in the field: by the billing rules, by the EMM feed, or by
damaging the stream.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cas.billing import accounts, clock, service
from cas.billing.catalog import all_access_criteria
from cas.billing.setup import use_profile
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom
from cas.card.personalise import CardSlot, personalise_card
from cas.card.transport import InProcessTransport
from cas.crypto import Key, OperatorKeys, wrap_key
from cas.diag.visit import VisitInput, VisitReport, run_visit
from cas.errors import StatusWordError
from cas.formats.chipid import ChipIdRecord, build_chip_id_record
from cas.formats.records import build_card_record
from cas.formats.sections import iter_sections
from cas.headend.ecmgen import EcmSettings, channel_ecms_for
from cas.headend.emmrun import emm_run
from cas.headend.scrambler import (
    Algorithm,
    ScrambleConfig,
    Scrambler,
    ScrambleReport,
    payload_cipher,
)
from cas.store.engine import Store, open_store
from cas.store.repo import register_card

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
VENDOR_ID = 0x0001
EMM_PID = 0x0BFF
KZ = 398  # the service works only inside Kazakhstan (seed 000)

QAZAQSTAN, KHABAR, KINO, SPORT = 1, 2, 16, 24
SERVICE = {QAZAQSTAN: 1001, KHABAR: 1002, KINO: 1016, SPORT: 1024}

LINEUP = """
[lineup]
name = "diag bench lineup (TV+ style)"

[[channels]]
number = 1
name = "Qazaqstan"
service_id = 1001
regions = [398]

[[channels]]
number = 2
name = "Khabar"
service_id = 1002
regions = [398]

[[channels]]
number = 16
name = "Kino 18+"
service_id = 1016
maturity = 18
regions = [398]

[[channels]]
number = 24
name = "Viasat Sport HD"
service_id = 1024
regions = [398]

[[packages]]
id = 1
code = "start"
name = "TV+ Start"
kind = "base"
price = 2490
period_days = 30
screens = 1
channels = [1, 2, 16]

[[packages]]
id = 14
code = "viasat-sport"
name = "Viasat Sport HD"
kind = "addon"
price = 1990
period_days = 30
channels = [24]
"""


@dataclass
class Home:
    serial: int
    account: str
    chip: ChipIdRecord
    chip_path: Path
    nvram: Path
    applet: Applet
    client: CardClient
    image: Path  # the card's EEPROM image as personalised (for --card-image)

    @property
    def chip_id(self) -> int:
        return self.chip.chip_id


@dataclass
class DiagBench:
    tmp: Path
    clear_ts: bytes
    seed: int = 1
    rng: Callable[[int], bytes] = field(init=False)  # deterministic: tests reproduce
    keys: OperatorKeys = field(init=False)
    store: Store = field(init=False)
    _serial: int = 2_256_884_759
    _chip: int = 0x0A000001
    _payments: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed).randbytes
        self.keys = OperatorKeys.generate(self.rng, now_s=int(T0.timestamp()))
        self.store = open_store(data_dir=self.tmp / "store")
        lineup = self.tmp / "lineup.toml"
        lineup.write_text(LINEUP, encoding="utf-8")
        with self.store.transaction() as s:
            use_profile(s, "tvplus", lineup=lineup, clock_start=T0)

    @property
    def vendor_key(self) -> Key:
        return self.keys.chipset_vendor_key(VENDOR_ID)

    def key_files(self) -> tuple[Path, Path]:
        """(ROM key file, chipset vendor key file) as the field engineer's laptop has them."""
        from firmware_stub.chipset import save_vendor_key

        rom = self.tmp / "rom.key"
        vendor = self.tmp / "vendor.key"
        if not rom.exists():
            save_vendor_key(rom, self.keys.transport_key())  # same format: 32 hex digits
            save_vendor_key(vendor, self.vendor_key)
        return rom, vendor

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.tmp / 'store' / 'cas.sqlite'}"

    def now(self) -> datetime:
        with self.store.reader() as s:
            return clock.clock_now(s)

    def advance(self, days: int) -> None:
        with self.store.transaction() as s:
            clock.advance_clock(s, days=days)

    def pay(self, home: Home, amount_major: int) -> None:
        self._payments += 1
        with self.store.transaction() as s:
            service.pay(s, by="account", ref=home.account, amount_minor=amount_major * 100,
                        payment_id=f"diag-{self._payments}", at=clock.clock_now(s))

    def subscribe(self, home: Home, package: str) -> None:
        with self.store.transaction() as s:
            service.subscribe(s, account_number=home.account, package=package,
                              at=clock.clock_now(s))

    # --- a home: account, card, box ------------------------------------------------------
    def home(self, *, packages: tuple[str, ...] = ("start",), money_major: int | None = None,
             region: int = KZ, kids: bool = False, pair: bool = True,
             renew: bool = True) -> Home:
        serial = self._serial
        self._serial += 1
        chip_id = self._chip
        self._chip += 1
        csk = Key(self.rng(16), label="csk")
        chip = ChipIdRecord(chip_id=chip_id, vendor="cas-sim chips", model="STB-1",
                            wrapped_csk=wrap_key(self.vendor_key, csk),
                            firmware_version=0x01020300,
                            manufactured_s=int((T0 - 90 * DAY).timestamp()))
        prices = {"start": 2490, "viasat-sport": 1990}
        money = sum(prices[p] for p in packages) if money_major is None else money_major
        with self.store.transaction() as s:
            at = clock.clock_now(s)
            slot = register_card(s, serial, at=at)
            acc = accounts.create_account(s, surname="Abenova", name="Aigerim", at=at)
            accounts.link_card(s, serial=serial, account_number=acc.account_number, at=at)
            accounts.set_card_region(s, serial=serial, region=region, at=at)
            accounts.import_boxes(s, [chip], at=at, batch="diag bench")
            accounts.link_box(s, chip_id=chip_id, account_number=acc.account_number, at=at)
            if pair:
                accounts.pair_card(s, serial=serial, chip_id=chip_id, at=at)
            if kids:
                accounts.set_kids_profile(s, serial=serial, on=True, at=at)
            number = acc.account_number
        home_dir = self.tmp / f"home-{serial}"
        home_dir.mkdir()
        chip_path = home_dir / "chip.rec"
        chip_path.write_bytes(build_chip_id_record(chip))
        record = personalise_card(
            self.keys, CardSlot(serial=serial, shared_address=slot.shared_address,
                                member_position=slot.member_position),
            now_s=int((T0 - DAY).timestamp()))
        applet = Applet(Eeprom(record), rom_key=self.keys.transport_key())
        image = home_dir / f"{serial:010d}.img"
        image.write_bytes(build_card_record(record))
        home = Home(serial=serial, account=number, chip=chip, chip_path=chip_path,
                    nvram=home_dir / "nvram.json", applet=applet,
                    client=CardClient(InProcessTransport(applet)), image=image)
        if money:
            self.pay(home, money)
        for package in packages:
            self.subscribe(home, package)
        if not renew:
            with self.store.transaction() as s:
                service.set_renewal(s, account_number=number, on=False, at=clock.clock_now(s))
        return home

    # --- the head-end's outputs ------------------------------------------------------------
    def emm_run(self, mode: str = "incremental") -> list[bytes]:
        """Run the head-end's EMM generation; the sections it wrote."""
        out = self.tmp / f"emms-{self.rng(4).hex()}.bin"
        emm_run(self.store, self.keys, mode=mode, at=self.now(), out=str(out), workers=1)
        return list(iter_sections(out.read_bytes()))

    @staticmethod
    def deliver(home: Home, sections: list[bytes]) -> int:
        """Give the card its EMMs directly (as a box did earlier); how many it applied."""
        applied = 0
        for section in sections:
            try:
                home.client.process_emm(section)
                applied += 1
            except StatusWordError:
                pass
        return applied

    def stream(self, emms: list[bytes], *, name: str = "stream", crypto_period_ms: int = 1000,
               ecm_stop_s: dict[int, float] | None = None) -> Path:
        """The head-end's scrambled stream at the head-end's now, with ``emms`` in a
        carousel; ``ecm_stop_s``: {service id: time} after which its ECMs are gone."""
        with self.store.reader() as s:
            criteria = {ch.service_id: crit for ch, crit in all_access_criteria(s)}
        settings = EcmSettings(crypto_period_ms=crypto_period_ms, cw_length=8)
        services = channel_ecms_for(self.keys, criteria, settings=settings,
                                    start_s=int(self.now().timestamp()), rng=self.rng)
        config = ScrambleConfig(algorithm=Algorithm.CSA2, crypto_period_ms=crypto_period_ms,
                                emm_pid=EMM_PID, emm_repeat=True)
        out = io.BytesIO()
        report = Scrambler(config, services, payload_cipher(Algorithm.CSA2),
                           emm_sections=list(emms)).run(io.BytesIO(self.clear_ts), out)
        data = out.getvalue()
        if ecm_stop_s:
            data = drop_ecms_after(data, {report_ecm_pid(report, sid): t
                                          for sid, t in ecm_stop_s.items()})
        path = self.tmp / f"{name}.ts"
        path.write_bytes(data)
        return path

    # --- the visit ----------------------------------------------------------------------------
    def visit(self, home: Home, stream: Path, *, box: Home | None = None, db: bool = True,
              with_box: bool = True) -> VisitReport:
        """The field engineer at ``home``: its card, ``box`` (default: its own), the stream."""
        where = box or home
        inp = VisitInput(stream=stream,
                         chip_record=where.chip_path if with_box else None,
                         nvram=where.nvram if with_box else None,
                         vendor_key=self.vendor_key if with_box else None)
        return run_visit(inp, store=self.store if db else None, card=home.client,
                         card_name="in-process")


def two_channel_home(tmp: Path) -> tuple[DiagBench, Home, Path]:
    """A head-end in ``tmp / "he"`` airing Qazaqstan and Viasat Sport HD (3 s), one home, and
    the scrambled stream with the full EMM run."""
    from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream

    clear = tmp / "clear.ts"
    make_test_stream([TestService(service_id=1001, name="Qazaqstan"),
                      TestService(service_id=1024, name="Viasat Sport HD")], clear,
                     TestStreamOptions(duration_s=3.0))
    (tmp / "he").mkdir()
    bench = DiagBench(tmp / "he", clear.read_bytes())
    home = bench.home()
    return bench, home, bench.stream(bench.emm_run("full"))


def report_ecm_pid(report: ScrambleReport, service_id: int) -> int:
    for svc in report.services:
        if svc.service_id == service_id:
            return svc.ecm_pid
    raise AssertionError(f"the scrambler report names no ECM PID for service {service_id}")


def drop_ecms_after(data: bytes, stop: dict[int, float]) -> bytes:
    """Replace the packets of each ECM PID by null packets from time ``stop[pid]`` on (time
    from the first PCR PID, as the probe measures it)."""
    from cas.diag.probe import probe_bytes

    probe = probe_bytes(data)
    seconds_per_packet = probe.duration_s / probe.packets
    out = bytearray(data)
    null = bytes((0x47, 0x1F, 0xFF, 0x10)) + b"\xff" * 184
    for i in range(len(data) // 188):
        off = i * 188
        pid = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        if pid in stop and i * seconds_per_packet >= stop[pid]:
            out[off:off + 188] = null
    return bytes(out)
