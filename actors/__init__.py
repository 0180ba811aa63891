"""The execution engine: supervised connection actors on pykka.

Knows nothing of models or SQL; talks to databases only through
:class:`~actors.protocols.Driver`.
"""

from .chunker import BulkChunker, BulkChunkerActor, Chunk, ChunkerStatistics
from .errors import (
    ActorsError,
    ActorStopped,
    CheckoutTimeout,
    ChunkConsumerGone,
    ChunkStreamClosed,
    CommitOutcomeUnknown,
    CompensationError,
    ConnectionLost,
    LeaseReleased,
    PoolClosed,
    SupervisorFailed,
)
from .messages import Compensation, CompensationReport
from .policy import Backoff, PoolPolicy
from .protocols import Driver, TxState
from .safety import Journal, OrphanRun, RecoveryReport, Safety, SafetyActor, Saga
from .supervisor import Lease, PoolStats, Supervisor
from .workflow import WorkflowActor

__all__ = [
    "ActorStopped",
    "ActorsError",
    "Backoff",
    "BulkChunker",
    "BulkChunkerActor",
    "CheckoutTimeout",
    "Chunk",
    "ChunkConsumerGone",
    "ChunkStreamClosed",
    "ChunkerStatistics",
    "CommitOutcomeUnknown",
    "Compensation",
    "CompensationError",
    "CompensationReport",
    "ConnectionLost",
    "Driver",
    "Journal",
    "Lease",
    "LeaseReleased",
    "OrphanRun",
    "PoolClosed",
    "PoolPolicy",
    "PoolStats",
    "RecoveryReport",
    "Safety",
    "SafetyActor",
    "Saga",
    "Supervisor",
    "SupervisorFailed",
    "TxState",
    "WorkflowActor",
]
