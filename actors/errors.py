"""The engine's own error tree. ``dataflow`` maps these at one boundary.

Our exception hierarchy::

    ActorsError
    ├── ActorStopped        the target actor is gone (wraps pykka.ActorDeadError)
    ├── CheckoutTimeout     no connection became free within the checkout timeout
    ├── PoolClosed          the supervisor was stopped; no more leases
    ├── SupervisorFailed    restarts exceeded the policy's intensity; the pool gave up
    ├── ConnectionLost      the driver reported a disconnect on a leased connection
    │   └── CommitOutcomeUnknown  ... while COMMIT was in flight: it may have committed
    ├── LeaseReleased       a lease was used after it was released (a programming error)
    ├── ChunkStreamClosed   we closed a chunk stream and then tried to use it
    ├── ChunkConsumerGone   the consumer of a chunk stream died mid-stream
    └── CompensationError   one or more compensations raised
"""

from __future__ import annotations

__all__ = [
    "ActorStopped",
    "ActorsError",
    "CheckoutTimeout",
    "ChunkConsumerGone",
    "ChunkStreamClosed",
    "CommitOutcomeUnknown",
    "CompensationError",
    "ConnectionLost",
    "LeaseReleased",
    "PoolClosed",
    "SupervisorFailed",
]


class ActorsError(Exception):
    """Base of every error raised by the actor engine."""


class ActorStopped(ActorsError):
    """The actor a message was sent to has stopped."""


class CheckoutTimeout(ActorsError, TimeoutError):
    """No connection became free within the checkout timeout."""


class PoolClosed(ActorsError):
    """The supervisor has been stopped; it hands out no more leases."""


class SupervisorFailed(ActorsError):
    """Connection restarts exceeded ``max_restarts`` within ``restart_period``."""


class ConnectionLost(ActorsError):
    """The driver reported that a leased connection is gone."""


class CommitOutcomeUnknown(ConnectionLost):
    """The connection was lost while COMMIT was in flight: it may or may not have committed."""


class LeaseReleased(ActorsError, RuntimeError):
    """A lease was used after it had been released."""


class ChunkStreamClosed(ActorsError):
    """A chunk stream was used after we closed it."""


class ChunkConsumerGone(ActorsError):
    """The actor consuming a chunk stream died before the stream ended."""


class CompensationError(ActorsError):
    """One or more compensations raised; ``errors`` holds (step id, exception) pairs."""

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        super().__init__(f"{len(errors)} compensation(s) failed")
        self.errors = errors
