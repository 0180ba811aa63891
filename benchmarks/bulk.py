"""bulk: insert 100,000 rows, upsert 50,000 (half of them new), update 50,000 of 100,000 by filter.

Each contender runs in a process of its own per repetition (``_bulk_worker.py``),
so its peak RSS is its own; the repetitions go round-robin over the
contenders, starting with a different one each time. The raw baseline writes a
table made with DataFlow's own DDL (same column types, same indexes), so the
ratio is DataFlow's overhead over the driver on the same physical table. The
peers write tables of their own natural schema (``_engines.create_table``).

``--huge`` adds the ten-million-row import from a generator on PostgreSQL,
at three sizes, to show that DataFlow's peak RSS does not grow with the input.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._engines import Engine
from ._harness import Config, Group, Outcome

NAME = "bulk"
ENGINES = ("sqlite", "postgresql", "mysql")
COLUMNS = ("rows/s", "peak RSS MB", "RSS before MB")
#: scenario → (rows in the operation, what the title says)
SIZES = {
    "insert": (100_000, "bulk insert of {n:,} rows into an empty table"),
    "upsert": (50_000, "bulk upsert of {n:,} rows, half of them new (unique key sku)"),
    "update": (50_000, "bulk update of {n:,} of {m:,} rows by one filter (stock < n), no index"),
}
HUGE = (1_000_000, 3_000_000, 10_000_000)


#: contender → the short name in its table's name (every contender writes a table of its own)
_SHORT = {"raw": "raw", "raw_generator": "rawgen", "dataflow": "df", "dataflow_speed": "dfspeed",
          "sqlalchemy_core": "sacore", "sqlalchemy_orm": "saorm", "django": "django"}
#: seconds between runs for the server's background work (flushing, purge) to finish
SETTLE = 1.0


def _contenders(cfg: Config, engine: Engine) -> list[tuple[str, str]]:
    out = [(engine.raw_label, "raw"), ("DataFlow", "dataflow"), ("DataFlow (speed)", "dataflow_speed")]
    if cfg.peers:
        out += [("SQLAlchemy Core", "sqlalchemy_core"), ("SQLAlchemy ORM", "sqlalchemy_orm"), ("Django", "django")]
    return out


_NOTES = {
    ("raw", "postgresql", "insert"): "COPY (binary)",
    ("raw", "postgresql", "upsert"): "COPY into a temp table + INSERT … ON CONFLICT",
    ("raw", "mysql", "insert"): "executemany (multi-row INSERT)",
    ("raw", "mysql", "upsert"): "executemany INSERT … ON DUPLICATE KEY UPDATE",
    ("raw", "sqlite", "insert"): "executemany, one transaction",
    ("raw", "sqlite", "upsert"): "executemany INSERT … ON CONFLICT",
    ("raw", "*", "update"): "one UPDATE",
    ("sqlalchemy_orm", "*", "insert"): "Session.add_all + commit",
    ("sqlalchemy_orm", "*", "upsert"): "ORM bulk INSERT … ON CONFLICT",
    ("django", "*", "insert"): "bulk_create",
    ("django", "*", "upsert"): "bulk_create(update_conflicts=True)",
}


def _note(key: str, engine: str, scenario: str) -> str:
    return _NOTES.get((key, engine, scenario)) or _NOTES.get((key, "*", scenario), "")


def ddl(engine: Engine, table: str, keyed: bool) -> list[str]:
    """DataFlow's DDL for the benchmark's Product table (its model, its dialect)."""
    from dataflow._models import build_model_spec
    from dataflow.dialects import dialect_for, parse_url

    attrs: dict[str, Any] = {"__tablename__": table,
                             "__annotations__": {"name": str, "price": float, "stock": int}}
    if keyed:
        attrs["__annotations__"] = {"sku": str, **attrs["__annotations__"]}
        attrs["__indexes__"] = [{"name": f"ux_{table}", "fields": ["sku"], "unique": True}]
    spec = build_model_spec(type("Product", (), attrs))
    dialect = dialect_for(parse_url(engine.dataflow_url() if engine.name == "sqlite" else engine.url))
    try:
        return [dialect.create_table_sql(spec), *(dialect.create_index_sql(spec, i) for i in spec.indexes)]
    finally:
        dialect.shutdown()


def run_worker(job: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one measurement process; its JSON result (or RuntimeError with its stderr)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks._bulk_worker", json.dumps(job)],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parent.parent, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        raise RuntimeError(tail[-1] if tail else f"exit status {proc.returncode}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def _job(engine: Engine, scenario: str, key: str, table: str, n: int, rep: int, ddl_sql: list[str],
         settle: float = SETTLE) -> dict[str, Any]:
    return {"engine": engine.name, "url": engine.url, "workdir": str(engine.workdir), "scenario": scenario,
            "contender": key, "table": table, "n": n, "rep": rep, "ddl": ddl_sql, "settle": settle}


def measure_scenario(engine: Engine, cfg: Config, scenario: str) -> Group:
    n, title = SIZES[scenario]
    if cfg.quick:
        n //= 10
    contenders = _contenders(cfg, engine)
    tables = {key: engine.table(f"bk{scenario[:2]}_{_SHORT[key]}") for _, key in contenders}
    outcomes = {key: Outcome(name, _note(key, engine.name, scenario)) for name, key in contenders}
    raw_ddl = ddl(engine, tables["raw"], keyed=scenario == "upsert")
    stats: dict[str, list[dict[str, Any]]] = {key: [] for _, key in contenders}
    try:
        for rep in range(cfg.reps):
            live = [(name, key) for name, key in contenders if outcomes[key].error is None]
            shift = rep % len(live) if live else 0
            for _, key in live[shift:] + live[:shift]:
                job = _job(engine, scenario, key, tables[key], n, rep, raw_ddl if key == "raw" else [],
                           settle=0.2 if cfg.quick else SETTLE)
                try:
                    result = run_worker(job)
                except Exception as exc:  # noqa: BLE001 - reported in the contender's row
                    outcomes[key].error = f"{type(exc).__name__}: {exc}"[:110]
                    print(f"--- {outcomes[key].name} ({scenario}) failed: {exc}", file=sys.stderr)
                    continue
                stats[key].append(result)
                outcomes[key].per_op_us.append(result["seconds"] * 1000)  # ms per run, see Group.unit
    finally:
        shared = [t for key, t in tables.items() if not key.startswith("dataflow")]
        engine.drop(*shared)
        df = [t for key, t in tables.items() if key.startswith("dataflow")]
        engine.drop(*df, file="dataflow" if engine.name == "sqlite" else "shared")
    for key, results in stats.items():
        if results and outcomes[key].error is None:
            seconds = statistics.median(r["seconds"] for r in results)
            outcomes[key].extra = {"rows/s": f"{n / seconds:,.0f}",
                                   "peak RSS MB": _mb(max(r["peak_kb"] for r in results)),
                                   "RSS before MB": _mb(statistics.median(r["rss_before_kb"] for r in results))}
    text = title.format(n=n, m=2 * n)
    return Group(f"bulk · {engine.name} · {text} · {cfg.reps} runs each, median", list(outcomes.values()),
                 unit="ms/run", columns=COLUMNS)


def measure_huge(engine: Engine, cfg: Config) -> Group:
    """DataFlow's BulkCreate fed by a generator, at three sizes: peak RSS should not grow with N."""
    sizes = tuple(s // 10 for s in HUGE) if cfg.quick else HUGE
    outcomes = []
    for label, key in ((engine.raw_label + " (generator)", "raw_generator"), ("DataFlow (generator)", "dataflow")):
        for n in sizes:
            table = engine.table(f"bkhuge_{_SHORT[key]}")
            outcome = Outcome(f"{label}, {n:,} rows", "COPY from the generator" if key == "raw_generator" else "")
            try:
                result = run_worker(_job(engine, "huge", key, table, n, 0, ddl(engine, table, keyed=False)),
                                    timeout=3600)
            except Exception as exc:  # noqa: BLE001 - reported in the row
                outcome.error = f"{type(exc).__name__}: {exc}"[:110]
                print(f"--- {outcome.name} failed: {exc}", file=sys.stderr)
            else:
                if result["rows"] != n:
                    outcome.error = f"{result['rows']} rows stored, expected {n}"
                outcome.per_op_us.append(result["seconds"] * 1e6 / n)
                outcome.extra = {"rows/s": f"{n / result['seconds']:,.0f}", "peak RSS MB": _mb(result["peak_kb"]),
                                 "RSS before MB": _mb(result["rss_before_kb"])}
            finally:
                engine.drop(table)
            outcomes.append(outcome)
    return Group(f"bulk · {engine.name} · import from a generator, 1 run per size "
                 "(peak RSS is the process's, op included)", outcomes, unit="µs/row", columns=COLUMNS)


def groups(engine: Engine, cfg: Config) -> Iterator[Group]:
    for scenario in SIZES:
        yield measure_scenario(engine, cfg, scenario)
    if cfg.huge and engine.name == "postgresql":
        yield measure_huge(engine, cfg)
