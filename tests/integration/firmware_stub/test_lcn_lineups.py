"""Every shipped lineup, scrambled in full with the catalogue's channel numbers: the box numbers
every channel by the catalogue, not by service_id — also where the SDT with the LCNs needs more
than one section (27-channel TV+ and larger), and where ffmpeg alone cannot write the lineup's
SDT (153-channel ATV+: the test stream is made in groups)."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import pytest

from cas.billing.catalog import load_lineup
from cas.formats import psi
from cas.headend.ecmgen import EcmSettings, channel_ecms_for, criteria_from_lineup
from cas.headend.scrambler import Algorithm, ScrambleConfig, Scrambler, payload_cipher
from cas.headend.teststream import TestService, TestStreamOptions, make_test_stream
from tests.integration.firmware_stub.headend import START_S, HeadEnd, stb_scan_json
from tests.unit.headend.helpers import sections_on

LINEUPS = sorted(p.name for p in resources.files("cas.billing.lineups").iterdir()
                 if p.name.endswith(".toml"))


def test_every_shipped_lineup_is_covered() -> None:
    assert {"atvplus.toml", "mts.toml", "ntvplus.toml", "tvplus.toml",
            "uzonline.toml"} <= set(LINEUPS)


@pytest.fixture(scope="module")
def he() -> HeadEnd:
    return HeadEnd(seed=12)


def _scrambled(he: HeadEnd, lineup_name: str, tmp: Path) -> tuple[bytes, dict[int, int]]:
    lineup = load_lineup(lineup_name, minor_per_major=100)
    numbers = {c.service_id: c.number for c in lineup.channels}
    clear = tmp / "clear.ts"
    make_test_stream([TestService(service_id=c.service_id, name=c.name)
                      for c in lineup.channels], clear, TestStreamOptions(duration_s=0.4))
    services = channel_ecms_for(he.keys, criteria_from_lineup(lineup),
                                settings=EcmSettings(crypto_period_ms=1000), start_s=START_S,
                                rng=he.rng)
    config = ScrambleConfig(algorithm=Algorithm.CSA2, crypto_period_ms=1000,
                            channel_numbers=numbers)
    out = io.BytesIO()
    Scrambler(config, services, payload_cipher(Algorithm.CSA2)).run(
        io.BytesIO(clear.read_bytes()), out)
    return out.getvalue(), numbers


@pytest.mark.parametrize("lineup_name", LINEUPS)
def test_box_numbers_every_channel_of_the_lineup_by_the_catalogue(
        he: HeadEnd, lineup_name: str, tmp_path: Path) -> None:
    stream, numbers = _scrambled(he, lineup_name, tmp_path)
    # the SDT actual: every scrambled service free_CA_mode 1, an LCN each, sections that fit
    sdts = {s for _, s in sections_on(stream, psi.SDT_PID)}
    services = {sv.service_id: sv for s in sdts for sv in psi.parse_sdt(s).services}
    assert set(services) == set(numbers)
    assert all(sv.free_ca_mode for sv in services.values())
    report = he.boot(he.chip(0x0A200001), None, None).scan(stream)
    assert {c.channel: c.service_id for c in report.channels} == {
        number: sid for sid, number in numbers.items()}


def test_stb_scan_of_the_full_tvplus_lineup_shows_the_catalogue_numbers(
        he: HeadEnd, tmp_path: Path) -> None:
    """The case from the field: 27 channels, made and scrambled with the CLI tools' code."""
    stream, numbers = _scrambled(he, "tvplus.toml", tmp_path)
    assert len(numbers) == 27
    sdt_sections = [s for _, s in sections_on(stream, psi.SDT_PID)]
    assert {psi.parse_sdt(s).last_section_number for s in sdt_sections} == {1}
    channels = stb_scan_json(he, 0x0A200002, stream, tmp_path)
    assert {c["channel"]: c["service_id"] for c in channels} == {
        number: sid for sid, number in numbers.items()}
    assert 1001 not in {c["channel"] for c in channels}
