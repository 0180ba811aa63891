"""The one public error tree of DataFlow.

Our exception hierarchy::

    DataFlowError
    ├── ConfigurationError      bad URL, unknown option, missing driver extra (at construction)
    ├── ModelError              an @db.model definition that cannot work
    ├── FeatureNotAvailableError  an option whose feature is not built yet
    ├── WorkflowError           WorkflowBuilder.build() or execute() found bad input before any SQL
    │   ├── UnknownNodeError    a node type nobody registered (closest names suggested)
    │   ├── NodeParameterError  a parameter the node's model rejects
    │   ├── WorkflowConnectionError  a connection names an unknown node or output, or makes a cycle
    │   └── TenantRequiredError a multi-tenant model used with no tenant bound
    ├── DatabaseError           a driver error, mapped by the dialect (driver error chained)
    │   ├── IntegrityError      unique, foreign key, not-null or check violation
    │   ├── OperationalError
    │   │   ├── ConnectionLostError  the connection died
    │   │   ├── PoolTimeoutError     no connection within pool_timeout (also a TimeoutError)
    │   │   └── TransientError       deadlock, serialization failure, busy: worth a retry
    │   └── ProgrammingError    the database rejected generated SQL: a DataFlow bug
    ├── NotFoundError           ReadNode found no row and raise_on_not_found was true
    ├── VersionConflictError    an update named a ``version`` that is no longer current; nothing was written
    ├── EngineError             the engine is closed or its pool has given up
    ├── OutcomeUnknownError     the connection died during COMMIT and the outcome could not be resolved
    └── WorkflowFailed          a workflow ran and failed: names the node, cause chained
        ├── WorkflowVersionConflict  …because of a stale version (also a VersionConflictError)
        └── CompensationFailed       …and one or more compensations raised too
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CompensationFailed",
    "ConfigurationError",
    "ConnectionLostError",
    "DataFlowError",
    "DatabaseError",
    "EngineError",
    "FeatureNotAvailableError",
    "IntegrityError",
    "ModelError",
    "NodeParameterError",
    "NotFoundError",
    "OperationalError",
    "OutcomeUnknownError",
    "PoolTimeoutError",
    "ProgrammingError",
    "TenantRequiredError",
    "TransientError",
    "UnknownNodeError",
    "VersionConflictError",
    "WorkflowConnectionError",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowVersionConflict",
]


class DataFlowError(Exception):
    """Base of every error DataFlow raises on purpose."""


class ConfigurationError(DataFlowError, ValueError):
    """A DataFlow(...) argument, URL or environment setting is wrong."""


class ModelError(DataFlowError, TypeError):
    """A model definition cannot be turned into a table."""


class FeatureNotAvailableError(DataFlowError, NotImplementedError):
    """An option was asked for whose feature is not available in this version."""


class WorkflowError(DataFlowError):
    """A workflow was rejected before any SQL ran."""


class UnknownNodeError(WorkflowError, LookupError):
    """A node type that is not registered; ``suggestions`` holds the closest names."""

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.suggestions = suggestions or []


class NodeParameterError(WorkflowError, ValueError):
    """A node parameter is unknown, missing or of the wrong type.

    ``node``, ``node_type``, ``model`` and ``field`` say where; ``errors`` holds
    the underlying validation errors when there are several.
    """

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        node_type: str | None = None,
        model: str | None = None,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.node_type = node_type
        self.model = model
        self.field = field
        self.errors = errors or []


class WorkflowConnectionError(WorkflowError):
    """A connection between nodes is wrong: unknown node, missing output, or a cycle."""


class TenantRequiredError(WorkflowError):
    """A multi-tenant model was used with no tenant bound."""


class DatabaseError(DataFlowError):
    """The database raised an error; the driver's exception is ``__cause__``."""

    def __init__(self, message: str, *, sqlstate: str | None = None, dialect: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.dialect = dialect


class IntegrityError(DatabaseError):
    """A unique, foreign-key, not-null or check constraint was violated."""


class OperationalError(DatabaseError):
    """The database or the connection to it failed."""


class ConnectionLostError(OperationalError):
    """The connection died while it was in use."""


class PoolTimeoutError(OperationalError, TimeoutError):
    """No connection became free within ``pool_timeout``; nothing was written."""


class TransientError(OperationalError):
    """A failure worth retrying: deadlock, serialization failure, database busy."""

    retryable = True


class ProgrammingError(DatabaseError):
    """The database rejected SQL that DataFlow generated: please report it."""


class NotFoundError(DataFlowError, LookupError):
    """A ReadNode found no row with the given id."""


class VersionConflictError(DataFlowError):
    """An update's filter named a ``version`` that is no longer current; the update wrote nothing.

    ``model`` is the model, ``stale`` how many rows matched everything but the version.
    """

    def __init__(self, message: str, *, model: str | None = None, stale: int = 0) -> None:
        super().__init__(message)
        self.model = model
        self.stale = stale


class EngineError(DataFlowError, RuntimeError):
    """The DataFlow instance is closed, or its connection pool has given up."""


class OutcomeUnknownError(DataFlowError):
    """The connection was lost while the workflow's COMMIT was in flight, and the outcome
    could not be resolved: its writes may or may not be in the database.

    Never retried automatically, and no compensation was run (the steps may
    have committed). ``run_id`` is the run, ``results`` what its nodes returned
    (true if it committed), ``pending_compensations`` the node ids whose
    compensations did not run. ``data_safety_level="maximum"`` resolves such
    commits through the run ledger instead (``docs/safety.md``).
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        results: dict[str, Any] | None = None,
        pending_compensations: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.results = results or {}
        self.pending_compensations = pending_compensations or []


class WorkflowFailed(DataFlowError):
    """A workflow ran and one of its nodes failed; every database write was rolled back.

    ``node`` is the failing node's id, ``run_id`` the run, ``results`` what the
    nodes before it returned, ``compensated`` the node ids whose compensations
    ran (in the order they ran), ``compensation_errors`` (node id, exception)
    for each compensation that raised, ``attempts`` how many times the
    workflow ran (more than 1 after transient failures). The node's own
    error is ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        node: str,
        run_id: str,
        results: dict[str, Any] | None = None,
        compensated: list[str] | None = None,
        compensation_errors: list[tuple[str, BaseException]] | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.run_id = run_id
        self.results = results or {}
        self.compensated = compensated or []
        self.compensation_errors = compensation_errors or []
        self.attempts = attempts


class WorkflowVersionConflict(WorkflowFailed, VersionConflictError):
    """A workflow failed because an update named a stale ``version``: it is both a
    :class:`WorkflowFailed` and a :class:`VersionConflictError`, so either ``except`` catches it."""


class CompensationFailed(WorkflowFailed):
    """The workflow failed and at least one compensation raised as well: the world
    outside the database may be inconsistent (see ``compensation_errors``)."""


for _name in __all__:
    globals()[_name].__module__ = "dataflow"
del _name
