"""The billing modules import each other without cycles (``_core`` and ``service`` used to)."""

from __future__ import annotations

import ast
from pathlib import Path

import cas.billing

_ROOT = Path(cas.billing.__file__).parent


def _graph() -> dict[str, set[str]]:
    mods = {f"cas.billing.{p.stem}": p for p in _ROOT.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):  # local imports too
            if isinstance(node, ast.ImportFrom) and node.module in mods:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        if node in stack:
            found.append([*stack[stack.index(node):], node])
            return
        if node in done:
            return
        done.add(node)
        stack.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    return found


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_billing_has_no_import_cycle() -> None:
    graph = _graph()
    assert graph.get("cas.billing.payments")
    assert _cycles(graph) == []


def test_rule_modules_stay_below_the_entry_points() -> None:
    graph = _graph()
    facades = {"cas.billing.service", "cas.billing.accounts", "cas.billing._core"}
    for name, deps in graph.items():
        if name not in facades:
            assert not (deps & facades), f"{name} imports {deps & facades}"
