"""``cas osd send`` / ``cas osd fingerprint``: to every card or to one card through the live
carousel's outbox, to one card or a group as a file; the card's mailbox gets them, another card does
not; bad input is one line and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from cas.cli.main import cli
from cas.formats.emm import FingerprintKind
from cas.formats.sections import iter_sections
from cas.live.carousel import CarouselSettings, EmmCarousel
from cas.store.models import EmmOutbox
from tests.integration.live.test_carousel import T0, make_base, make_card, make_keys, offer

SETTINGS = CarouselSettings(repeat_count=1, repeat_window_s=0.0, cycle_bitrate_bps=0)


def _cas(tmp_path: Path, db_url: str, key_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--json", "--data-dir", str(tmp_path / "data"),
                                      "--db-url", db_url, "osd", *args, "--keys", str(key_file)])
    return result.exit_code, result.output


def test_message_to_all_is_aired_by_the_carousel_and_acknowledged(db_url: str,
                                                                  tmp_path: Path) -> None:
    keys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    base = make_base(db_url, keys, cards=1)
    carousel = EmmCarousel(base.store, keys, SETTINGS, clock=lambda: T0)
    carousel.poll()
    carousel.take(0.0, 1 << 20)
    code, out = _cas(tmp_path, db_url, key_file, "send", "--all", "--id", "5",
                     "--priority", "3", "--duration-s", "20", "Service work tonight")
    assert code == 0, out
    assert json.loads(out)["queued"] == "osd"
    assert carousel.poll() == 1
    sections = carousel.take(1.0, 1 << 20)
    assert [s[0] for s in sections] == [0x84]
    card = make_card(keys, base.slots[base.serials[0]])
    assert offer(card, sections) == (1, 0)
    mail = card.osd_mail()
    assert mail is not None
    assert (mail.message_id, mail.priority, mail.duration_s, mail.text) == (
        5, 3, 20, "Service work tonight")
    assert card.osd_message() == "Service work tonight"  # an older box still shows it
    card.ack_osd(5)
    assert card.osd_mail() is None
    carousel.close()


def test_unique_message_and_fingerprint_to_a_file(db_url: str, tmp_path: Path) -> None:
    keys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    base = make_base(db_url, keys, cards=2)
    mine, other = base.serials
    out = tmp_path / "osd.sections"
    code, text = _cas(tmp_path, db_url, key_file, "send", "--card", str(mine), "--id", "9",
                      "--out", str(out), "Please call us")
    assert code == 0, text
    assert json.loads(text)["address"] == "unique"
    fp = tmp_path / "fp.sections"
    code, text = _cas(tmp_path, db_url, key_file, "fingerprint", "covert", "--card", str(mine),
                      "--duration-s", "30", "--x", "5", "--y", "95", "--out", str(fp))
    assert code == 0, text
    sections = [*iter_sections(out.read_bytes()), *iter_sections(fp.read_bytes())]
    card, stranger = make_card(keys, base.slots[mine]), make_card(keys, base.slots[other])
    assert offer(card, sections) == (2, 0)
    assert offer(stranger, sections) == (0, 0)  # not addressed to it
    assert stranger.osd_mail() is None and stranger.fingerprint() is None
    mail = card.osd_mail()
    assert mail is not None and (mail.message_id, mail.text) == (9, "Please call us")
    order = card.fingerprint()
    assert order is not None
    assert (order.kind, order.duration_s, order.x_pct, order.y_pct) == (
        FingerprintKind.COVERT, 30, 5, 95)
    ts = tmp_path / "osd.ts"  # for a playout: a TS with the CAT and the EMM PID
    code, text = _cas(tmp_path, db_url, key_file, "send", "--group", "1", "--id", "4",
                      "--out", str(ts), "Group notice")
    assert code == 0, text
    data = ts.read_bytes()
    assert len(data) % 188 == 0 and data[::188] == b"\x47" * (len(data) // 188)


def test_bad_input_is_one_line_and_nonzero(db_url: str, tmp_path: Path) -> None:
    keys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    for args, words in (
        (["send", "--group", "1", "--id", "1", "hi"], "--out FILE"),
        (["send", "--card", "1000001", "--all", "--id", "1", "hi"], "one of --card"),
        (["send", "--all", "--id", "1", "x" * 300], "at most 246 bytes"),
        (["send", "--all", "--id", "0", "hi"], "0"),
        (["fingerprint", "covert", "--all", "--x", "101"], "101"),
    ):
        code, out = _cas(tmp_path, db_url, key_file, *args)
        assert code == 2, (args, out)
        assert words in out and "Traceback" not in out


def test_message_and_fingerprint_to_one_card_are_queued_for_the_carousel(
        db_url: str, tmp_path: Path) -> None:
    """Without --out, --card queues a command EMM in the outbox: the carousel's next poll
    airs it, the card shows the message and keeps the order, another card gets nothing."""
    keys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    base = make_base(db_url, keys, cards=2)
    mine, other = base.serials
    carousel = EmmCarousel(base.store, keys, SETTINGS, clock=lambda: T0)
    carousel.poll()
    card, stranger = make_card(keys, base.slots[mine]), make_card(keys, base.slots[other])
    first = carousel.take(0.0, 1 << 20)
    assert offer(card, first)[0] >= 1 and offer(stranger, first)[0] >= 1   # their rights
    code, out = _cas(tmp_path, db_url, key_file, "send", "--card", str(mine), "--id", "11",
                     "--duration-s", "15", "Please call us")
    assert code == 0, out
    queued = json.loads(out)
    assert (queued["queued"], queued["address"], queued["card"]) == ("osd", "unique", mine)
    code, out = _cas(tmp_path, db_url, key_file, "fingerprint", "overt", "--card", str(mine),
                     "--duration-s", "30")
    assert code == 0, out
    assert json.loads(out)["seq"] == queued["seq"] + 1      # the card's one counter
    assert carousel.poll() == 2
    sections = carousel.take(1.0, 1 << 20)
    assert [s[0] for s in sections] == [0x82, 0x82]
    assert offer(card, sections) == (2, 0)
    assert offer(stranger, sections) == (0, 0)              # not addressed to it
    mail = card.osd_mail()
    assert mail is not None and (mail.message_id, mail.duration_s, mail.text) == (
        11, 15, "Please call us")
    order = card.fingerprint()
    assert order is not None and order.kind == FingerprintKind.OVERT
    assert stranger.osd_mail() is None and stranger.fingerprint() is None
    carousel.close()
    # the plain output is one line saying what was queued
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "--db-url", db_url,
                                      "osd", "send", "--card", str(mine), "--id", "12", "hi",
                                      "--keys", str(key_file)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (f"osd EMM to card {mine:010d} queued (seq "
                                     f"{queued['seq'] + 2}); a running head-end airs it at its "
                                     "next poll")


def test_message_to_an_unknown_card_is_refused(db_url: str, tmp_path: Path) -> None:
    keys = make_keys()
    key_file = keys.save(tmp_path / "operator-keys.toml")
    base = make_base(db_url, keys, cards=1)
    missing = base.serials[0] + 1000
    code, out = _cas(tmp_path, db_url, key_file, "send", "--card", str(missing), "--id", "1",
                     "hi")
    assert code == 6, out                                    # the store's exit code
    assert f"unknown card {missing:010d}" in out and "Traceback" not in out
    with base.store.reader() as s:
        assert s.execute(select(func.count()).select_from(EmmOutbox).where(
            EmmOutbox.card_serial == missing)).scalar_one() == 0
