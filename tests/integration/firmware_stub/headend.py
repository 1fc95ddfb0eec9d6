"""A small head-end for the box's end-to-end tests, built from the real layers.

Operator keys, chip records from a chipset vendor, cards personalised by the card factory
code and run by the real applet, EMMs sealed by ``cas.messages``, ECMs by
``cas.headend.ecmgen`` and streams scrambled by ``cas.headend.scrambler`` from an ffmpeg
test stream.  The box under test gets only what a box gets: its Chip ID record, its vendor
key, a card (through a transport) and the scrambled stream.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cas.access import AccessCriteria, CardStatus, PpvEvent
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom, write_image_atomic
from cas.card.personalise import default_slot, personalise_card
from cas.card.transport import InProcessTransport
from cas.crypto import Key, OperatorKeys, chip_blob, unwrap_key, wrap_key
from cas.formats.chipid import ChipIdRecord, build_chip_id_record
from cas.formats.emm import (
    AddEntitlement,
    EmmCommand,
    EmmHeader,
    Pair,
    SetMaturity,
    SetRegion,
    SetStatus,
    UniqueAddress,
)
from cas.formats.records import build_card_record
from cas.formats.ts import Packetizer
from cas.headend.ecmgen import EcmSettings, channel_ecms_for
from cas.headend.scrambler import (
    Algorithm,
    ScrambleConfig,
    Scrambler,
    ScrambleReport,
    payload_cipher,
)
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from cas.messages import seal_emm
from firmware_stub.box import Box
from firmware_stub.chipset import save_vendor_key
from firmware_stub.cli import cli

START_S = 1_750_000_000
DAY_S = 86_400
VENDOR_ID = 0x0001


class Rng:
    """Deterministic randomness (tests are reproducible)."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._r.randbytes(n)


@dataclass
class Card:
    serial: int
    applet: Applet
    transport: InProcessTransport
    client: CardClient
    seq: int = 0


@dataclass
class HeadEnd:
    seed: int = 1
    rng: Rng = field(init=False)
    keys: OperatorKeys = field(init=False)

    def __post_init__(self) -> None:
        self.rng = Rng(self.seed)
        self.keys = OperatorKeys.generate(self.rng, now_s=START_S)

    # --- devices ---------------------------------------------------------------------------
    @property
    def vendor_key(self) -> Key:
        return self.keys.chipset_vendor_key(VENDOR_ID)

    def chip(self, chip_id: int) -> ChipIdRecord:
        """The chipset vendor's record of one chip (CSK wrapped under the vendor key)."""
        csk = Key(self.rng(16), label="csk")
        return ChipIdRecord(chip_id=chip_id, vendor="cas-sim chips", model="STB-1",
                            wrapped_csk=wrap_key(self.vendor_key, csk),
                            firmware_version=0x01020300, manufactured_s=START_S - 90 * DAY_S)

    def card(self, serial: int, *, pin: str = "1234", region: int = 1,
             status: CardStatus = CardStatus.INACTIVE) -> Card:
        record = personalise_card(self.keys, default_slot(serial), now_s=START_S - DAY_S,
                                  pin=pin, region=region, status=status)
        applet = Applet(Eeprom(record), rom_key=self.keys.transport_key())
        transport = InProcessTransport(applet)
        return Card(serial=serial, applet=applet, transport=transport,
                    client=CardClient(transport))

    def boot(self, chip: ChipIdRecord, nvram: Path | None, card: Card | None) -> Box:
        return Box.boot(chip, nvram, vendor_key=self.vendor_key,
                        card=card.client if card is not None else None,
                        clock=lambda: float(START_S))

    # --- EMMs ------------------------------------------------------------------------------
    def emm(self, card: Card, commands: Sequence[EmmCommand]) -> bytes:
        card.seq += 1
        header = EmmHeader(address=UniqueAddress(serial=card.serial), seq=card.seq,
                           not_after_s=START_S + 30 * DAY_S)
        return seal_emm(self.keys.cuk(card.serial), header, list(commands), self.rng(12))

    def pair_emm(self, card: Card, chip: ChipIdRecord) -> bytes:
        csk = unwrap_key(self.vendor_key, chip.wrapped_csk, label="csk")
        cwpk = Key(self.rng(16), label="cwpk")
        return self.emm(card, [Pair(chip_id=chip.chip_id, cwpk=cwpk.raw(),
                                    chip_blob=chip_blob(csk, cwpk))])

    def activate_emm(self, card: Card, packages: Sequence[int], *, start_s: int = START_S - DAY_S,
                     end_s: int = START_S + 30 * DAY_S, region: int | None = None,
                     maturity: int | None = None,
                     status: CardStatus = CardStatus.ACTIVE) -> bytes:
        cmds: list[EmmCommand] = [SetStatus(status=status)]
        cmds += [AddEntitlement(package_id=p, start_s=start_s, end_s=end_s) for p in packages]
        if region is not None:
            cmds.append(SetRegion(region=region))
        if maturity is not None:
            cmds.append(SetMaturity(maturity_limit=maturity))
        return self.emm(card, cmds)

    # --- streams ---------------------------------------------------------------------------
    def scramble(self, clear: bytes, criteria: dict[int, AccessCriteria], *,
                 algorithm: Algorithm = Algorithm.CSA2, crypto_period_ms: int = 1000,
                 emms: Sequence[bytes] = (), emm_pid: int = 0x0BFF,
                 ppv_events: dict[int, Sequence[PpvEvent]] | None = None,
                 start_s: int = START_S) -> tuple[bytes, ScrambleReport]:
        settings = EcmSettings(crypto_period_ms=crypto_period_ms,
                               cw_length=algorithm.cw_length)
        services = channel_ecms_for(self.keys, criteria, settings=settings, start_s=start_s,
                                    rng=self.rng, ppv_events=ppv_events)
        config = ScrambleConfig(algorithm=algorithm, crypto_period_ms=crypto_period_ms,
                                emm_pid=emm_pid, emm_repeat=True)
        out = io.BytesIO()
        report = Scrambler(config, services, payload_cipher(algorithm),
                           emm_sections=list(emms)).run(io.BytesIO(clear), out)
        return out.getvalue(), report


def emm_packets(pid: int, sections: Sequence[bytes]) -> bytes:
    """EMM sections as TS packets on ``pid``, one section starting per packet run."""
    pk = Packetizer(pid)
    return b"".join(b"".join(pk.packetize(s)) for s in sections)


def insert_after(stream: bytes, packets: bytes, *, pid: int, occurrence: int = 1) -> bytes:
    """``packets`` spliced into ``stream`` right after the ``occurrence``-th packet on ``pid``."""
    seen = 0
    for i in range(0, len(stream), 188):
        if ((stream[i + 1] & 0x1F) << 8) | stream[i + 2] == pid:
            seen += 1
            if seen == occurrence:
                return stream[:i + 188] + packets + stream[i + 188:]
    raise AssertionError(f"PID {pid} occurs fewer than {occurrence} times")


def insert_at_fraction(stream: bytes, packets: bytes, fraction: float) -> bytes:
    n = len(stream) // 188
    cut = int(n * fraction) * 188
    return stream[:cut] + packets + stream[cut:]


def es_payloads(stream: bytes, pid: int) -> list[bytes]:
    """Payloads of the packets on ``pid`` (after any adaptation field), in order."""
    out = []
    for i in range(0, len(stream) - 187, 188):
        p = stream[i:i + 188]
        if ((p[1] & 0x1F) << 8) | p[2] != pid or not p[3] & 0x10:
            continue
        off = 4 if not p[3] & 0x20 else 5 + p[4]
        out.append(p[off:])
    return out


def write_box_bench(d: Path, he: HeadEnd, *, chip_id: int, serial: int,
                    duration_s: float) -> tuple[Path, ChipIdRecord, Card]:
    """The files a tester has on the bench, in ``d``: a clear stream of Alpha (201) and Beta
    (202) (``clear.ts``), the box's Chip ID record and vendor key (``chip.rec``,
    ``vendor.key``), a card image personalised a day before ``START_S`` with PIN 2468
    (``card.img``) and its ROM key (``rom.key``).  Returns the clear stream's path, the chip
    and the card (by serial only: the image is the card)."""
    clear = d / "clear.ts"
    make_test_stream([TestService(service_id=201, name="Alpha"),
                      TestService(service_id=202, name="Beta")], clear,
                     TestStreamOptions(duration_s=duration_s))
    chip = he.chip(chip_id)
    (d / "chip.rec").write_bytes(build_chip_id_record(chip))
    save_vendor_key(d / "vendor.key", he.vendor_key)
    (d / "rom.key").write_text(he.keys.transport_key().raw().hex() + "\n")
    record = personalise_card(he.keys, default_slot(serial), now_s=START_S - DAY_S, pin="2468")
    write_image_atomic(d / "card.img", build_card_record(record))
    card = Card(serial=serial, applet=None, transport=None, client=None)  # type: ignore[arg-type]
    return clear, chip, card


def stb_scan_json(he: HeadEnd, chip_id: int, stream: bytes, d: Path) -> list[dict[str, Any]]:
    """``stb --json scan`` of ``stream`` by a box with chip ``chip_id`` and no card (its
    files written to ``d``); the channels of the lock report.  The command must succeed."""
    (d / "in.ts").write_bytes(stream)
    (d / "chip.rec").write_bytes(build_chip_id_record(he.chip(chip_id)))
    save_vendor_key(d / "vendor.key", he.vendor_key)
    result = CliRunner().invoke(cli, ["--json", "scan", str(d / "in.ts"),
                                      "--chip-record", str(d / "chip.rec"),
                                      "--vendor-key", str(d / "vendor.key"),
                                      "--nvram", str(d / "nvram.json")])
    assert result.exit_code == 0, result.output
    channels: list[dict[str, Any]] = json.loads(result.output)["channels"]
    return channels
