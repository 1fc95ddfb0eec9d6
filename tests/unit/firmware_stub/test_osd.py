"""The box's OSD screen against a real (in-process) card: priority, preemption,
acknowledgement, display time; the fingerprint window on the clip's time axis, and the
ffmpeg filter it draws."""

from __future__ import annotations

from cas.formats.emm import Fingerprint, FingerprintKind, OsdMail
from cas.formats.fingerprint import CELLS
from firmware_stub.fingerprint import filter_graph
from firmware_stub.osd import OsdScreen, shows_for_clip
from tests.unit.card.helpers import SERIAL, HeadEnd, make_client

T0 = 1_750_000_000


def order(start_s: int, duration_s: int = 10,
          kind: FingerprintKind = FingerprintKind.COVERT) -> Fingerprint:
    return Fingerprint(kind=kind, start_s=start_s, duration_s=duration_s, x_pct=5, y_pct=95)


def test_start_zero_is_on_air_from_the_clip_start() -> None:
    [show] = shows_for_clip(order(0, 3), 42, clip_start_s=T0, clip_length_s=60)
    assert (show.start_s, show.end_s, show.serial) == (0.0, 3.0, 42)


def test_window_in_card_time_maps_onto_the_clip() -> None:
    [show] = shows_for_clip(order(T0 + 2, 5), 42, clip_start_s=T0, clip_length_s=60)
    assert (show.start_s, show.end_s) == (2.0, 7.0)
    # begun before the clip: drawn from the clip's start, until the order's end
    [show] = shows_for_clip(order(T0 - 4, 5), 42, clip_start_s=T0, clip_length_s=60)
    assert (show.start_s, show.end_s) == (0.0, 1.0)


def test_orders_off_air_during_the_clip_draw_nothing() -> None:
    assert shows_for_clip(order(T0 - 20, 5), 42, clip_start_s=T0, clip_length_s=60) == []
    assert shows_for_clip(order(T0 + 60, 5), 42, clip_start_s=T0, clip_length_s=60) == []


def test_filter_graph() -> None:
    [covert] = shows_for_clip(order(0, 3), 42, clip_start_s=T0, clip_length_s=60)
    [overt] = shows_for_clip(order(0, 3, FingerprintKind.OVERT), 42, clip_start_s=T0,
                             clip_length_s=60)
    graph = filter_graph([covert, overt], 320, 180)
    assert graph.startswith("setpts=PTS-STARTPTS,")
    assert graph.count("drawbox=") == 2 * CELLS  # each cell lighter, then darker
    assert graph.count("drawtext=text='0000000042'") == 1
    assert "x='min(16,w-tw)':y='min(171,h-th)'" in graph  # 5 % and 95 % of 320 x 180
    assert graph.count("between(t,0.000,3.000)") == 2 * CELLS + 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _mail(message_id: int, priority: int, duration_s: int = 10) -> OsdMail:
    return OsdMail(message_id=message_id, priority=priority, start_s=0,
                   duration_s=duration_s, text=f"m{message_id}")


def test_screen_preempts_and_acknowledges_in_priority_order() -> None:
    _applet, client = make_client()
    head = HeadEnd()
    seen: list[tuple[str, int]] = []
    screen = OsdScreen(client, on_event=lambda e: seen.append((e.kind.value, e.message_id)))
    client.process_emm(head.unique(SERIAL, _mail(1, 1)))
    screen.poll()
    client.process_emm(head.unique(SERIAL, _mail(2, 0)))
    screen.poll()  # lower priority: waits
    client.process_emm(head.unique(SERIAL, _mail(3, 7)))
    screen.poll()  # higher priority: preempts 1
    screen.finish()
    assert seen == [("osd_shown", 1), ("osd_preempted", 1), ("osd_shown", 3),
                    ("osd_acknowledged", 3), ("osd_shown", 1), ("osd_acknowledged", 1),
                    ("osd_shown", 2), ("osd_acknowledged", 2)]
    assert [e.message_id for e in screen.shown] == [3, 1, 2]
    assert client.osd_mail() is None


def test_live_screen_acknowledges_when_the_display_time_is_over() -> None:
    _applet, client = make_client()
    clock = FakeClock()
    screen = OsdScreen(client, clock=clock)
    client.process_emm(HeadEnd().unique(SERIAL, _mail(1, 5, duration_s=20), _mail(2, 1)))
    screen.poll()
    clock.now = 19.5
    screen.tick()
    assert screen.current is not None and screen.current.message_id == 1
    clock.now = 20.0
    screen.tick()
    assert screen.current is not None and screen.current.message_id == 2
    assert [e.message_id for e in screen.shown] == [1]


def test_no_card_no_messages() -> None:
    screen = OsdScreen(None)
    screen.poll()
    screen.finish()
    assert screen.events == [] and screen.fingerprint() is None
