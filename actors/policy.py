"""Pool policy as data: how many connections live, and for how long."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "PoolPolicy"]


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """Sizes and timeouts of one supervisor's connection pool.

    ``min_size`` connections are opened at start and kept; up to ``max_size``
    are opened on demand. ``checkout_timeout`` bounds every wait for a lease.
    ``max_idle`` closes connections above ``min_size`` idle for longer;
    ``max_lifetime`` recycles a connection when it is next released after
    that age (each connection draws its own age limit between 95% and 100%
    of ``max_lifetime``, so connections opened together are not all recycled
    together), or when it is about to be leased after that age.
    ``check_idle``: a connection idle for at least this many seconds is
    checked with :meth:`~actors.protocols.Driver.alive` (no round trip)
    before it is leased, and replaced if the server has closed it; None
    turns the check off. At most ``max_restarts`` connection failures (a
    crashed connection actor, a failed connect) within ``restart_period``
    seconds are tolerated; one more and the supervisor reports ``failed``.
    """

    min_size: int = 1
    max_size: int = 1
    checkout_timeout: float = 30.0
    max_idle: float | None = 600.0
    max_lifetime: float | None = 3600.0
    max_restarts: int = 5
    restart_period: float = 10.0
    connect_timeout: float = 30.0
    check_idle: float | None = 0.001

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError("max_size must be at least 1")
        if not 0 <= self.min_size <= self.max_size:
            raise ValueError("min_size must be between 0 and max_size")
        if self.checkout_timeout <= 0:
            raise ValueError("checkout_timeout must be positive")
        if self.max_restarts < 0 or self.restart_period <= 0:
            raise ValueError("max_restarts must be >= 0 and restart_period positive")
        if self.check_idle is not None and self.check_idle < 0:
            raise ValueError("check_idle must be >= 0 or None")


class Backoff:
    """Jittered exponential delays: ``INITIAL_DELAY``, then doubling, capped.

    Tests shrink the class constants, as psycopg_pool's tests do.
    """

    INITIAL_DELAY = 0.05
    DELAY_BACKOFF = 2.0
    DELAY_JITTER = 0.1
    MAX_DELAY = 2.0

    def __init__(self) -> None:
        self._next = self.INITIAL_DELAY

    def next_delay(self) -> float:
        """Return the delay before the next attempt and grow the following one."""
        delay = self._next * (1 + random.uniform(-self.DELAY_JITTER, self.DELAY_JITTER))
        self._next = min(self._next * self.DELAY_BACKOFF, self.MAX_DELAY)
        return delay
