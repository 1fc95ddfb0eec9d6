"""LiveMetrics: kinds, labels, and the Prometheus text exposition format 0.0.4."""

from __future__ import annotations

import threading

import pytest

from cas.errors import UsageError
from cas.live.metrics import LiveMetrics


def test_counter_gauge_summary_render() -> None:
    m = LiveMetrics()
    m.inc("packets_sent_total", 7, service="1")
    m.inc("packets_sent_total", service="1")
    m.set("carousel_queue_depth", 3)
    m.observe("ecmg_round_trip_seconds", 0.25, service="2")
    m.observe("ecmg_round_trip_seconds", 0.5, service="2")
    text = m.render_prometheus()
    assert "# TYPE cas_live_packets_sent_total counter" in text
    assert 'cas_live_packets_sent_total{service="1"} 8\n' in text
    assert "# TYPE cas_live_carousel_queue_depth gauge" in text
    assert "cas_live_carousel_queue_depth 3\n" in text
    assert "# TYPE cas_live_ecmg_round_trip_seconds summary" in text
    assert 'cas_live_ecmg_round_trip_seconds_sum{service="2"} 0.75\n' in text
    assert 'cas_live_ecmg_round_trip_seconds_count{service="2"} 2\n' in text
    assert 'cas_live_ecmg_round_trip_seconds{service="2",quantile="0.99"} 0.5\n' in text
    assert 'cas_live_ecmg_round_trip_seconds{service="2",quantile="0.5"} 0.25\n' in text
    assert text.endswith("\n")
    # every sample line is "name{labels} value"
    for line in text.splitlines():
        if not line.startswith("#"):
            name_part, value = line.rsplit(" ", 1)
            float(value)
            assert name_part.startswith("cas_live_")


def test_prefix_is_not_doubled_and_value_reads_back() -> None:
    m = LiveMetrics()
    m.inc("cas_live_late_datagrams_total")
    m.inc("late_datagrams_total", 2)
    assert m.value("late_datagrams_total") == 3
    assert m.value("never_touched") == 0
    assert "cas_live_cas_live" not in m.render_prometheus()


def test_label_values_are_escaped() -> None:
    m = LiveMetrics()
    m.set("service_bitrate_bps", 1.5e6, service='a"b\\c\nd')
    assert 'service="a\\"b\\\\c\\nd"' in m.render_prometheus()


def test_misuse_is_refused() -> None:
    m = LiveMetrics()
    m.inc("emm_sections_total", kind="unique")
    with pytest.raises(UsageError):
        m.set("emm_sections_total", 1)
    with pytest.raises(UsageError):
        m.inc("emm_sections_total", -1)
    with pytest.raises(UsageError):
        m.inc("bad-name")
    with pytest.raises(UsageError):
        m.observe("x_seconds", 1.0, quantile="0.5")


def test_concurrent_increments_are_not_lost() -> None:
    m = LiveMetrics()

    def work() -> None:
        for _ in range(2000):
            m.inc("packets_sent_total", service="1")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.value("packets_sent_total", service="1") == 8000


def test_empty_registry_renders_empty() -> None:
    assert LiveMetrics().render_prometheus() == ""
