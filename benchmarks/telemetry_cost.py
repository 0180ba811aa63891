"""What observability costs the create + read workflow (SQLite file, WAL), and
whether the uninstrumented path keeps its promise: within 3% of the same code
with the instrumentation compiled out.

    python -m benchmarks.telemetry_cost            # figures (about a minute)
    python -m benchmarks.telemetry_cost --quick    # smoke test

Contenders, each on its own database file, measured round-robin by
``_harness.measure`` (see benchmarks/README.md):

- ``raw sqlite3``: the create_read baseline.
- ``compiled out``: ``LocalRuntime`` and ``_execute`` rebuilt from their source
  without the lines marked ``# [telemetry]`` — the code as it would be with no
  instrumentation at all (see :func:`compiled_out`).
- ``off``: the shipped code with no provider configured and monitoring off.
- ``monitoring``: ``DataFlow(monitoring=True)``, no OpenTelemetry provider.
- ``sdk``: OpenTelemetry SDK tracer provider (BatchSpanProcessor, an exporter
  that drops the spans) and meter provider (an in-memory reader).
- ``sdk + insights``: the SDK plus ``monitoring=True, query_insights=True``.

Besides the table it prints each contender's median over ``compiled out``, and
the median of the per-repetition ratios (each repetition runs every contender
once, so the paired ratio cancels most machine drift).

The 3% question needs a finer instrument than wall-clock repetitions on a
shared machine (two identical contenders differ by several percent there), so
a second part interleaves short blocks (``--block`` workflows) of ``compiled
out``, a second ``compiled out`` (the control: its ratio is the noise floor),
``off``, ``monitoring`` and ``sdk``, in a shuffled order each round, timing each block
with the thread's CPU clock (``time.thread_time``, blind to time spent
descheduled; for ``sdk`` it leaves out the span processor's export thread),
and reports the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import timeit
import types
from pathlib import Path
from typing import Any

from . import create_read
from ._engines import Engine
from ._harness import Contender, Group, Outcome, measure, render

MARK = "# [telemetry]"
#: a line of code that ends with the marker (optionally followed by a noqa comment)
MARKED = re.compile(r"^\s*[^#\s].*# \[telemetry\](\s+# noqa[^#]*)?\s*$")


def _stripped(module_name: str) -> tuple[types.ModuleType, int]:
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in source if not MARKED.match(line)]
    removed = len(source) - len(kept)
    if removed == 0:
        raise RuntimeError(f"{module_name} has no {MARK!r} lines: nothing would be compiled out")
    module = types.ModuleType(f"{module_name}_compiled_out")
    module.__package__ = module_name.rpartition(".")[0]
    module.__file__ = spec.origin
    code = compile("".join(kept), f"<{module_name} without telemetry>", "exec")
    exec(code, module.__dict__)  # noqa: S102 - our own source, minus the marked lines
    return module, removed


def compiled_out() -> tuple[Any, int]:
    """A ``LocalRuntime`` class built from ``dataflow/runtime.py`` and ``dataflow/_execute.py``
    without their ``# [telemetry]`` lines, and how many lines were dropped."""
    execute, n1 = _stripped("dataflow._execute")
    runtime, n2 = _stripped("dataflow.runtime")
    runtime._execute = execute  # type: ignore[attr-defined]
    return runtime.LocalRuntime, n1 + n2


def _sdk() -> tuple[Any, Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def close() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return tracer_provider, meter_provider, close


def _dataflow(workdir: Path, stem: str, runtime_class: Any = None, **options: Any) -> Any:
    """A create_read contender: its own database file, DataFlow ``options``, ``runtime_class``."""

    def setup() -> tuple[Any, Any]:
        from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

        closers: list[Any] = []
        if options.pop("sdk", False):
            tracer_provider, meter_provider, close = _sdk()
            options.update(tracer_provider=tracer_provider, meter_provider=meter_provider)
            closers.append(close)
        db = DataFlow(f"sqlite:///{workdir / f'{stem}.db'}", **options)
        closers.insert(0, db.close)

        @db.model
        class Product:
            name: str
            price: float
            stock: int = 0

        wf = WorkflowBuilder()
        wf.add_node("ProductCreateNode", "create", {"name": "pen", "price": 1.5})
        wf.add_node("ProductReadNode", "read", {})
        wf.add_connection("create", "id", "read", "id")
        built = wf.build()
        rt = (runtime_class or LocalRuntime)()

        def op(i: int) -> None:
            results, _ = rt.execute(built, parameters={"create": {"name": f"p{i}", "price": 1.5, "stock": i}})
            if results["read"]["name"] != f"p{i}":
                raise AssertionError("read back the wrong row")

        def cleanup() -> None:
            for close in closers:
                close()

        return op, cleanup

    return setup


def _decision_cost() -> float:
    """Nanoseconds of the per-workflow question ``db.telemetry.for_run()`` with nothing configured."""
    from dataflow import DataFlow

    with DataFlow() as db:
        check = db.telemetry.for_run
        assert check() is None
        n = 200_000
        return min(timeit.repeat(check, number=n, repeat=5)) / n * 1e9


def _ratios(outcomes: list[Outcome], base: str) -> list[str]:
    by_name = {o.name: o for o in outcomes}
    ref = by_name[base]
    lines = [f"{'contender':<16} {'median / compiled out':>22} {'paired ratio (median, min–max)':>32}"]
    for o in outcomes:
        if o.name in (base, "raw sqlite3") or o.median is None or ref.median is None:
            continue
        paired = [a / b for a, b in zip(o.per_op_us, ref.per_op_us)]
        lines.append(f"{o.name:<16} {o.median / ref.median:>21.3f}x "
                     f"{statistics.median(paired):>17.3f}x ({min(paired):.3f}–{max(paired):.3f})")
    return lines


def _interleaved(ops: dict[str, Any], rounds: int, block: int) -> dict[str, list[float]]:
    """CPU µs per workflow of each op, one figure per round; blocks run in a shuffled order."""
    cpu: dict[str, list[float]] = {name: [] for name in ops}
    i = 10_000_000  # past every id the harness used
    names = list(ops)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            op = ops[name]
            start = time.thread_time()
            for _ in range(block):
                op(i)
                i += 1
            cpu[name].append((time.thread_time() - start) * 1e6 / block)
    return cpu


def _fine(workdir: Path, stripped: Any, rounds: int, block: int) -> list[str]:
    setups = {
        "compiled out": _dataflow(workdir, "fine_compiled_out", stripped),
        "compiled out 2": _dataflow(workdir, "fine_control", stripped),
        "off": _dataflow(workdir, "fine_off"),
        "monitoring": _dataflow(workdir, "fine_monitoring", monitoring=True),
        "sdk": _dataflow(workdir, "fine_sdk", sdk=True),
    }
    ops, cleanups = {}, []
    try:
        for name, setup in setups.items():
            op, cleanup = setup()
            cleanups.append(cleanup)
            ops[name] = op
            for i in range(max(block, 200)):
                op(20_000_000 + i)
        cpu = _interleaved(ops, rounds, block)
    finally:
        for cleanup in cleanups:
            cleanup()
    ref = cpu["compiled out"]
    lines = [f"== interleaved CPU time · {rounds} rounds × {block} workflows per contender",
             f"  {'contender':<16} {'cpu µs/op':>10} {'paired ratio to compiled out (median, IQR)':>44}"]
    for name, values in cpu.items():
        paired = sorted(a / b for a, b in zip(values, ref))
        q1, q3 = paired[len(paired) // 4], paired[(3 * len(paired)) // 4]
        lines.append(f"  {name:<16} {statistics.median(values):>10.1f} "
                     f"{statistics.median(paired):>26.4f}x ({q1:.4f}–{q3:.4f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.telemetry_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    p.add_argument("--reps", type=int, help="repetitions (default 15, quick 3)")
    p.add_argument("-n", type=int, help="workflows per repetition (default 3000, quick 300)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 150, quick 10)")
    p.add_argument("--block", type=int, default=200, help="workflows per interleaved block (default 200)")
    args = p.parse_args(argv)
    reps = args.reps or (3 if args.quick else 15)
    n = args.n or (300 if args.quick else 3000)
    rounds = args.rounds or (10 if args.quick else 150)
    stripped, removed = compiled_out()
    print(f"command: python -m benchmarks.telemetry_cost {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"python: {platform.python_implementation()} {platform.python_version()} on {platform.platform()}")
    print(f"sqlite3: SQLite {sqlite3.sqlite_version}; compiled out: {removed} '{MARK}' lines removed")
    print(f"per-workflow decision db.telemetry.for_run() with nothing configured: {_decision_cost():.0f} ns")
    with tempfile.TemporaryDirectory(prefix="dataflow-telemetry-") as tmp:
        workdir = Path(tmp)
        engine = Engine("sqlite", None, workdir)
        raw_table = engine.table("tc_raw")
        contenders = [
            Contender("raw sqlite3", lambda: create_read.raw(engine, raw_table)),
            Contender("compiled out", _dataflow(workdir, "compiled_out", stripped)),
            Contender("off", _dataflow(workdir, "off")),
            Contender("monitoring", _dataflow(workdir, "monitoring", monitoring=True)),
            Contender("sdk", _dataflow(workdir, "sdk", sdk=True)),
            Contender("sdk + insights", _dataflow(workdir, "insights", sdk=True, monitoring=True,
                                                  query_insights=True)),
        ]
        try:
            outcomes = measure(contenders, n=n, reps=reps, warmup=max(n // 10, 5))
        finally:
            engine.drop(raw_table)
        fine = _fine(workdir, stripped, rounds, args.block)
    print(f"reps: {reps} × {n} workflows per contender, round-robin; figures are medians\n")
    print(render(Group(f"telemetry cost · create_read · sqlite · {n} ops × {reps} reps, median", outcomes)))
    print()
    print("\n".join(_ratios(outcomes, "compiled out")))
    print()
    print("\n".join(fine))
    return 0 if all(o.error is None for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
