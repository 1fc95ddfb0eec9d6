"""The whole suite on pytest-xdist workers: ``scripts/test.sh``'s pytest line, the per-worker
port slices (``tests/fixtures/net.py``) and the longest-files-first order
(``tests/fixtures/order.py``)."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures import net
from tests.fixtures.order import UNKNOWN_S, load_table, longest_files_first, table_from_junit

ROOT = Path(__file__).resolve().parents[3]
TEST_SH = ROOT / "scripts" / "test.sh"


def _pytest_line() -> str:
    lines = [ln for ln in TEST_SH.read_text().splitlines() if "-m pytest" in ln]
    assert len(lines) == 1, lines
    return lines[0]


def test_test_sh_runs_workers_by_file_and_lets_the_callers_arguments_win() -> None:
    line = _pytest_line()
    assert re.search(r'-n "\$workers" --dist loadfile --no-loadscope-reorder "\$@"$', line), line
    text = TEST_SH.read_text()
    assert 'workers="${CAS_TEST_WORKERS:-$(( $(nproc) + 1 ))}"' in text
    # pytest's "no tests collected" (exit 5) stays a failure of the run
    assert re.search(r'if \[ "\$rc" -eq 5 \]; then\n.*\n  exit 1\n', text), text


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_worker_port_slices_are_disjoint_and_below_the_ephemeral_range(
        count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    low, _high = net._ephemeral_range()
    slices = []
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
    for index in range(count):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        slices.append(net.worker_port_range())
    seen: set[int] = set()
    for ports in slices:
        assert len(ports) >= 1000
        assert ports.start >= 10000 and ports.stop <= low
        assert seen.isdisjoint(ports)
        seen.update(ports)


def test_without_xdist_the_one_process_has_the_whole_space(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert (net.worker_index(), net.worker_count()) == (0, 1)
    assert net.worker_port_range() == range(10000, net._ephemeral_range()[0])


def test_free_ports_come_from_this_workers_slice_and_are_not_repeated() -> None:
    ports = net.worker_port_range()
    got = [net.free_tcp_port() for _ in range(20)] + [net.free_udp_port() for _ in range(20)]
    assert all(p in ports for p in got)
    assert len(set(got)) == len(got)
    first = net.free_port_run(2)
    assert first in ports and first + 1 in ports


def test_a_held_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", net.free_tcp_port()))
        held = holder.getsockname()[1]
        # the next candidate is the held port: it is skipped
        monkeypatch.setattr(net, "_next_port", iter([held, held + 1]))
        assert net.free_tcp_port() == held + 1
    finally:
        holder.close()


@dataclass
class _Item:
    nodeid: str


def test_longest_files_first_keeps_each_files_order() -> None:
    items = [_Item("tests/a.py::t1"), _Item("tests/b.py::t1"), _Item("tests/a.py::t2"),
             _Item("tests/c.py::t1"), _Item("tests/b.py::t2"), _Item("tests/d.py::t1")]
    table = {"tests/b.py": 30.0, "tests/a.py": 1.0, "tests/d.py": 30.0}
    got = [i.nodeid for i in longest_files_first(items, table)]
    # b and d tie (first seen first), c is unknown (UNKNOWN_S), a is the shortest
    assert UNKNOWN_S > 1.0
    assert got == ["tests/b.py::t1", "tests/b.py::t2", "tests/d.py::t1", "tests/c.py::t1",
                   "tests/a.py::t1", "tests/a.py::t2"]


def test_the_table_is_made_from_junit_and_read_back(tmp_path: Path) -> None:
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.unit.x.test_y" name="t1" time="1.5"/>'
        '<testcase classname="tests.unit.x.test_y.TestZ" name="t2" time="2.0"/>'
        '<testcase classname="tests.integration.test_w" name="t[a.b]" time="0.25"/>'
        "</testsuite></testsuites>")
    table = table_from_junit(xml)
    assert table == {"tests/unit/x/test_y.py": 3.5, "tests/integration/test_w.py": 0.25}
    text = tmp_path / "file-seconds.txt"
    text.write_text("# comment\n     3.5 tests/unit/x/test_y.py\n    0.2 tests/integration/test_w.py\n")
    assert load_table(text) == {"tests/unit/x/test_y.py": 3.5, "tests/integration/test_w.py": 0.2}
    assert load_table(tmp_path / "missing.txt") == {}
