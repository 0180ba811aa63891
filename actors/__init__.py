"""The execution engine: supervised connection actors on pykka.

Knows nothing of models or SQL; talks to databases only through
:class:`~actors.protocols.Driver`.
"""

from .errors import (
    ActorsError,
    ActorStopped,
    CheckoutTimeout,
    ChunkConsumerGone,
    ChunkStreamClosed,
    CompensationError,
    ConnectionLost,
    LeaseReleased,
    PoolClosed,
    SupervisorFailed,
)
from .policy import Backoff, PoolPolicy
from .protocols import Driver, TxState
from .supervisor import Lease, PoolStats, Supervisor
from .workflow import WorkflowActor

__all__ = [
    "ActorStopped",
    "ActorsError",
    "Backoff",
    "CheckoutTimeout",
    "ChunkConsumerGone",
    "ChunkStreamClosed",
    "CompensationError",
    "ConnectionLost",
    "Driver",
    "Lease",
    "LeaseReleased",
    "PoolClosed",
    "PoolPolicy",
    "PoolStats",
    "Supervisor",
    "SupervisorFailed",
    "TxState",
    "WorkflowActor",
]
