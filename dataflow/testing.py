"""Helpers for users' own failure-recovery tests.

>>> from dataflow.testing import crash_connection_actor, wait_for_pool
>>> crash_connection_actor(db)          # one connection actor dies, as if its thread failed
>>> wait_for_pool(db, size=db.pool_stats()["max_size"], timeout=5)
"""

from __future__ import annotations

import time
from typing import Any

from ._engine import DataFlow

__all__ = ["crash_connection_actor", "wait_for_pool"]


def crash_connection_actor(
    db: DataFlow, reason: str = "crashed by dataflow.testing", *, timeout: float | None = 5.0
) -> int:
    """Crash one connection actor of ``db`` (an idle one if there is one); return its slot id.

    Returns once the actor has died and closed its connection (at most
    ``timeout`` seconds; None returns at once). The supervisor replaces it
    one-for-one and counts a restart; a workflow holding its lease fails
    with a ConnectionLostError at its next statement.
    """
    return int(db.supervisor.crash_one(reason, timeout))


def wait_for_pool(db: DataFlow, *, timeout: float = 5.0, **expected: Any) -> dict[str, Any]:
    """Wait until every ``pool_stats()`` key in ``expected`` has its value; return the stats.

    Raises TimeoutError with the last stats seen if that does not happen within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        stats = db.pool_stats()
        if all(stats.get(k) == v for k, v in expected.items()):
            return stats
        if time.monotonic() >= deadline:
            raise TimeoutError(f"pool did not reach {expected} within {timeout:g}s; last: {stats}")
        time.sleep(0.01)
