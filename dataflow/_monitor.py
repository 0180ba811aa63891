"""In-process statistics behind ``db.get_monitor_nodes()``, and ``db.health()``.

:class:`Stats` is updated by :mod:`dataflow._telemetry` from whichever thread
runs the workflow (a caller thread, or a connection actor thread for asyncio
callers), so every update takes its lock. The monitor views read it on each
access: they are live, not copies.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from actors import ActorsError

from .errors import DataFlowError

if TYPE_CHECKING:
    from ._actors_bridge import Engine
    from ._monitor_settings import MonitoringSettings

__all__ = ["MonitorView", "Stats", "check_health", "monitor_views"]

RESERVOIR = 512  # durations kept per query summary (and for workflows) for percentiles
MAX_SUMMARIES = 1000  # distinct query summaries tracked; the rest count under "OTHER"
RECENT = 20  # recent failures / slow queries / safety events kept


def _percentile(values: deque[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class _Query:
    __slots__ = ("count", "durations", "errors", "rows", "total")

    def __init__(self) -> None:
        self.count = self.errors = self.rows = 0
        self.total = 0.0
        self.durations: deque[float] = deque(maxlen=RESERVOIR)


class Stats:
    """Counters and bounded samples; every method may be called from any thread."""

    def __init__(self, settings: MonitoringSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.started = self.succeeded = self.failed = self.in_flight = 0
        self.workflow_durations: deque[float] = deque(maxlen=RESERVOIR)
        self.recent_failures: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.statements_counted = False  # the statement hooks are on (see Telemetry._refresh)
        self.statements = self.statement_errors = self.slow = 0
        self.statement_time = 0.0
        self.recent_slow: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.queries: dict[str, _Query] = {}
        self.checkout_waits = 0
        self.checkout_wait_time = 0.0
        self.bulk: dict[tuple[str, str], list[float]] = {}  # (model, op) → [runs, rows, seconds, last rows/s]
        self.retries = self.compensations_ran = self.compensations_failed = self.unknown_outcomes = 0
        self.recent_safety: deque[dict[str, Any]] = deque(maxlen=RECENT)

    # -- updates

    def workflow_started(self) -> None:
        with self.lock:
            self.started += 1
            self.in_flight += 1

    def workflow_ended(self, seconds: float, failure: dict[str, Any] | None) -> None:
        with self.lock:
            self.in_flight -= 1
            self.workflow_durations.append(seconds)
            if failure is None:
                self.succeeded += 1
            else:
                self.failed += 1
                self.recent_failures.append(failure)

    def statement(self, summary: str, seconds: float, failed: bool, rows: int | None) -> _Query | None:
        """Count one statement; return its query record when query insights are on."""
        with self.lock:
            self.statements += 1
            self.statement_time += seconds
            if failed:
                self.statement_errors += 1
            if not self.settings.query_insights:
                return None
            query = self.queries.get(summary)
            if query is None:
                key = summary if len(self.queries) < MAX_SUMMARIES else "OTHER"
                query = self.queries.setdefault(key, _Query())
            query.count += 1
            query.total += seconds
            query.durations.append(seconds)
            if failed:
                query.errors += 1
            if rows is not None and rows > 0:
                query.rows += rows
            return query

    def add_rows(self, query: _Query, rows: int) -> None:
        with self.lock:
            query.rows += rows

    def slow_query(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.slow += 1
            self.recent_slow.append(record)

    def checkout_waited(self, seconds: float) -> None:
        with self.lock:
            self.checkout_waits += 1
            self.checkout_wait_time += seconds

    def bulk_done(self, model: str, operation: str, rows: int, seconds: float) -> None:
        with self.lock:
            entry = self.bulk.setdefault((model, operation), [0, 0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += rows
            entry[2] += seconds
            entry[3] = rows / seconds if seconds > 0 else 0.0

    def safety_event(self, kind: str, record: dict[str, Any]) -> None:
        with self.lock:
            if kind == "retry":
                self.retries += 1
            elif kind == "compensation":
                if record.get("outcome") == "ok":
                    self.compensations_ran += 1
                else:
                    self.compensations_failed += 1
            elif kind == "unknown_outcome":
                self.unknown_outcomes += 1
            self.recent_safety.append({"kind": kind, **record})

    # -- snapshots (lock held briefly, results are plain dicts)

    def transaction_snapshot(self) -> dict[str, Any]:
        with self.lock:
            durations = deque(self.workflow_durations)
            out = {"started": self.started, "succeeded": self.succeeded, "failed": self.failed,
                   "in_flight": self.in_flight, "recent_failures": list(self.recent_failures)}
        out["duration_ms"] = {"p50": _ms(_percentile(durations, 0.5)), "p95": _ms(_percentile(durations, 0.95)),
                              "max": _ms(max(durations) if durations else None)}
        return out

    def metrics_snapshot(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {
                "checkout": {"waits": self.checkout_waits, "wait_time_ms": _ms(self.checkout_wait_time)},
            }
            if self.statements_counted:
                out.update({
                    "statements": self.statements, "statement_errors": self.statement_errors,
                    "statement_time_ms": _ms(self.statement_time), "slow_queries": self.slow,
                    "slow_query_threshold_ms": _ms(self.settings.slow_query_threshold),
                    "recent_slow_queries": list(self.recent_slow),
                })
            queries = {k: (q.count, q.errors, q.total, q.rows, deque(q.durations)) for k, q in self.queries.items()}
        if self.settings.query_insights:
            out["queries"] = {
                summary: {"count": count, "errors": errors, "total_ms": _ms(total),
                          "mean_ms": _ms(total / count if count else None),
                          "p95_ms": _ms(_percentile(durations, 0.95)), "rows": rows}
                for summary, (count, errors, total, rows, durations) in queries.items()
            }
        return out

    def bulk_snapshot(self) -> dict[str, Any]:
        with self.lock:
            items = {f"{model}.{op}": list(v) for (model, op), v in self.bulk.items()}
        return {"operations": {
            key: {"runs": int(runs), "rows": int(rows), "seconds": round(seconds, 6),
                  "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
                  "last_rows_per_second": round(last, 1)}
            for key, (runs, rows, seconds, last) in items.items()
        }}

    def safety_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"retries": self.retries,
                    "compensations": {"ran": self.compensations_ran, "failed": self.compensations_failed},
                    "unknown_outcomes": self.unknown_outcomes, "recent": list(self.recent_safety)}


class MonitorView(Mapping[str, Any]):
    """A live, read-only view: every access reads the current figures."""

    def __init__(self, name: str, enabled: bool, read: Any) -> None:
        self.name = name
        self.enabled = enabled
        self._read = read

    def snapshot(self) -> dict[str, Any]:
        """The current figures as a plain dict."""
        data: dict[str, Any] = self._read() if self.enabled else {}
        return {"enabled": self.enabled, **data}

    def __getitem__(self, key: str) -> Any:
        return self.snapshot()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        return len(self.snapshot())

    def __repr__(self) -> str:
        return f"<MonitorView {self.name} {self.snapshot()!r}>"


def monitor_views(stats: Stats | None, settings: MonitoringSettings, engine: Engine) -> dict[str, MonitorView]:
    """The four views of ``db.get_monitor_nodes()`` over ``stats`` and the pool."""

    def pool() -> dict[str, Any]:
        return {**engine.stats()._asdict(), "timeouts": engine.timeouts}

    def metrics() -> dict[str, Any]:
        data = stats.metrics_snapshot() if stats is not None else {}
        return {"pool": pool(), **data}

    on = stats is not None
    return {
        "transaction": MonitorView("transaction", on and settings.monitoring,
                                   lambda: stats.transaction_snapshot() if stats else {}),
        "metrics": MonitorView("metrics", True, metrics),
        "bulk_operations": MonitorView("bulk_operations", on and settings.performance_monitoring,
                                       lambda: stats.bulk_snapshot() if stats else {}),
        "safety": MonitorView("safety", on and settings.safety_monitoring,
                              lambda: stats.safety_snapshot() if stats else {}),
    }


def check_health(engine: Engine, closed: bool, timeout: float) -> dict[str, Any]:
    """A readiness probe: the pool's state and a ping through a lease, within ``timeout`` seconds.

    ``status`` is ``ok``, ``degraded`` (no connection free in time: the pool
    is saturated, the database may be fine), ``down`` or ``closed``.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError("timeout must be a positive number of seconds")
    report: dict[str, Any] = {"status": "closed", "ok": False, "backend": engine.dialect.name,
                              "ping_ms": None, "error": None}
    if closed:
        return report
    stats = engine.stats()
    report["pool"] = {**stats._asdict(), "timeouts": engine.timeouts}
    if stats.state != "running":
        report.update(status="down", error=f"pool is {stats.state}")
        return report
    deadline = time.monotonic() + timeout
    start = time.perf_counter()
    try:
        lease = engine.checkout(timeout)
    except DataFlowError as exc:
        timed_out = isinstance(exc, TimeoutError)
        report.update(status="degraded" if timed_out else "down", error=type(exc).__name__)
        return report
    answer: dict[str, Any] = {}
    done = threading.Event()

    def ping(conn: Any) -> bool:
        return bool(engine.dialect.ping(conn))

    def reply(result: Any, error: BaseException | None) -> None:
        # Runs on the connection actor's thread, possibly after we gave up waiting.
        answer["ok"], answer["error"] = bool(result) and error is None, error
        if not answer["ok"]:
            lease.mark_broken()
        lease.release()
        done.set()

    try:
        lease.submit(ping, reply)
    except ActorsError as exc:  # the connection actor is gone
        lease.release()
        report.update(status="down", error=type(exc).__name__)
        return report
    if not done.wait(max(0.0, deadline - time.monotonic())):
        report.update(status="down", error="ping timed out")
        return report
    report["ping_ms"] = _ms(time.perf_counter() - start)
    if answer["ok"]:
        report.update(status="ok", ok=True)
    else:
        error = answer["error"]
        report.update(status="down", error=type(error).__name__ if error is not None else "ping failed")
    return report
