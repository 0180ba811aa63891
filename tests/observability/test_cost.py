"""The uninstrumented path: what the benchmark compiles out still runs, and nothing observes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dataflow
from dataflow import AsyncLocalRuntime, DataFlow, LocalRuntime

from .conftest import add_customer, create_read

SOURCES = [Path(dataflow.__file__).parent / name for name in ("_execute.py", "runtime.py")]


def test_compiled_out_variant_runs_a_workflow(memdb: DataFlow) -> None:
    """benchmarks/telemetry_cost.py can drop every '# [telemetry]' line and the workflow still runs."""
    from benchmarks.telemetry_cost import MARKED, compiled_out

    runtime_class, removed = compiled_out()
    assert removed == sum(bool(MARKED.match(line)) for p in SOURCES for line in p.read_text().splitlines())
    assert removed >= 8
    add_customer(memdb)
    results, _ = runtime_class().execute(create_read())
    assert results["read"]["email"] == results["create"]["email"]


def test_marked_lines_are_whole_statements() -> None:
    """Each marked line is a complete one-line statement, so removing it leaves valid code."""
    import ast

    from benchmarks.telemetry_cost import MARKED

    for path in SOURCES:
        for line in path.read_text().splitlines():
            if MARKED.match(line):
                ast.parse(line.strip())  # raises on a fragment such as an opening 'if …:' 


def test_unobserved_runs_never_touch_the_telemetry(memdb: DataFlow, monkeypatch: object) -> None:
    """With nothing configured neither runtime calls the per-run telemetry (spans, timers, statistics)."""
    add_customer(memdb)
    tel = memdb.telemetry
    calls: list[str] = []
    for name in ("run", "run_async", "node_start", "node_end", "waited", "carry"):
        setattr(tel, name, lambda *a, _n=name, **k: calls.append(_n))  # type: ignore[misc]
    try:
        LocalRuntime().execute(create_read("a@example.com"))
        asyncio.run(AsyncLocalRuntime().execute_async(create_read("b@example.com")))
    finally:
        for name in ("run", "run_async", "node_start", "node_end", "waited", "carry"):
            delattr(tel, name)
    assert calls == []
