"""Pool limits under load: exhaustion, 64 workflows on 4 connections, recycling, close()."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from dataflow import AsyncLocalRuntime, DataFlow, PoolTimeoutError, WorkflowBuilder
from dataflow.dialects.base import default_pool_size

from .conftest import servers_only
from .helpers import create, names, pool_back_to_size, run
from .servers import admin, backend_id, idle_backend, server_connections, thread_names, wait_for

OpenDB = Callable[..., DataFlow]


def _holding_workflow(db: DataFlow, held: threading.Event, go: threading.Event) -> WorkflowBuilder:
    """A workflow that holds its connection until ``go`` is set, then creates "holder"."""

    def hold(**_: Any) -> dict[str, Any]:
        held.set()
        assert go.wait(10), "the test never let the holding workflow go"
        return {}

    db.register_node("Hold", hold)
    wf = WorkflowBuilder(db)
    wf.add_node("Hold", "hold", {})
    wf.add_node("ItemCreateNode", "create", {"name": "holder"})
    return wf


@pytest.mark.parametrize("runtime", ["sync", "async"])
def test_exhausted_pool_raises_pool_timeout_and_writes_nothing(open_db: OpenDB, runtime: str) -> None:
    """With every connection held, a workflow waits pool_timeout, then PoolTimeoutError (a TimeoutError)."""
    db = open_db(pool_size=1, pool_timeout=0.2, auto_retry_attempts=0)
    held, go = threading.Event(), threading.Event()
    holder = threading.Thread(target=run, args=(_holding_workflow(db, held, go),), daemon=True)
    holder.start()
    try:
        assert held.wait(5)
        start = time.monotonic()
        with pytest.raises(PoolTimeoutError) as info:
            if runtime == "sync":
                run(create(db, "starved"))
            else:
                asyncio.run(AsyncLocalRuntime().execute_async(create(db, "starved").build()))
        elapsed = time.monotonic() - start
    finally:
        go.set()
        holder.join(10)
    assert not holder.is_alive()
    assert isinstance(info.value, TimeoutError)
    assert 0.15 <= elapsed < 3.0
    assert names(db) == ["holder"]
    pool_back_to_size(db, 1)


def _sampler(db: DataFlow, stop: threading.Event, seen: list[int]) -> threading.Thread:
    """Record the pool's size, and the server's count of connections, until ``stop``."""

    def sample() -> None:
        with admin(db) if db.dialect.name != "sqlite" else _nothing() as conn:
            while not stop.is_set():
                seen.append(db.pool_stats()["size"])
                if conn is not None:
                    seen.append(_count(db, conn))
                time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _count(db: DataFlow, conn: Any) -> int:
    cur = conn.cursor()
    if db.dialect.name == "postgresql":
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    else:
        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()")
    return int(cur.fetchone()[0])


def _busy_workflow(db: DataFlow, i: int) -> WorkflowBuilder:
    """create → a short user step holding the connection → read back."""
    if db.get_node_type("Pause") is None:
        db.register_node("Pause", lambda **_: time.sleep(0.002) or {})
    wf = create(db, f"w{i:02d}")
    wf.add_node("Pause", "pause", {})
    wf.add_node("ItemReadNode", "read", {})
    wf.add_connection("create", "id", "read", "id")
    return wf


@pytest.mark.parametrize("runtime", ["threads", "asyncio"])
def test_64_concurrent_workflows_on_a_pool_of_4(open_db: OpenDB, runtime: str) -> None:
    """64 workflows at once on 4 connections all finish, and no fifth connection is ever opened."""
    db = open_db(pool_size=4, pool_timeout=20, auto_retry_attempts=0)
    built = [_busy_workflow(db, i).build() for i in range(64)]
    stop, seen = threading.Event(), []
    sampler = _sampler(db, stop, seen)
    outcomes: list[Any] = []
    try:
        if runtime == "threads":
            gate = threading.Barrier(64)

            def one(wf: Any) -> None:
                gate.wait(10)
                try:
                    outcomes.append(run_built(wf)["read"]["name"])
                except Exception as exc:  # noqa: BLE001 - every outcome is compared below
                    outcomes.append(exc)

            threads = [threading.Thread(target=one, args=(wf,), daemon=True) for wf in built]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads), "deadlock: workflows still running after 30s"
        else:
            async def all_of_them() -> list[Any]:
                rt = AsyncLocalRuntime()
                runs = [rt.execute_async(wf) for wf in built]
                return await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 30)

            outcomes = [r if isinstance(r, BaseException) else r[0]["read"]["name"] for r in asyncio.run(all_of_them())]
    finally:
        stop.set()
        sampler.join(5)
    assert sorted(outcomes) == [f"w{i:02d}" for i in range(64)]
    assert names(db) == [f"w{i:02d}" for i in range(64)]
    assert seen and max(seen) <= 4
    stats = db.pool_stats()
    assert stats["in_use"] == 0 and stats["waiting"] == 0 and stats["size"] <= 4


def run_built(built: Any) -> dict[str, Any]:
    from dataflow import LocalRuntime

    return LocalRuntime().execute(built)[0]


@servers_only
def test_pool_recycle_replaces_old_connections(open_db: OpenDB) -> None:
    """A connection older than pool_recycle is closed and replaced instead of being leased."""
    db = open_db(pool_size=1, pool_recycle=0.2)
    first = backend_id(db, idle_backend(db))
    time.sleep(0.25)
    assert run(create(db, "recycled"))["create"]["name"] == "recycled"
    pool_back_to_size(db, 1)
    assert backend_id(db, idle_backend(db)) != first


@servers_only
def test_default_size_follows_cpus_and_the_server(open_db: OpenDB) -> None:
    """Without pool_size the pool's bound is the CPU-count default, capped by what the server allows."""
    db = open_db()
    with admin(db) as conn:
        cur = conn.cursor()
        cur.execute("SELECT @@max_connections" if db.dialect.name == "mysql" else "SHOW max_connections")
        server_max = int(cur.fetchone()[0])
    assert db.supervisor.policy.max_size == min(default_pool_size(), server_max)


def test_close_leaves_no_connection_and_no_thread(engine_url: str) -> None:
    """close() ends every server connection and every thread the instance started."""
    before = thread_names()
    db = DataFlow(engine_url, pool_size=3)
    try:
        @db.model
        class Item:
            name: str

        held, go = threading.Event(), threading.Event()
        holders = [threading.Thread(target=run, args=(_holding_workflow(db, held, go),), daemon=True)
                   for _ in range(3)]
        for t in holders:
            t.start()
        wait_for(lambda: db.pool_stats()["in_use"] == 3, what="three connections in use")
        go.set()
        for t in holders:
            t.join(10)
        if db.dialect.name != "sqlite":
            assert server_connections(db) == 3
        assert any(n.startswith("ConnectionActor") for n in thread_names())
    finally:
        db.close()
    if db.dialect.name != "sqlite":
        wait_for(lambda: server_connections(db) == 0, what="no server connection after close()")
    wait_for(lambda: not (thread_names() - before), what="no thread left after close()")
    assert db.pool_stats()["state"] == "stopped"
