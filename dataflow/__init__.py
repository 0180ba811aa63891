"""DataFlow: a workflow-native database framework on an actor engine.

Installed as the distribution ``dataflow-actors``; imported as ``dataflow``.
"""

from ._engine import DataFlow
from .errors import (
    CompensationFailed,
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    DataFlowError,
    EngineError,
    FeatureNotAvailableError,
    IntegrityError,
    ModelError,
    NodeParameterError,
    NotFoundError,
    OperationalError,
    OutcomeUnknownError,
    PoolTimeoutError,
    ProgrammingError,
    TenantRequiredError,
    TransientError,
    UnknownNodeError,
    VersionConflictError,
    WorkflowConnectionError,
    WorkflowError,
    WorkflowFailed,
    WorkflowVersionConflict,
)
from .nodes._progress import BulkProgress
from .runtime import AsyncLocalRuntime, LocalRuntime
from .workflow import Workflow, WorkflowBuilder

__all__ = [
    "AsyncLocalRuntime",
    "BulkProgress",
    "CompensationFailed",
    "ConfigurationError",
    "ConnectionLostError",
    "DataFlow",
    "DataFlowError",
    "DatabaseError",
    "EngineError",
    "FeatureNotAvailableError",
    "IntegrityError",
    "LocalRuntime",
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
    "Workflow",
    "WorkflowBuilder",
    "WorkflowConnectionError",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowVersionConflict",
]
