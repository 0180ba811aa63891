"""``DataFlow``: configuration, the model registry, and the life cycle."""

from __future__ import annotations

import atexit
import dataclasses
import difflib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from actors import Compensation, RecoveryReport
from actors.safety import import_qualified

from ._actors_bridge import Engine
from ._journal import make_journal
from ._models import ModelSpec, build_model_spec
from ._monitor import MonitorView
from ._monitor_settings import OPTION_NAMES as MONITORING_OPTIONS
from ._monitor_settings import settings_from
from ._safety import SafetySettings, resolve_settings, session_statements
from ._telemetry import Telemetry
from ._tenant import TenantContext
from .dialects import DatabaseURL, dialect_for, parse_url
from .errors import ConfigurationError, EngineError, FeatureNotAvailableError, ModelError
from .nodes import NodeType, make_user_node, model_node_types
from .nodes._bulk import BULK_MODES
from .sql import CompiledModel

__all__ = ["DataFlow", "find_node_type", "known_node_names"]

C = TypeVar("C", bound=type)

#: options from the user guide whose features are not built yet: accepted
#: nowhere, so that nobody believes they are on.
NOT_YET = frozenset({
    "real_time_alerts", "audit_logging",
    "encryption_key", "cache_enabled", "cache_ttl", "enable_query_cache", "pool_max_overflow", "echo",
})
OPTIONS = ("database_url", "pool_size", "pool_timeout", "pool_recycle", "max_restarts", "restart_period",
           "multi_tenant", "node_timeout", "bulk_optimization_mode",
           "data_safety_level", "auto_retry_attempts", "durable_compensations",
           *MONITORING_OPTIONS)

_instances: list[weakref.ref[DataFlow]] = []
_instances_lock = threading.Lock()


class DataFlow:
    """A database and the models, tables and nodes that live in it.

    ``DataFlow()`` is a private in-memory SQLite database. ``DataFlow(url)``
    (or ``DATABASE_URL``) selects another: ``sqlite:///app.db``,
    ``postgresql://…``, ``mysql://…``. Arguments win over the environment.

    Observability (``docs/adr/0004-observability.md``): ``monitoring``,
    ``slow_query_threshold`` (seconds), ``query_insights``,
    ``performance_monitoring``, ``safety_monitoring``,
    ``monitoring_export_format="prometheus"`` with ``monitoring_endpoint``
    (``"/metrics"`` or ``"http://host:port/metrics"``) and ``monitoring_port``
    (0: any free port), ``log_format`` (``"console"`` or ``"json"``), and
    ``tracer_provider`` / ``meter_provider`` to use OpenTelemetry providers
    other than the global ones.

    Pool (``docs/adr/0006-pool-and-supervision.md``): ``pool_size`` (or
    ``DB_POOL_SIZE``; default from the CPU count, capped by what the server
    allows), ``pool_timeout`` (seconds to wait for a connection, then
    ``PoolTimeoutError``), ``pool_recycle`` (seconds a connection lives),
    and ``max_restarts`` connection failures tolerated within
    ``restart_period`` seconds before the pool gives up (``EngineError``).

    Bulk nodes (``docs/bulk.md``): ``bulk_optimization_mode`` is ``"balanced"``
    (the default: each chunk is written under a savepoint, so a record the
    database refuses is found and named, or isolated under
    ``error_strategy="continue"``) or ``"speed"`` (no savepoint per chunk
    under ``fail_fast``, whose error then names the record only where the
    driver says which, else the chunk; ``continue`` rolls a refused chunk
    back whole and reports each of its records instead of searching).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        pool_size: int | None = None,
        pool_timeout: float | None = None,
        pool_recycle: float | None = None,
        max_restarts: int | None = None,
        restart_period: float | None = None,
        multi_tenant: bool | None = None,
        node_timeout: float = 300.0,
        bulk_optimization_mode: str = "balanced",
        data_safety_level: str | None = None,
        auto_retry_attempts: int | None = None,
        durable_compensations: bool | None = None,
        **options: Any,
    ) -> None:
        monitoring = settings_from(options)
        _reject_options(options)
        url_text = database_url or os.environ.get("DATABASE_URL") or "sqlite:///:memory:"
        self.url = parse_url(url_text)
        pool_size = _positive_int("pool_size", pool_size if pool_size is not None else os.environ.get("DB_POOL_SIZE"))
        if multi_tenant is None:
            multi_tenant = _env_bool("DATAFLOW_MULTI_TENANT")
        if not isinstance(multi_tenant, bool):
            raise ConfigurationError(f"multi_tenant must be True or False, got {multi_tenant!r}")
        #: every model is multi-tenant unless it says ``"multi_tenant": False``
        self.multi_tenant = multi_tenant
        #: ``with db.tenant_context.switch("acme"): …`` binds the tenant workflows run for
        self.tenant_context = TenantContext()
        for name, value in (("pool_timeout", pool_timeout), ("pool_recycle", pool_recycle),
                            ("restart_period", restart_period), ("node_timeout", node_timeout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if max_restarts is not None and (isinstance(max_restarts, bool) or not isinstance(max_restarts, int)
                                         or max_restarts < 0):
            raise ConfigurationError(f"max_restarts must be a whole number >= 0, got {max_restarts!r}")
        self.node_timeout = float(node_timeout)
        if bulk_optimization_mode not in BULK_MODES:
            raise ConfigurationError(f"bulk_optimization_mode must be one of {', '.join(map(repr, BULK_MODES))}, "
                                     f"got {bulk_optimization_mode!r}")
        #: how bulk nodes trade error isolation for speed (``docs/bulk.md``)
        self.bulk_optimization_mode = bulk_optimization_mode
        self.dialect = dialect_for(self.url)
        #: the resolved ``data_safety_level`` bundle (``docs/safety.md``)
        self.safety = _safety_settings(self.url, data_safety_level, auto_retry_attempts, durable_compensations)
        policy = self.dialect.pool_policy(pool_size, pool_timeout, pool_recycle)
        if max_restarts is not None:
            policy = dataclasses.replace(policy, max_restarts=max_restarts)
        if restart_period is not None:
            policy = dataclasses.replace(policy, restart_period=float(restart_period))
        self.engine = Engine(self.dialect, policy, session=session_statements(self.dialect, self.safety))
        try:
            #: logs, traces, metrics and monitor statistics of this database
            self.telemetry = Telemetry(self.url, self.dialect, self.engine, monitoring)
        except BaseException:
            self.engine.close()
            raise
        self._models: dict[str, ModelSpec] = {}
        self._tables: dict[str, CompiledModel] = {}
        self._nodes: dict[str, NodeType] = {}
        self._closed = False
        with _instances_lock:
            _instances.append(weakref.ref(self))
        self._finalizer = weakref.finalize(self, _shutdown, self.engine, self.telemetry)
        try:
            self._start_safety()
        except BaseException:
            self.close()
            raise

    def _start_safety(self) -> None:
        journal = make_journal(self.dialect) if self.safety.durable_journal else None
        self.engine.start_safety(_resolver(weakref.ref(self)), timeout=self.node_timeout, journal=journal)
        if self.safety.ledger or journal is not None:
            self.engine.ledger.ensure()
        if journal is not None:
            self.engine.safety.recover(timeout=None)
        if self.safety.ledger or journal is not None:
            self.engine.ledger.prune()  # after recovery, which may still need old rows

    def recover_compensations(self) -> RecoveryReport:
        """Run the pending compensations of processes that died (durable journal only).

        DataFlow does this at start, every heartbeat, and when a node type
        whose compensation was not found is registered; call it to do it now.
        """
        self._check_open()
        return self.engine.safety.recover(timeout=None)

    # -- models and nodes

    def model(self, cls: C) -> C:
        """Register ``cls`` as a model: create (or extend) its table and indexes, make its nodes."""
        self._check_open()
        if not isinstance(cls, type):
            raise ModelError("@db.model decorates a class")
        spec = build_model_spec(cls, multi_tenant_default=self.multi_tenant)
        self._check_index_names(spec)
        table = CompiledModel(spec, self.dialect)
        self.engine.run(lambda conn: self._ensure_schema(conn, spec))
        self._models[spec.name] = spec
        self._tables[spec.name] = table
        self._nodes.update(model_node_types(self, spec, table))
        return cls

    def _check_index_names(self, spec: ModelSpec) -> None:
        # PostgreSQL names indexes per schema, not per table: two models with
        # one index name would silently share (and skip) the second index.
        for other in self._models.values():
            if other.name == spec.name:
                continue
            clash = {i.name for i in other.indexes} & {i.name for i in spec.indexes}
            if clash:
                raise ModelError(
                    f"model {spec.name}: index name(s) {sorted(clash)} already used by model {other.name}; "
                    "index names must be unique across models"
                )

    def _ensure_schema(self, conn: Any, spec: ModelSpec) -> None:
        dialect = self.dialect
        existing = dialect.existing_columns(conn, spec.table)
        if existing is None:
            dialect.execute(conn, dialect.create_table_sql(spec))
        else:
            for name, field in spec.fields.items():
                if name not in existing:
                    dialect.execute(conn, dialect.add_column_sql(spec, field))
                    if name == "version" and spec.versioned:
                        # Rows that predate the option start at version 1.
                        q = dialect.quote
                        dialect.execute(conn, f"UPDATE {q(spec.table)} SET {q('version')} = 1 WHERE {q('version')} IS NULL")
        for index in spec.indexes:
            dialect.execute(conn, dialect.create_index_sql(spec, index))

    def node(
        self, name: str, *, compensation: Callable[..., Any] | None = None, critical: bool = True
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a function as node type ``name`` (see :meth:`register_node`)."""

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            self.register_node(name, func, compensation=compensation, critical=critical)
            return func

        return register

    def register_node(
        self, name: str, func: Callable[..., Any], *, compensation: Callable[..., Any] | None = None,
        critical: bool = True,
    ) -> None:
        """Register ``func(**params) -> dict`` (sync or async) as node type ``name``.

        ``compensation(params, result)`` undoes a completed call if the
        workflow fails later; a node with ``critical=False`` that fails is
        recorded in the results and the workflow goes on.
        """
        if name in self._nodes and self._nodes[name].is_database:
            raise ValueError(f"{name!r} is a generated model node; choose another name")
        self._nodes[name] = make_user_node(self, name, func, compensation=compensation, critical=critical)
        if compensation is not None and name in self.engine.safety.unresolved:
            # A dead process left compensations of this node type pending.
            self.engine.safety.recover(timeout=None)

    @property
    def models(self) -> dict[str, ModelSpec]:
        return dict(self._models)

    @property
    def nodes(self) -> dict[str, NodeType]:
        return dict(self._nodes)

    def get_node_type(self, name: str) -> NodeType | None:
        return self._nodes.get(name)

    def table(self, model: str) -> CompiledModel:
        return self._tables[model]

    # -- pool and life cycle

    def pool_stats(self) -> dict[str, Any]:
        """Size, in use, idle, waiting, restarts and state of the connection pool."""
        return self.engine.stats()._asdict()

    # -- monitoring

    def get_monitor_nodes(self) -> dict[str, MonitorView]:
        """Live views ``transaction``, ``metrics``, ``bulk_operations`` and ``safety``.

        Each is a read-only mapping that reads the current figures on every
        access (``view.snapshot()`` gives a plain dict). A view whose option is
        off says ``"enabled": False``; ``metrics`` always shows the pool.
        """
        return dict(self.telemetry.views)

    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        """A readiness probe: pool state and a ping through a lease, all within ``timeout`` seconds.

        Returns ``{"status": "ok" | "degraded" | "down" | "closed", "ok": bool,
        "ping_ms", "error", "pool", "backend"}``; never raises for an unhealthy
        database.
        """
        return self.telemetry.health(timeout)

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus scrapes this instance (``monitoring_export_format="prometheus"``), else None."""
        return self.telemetry.metrics_url

    @property
    def supervisor(self) -> Any:
        """The actor supervisor that owns this database's connections."""
        return self.engine.supervisor

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("this DataFlow instance is closed")

    def close(self) -> None:
        """Close every connection and stop every actor; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        with _instances_lock:
            _instances[:] = [r for r in _instances if r() is not None and r() is not self]

    def __enter__(self) -> DataFlow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DataFlow {self.url}{' closed' if self._closed else ''}>"


def _shutdown(engine: Engine, telemetry: Telemetry) -> None:
    telemetry.close()
    engine.close()


def _safety_settings(url: DatabaseURL, level: Any, retries: Any, durable: Any) -> SafetySettings:
    """Arguments over ``DATAFLOW_DATA_SAFETY_LEVEL`` / ``_AUTO_RETRY_ATTEMPTS`` / ``_DURABLE_COMPENSATIONS``."""
    if level is None:
        level = os.environ.get("DATAFLOW_DATA_SAFETY_LEVEL") or None
    if retries is None and os.environ.get("DATAFLOW_AUTO_RETRY_ATTEMPTS"):
        raw = os.environ["DATAFLOW_AUTO_RETRY_ATTEMPTS"]
        try:
            retries = int(raw)
        except ValueError:
            raise ConfigurationError(f"DATAFLOW_AUTO_RETRY_ATTEMPTS={raw!r} is not a whole number") from None
    if durable is None and os.environ.get("DATAFLOW_DURABLE_COMPENSATIONS"):
        durable = _env_bool("DATAFLOW_DURABLE_COMPENSATIONS")
    return resolve_settings(level, retries, durable, url)


def _resolver(ref: weakref.ref[DataFlow]) -> Callable[[Compensation], Callable[..., Any] | None]:
    # Holds the DataFlow weakly: the engine must not keep it alive.
    def resolve(entry: Compensation) -> Callable[..., Any] | None:
        # Runs on the safety actor's thread, for entries a dead process left.
        db = ref()
        node = db.get_node_type(entry.name) if db is not None else None
        if node is not None and node.compensation is not None:
            return node.compensation
        return import_qualified(entry.qualname) if entry.qualname else None

    return resolve


def _reject_options(options: dict[str, Any]) -> None:
    for key in options:
        if key in NOT_YET:
            raise FeatureNotAvailableError(
                f"DataFlow option {key!r} is not available yet in this version; remove it (it would otherwise do nothing)"
            )
        close = difflib.get_close_matches(key, list(OPTIONS) + sorted(NOT_YET), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"unknown DataFlow option {key!r}{hint}")


def _positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}") from None
    if isinstance(value, bool) or number < 1 or (isinstance(value, float)):
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return number


def _env_bool(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"environment variable {name}={raw!r} is not a boolean")


def live_instances() -> list[DataFlow]:
    """Open DataFlow instances, newest first."""
    with _instances_lock:
        out = [db for ref in reversed(_instances) if (db := ref()) is not None and not db.closed]
    return out


def find_node_type(name: str) -> NodeType | None:
    """The node type ``name`` from the newest open instance that has it."""
    for db in live_instances():
        node = db.get_node_type(name)
        if node is not None:
            return node
    return None


def known_node_names() -> list[str]:
    names: set[str] = set()
    for db in live_instances():
        names.update(db.nodes)
    return sorted(names)


@atexit.register
def _close_all() -> None:
    for db in live_instances():
        db.close()
