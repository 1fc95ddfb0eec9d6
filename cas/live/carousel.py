"""The EMM carousel: the store's rights journal in, EMM sections on air out.

Two threads meet here:

* the **poll thread** calls :meth:`EmmCarousel.poll` every ``poll_interval_s``: it turns
  committed rights changes into sealed EMMs stored in ``emm_outbox`` (:mod:`cas.live.outbox`:
  generated once, with their sequence numbers, before anything is aired), loads queued rows
  into memory, records which ones finished their repeats, and tops up the background cycle;
* the **playout** (or the EMMG feed) calls :meth:`EmmCarousel.take` at its own pace and gets
  complete sections, never touching the database.

Scheduling rules of :meth:`~EmmCarousel.take`, in order, within ``budget_bytes``:

1. EMMs never aired yet, oldest outbox id first (a payment reaches the air at the next
   ``take`` after the poll that stored it);
2. repeats that are due: an EMM is aired ``repeat_count`` times, one every
   ``repeat_window_s / repeat_count`` seconds;
3. the background cycle: every card's latest EMM and every still-valid global EMM, round
   and round, paced by a token bucket at ``cycle_bitrate_bps`` (at most one second of credit,
   so a pause never turns into a burst).

An EMM's sections are aired together and never split across calls; one that does not fit the
remaining budget waits (and everything after it in the same queue).

Restart semantics: a row stays ``queued`` until its last repeat is aired and the next poll
records it; after a SIGKILL the restarted carousel loads every ``queued`` row and airs it
again in full — the same bytes, the same sequence numbers, so a card that already applied it
refuses the repeat (9811) and nothing is applied twice.  A rights change committed before the
kill whose EMM was not yet generated is found by the start-up scan of ``rights_version``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cas.crypto import OperatorKeys
from cas.errors import CasError, UsageError
from cas.headend.emmgen import DEFAULT_EMM_VALIDITY_S, ecm_key_update_command, osd_command
from cas.live import outbox
from cas.live.metrics import LiveMetrics
from cas.live.outbox import EmmKind, OutboxEmm
from cas.store.engine import Store

log = logging.getLogger("cas.live.carousel")

#: Cards read per background-cycle page.
CYCLE_PAGE = 256
#: Journal ids missing from a read (PostgreSQL allocates ids before commit) are re-read for
#: this long before the full scan takes over.
GAP_TTL_S = 60.0
#: A full ``rights_version`` scan runs at start and this often after.
FULL_SCAN_INTERVAL_S = 60.0
#: More missing journal ids than this are not tracked one by one (a full scan runs instead).
MAX_GAPS = 1000
#: Cards turned into EMMs per poll at most (journal first, then the full scan's backlog).
MAX_CARDS_PER_POLL = 2000


@dataclass(frozen=True, kw_only=True)
class CarouselSettings:
    """``[emm]`` of the head-end's config (docs/live.md)."""

    repeat_count: int = 3
    repeat_window_s: float = 6.0
    cycle_bitrate_bps: int = 100_000
    poll_interval_s: float = 0.5
    validity_s: int = DEFAULT_EMM_VALIDITY_S

    def __post_init__(self) -> None:
        if self.repeat_count < 1:
            raise UsageError("emm.repeat_count must be at least 1").with_id(
                "live.emm_repeat_count_least")
        if self.repeat_window_s < 0:
            raise UsageError("emm.repeat_window_s must not be negative").with_id(
                "live.emm_repeat_window_not")
        if self.cycle_bitrate_bps < 0:
            raise UsageError("emm.cycle_bitrate_bps must not be negative (0 turns it off)").with_id(
                "live.emm_cycle_bitrate_bps")
        if self.poll_interval_s <= 0:
            raise UsageError("emm.poll_interval_s must be positive").with_id(
                "live.emm_poll_interval_positive")
        if self.validity_s <= 0:
            raise UsageError("emm.validity_s must be positive").with_id(
                "live.emm_validity_positive")

    @property
    def repeat_interval_s(self) -> float:
        return self.repeat_window_s / self.repeat_count


@dataclass(frozen=True, slots=True, kw_only=True)
class CarouselStats:
    queue_depth: int  # EMMs with repeats left to air
    unaired: int  # of those, EMMs not aired even once
    oldest_pending_age_s: float  # age of the oldest EMM not aired once (0 if none)
    sent_sections: dict[str, int]  # by kind: unique, global, cycle
    generated: int  # EMMs this process generated from rights changes
    journal_cursor: int  # highest rights-journal id read
    backlog_cards: int  # stale cards found by the full scan, not yet turned into EMMs


@dataclass(slots=True)
class _Airing:
    emm: OutboxEmm
    left: int
    loaded_mono: float
    aired: bool = False
    dropped: bool = False  # replaced by a newer EMM of the same card


@dataclass(slots=True)
class _State:
    """Everything :meth:`EmmCarousel.take` touches (guarded by the carousel's lock)."""

    airings: dict[int, _Airing] = field(default_factory=dict)
    fresh: deque[_Airing] = field(default_factory=deque)  # never aired, by id
    repeats: list[tuple[float, int, _Airing]] = field(default_factory=list)  # heap by due_s
    finished: list[int] = field(default_factory=list)  # all repeats aired, not yet recorded
    order: int = 0  # tie-breaker of the repeat heap
    cycle: deque[OutboxEmm] = field(default_factory=deque)
    cycle_bytes: int = 0
    credit_bytes: float = 0.0
    last_take_s: float | None = None
    sent: dict[str, int] = field(default_factory=lambda: {"unique": 0, "global": 0, "cycle": 0})


class EmmCarousel:
    """See the module docstring.  ``clock`` gives "now" for entitlement states and EMM
    validity (default: the store's simulation clock, which is the wall clock until set)."""

    def __init__(self, store: Store, keys: OperatorKeys, settings: CarouselSettings, *,
                 metrics: LiveMetrics | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._keys = keys
        self.settings = settings
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._st = _State()
        self._cursor: int | None = None
        self._gaps: dict[int, float] = {}  # journal id -> re-read until (monotonic s)
        self._backlog: set[int] = set()  # stale cards found by the full scan, not yet done
        self._next_full_scan = 0.0
        self._cycle_after = 0  # last card serial read into the cycle
        self._generated = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"EmmCarousel({self._store.dialect}, {self.settings!r})"

    # --- the clock ----------------------------------------------------------------------------
    def now(self) -> datetime:
        if self._clock is not None:
            return self._clock()
        from cas.billing.clock import clock_now

        with self._store.reader() as s:
            return clock_now(s)

    # --- poll thread ----------------------------------------------------------------------------
    def poll(self) -> int:
        """Committed rights changes -> stored EMMs -> queued in memory.  Blocking; call it in a
        thread.  Returns how many EMMs were newly queued for airing."""
        if self._closed:
            raise UsageError("the EMM carousel is closed").with_id("live.emm_carousel_closed")
        with self._poll_lock:
            started = time.monotonic()
            at = self.now()
            self._record_finished()
            removed = self._generate_changes(at, started)
            new = self._load_queued(removed, int(at.timestamp()))
            self._top_up_cycle(at)
            self._publish_gauges()
            if self._metrics is not None:
                self._metrics.observe("carousel_poll_seconds", time.monotonic() - started)
            return new

    def _record_finished(self) -> None:
        with self._lock:
            done, self._st.finished = self._st.finished, []
        try:
            outbox.mark_aired(self._store, done)
        except CasError:
            with self._lock:  # try again at the next poll
                self._st.finished[:0] = done
            raise

    def _generate_changes(self, at: datetime, mono: float) -> set[int]:
        """Journal rows since the cursor first, then the backlog of the full scan, at most
        :data:`MAX_CARDS_PER_POLL` cards per poll so a poll stays short (a first start on a
        base that never had EMMs works through it poll by poll)."""
        with self._store.reader() as s:
            if self._cursor is None or mono >= self._next_full_scan:
                top = outbox.max_journal_id(s)
                self._backlog.update(outbox.stale_serials(s))
                self._next_full_scan = mono + FULL_SCAN_INTERVAL_S
                if self._cursor is None:
                    self._cursor = top
                    self._gaps.clear()
            causes, ids = outbox.journal_since(s, self._cursor, self._gaps.keys(),
                                               limit=MAX_CARDS_PER_POLL)
        self._advance_cursor(ids, mono)
        changed = dict(causes)
        for serial in sorted(self._backlog):
            if len(changed) >= MAX_CARDS_PER_POLL:
                break
            changed.setdefault(serial, "rights")
        if not changed:
            return set()
        gen = outbox.generate_for_cards(self._store, self._keys, sorted(changed), at=at,
                                        causes=changed, queued=True, only_changed=True)
        self._backlog.difference_update(changed)
        if gen.ids:
            self._generated += len(gen.ids)
            if self._metrics is not None:
                self._metrics.inc("emm_generated_total", len(gen.ids), kind="unique")
            log.info("EMMs generated", extra={"fields": {"cards": gen.cards,
                                                         "emms": len(gen.ids)}})
        return set(gen.removed_ids)

    def _advance_cursor(self, ids: Sequence[int], mono: float) -> None:
        assert self._cursor is not None
        for i in ids:
            self._gaps.pop(i, None)
        fresh = [i for i in ids if i > self._cursor]
        if fresh:
            top = max(fresh)
            if top - self._cursor - len(fresh) > MAX_GAPS:
                # Far too many missing ids (a rolled-back bulk import): let the next full
                # scan find whatever they were instead of listing them.
                self._next_full_scan = min(self._next_full_scan, mono + GAP_TTL_S)
            else:
                seen = set(fresh)
                for missing in range(self._cursor + 1, top):
                    if missing not in seen:
                        self._gaps[missing] = mono + GAP_TTL_S
            self._cursor = top
        for gap, deadline in list(self._gaps.items()):
            if deadline < mono:
                del self._gaps[gap]
        if len(self._gaps) > MAX_GAPS:
            self._gaps.clear()
            self._next_full_scan = mono

    def _load_queued(self, removed: set[int], at_s: int) -> int:
        with self._store.reader() as s:
            queued = outbox.queued_ids(s)
            with self._lock:
                known = set(self._st.airings) | set(self._st.finished)
            rows = outbox.load_rows(s, [i for i in queued if i not in known])
            # A card's rights EMM goes out after its command EMMs numbered below it (a box
            # that missed their airings gets them first; the card refuses what it has).
            rights = [e.card_serial for e in rows
                      if e.kind is EmmKind.UNIQUE and e.card_serial is not None]
            commands = outbox.card_commands(s, rights, at_s) if rights else {}
        rows = [outbox.with_commands(e, commands[e.card_serial])
                if e.kind is EmmKind.UNIQUE and e.card_serial in commands else e
                for e in rows]
        mono = time.monotonic()
        self._drop(removed)
        with self._lock:
            st = self._st
            for emm in rows:
                item = _Airing(emm=emm, left=self.settings.repeat_count, loaded_mono=mono)
                st.airings[emm.id] = item
                st.fresh.append(item)
        return len(rows)

    def _drop(self, removed: set[int]) -> None:
        """Forget EMMs whose rows a newer EMM of the same card replaced."""
        with self._lock:
            for rid in removed:
                gone = self._st.airings.pop(rid, None)
                if gone is not None:
                    gone.dropped = True  # the fresh/repeat queues skip it

    def _top_up_cycle(self, at: datetime) -> None:
        rate = self.settings.cycle_bitrate_bps
        if rate <= 0:
            return
        # Keep about two seconds of cycle ahead of the air (and at least one page).
        want = max(rate // 8 * 2, 1)
        with self._lock:
            have = self._st.cycle_bytes
        at_s = int(at.timestamp())
        refresh_before = at_s + self.settings.validity_s // 2
        pages = 0
        while have < want and pages < 8:
            pages += 1
            with self._store.reader() as s:
                serials = outbox.cycle_cards(s, self._cycle_after, CYCLE_PAGE)
                commands: dict[int, list[OutboxEmm]] = {}
                if not serials:
                    globals_ = outbox.live_globals(s, at_s)
                    latest: dict[int, OutboxEmm] = {}
                else:
                    globals_ = []
                    latest = outbox.latest_unique(s, serials)
                    commands = outbox.card_commands(s, serials, at_s)
            if not serials:
                self._cycle_after = 0
                batch = globals_
                outbox.prune_globals(self._store, at_s)
                outbox.prune_commands(self._store, at_s)
            else:
                self._cycle_after = serials[-1]
                # A card with no EMM yet, or whose latest expires within half the validity,
                # gets a fresh one (stored as already aired: the cycle is its only airing).
                stale = [x for x in serials
                         if x not in latest or latest[x].not_after_s < refresh_before]
                if stale:
                    gen = outbox.generate_for_cards(self._store, self._keys, stale, at=at,
                                                    cause="cycle", queued=False,
                                                    only_changed=False)
                    if gen.ids:
                        self._drop(set(gen.removed_ids))
                        if self._metrics is not None:
                            self._metrics.inc("emm_generated_total", len(gen.ids), kind="cycle")
                        with self._store.reader() as s:
                            latest.update(outbox.latest_unique(s, stale))
                # each card's rights and still-valid command EMMs, in sequence order
                groups = (outbox.card_group(latest.get(x), commands.get(x, ()))
                          for x in serials)
                batch = [g for g in groups if g is not None]
            with self._lock:
                self._st.cycle.extend(batch)
                self._st.cycle_bytes += sum(e.size for e in batch)
                have = self._st.cycle_bytes
            if not serials and not batch:
                break  # an empty base: nothing to cycle

    def _publish_gauges(self) -> None:
        if self._metrics is None:
            return
        stats = self.stats()
        self._metrics.set("carousel_queue_depth", stats.queue_depth)
        self._metrics.set("carousel_oldest_pending_seconds", stats.oldest_pending_age_s)
        self._metrics.set("carousel_journal_cursor", stats.journal_cursor)
        self._metrics.set("carousel_backlog_cards", stats.backlog_cards)

    # --- playout side ---------------------------------------------------------------------------
    def take(self, now_s: float, budget_bytes: int) -> list[bytes]:
        """Sections due at ``now_s`` (the caller's monotonic seconds), within ``budget_bytes``.
        Thread-safe and never blocks on the database."""
        out: list[bytes] = []
        counts = {"unique": 0, "global": 0, "cycle": 0}
        with self._lock:
            st = self._st
            room = budget_bytes
            # 1. never aired yet
            while st.fresh:
                item = st.fresh[0]
                if item.dropped:
                    st.fresh.popleft()
                    continue
                if item.emm.size > room:
                    break
                st.fresh.popleft()
                room -= self._air(item, now_s, out, counts)
            # 2. repeats that are due
            while st.repeats and st.repeats[0][0] <= now_s:
                item = st.repeats[0][2]
                if item.dropped:
                    heapq.heappop(st.repeats)
                    continue
                if item.emm.size > room:
                    break
                heapq.heappop(st.repeats)
                room -= self._air(item, now_s, out, counts)
            # 3. the background cycle, paced by its own token bucket
            rate_bytes_s = self.settings.cycle_bitrate_bps / 8
            if st.last_take_s is not None and now_s > st.last_take_s:
                cap = max(rate_bytes_s, 4096.0)
                st.credit_bytes = min(cap, st.credit_bytes
                                      + (now_s - st.last_take_s) * rate_bytes_s)
            st.last_take_s = now_s if st.last_take_s is None else max(st.last_take_s, now_s)
            while st.cycle and rate_bytes_s > 0:
                emm = st.cycle[0]
                if emm.size > room or emm.size > st.credit_bytes:
                    break
                st.cycle.popleft()
                st.cycle_bytes -= emm.size
                st.credit_bytes -= emm.size
                room -= emm.size
                out.extend(emm.sections)
                counts["cycle"] += len(emm.sections)
            for kind, n in counts.items():
                st.sent[kind] += n
        if self._metrics is not None:
            for kind, n in counts.items():
                if n:
                    self._metrics.inc("emm_sections_total", n, kind=kind)
        return out

    def _air(self, item: _Airing, now_s: float, out: list[bytes],
             counts: dict[str, int]) -> int:
        """Air one EMM (lock held): sections out, repeat scheduled or EMM finished."""
        out.extend(item.emm.sections)
        counts["global" if item.emm.kind is EmmKind.GLOBAL else "unique"] += len(
            item.emm.sections)
        item.aired = True
        item.left -= 1
        if item.left > 0:
            self._st.order += 1
            heapq.heappush(self._st.repeats,
                           (now_s + self.settings.repeat_interval_s, self._st.order, item))
        else:
            del self._st.airings[item.emm.id]
            self._st.finished.append(item.emm.id)
        return item.emm.size

    # --- on demand ---------------------------------------------------------------------------
    def queue_global(self, commands: Sequence[bytes]) -> None:
        """Seal, store and queue one global EMM carrying ``commands`` (blocking)."""
        outbox.queue_global_emm(self._store, self._keys, commands, at=self.now(),
                                cause="global", validity_s=self.settings.validity_s)
        with self._poll_lock:
            self._load_queued(set(), int(self.now().timestamp()))

    def queue_osd(self, text: str) -> None:
        self.queue_global([osd_command(text)])

    def queue_ecm_key(self, index: int) -> None:
        self.queue_global([ecm_key_update_command(index, self._keys.ecm_key(index))])

    # --- reporting -------------------------------------------------------------------------------
    def stats(self) -> CarouselStats:
        wall = time.time()
        with self._lock:
            st = self._st
            unaired = [a for a in st.airings.values() if not a.aired]
            oldest = min((a.emm.created_at_s for a in unaired), default=None)
            return CarouselStats(
                queue_depth=len(st.airings),
                unaired=len(unaired),
                oldest_pending_age_s=max(0.0, wall - oldest) if oldest is not None else 0.0,
                sent_sections=dict(st.sent),
                generated=self._generated,
                journal_cursor=self._cursor or 0,
                backlog_cards=len(self._backlog))

    def close(self) -> None:
        """Record what finished airing (the rest stays queued for the next start)."""
        if self._closed:
            return
        with self._poll_lock:
            try:
                self._record_finished()
            finally:
                self._closed = True


def poll_forever(carousel: EmmCarousel, stop: threading.Event) -> None:
    """The poll loop for a thread: poll every ``poll_interval_s`` until ``stop`` is set.
    A store error is logged and retried at the next interval; the head-end keeps airing."""
    interval = carousel.settings.poll_interval_s
    while not stop.is_set():
        started = time.monotonic()
        try:
            carousel.poll()
        except CasError as exc:
            log.warning("carousel poll failed", extra={"fields": {"error": str(exc)}})
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
