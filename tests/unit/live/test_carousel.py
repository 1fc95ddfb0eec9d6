"""EmmCarousel pieces that need no second process: settings checks, EMM header reading, the
journal cursor with PostgreSQL-style late commits (an id that shows up after a higher one),
and the per-poll cap on generation (on a real SQLite store)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cas.errors import UsageError
from cas.formats.emm import OsdMail, parse_emm
from cas.headend.emmgen import global_emm, osd_command
from cas.live import carousel as carousel_mod
from cas.live.carousel import CarouselSettings, EmmCarousel
from cas.live.outbox import card_commands, not_after_of, queue_card_emm, seq_of
from cas.store.models import Card, EmmOutbox, RightsChange
from tests.fixtures.cards import Base
from tests.integration.live.test_carousel import (
    BIG,
    T0,
    make_base,
    make_card,
    make_keys,
    offer,
    pay_and_subscribe,
    unique_serials,
)

NO_CYCLE = CarouselSettings(repeat_count=1, repeat_window_s=0.0, cycle_bitrate_bps=0)


@pytest.mark.parametrize("kwargs", [{"repeat_count": 0}, {"repeat_window_s": -1.0},
                                    {"cycle_bitrate_bps": -1}, {"poll_interval_s": 0.0},
                                    {"validity_s": 0}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError, match="emm\\."):
        CarouselSettings(**kwargs)  # type: ignore[arg-type]


def test_repeat_interval_spreads_the_window() -> None:
    assert CarouselSettings(repeat_count=3, repeat_window_s=6.0).repeat_interval_s == 2.0


def test_not_after_is_read_from_the_clear_header() -> None:
    keys = make_keys()
    section = global_emm(keys, seq=5, at=T0, commands=[osd_command("hi")], validity_s=100)
    assert not_after_of(section) == int(T0.timestamp()) + 100
    with pytest.raises(UsageError):
        not_after_of(b"\x80\x70\x00")


def test_a_late_committed_journal_row_is_not_missed(tmp_path: Path) -> None:
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=3)
    carousel = EmmCarousel(base.store, keys, NO_CYCLE, clock=lambda: T0)
    carousel.poll()
    carousel.take(0.0, 1 << 20)
    cursor = carousel.stats().journal_cursor
    late, early = base.serials[0], base.serials[1]
    at_s = int((T0 + timedelta(minutes=1)).timestamp())
    # id cursor+2 commits first, id cursor+1 (allocated earlier) commits after the next poll
    with base.store.transaction() as s:
        s.execute(update(Card).where(Card.serial == early)
                  .values(rights_version=Card.rights_version + 1))
        s.add(RightsChange(id=cursor + 2, card_serial=early, at_s=at_s, cause="test"))
    assert carousel.poll() == 1
    assert unique_serials(carousel.take(1.0, 1 << 20)) == [early]
    with base.store.transaction() as s:
        s.execute(update(Card).where(Card.serial == late)
                  .values(rights_version=Card.rights_version + 1))
        s.add(RightsChange(id=cursor + 1, card_serial=late, at_s=at_s, cause="test"))
    assert carousel.poll() == 1  # found through the gap, not by waiting for the full scan
    assert unique_serials(carousel.take(2.0, 1 << 20)) == [late]
    carousel.close()


def test_generation_is_capped_per_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(carousel_mod, "MAX_CARDS_PER_POLL", 2)
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=5)
    carousel = EmmCarousel(base.store, keys, NO_CYCLE, clock=lambda: T0)
    assert carousel.poll() == 2
    assert carousel.stats().backlog_cards == 3
    assert carousel.poll() == 2
    assert carousel.poll() == 1
    assert carousel.stats().backlog_cards == 0
    assert sorted(unique_serials(carousel.take(0.0, 1 << 20))) == base.serials
    carousel.close()


def test_closed_carousel_refuses_to_poll(tmp_path: Path) -> None:
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=1)
    carousel = EmmCarousel(base.store, keys, NO_CYCLE, clock=lambda: T0)
    carousel.close()
    with pytest.raises(UsageError):
        carousel.poll()


# --- command EMMs (bookings, top-ups, messages) with the card's rights --------------------------

CYCLE = CarouselSettings(repeat_count=1, repeat_window_s=0.0, cycle_bitrate_bps=800_000)


def _mail(text: str) -> OsdMail:
    return OsdMail(message_id=1, priority=1, start_s=0, duration_s=10, text=text)


def _queue(base: Base, serial: int, text: str, *, validity_s: int | None = None) -> int:
    with base.store.transaction() as s:
        section = queue_card_emm(s, base.keys, serial,
                                 [_mail(text)], at=T0, cause="test", validity_s=validity_s)
    return seq_of(section)


def _seqs(sections: list[bytes], serial: int) -> list[int]:
    return [parse_emm(s).header.seq for s in sections
            if s[0] == 0x82 and int.from_bytes(s[3:7], "big") == serial]


def _cycle_round(carousel: EmmCarousel, start_s: float) -> list[bytes]:
    """Polls and takes until the background cycle has come round the whole base once."""
    out: list[bytes] = []
    t = start_s
    for _ in range(8):
        carousel.poll()
        t += 1.0
        out += carousel.take(t, BIG)
    return out


def test_seq_is_read_from_the_clear_header() -> None:
    keys = make_keys()
    section = global_emm(keys, seq=77, at=T0, commands=[osd_command("hi")], validity_s=100)
    assert seq_of(section) == parse_emm(section).header.seq == 77
    with pytest.raises(UsageError):
        seq_of(b"\x83" + bytes(60))


def test_a_command_emm_missed_by_the_box_comes_round_before_the_rights(tmp_path: Path) -> None:
    """A box that was off while a card's command EMM was aired gets it from the cycle, with
    the card's rights, in sequence order: the card applies both; a box that got both
    refuses the cycle's copies."""
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=2)
    serial = base.serials[0]
    carousel = EmmCarousel(base.store, keys, CYCLE, clock=lambda: T0)
    carousel.poll()
    first = carousel.take(0.0, BIG)  # the cards' rights, aired once
    cmd_seq = _queue(base, serial, "invoice")
    carousel.poll()
    aired = carousel.take(0.5, BIG)  # the command's own airing first (repeat_count=1)
    assert _seqs(aired, serial)[0] == cmd_seq
    cycled = _cycle_round(carousel, 1.0)
    rights_seq = _seqs(first, serial)[0]
    assert rights_seq < cmd_seq
    assert _seqs(cycled, serial)[:2] == [rights_seq, cmd_seq]
    off = make_card(keys, base.slots[serial])  # its box was off until now
    assert offer(off, cycled)[0] == 2
    on = make_card(keys, base.slots[serial])  # its box saw everything
    assert offer(on, first + aired)[0] == 2
    assert offer(on, cycled)[0] == 0
    # the other card's cycle entry is its rights alone
    assert len(_seqs(cycled, base.serials[1])) >= 1
    assert set(_seqs(cycled, base.serials[1])) == set(_seqs(first, base.serials[1]))
    carousel.close()


def test_a_new_rights_emm_is_aired_after_the_cards_older_command_emms(tmp_path: Path) -> None:
    """A rights change after a command EMM takes a higher number; its airing carries the
    command EMM first, so a box that missed the command's airing does not make the card
    refuse it as old once the rights EMM is applied."""
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=1)
    serial = base.serials[0]
    carousel = EmmCarousel(base.store, keys, NO_CYCLE, clock=lambda: T0)
    carousel.poll()
    first = carousel.take(0.0, BIG)
    cmd_seq = _queue(base, serial, "invoice")
    carousel.poll()
    carousel.take(0.5, BIG)  # aired to nobody
    pay_and_subscribe(base, serial, at=T0, payment_id="after-the-message")
    carousel.poll()
    fresh = carousel.take(1.0, BIG)
    seqs = _seqs(fresh, serial)
    assert len(seqs) == 2 and seqs[0] == cmd_seq and seqs[1] > cmd_seq
    card = make_card(keys, base.slots[serial])
    assert offer(card, first + fresh) == (3, 0)
    carousel.close()


def test_expired_command_emms_leave_the_cycle_and_are_pruned(tmp_path: Path) -> None:
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=1)
    serial = base.serials[0]
    clock = [T0]
    carousel = EmmCarousel(base.store, keys, CYCLE, clock=lambda: clock[0])
    carousel.poll()
    carousel.take(0.0, BIG)
    short = _queue(base, serial, "soon gone", validity_s=60)
    long = _queue(base, serial, "stays")
    carousel.poll()
    carousel.take(0.5, BIG)
    assert short in _seqs(_cycle_round(carousel, 1.0), serial)
    clock[0] = T0 + timedelta(minutes=2)
    cycled = _seqs(_cycle_round(carousel, 20.0), serial)
    assert short not in cycled and long in cycled
    with base.store.reader() as s:
        assert [e.seq for e in card_commands(s, [serial], int(clock[0].timestamp()))[serial]] \
            == [long]
        kinds = s.execute(select(EmmOutbox.kind)).scalars().all()
    assert sorted(kinds) == ["command", "unique"]  # the expired one pruned at the wrap
    carousel.close()


def test_a_command_emm_needs_commands_and_takes_no_number_otherwise(tmp_path: Path) -> None:
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=1)
    serial = base.serials[0]
    with pytest.raises(UsageError), base.store.transaction() as s:
        queue_card_emm(s, keys, serial, [], at=T0, cause="test")
    assert _queue(base, serial, "first") == 1


def test_a_command_emm_lost_inside_its_group_is_applied_from_the_next_cycle(
        tmp_path: Path) -> None:
    """The datagram carrying a card's command EMM is lost while the newer rights EMM aired
    with it gets through: the card applies the rights, then the command EMM when the cycle
    brings it round (its late-EMM window, docs/card.md), once."""
    keys = make_keys()
    base = make_base(f"sqlite:///{tmp_path / 'cas.sqlite'}", keys, cards=1)
    serial = base.serials[0]
    carousel = EmmCarousel(base.store, keys, CYCLE, clock=lambda: T0)
    carousel.poll()
    card = make_card(keys, base.slots[serial])
    assert offer(card, carousel.take(0.0, BIG)) == (1, 0)
    cmd_seq = _queue(base, serial, "invoice")
    carousel.poll()
    carousel.take(0.5, BIG)  # its own airing: the box was zapping
    pay_and_subscribe(base, serial, at=T0, payment_id="lost-inside-the-group")
    carousel.poll()
    aired = carousel.take(1.0, BIG)  # the command EMM, then the new rights EMM
    assert _seqs(aired, serial)[:2] == [cmd_seq, cmd_seq + 1]
    # every copy of the command EMM in this airing is lost, the rights get through
    assert offer(card, [s for s in aired if _seqs([s], serial) != [cmd_seq]])[0] == 1
    assert card.counters().emm_seq_unique == cmd_seq + 1 and card.osd_mail() is None
    cycled = _cycle_round(carousel, 2.0)
    assert cmd_seq in _seqs(cycled, serial)
    assert offer(card, cycled)[0] == 1
    mail = card.osd_mail()
    assert mail is not None and mail.text == "invoice"
    assert offer(card, _cycle_round(carousel, 20.0))[0] == 0  # applied once
    carousel.close()
