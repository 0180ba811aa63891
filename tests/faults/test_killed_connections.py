"""Server connections killed from outside: idle, on BEGIN, and in the middle of a workflow."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from dataflow import (
    AsyncLocalRuntime,
    ConnectionLostError,
    DataFlow,
    WorkflowBuilder,
    WorkflowFailed,
)

from .conftest import servers_only
from .helpers import create, names, pool_back_to_size, run
from .servers import backend_id, idle_backend, kill_backend

OpenDB = Callable[..., DataFlow]


def create_then_read(db: DataFlow, name: str) -> WorkflowBuilder:
    """A transactional workflow: create an Item, read it back."""
    wf = create(db, name)
    wf.add_node("ItemReadNode", "read", {})
    wf.add_connection("create", "id", "read", "id")
    return wf


@servers_only
@pytest.mark.parametrize("shape", ["one statement", "transaction"])
def test_idle_connection_killed_never_reaches_a_workflow(open_db: OpenDB, shape: str) -> None:
    """A backend killed while idle is found dead at checkout and replaced; the workflow never sees it."""
    db = open_db(pool_size=2, auto_retry_attempts=0)
    victim = idle_backend(db)
    kill_backend(db, victim)
    wf = create(db, "after the kill") if shape == "one statement" else create_then_read(db, "after the kill")
    results = run(wf)
    assert results["create"]["name"] == "after the kill"
    assert names(db) == ["after the kill"]
    stats = pool_back_to_size(db, 1)
    assert stats["restarts"] == 0  # a connection the server dropped is not an actor crash
    assert backend_id(db, idle_backend(db)) != backend_id(db, victim)


def run_async(wf: WorkflowBuilder) -> dict[str, Any]:
    """Run ``wf`` with AsyncLocalRuntime in a fresh event loop."""
    return asyncio.run(AsyncLocalRuntime().execute_async(wf.build()))[0]


@servers_only
@pytest.mark.parametrize("runner", [run, run_async], ids=["sync", "asyncio"])
def test_connection_dead_on_begin_is_swapped_before_any_work(open_db: OpenDB, runner: Any) -> None:
    """With the idle check off, a dead connection fails BEGIN; the run moves to a fresh one, no retry spent."""
    db = open_db(pool_size=2, auto_retry_attempts=0)
    db.supervisor.policy = dataclasses.replace(db.supervisor.policy, check_idle=None)
    kill_backend(db, idle_backend(db))
    results = runner(create_then_read(db, "moved"))
    assert results["read"]["name"] == "moved"
    assert names(db) == ["moved"]
    pool_back_to_size(db, 1)


@servers_only
def test_idle_kill_never_reaches_an_asyncio_workflow(open_db: OpenDB) -> None:
    """The asyncio path checks idle connections too: a lone statement after an idle kill succeeds."""
    db = open_db(pool_size=2, auto_retry_attempts=0)
    kill_backend(db, idle_backend(db))
    assert run_async(create(db, "async"))["create"]["name"] == "async"
    assert names(db) == ["async"]
    pool_back_to_size(db, 1)


def _mid_workflow(db: DataFlow, kills: list[Any]) -> WorkflowBuilder:
    """create "first" → a user node that kills the workflow's own connection (once) → create "second"."""
    conn = idle_backend(db)  # the pool has one connection: the workflow will lease this one

    def kill_my_connection(**_: Any) -> dict[str, Any]:
        if not kills:
            kill_backend(db, conn)
            kills.append(conn)
        return {"killed": True}

    db.register_node("KillMyConnection", kill_my_connection)
    wf = create(db, "first")
    wf.add_node("KillMyConnection", "kill", {})
    wf.add_node("ItemCreateNode", "second", {"name": "second"})  # nodes run in the order added
    return wf


def test_kill_mid_workflow_fails_it_and_rolls_it_back(open_db: OpenDB) -> None:
    """A connection killed between two writes fails the workflow with ConnectionLostError; nothing is kept."""
    db = open_db(pool_size=1, auto_retry_attempts=0)
    kills: list[Any] = []
    with pytest.raises(WorkflowFailed) as info:
        run(_mid_workflow(db, kills))
    assert len(kills) == 1
    assert isinstance(info.value.__cause__, ConnectionLostError)
    assert info.value.node == "second"
    assert "lost" in str(info.value)
    assert names(db) == []
    pool_back_to_size(db, 1)
    assert run(create(db, "later"))["create"]["name"] == "later"


def test_kill_mid_workflow_is_retried_on_a_fresh_connection(open_db: OpenDB) -> None:
    """With retries on, the workflow that hit a killed connection runs again on a fresh one and succeeds once."""
    db = open_db(pool_size=1, auto_retry_attempts=2)
    kills: list[Any] = []
    results = run(_mid_workflow(db, kills))
    assert len(kills) == 1
    assert results["second"]["name"] == "second"
    assert names(db) == ["first", "second"]
    pool_back_to_size(db, 1)
