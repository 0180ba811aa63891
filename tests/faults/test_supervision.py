"""Crashed connection actors: replaced one-for-one, bounded restarts, then a clear failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from dataflow import (
    AsyncLocalRuntime,
    ConfigurationError,
    ConnectionLostError,
    DataFlow,
    EngineError,
    WorkflowFailed,
)
from dataflow.testing import crash_connection_actor, wait_for_pool

from .helpers import create, names, pool_back_to_size, run
from .servers import idle_backend, server_connections, wait_for

OpenDB = Callable[..., DataFlow]


def _fill(db: DataFlow, size: int) -> None:
    """Open ``size`` connections by leasing them all at once."""
    leases = [db.engine.checkout() for _ in range(size)]
    for lease in leases:
        lease.release()
    pool_back_to_size(db, size)


def test_crashed_actor_is_replaced_one_for_one(open_db: OpenDB) -> None:
    """One crashed connection actor is replaced by exactly one new one; the others live on."""
    db = open_db(pool_size=3)
    _fill(db, 3)
    before = set(db.supervisor.actors())
    crash_connection_actor(db)
    stats = wait_for_pool(db, restarts=1, size=3, idle=3, connecting=0, timeout=5)
    assert stats["state"] == "running"
    after = set(db.supervisor.actors())
    assert len(after) == 3 and len(after & before) == 2
    pool_back_to_size(db, 3)
    assert run(create(db, "fine"))["create"]["name"] == "fine"


def test_crash_under_a_workflow_fails_that_workflow(open_db: OpenDB) -> None:
    """A user node crashes the actor of the connection its workflow holds: the next write fails, nothing is kept."""
    db = open_db(pool_size=1, auto_retry_attempts=0)
    idle_backend(db)
    db.register_node("Crash", lambda **_: {"slot": crash_connection_actor(db)})
    wf = create(db, "first")
    wf.add_node("Crash", "crash", {})
    wf.add_node("ItemCreateNode", "second", {"name": "second"})
    with pytest.raises(WorkflowFailed) as info:
        run(wf)
    assert isinstance(info.value.__cause__, ConnectionLostError)
    assert names(db) == []
    stats = pool_back_to_size(db, 1)
    assert stats["restarts"] == 1


def test_restarts_past_the_limit_fail_the_pool_with_a_clear_error(open_db: OpenDB) -> None:
    """More than max_restarts crashes within restart_period: state failed, EngineError at once, no hang."""
    db = open_db(pool_size=2, max_restarts=2, restart_period=60)
    _fill(db, 2)
    for n in (1, 2):
        crash_connection_actor(db)
        wait_for_pool(db, restarts=n, size=2, idle=2, timeout=5)
    crash_connection_actor(db)
    wait_for_pool(db, state="failed", timeout=5)
    assert db.supervisor.state == "failed"
    start = time.monotonic()
    with pytest.raises(EngineError, match="restarts exceeded 2 within 60s"):
        run(create(db, "refused"))
    with pytest.raises(EngineError):
        asyncio.run(AsyncLocalRuntime().execute_async(create(db, "refused").build()))
    assert time.monotonic() - start < 2.0
    # No restart storm: nothing is reopened, and the idle connections are closed.
    time.sleep(0.1)
    stats = db.pool_stats()
    assert stats["restarts"] == 3 and stats["size"] == 0 and stats["connecting"] == 0
    if db.dialect.name != "sqlite":
        wait_for(lambda: server_connections(db) == 0, what="the failed pool's connections closed")
    assert db.supervisor.actors() == []


def test_failed_pool_then_close_is_clean(open_db: OpenDB) -> None:
    """A pool that gave up can still be closed, and health() says so instead of raising."""
    db = open_db(pool_size=1, max_restarts=0)
    crash_connection_actor(db)
    wait_for_pool(db, state="failed", timeout=5)
    report: dict[str, Any] = db.health(timeout=1.0)
    assert report["ok"] is False
    db.close()
    assert db.closed


@pytest.mark.parametrize("options", [{"max_restarts": -1}, {"max_restarts": 1.5}, {"max_restarts": True},
                                     {"restart_period": 0}, {"restart_period": "10"}])
def test_supervision_options_are_checked(options: dict[str, Any]) -> None:
    """A bad max_restarts or restart_period is a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        DataFlow(**options)


def test_supervision_options_become_the_policy() -> None:
    """max_restarts and restart_period reach the supervisor's policy."""
    with DataFlow(max_restarts=7, restart_period=2.5) as db:
        assert (db.supervisor.policy.max_restarts, db.supervisor.policy.restart_period) == (7, 2.5)
