"""The box's fingerprint window on the clip's time axis, and the ffmpeg filter it draws."""

from __future__ import annotations

from cas.formats.emm import Fingerprint, FingerprintKind
from cas.formats.fingerprint import CELLS
from firmware_stub.fingerprint import filter_graph
from firmware_stub.osd import shows_for_clip

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
