"""OpenTelemetry traces and metrics, slow queries, and the monitor's statistics.

One :class:`Telemetry` per DataFlow instance. The rule that keeps it cheap
(``docs/adr/0004-observability.md``): the runtime asks :meth:`Telemetry.for_run`
once per workflow. When nothing is configured — no tracer or meter provider,
global or given, and no monitoring option — it answers ``None`` after two
attribute checks, and the workflow runs exactly the code it would run without
this module: no spans, no timers, no log calls. Otherwise it answers itself
and the workflow is traced: a span per workflow, per node, and per database
operation (kind CLIENT, the database semantic conventions), the statements
reaching the spans through hooks installed once on the dialect instance.

Spans cross threads through the OpenTelemetry context: a sync workflow runs
on its caller's thread, so the context simply flows; an asyncio workflow runs
on a connection actor's thread, so :meth:`Telemetry.carry` captures the
context when the work is submitted and attaches it on the actor thread.

Hooks for the safety engine (retries, compensations, unknown commit outcomes)
are the module functions :func:`record_retry`, :func:`record_compensation`
and :func:`record_unknown_outcome`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sized
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self, TypeVar

import opentelemetry.metrics._internal as _otel_metrics_internal
from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._logging import EventLog, error_type
from ._monitor import MonitorView, Stats, check_health, monitor_views
from ._monitor_settings import MonitoringSettings
from .errors import WorkflowFailed

if TYPE_CHECKING:
    from ._actors_bridge import Engine
    from .dialects import DatabaseURL
    from .dialects.base import Dialect
    from .workflow import Step, Workflow

__all__ = [
    "DB_DURATION_BUCKETS", "Telemetry", "record_compensation", "record_retry", "record_unknown_outcome",
]

T = TypeVar("T")

try:
    VERSION = importlib.metadata.version("dataflow-actors")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0"

#: bucket boundaries the database conventions give for db.client.operation.duration (seconds)
DB_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
WORKFLOW_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)

_RUN_KEY = otel_context.create_key("dataflow-run")
_NODE_KEY = otel_context.create_key("dataflow-node")
_BULK_COUNTS = ("inserted", "updated", "deleted", "skipped", "failed")


class _Globals:
    """Fallback if OpenTelemetry ever renames its private globals: the public API, polled every 0.5 s."""

    def __init__(self) -> None:
        self._next = 0.0
        self._state: tuple[Any, Any] = (None, None)

    def _poll(self) -> tuple[Any, Any]:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.5
            self._state = (_global_tracer_provider(), _global_meter_provider())
        return self._state

    @property
    def _TRACER_PROVIDER(self) -> Any:
        return self._poll()[0]

    @property
    def _METER_PROVIDER(self) -> Any:
        return self._poll()[1]


# The per-workflow check reads OpenTelemetry's own globals (None until the
# application sets a provider): two attribute reads, against ~1.7 µs for
# get_tracer_provider() + get_meter_provider(), which consult os.environ.
if hasattr(otel_trace, "_TRACER_PROVIDER") and hasattr(_otel_metrics_internal, "_METER_PROVIDER"):
    _T: Any = otel_trace
    _M: Any = _otel_metrics_internal
else:  # pragma: no cover - depends on the OpenTelemetry version
    _T = _M = _Globals()


def _global_tracer_provider() -> Any:
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)):
        return None
    return provider


def _global_meter_provider() -> Any:
    provider = otel_metrics.get_meter_provider()
    if isinstance(provider, otel_metrics.NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider":
        return None
    return provider


class _NodeMark(NamedTuple):
    start: float
    span: Any
    token: Any
    step: Step


class _RunInfo(NamedTuple):
    run_id: str
    tenant_id: str | None


class _SqlInfo(NamedTuple):
    operation: str
    summary: str
    collection: str | None
    span_attrs: dict[str, Any]
    metric_attrs: dict[str, Any]


class Telemetry:
    """Traces, metrics, logs and statistics of one DataFlow instance."""

    def __init__(self, url: DatabaseURL, dialect: Dialect, engine: Engine, settings: MonitoringSettings) -> None:
        self.settings = settings
        self.log = EventLog(settings.log_format).bind(database=str(url))
        self.stats = Stats(settings) if settings.collecting else None
        self._dialect = dialect
        self._engine = engine
        self._lock = threading.Lock()
        self._closed = False
        self._slow = settings.slow_query_threshold
        self._db_attrs = _db_attributes(url, dialect)
        self._pool_attrs = {"db.client.connection.pool.name": str(url)}
        self._sql: dict[str, _SqlInfo] = {}  # statement text → its summary and attributes
        self._sql_batch: dict[str, _SqlInfo] = {}  # the same for executemany of 2+ rows
        self._rows = settings.query_insights  # count rows per query summary
        self._tracer: Any = None
        self._inst: Instruments | None = None
        self._context = False
        self._seen_tp: Any = None
        self._seen_mp: Any = None
        self._watch = True
        self._on = False
        self._hooked = False
        self.prometheus: Any = None
        if settings.export_format == "prometheus":
            from ._prometheus import PrometheusEndpoint

            self.prometheus = PrometheusEndpoint(settings.host, settings.port, settings.path)
        try:
            self._refresh()
        except BaseException:
            self.close()
            raise
        self.views: dict[str, MonitorView] = monitor_views(self.stats, settings, engine)
        self.log.info("database_opened", backend=url.backend, pool_max_size=engine.supervisor.policy.max_size,
                      metrics_url=self.metrics_url)

    # -- the per-workflow decision

    def for_run(self) -> Telemetry | None:
        """``self`` if this workflow is to be observed, else ``None`` (the uninstrumented path)."""
        if self._watch and (_T._TRACER_PROVIDER is not self._seen_tp or _M._METER_PROVIDER is not self._seen_mp):
            self._refresh()
        return self if self._on else None

    def _refresh(self) -> None:
        """Adopt the given providers, and any global one set since; hook the dialect if anything is on."""
        with self._lock:
            self._seen_tp, self._seen_mp = _T._TRACER_PROVIDER, _M._METER_PROVIDER
            s = self.settings
            if self._tracer is None:
                provider = s.tracer_provider if s.tracer_provider is not None else _global_tracer_provider()
                if provider is not None:
                    self._tracer = provider.get_tracer("dataflow", VERSION)
            if self._inst is None:
                provider = s.meter_provider
                if provider is None and self.prometheus is not None:
                    provider = self.prometheus.meter_provider
                if provider is None:
                    provider = _global_meter_provider()
                if provider is not None:
                    self._inst = Instruments.for_provider(provider)
                    self._inst.members.add(self)
            self._watch = self._tracer is None or self._inst is None
            # The OpenTelemetry context carries the spans, and the run and node ids a
            # slow-query event names; without either, the runs skip it entirely.
            self._context = self._tracer is not None or self._slow is not None
            self._on = self._tracer is not None or self._inst is not None or self.stats is not None
            # Statements are observed only when something wants each one: spans, the
            # duration metric, query insights or the slow-query threshold. The monitor
            # views alone cost a few calls per workflow, none per statement.
            per_statement = (self._tracer is not None or self._inst is not None or s.query_insights
                             or self._slow is not None)
            if per_statement and not self._hooked:
                self._hook_dialect()
                if self.stats is not None:
                    self.stats.statements_counted = True

    @property
    def tracing(self) -> bool:
        return self._tracer is not None

    @property
    def metering(self) -> bool:
        return self._inst is not None

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus scrapes this instance, when it exports in that format."""
        return self.prometheus.url if self.prometheus is not None else None

    # -- workflows

    def run(self, workflow: Workflow, run_id: str, tenant: str | None, work: Callable[[], T]) -> T:
        """``work()`` observed as workflow run ``run_id``, on this thread."""
        start = time.perf_counter()
        span, token = self._workflow_begin(workflow, run_id, tenant)
        try:
            out = work()
        except BaseException as exc:
            self._workflow_end(span, start, run_id, tenant, exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._workflow_end(span, start, run_id, tenant, None)
        return out

    async def run_async(self, workflow: Workflow, run_id: str, tenant: str | None,
                        work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` observed as workflow run ``run_id`` (in the caller's asyncio task)."""
        start = time.perf_counter()
        span, token = self._workflow_begin(workflow, run_id, tenant)
        try:
            out = await work
        except BaseException as exc:
            self._workflow_end(span, start, run_id, tenant, exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        self._workflow_end(span, start, run_id, tenant, None)
        return out

    @staticmethod
    def carry(body: Callable[[Any], T]) -> Callable[[Any], T]:
        """``body`` to run on another thread in the context current here (the workflow's span)."""
        ctx = otel_context.get_current()

        def in_context(conn: Any) -> T:
            # Runs on the connection actor's thread.
            token = otel_context.attach(ctx)
            try:
                return body(conn)
            finally:
                otel_context.detach(token)

        return in_context

    def _workflow_begin(self, workflow: Workflow, run_id: str, tenant: str | None) -> tuple[Any, Any]:
        if self.stats is not None:
            self.stats.workflow_started()
        if not self._context:
            return None, None
        ctx = otel_context.set_value(_RUN_KEY, _RunInfo(run_id, tenant))
        span = None
        if self._tracer is not None:
            attrs: dict[str, Any] = {"dataflow.run_id": run_id, "dataflow.workflow.nodes": len(workflow.steps)}
            if tenant is not None:
                attrs["dataflow.tenant_id"] = tenant
            span = self._tracer.start_span("dataflow.workflow", attributes=attrs)
            ctx = otel_trace.set_span_in_context(span, ctx)
        return span, otel_context.attach(ctx)

    def _workflow_end(self, span: Any, start: float, run_id: str, tenant: str | None,
                      exc: BaseException | None) -> None:
        seconds = time.perf_counter() - start
        etype = _cause_type(exc) if exc is not None else None
        if self._inst is not None:
            attrs = {"dataflow.workflow.outcome": "success" if exc is None else "failure"}
            if etype is not None:
                attrs["error.type"] = etype
            self._inst.wf_duration.record(seconds, attrs)
            self._inst.wf_runs.add(1, attrs)
        if span is not None:
            if etype is not None:
                span.set_attribute("error.type", etype)
                node = getattr(exc, "node", None)
                if node is not None:
                    span.set_attribute("dataflow.node.id", str(node))
                span.set_status(Status(StatusCode.ERROR, etype))
            span.end()
        if self.stats is not None:
            failure = None
            if exc is not None:
                failure = {"run_id": run_id, "node_id": getattr(exc, "node", None), "error_type": etype,
                           "at": time.time()}
            self.stats.workflow_ended(seconds, failure)
        if exc is not None:
            self.workflow_failed(exc, run_id, tenant, seconds)
        elif self.log.enabled(logging.DEBUG):
            self.log.debug("workflow_completed", run_id=run_id, tenant_id=tenant, duration_ms=_ms(seconds))

    def workflow_failed(self, exc: BaseException, run_id: str, tenant: str | None, seconds: float | None = None) -> None:
        """Log one ``workflow_failed`` event: identifiers and error types, never the message."""
        compensated = getattr(exc, "compensated", None)
        comp_errors = getattr(exc, "compensation_errors", None)
        self.log.warning(
            "workflow_failed", run_id=run_id, tenant_id=tenant, node_id=getattr(exc, "node", None),
            error_type=_cause_type(exc), compensated=list(compensated) if compensated else None,
            compensation_failures=[n for n, _ in comp_errors] if comp_errors else None,
            duration_ms=_ms(seconds) if seconds is not None else None,
        )

    def waited(self, seconds: float) -> None:
        """A workflow waited ``seconds`` for its connection."""
        if self._inst is not None:
            self._inst.wait_time.record(seconds, self._pool_attrs)
        if self.stats is not None:
            self.stats.checkout_waited(seconds)

    # -- nodes

    def node_start(self, step: Step) -> _NodeMark:
        """Open node ``step``'s span and make it current on this thread."""
        node = step.node
        if not self._context:
            return _NodeMark(time.perf_counter(), None, None, step)
        ctx = otel_context.set_value(_NODE_KEY, step.id)
        span = None
        if self._tracer is not None:
            attrs = {"dataflow.node.id": step.id, "dataflow.node.type": node.name}
            if node.model is not None:
                attrs["dataflow.model"] = node.model.name
            span = self._tracer.start_span(node.name, attributes=attrs)
            ctx = otel_trace.set_span_in_context(span, ctx)
        return _NodeMark(time.perf_counter(), span, otel_context.attach(ctx), step)

    def node_end(self, mark: _NodeMark | None, out: Any, exc: BaseException | None = None) -> None:
        """Close the node's span (with the error, if ``exc``) and count bulk rows."""
        assert mark is not None
        start, span, token, step = mark
        if token is not None:
            otel_context.detach(token)
        seconds = time.perf_counter() - start
        node = step.node
        if exc is not None:
            if span is not None:
                etype = error_type(exc)
                span.set_attribute("error.type", etype)
                span.set_status(Status(StatusCode.ERROR, etype))
        elif node.op is not None and node.op.suffix.startswith("Bulk") and isinstance(out, dict):
            rows = sum(v for k in _BULK_COUNTS if isinstance(v := out.get(k), int))
            self._bulk_done(node.model.name if node.model else "?", node.op.suffix, rows, seconds, span)
        if span is not None:
            span.end()

    def _bulk_done(self, model: str, operation: str, rows: int, seconds: float, span: Any) -> None:
        if span is not None:
            span.set_attribute("dataflow.bulk.rows", rows)
        if self._inst is not None:
            self._inst.bulk_rows.add(rows, {**self._db_attrs, "dataflow.model": model,
                                            "dataflow.operation": operation})
        if self.stats is not None and self.settings.performance_monitoring:
            self.stats.bulk_done(model, operation, rows, seconds)

    # -- statements (through the hooks on the dialect)

    def _hook_dialect(self) -> None:
        # The dialect instance belongs to this DataFlow alone; its methods are
        # shadowed by instance attributes, so the unobserved path keeps calling
        # the class's own methods with no indirection at all.
        dialect = self._dialect
        execute, executemany = dialect.execute, dialect.executemany
        tel = self

        def traced_execute(conn: Any, sql: str, params: Any = ()) -> Any:
            return tel._statement(execute, conn, sql, params, None)

        def traced_executemany(conn: Any, sql: str, rows: Any) -> Any:
            if not isinstance(rows, Sized):
                rows = list(rows)
            return tel._statement(executemany, conn, sql, rows, len(rows))

        setattr(dialect, "execute", traced_execute)  # noqa: B010 - shadowing a method on purpose
        setattr(dialect, "executemany", traced_executemany)  # noqa: B010
        for name in ("begin", "commit", "rollback"):
            setattr(dialect, name, self._traced_transaction(getattr(dialect, name), name.upper()))
        self._hooked = True

    def _traced_transaction(self, call: Callable[[Any], Any], operation: str) -> Callable[[Any], Any]:
        def traced(conn: Any) -> Any:
            return self._statement(lambda c, _sql, _args: call(c), conn, operation, (), None, text=False)

        return traced

    def _statement(self, call: Callable[[Any, str, Any], Any], conn: Any, sql: str, args: Any,
                   batch: int | None, *, text: bool = True) -> Any:
        batched = batch is not None and batch != 1
        info = (self._sql_batch if batched else self._sql).get(sql)
        if info is None:
            info = self._sql_info(sql, batched, text)
        span = None
        if self._tracer is not None:
            span = self._tracer.start_span(info.summary, kind=SpanKind.CLIENT, attributes=info.span_attrs)
            if batch is not None and batch != 1:
                span.set_attribute("db.operation.batch.size", batch)
        start = time.perf_counter()
        try:
            result = call(conn, sql, args)
        except BaseException as exc:
            self._statement_done(info, time.perf_counter() - start, span, exc, None)
            raise
        seconds = time.perf_counter() - start
        rows = None
        if self._rows:
            if batch is not None:
                rows = result if isinstance(result, int) else None
            elif info.operation in ("INSERT", "UPDATE", "DELETE"):
                rows = getattr(result, "rowcount", None)
        query = self._statement_done(info, seconds, span, None, rows)
        if query is not None and info.operation == "SELECT" and result is not None:
            return _CountingCursor(result, self.stats, query)
        return result

    def _statement_done(self, info: _SqlInfo, seconds: float, span: Any, exc: BaseException | None,
                        rows: int | None) -> Any:
        etype = error_type(exc) if exc is not None else None
        if span is not None:
            if exc is not None:
                span.set_attribute("error.type", etype)
                code = getattr(exc, "sqlstate", None) or getattr(exc, "sqlite_errorname", None)
                if code:
                    span.set_attribute("db.response.status_code", str(code))
                span.set_status(Status(StatusCode.ERROR, etype))
            span.end()
        if self._inst is not None:
            attrs = info.metric_attrs if etype is None else {**info.metric_attrs, "error.type": etype}
            self._inst.op_duration.record(seconds, attrs)
        query = None
        if self.stats is not None:
            query = self.stats.statement(info.summary, seconds, exc is not None, rows)
        if self._slow is not None and seconds >= self._slow:
            self._slow_query(info, seconds)
        return query

    def _sql_info(self, sql: str, batch: bool, text: bool) -> _SqlInfo:
        operation, collection = summarize(sql)
        summary = f"{operation} {collection}" if collection else operation
        if batch:
            operation, summary = f"BATCH {operation}", f"BATCH {summary}"
        metric_attrs = {**self._db_attrs, "db.operation.name": operation, "db.query.summary": summary}
        if collection:
            metric_attrs["db.collection.name"] = collection
        span_attrs = dict(metric_attrs)
        if text:
            span_attrs["db.query.text"] = sql  # parameterised: values are bound, never in the text
        info = _SqlInfo(operation, summary, collection, span_attrs, metric_attrs)
        cache = self._sql_batch if batch else self._sql
        if len(cache) >= 4096:
            cache.clear()
        cache[sql] = info
        return info

    def _slow_query(self, info: _SqlInfo, seconds: float) -> None:
        run = otel_context.get_value(_RUN_KEY)
        record: dict[str, Any] = {
            "query_summary": info.summary, "duration_ms": _ms(seconds), "threshold_ms": _ms(self._slow),
            "run_id": run.run_id if isinstance(run, _RunInfo) else None,
            "node_id": otel_context.get_value(_NODE_KEY),
        }
        tenant = run.tenant_id if isinstance(run, _RunInfo) else None
        self.log.warning("slow_query", tenant_id=tenant, operation=info.operation, collection=info.collection,
                         **record)
        if self._inst is not None:
            self._inst.slow_queries.add(1, info.metric_attrs)
        if self.stats is not None:
            self.stats.slow_query({**record, "at": time.time()})

    # -- safety events (see the module functions below)

    def safety_event(self, kind: str, event: str, level: int, fields: dict[str, Any], metric: str,
                     metric_attrs: dict[str, Any]) -> None:
        self.log.emit(level, event, fields)
        if self._inst is not None:
            getattr(self._inst, metric).add(1, {**self._db_attrs, **metric_attrs})
        if self.stats is not None and self.settings.safety_monitoring:
            self.stats.safety_event(kind, {**{k: v for k, v in fields.items() if v is not None}, "at": time.time()})
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.add_event(event, {k: v for k, v in fields.items() if isinstance(v, (str, int, float, bool))})

    # -- views and life cycle

    def health(self, timeout: float) -> dict[str, Any]:
        return check_health(self._engine, self._closed, timeout)

    def close(self) -> None:
        """Stop exporting; idempotent. Runs when the DataFlow closes (or is collected)."""
        if self._closed:
            return
        self._closed = True
        if self._inst is not None:
            self._inst.members.discard(self)
        if self.prometheus is not None:
            self.prometheus.close()
        if hasattr(self, "views"):  # fully built: it was announced as opened
            self.log.info("database_closed")


class _CountingCursor:
    """A cursor that adds the rows fetched through it to its query's statistics."""

    __slots__ = ("_cursor", "_query", "_stats")

    def __init__(self, cursor: Any, stats: Any, query: Any) -> None:
        self._cursor, self._stats, self._query = cursor, stats, query

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        if row is not None:
            self._stats.add_rows(self._query, 1)
        return row

    def fetchall(self) -> Any:
        rows = self._cursor.fetchall()
        self._stats.add_rows(self._query, len(rows))
        return rows

    def fetchmany(self, *args: Any) -> Any:
        rows = self._cursor.fetchmany(*args)
        self._stats.add_rows(self._query, len(rows))
        return rows

    def __iter__(self) -> Iterator[Any]:
        for row in self._cursor:
            self._stats.add_rows(self._query, 1)
            yield row

    def __enter__(self) -> Self:
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._cursor.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class Instruments:
    """The metric instruments of one meter provider, shared by every DataFlow using it.

    Observable instruments read the pools of the member instances when the
    provider collects (OpenTelemetry has no way to unregister a callback, so
    instances join and leave ``members`` instead).
    """

    _by_provider: ClassVar[weakref.WeakKeyDictionary[Any, Instruments]] = weakref.WeakKeyDictionary()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_provider(cls, provider: Any) -> Instruments:
        with cls._lock:
            inst = cls._by_provider.get(provider)
            if inst is None:
                inst = cls._by_provider[provider] = cls(provider.get_meter("dataflow", VERSION))
            return inst

    def __init__(self, meter: Any) -> None:
        self.members: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self.op_duration = _histogram(meter, "db.client.operation.duration", "s",
                                      "Duration of database client operations.", DB_DURATION_BUCKETS)
        self.wait_time = _histogram(meter, "db.client.connection.wait_time", "s",
                                    "The time it took to obtain an open connection from the pool.",
                                    DB_DURATION_BUCKETS)
        self.wf_duration = _histogram(meter, "dataflow.workflow.duration", "s",
                                      "Duration of workflow runs, by outcome.", WORKFLOW_BUCKETS)
        self.wf_runs = meter.create_counter("dataflow.workflow.runs", "{run}", "Workflow runs, by outcome.")
        self.retries = meter.create_counter("dataflow.workflow.retries", "{retry}",
                                            "Workflow runs retried after a transient error.")
        self.compensations = meter.create_counter("dataflow.compensations", "{compensation}",
                                                  "Compensations run, by outcome.")
        self.unknown_outcomes = meter.create_counter("dataflow.workflow.unknown_outcomes", "{run}",
                                                     "Commits whose outcome is unknown (never replayed).")
        self.bulk_rows = meter.create_counter("dataflow.bulk.rows", "{row}", "Rows processed by bulk nodes.")
        self.slow_queries = meter.create_counter("dataflow.db.slow_queries", "{query}",
                                                 "Statements slower than slow_query_threshold.")
        meter.create_observable_up_down_counter(
            "db.client.connection.count", [self._count], "{connection}",
            "The number of connections that are currently in the state described by the state attribute.")
        meter.create_observable_up_down_counter(
            "db.client.connection.max", [self._max], "{connection}", "The maximum number of open connections allowed.")
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests", [self._pending], "{request}",
            "The number of current pending requests for an open connection.")
        meter.create_observable_counter(
            "db.client.connection.timeouts", [self._timeouts], "{timeout}",
            "The number of connection timeouts that have occurred trying to obtain a connection from the pool.")
        meter.create_observable_counter(
            "dataflow.pool.restarts", [self._restarts], "{restart}", "Connection actors replaced after a crash.")

    # Observable callbacks run on the thread that collects (a reader's or a scrape's).

    def _pools(self) -> Iterator[tuple[Telemetry, Any]]:
        for tel in list(self.members):
            if not tel._closed:
                yield tel, tel._engine.stats()

    def _count(self, options: Any) -> Iterator[otel_metrics.Observation]:
        for tel, stats in self._pools():
            yield otel_metrics.Observation(stats.idle, {**tel._pool_attrs, "db.client.connection.state": "idle"})
            yield otel_metrics.Observation(stats.in_use, {**tel._pool_attrs, "db.client.connection.state": "used"})

    def _max(self, options: Any) -> Iterator[otel_metrics.Observation]:
        for tel, stats in self._pools():
            yield otel_metrics.Observation(stats.max_size, tel._pool_attrs)

    def _pending(self, options: Any) -> Iterator[otel_metrics.Observation]:
        for tel, stats in self._pools():
            yield otel_metrics.Observation(stats.waiting, tel._pool_attrs)

    def _timeouts(self, options: Any) -> Iterator[otel_metrics.Observation]:
        for tel, _ in self._pools():
            yield otel_metrics.Observation(tel._engine.timeouts, tel._pool_attrs)

    def _restarts(self, options: Any) -> Iterator[otel_metrics.Observation]:
        for tel, stats in self._pools():
            yield otel_metrics.Observation(stats.restarts, tel._pool_attrs)


def _histogram(meter: Any, name: str, unit: str, description: str, buckets: tuple[float, ...]) -> Any:
    try:
        return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=buckets)
    except TypeError:  # an API older than bucket advice: the SDK's default buckets apply
        return meter.create_histogram(name, unit, description)


def _db_attributes(url: DatabaseURL, dialect: Dialect) -> dict[str, Any]:
    # A dialect may know better than its URL (MariaDB behind mysql://): `system_name`.
    attrs: dict[str, Any] = {"db.system.name": getattr(dialect, "system_name", None) or dialect.name}
    if url.database:
        attrs["db.namespace"] = url.database
    if url.host:
        attrs["server.address"] = url.host
        if url.port:
            attrs["server.port"] = url.port
    return attrs


def _cause_type(exc: BaseException) -> str:
    """The type of the error behind a WorkflowFailed (its cause), else of ``exc``."""
    cause = exc.__cause__ if isinstance(exc, WorkflowFailed) and exc.__cause__ is not None else exc
    return error_type(cause)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# -- query summaries (db.query.summary): "<OPERATION> <table>", from our own generated SQL

_IDENT = r'("[^"]+"|`[^`]+`|\[[^\]]+\]|[\w.$]+)'
_SHAPES = (
    ("SELECT", re.compile(rf"SELECT\b.*?\bFROM\s+{_IDENT}", re.IGNORECASE | re.DOTALL)),
    ("INSERT", re.compile(rf"INSERT\s+(?:OR\s+\w+\s+|IGNORE\s+)?INTO\s+{_IDENT}", re.IGNORECASE)),
    ("UPDATE", re.compile(rf"UPDATE\s+{_IDENT}", re.IGNORECASE)),
    ("DELETE", re.compile(rf"DELETE\s+FROM\s+{_IDENT}", re.IGNORECASE)),
    ("CREATE TABLE", re.compile(rf"CREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_IDENT}", re.IGNORECASE)),
    ("CREATE INDEX", re.compile(rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?{_IDENT}\s+ON\s+{_IDENT}",
                                re.IGNORECASE)),
    ("ALTER TABLE", re.compile(rf"ALTER\s+TABLE\s+{_IDENT}", re.IGNORECASE)),
    ("DROP TABLE", re.compile(rf"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_IDENT}", re.IGNORECASE)),
)


def summarize(sql: str) -> tuple[str, str | None]:
    """``(operation, table)`` of a statement, e.g. ``("SELECT", "products")``; table None if none."""
    text = sql.lstrip()
    for operation, shape in _SHAPES:
        match = shape.match(text)
        if match is not None:
            return operation, match.group(match.lastindex or 1).strip('"`[]')
    first = text.split(None, 1)[0].upper() if text else "UNKNOWN"
    return first, None


# -- hooks for the safety engine --------------------------------------------------------------


def _telemetry_of(db: Any) -> Telemetry | None:
    return getattr(db, "telemetry", None)


def record_retry(db: Any, run_id: str, attempt: int, error: BaseException, delay: float | None = None) -> None:
    """Report that workflow run ``run_id`` is retried (``attempt`` = 1 for the first retry).

    For the retry loop in ``dataflow/_execute.py``: call it once per retry,
    before sleeping ``delay`` seconds, with the transient error that caused
    it. It logs ``workflow_retried`` (error type only, never the message),
    counts ``dataflow.workflow.retries``, adds a span event, and feeds the
    ``safety`` monitor view. Cheap enough for any path: retries are rare.
    """
    tel = _telemetry_of(db)
    if tel is None:
        return
    etype = error_type(error)
    tel.safety_event("retry", "workflow_retried", logging.WARNING,
                     {"run_id": run_id, "attempt": attempt, "error_type": etype,
                      "delay_ms": _ms(delay) if delay is not None else None},
                     "retries", {"error.type": etype})


def record_compensation(db: Any, run_id: str, node_id: str, ok: bool, error: BaseException | None = None) -> None:
    """Report that the compensation of node ``node_id`` ran (``ok``) or failed with ``error``.

    For the SafetyActor / ``_execute.compensate``: call it once per
    compensation run. Logs ``compensation_ran`` (INFO) or
    ``compensation_failed`` (ERROR), counts ``dataflow.compensations`` by
    outcome, and feeds the ``safety`` monitor view.
    """
    tel = _telemetry_of(db)
    if tel is None:
        return
    etype = error_type(error) if error is not None else None
    outcome = "ok" if ok else "failed"
    attrs = {"dataflow.compensation.outcome": outcome}
    if etype is not None:
        attrs["error.type"] = etype
    tel.safety_event("compensation", "compensation_ran" if ok else "compensation_failed",
                     logging.INFO if ok else logging.ERROR,
                     {"run_id": run_id, "node_id": node_id, "outcome": outcome, "error_type": etype},
                     "compensations", attrs)


def record_unknown_outcome(db: Any, run_id: str, error: BaseException) -> None:
    """Report that the commit of run ``run_id`` failed in a way that leaves its outcome unknown.

    For the retry logic: call it when such a run is *not* replayed. Logs
    ``commit_outcome_unknown`` (ERROR), counts
    ``dataflow.workflow.unknown_outcomes``, and feeds the ``safety`` view.
    """
    tel = _telemetry_of(db)
    if tel is None:
        return
    etype = error_type(error)
    tel.safety_event("unknown_outcome", "commit_outcome_unknown", logging.ERROR,
                     {"run_id": run_id, "error_type": etype}, "unknown_outcomes", {"error.type": etype})
