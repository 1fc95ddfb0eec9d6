"""EmmCarousel pieces that need no second process: settings checks, EMM header reading, the
journal cursor with PostgreSQL-style late commits (an id that shows up after a higher one),
and the per-poll cap on generation (on a real SQLite store)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from cas.errors import UsageError
from cas.headend.emmgen import global_emm, osd_command
from cas.live import carousel as carousel_mod
from cas.live.carousel import CarouselSettings, EmmCarousel
from cas.live.outbox import not_after_of
from cas.store.models import Card, RightsChange
from tests.integration.live.test_carousel import T0, make_base, make_keys, unique_serials

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
