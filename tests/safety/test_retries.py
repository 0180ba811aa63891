"""Whole-workflow retries of transient failures, and the data_safety_level bundles."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors import Backoff
from dataflow import (
    AsyncLocalRuntime,
    ConfigurationError,
    DataFlow,
    IntegrityError,
    LocalRuntime,
    TransientError,
    WorkflowBuilder,
    WorkflowFailed,
    _execute,
)
from tests.integration.helpers import table_count

from .faults import capture_connections, kill, transient_error


class Permanent(Exception):
    """A failure no retry can fix."""


def _retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if "workflow_retried" in r.getMessage())


def _flaky(db: DataFlow, failures: int) -> dict[str, int]:
    """Register ``Flaky``, which raises a real transient driver error on its first ``failures`` calls."""
    calls = {"n": 0}

    def flaky() -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise transient_error(db)
        return {"call": calls["n"]}

    db.register_node("Flaky", flaky)
    return calls


def _step(db: DataFlow, log: list[str]) -> None:
    db.register_node("Step", lambda name: log.append(f"do {name}") or {"name": name},
                     compensation=lambda p, r: log.append(f"undo {p['name']}"))


# -- real transient errors ------------------------------------------------------------------


def test_sqlite_busy_is_retried_until_the_writer_lets_go(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another connection holds the file's write lock: BEGIN gets SQLITE_BUSY, and the workflow retries until it can write."""
    path = tmp_path / "busy.db"
    with DataFlow(f"sqlite:///{path}", auto_retry_attempts=20) as db:

        @db.model
        class Note:
            text: str

        db.engine.run(lambda c: c.execute("PRAGMA busy_timeout = 20"), transactional=False)
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.3, holder.execute, ("COMMIT",))
        timer.start()
        try:
            wf = WorkflowBuilder(db)
            wf.add_node("NoteCreateNode", "a", {"text": "one"})
            wf.add_node("NoteCreateNode", "b", {"text": "two"})
            with caplog.at_level(logging.INFO, logger="dataflow"):
                LocalRuntime().execute(wf.build())
        finally:
            timer.join()
            holder.close()
        assert _retries(caplog) >= 1
        assert table_count(db, "notes") == 2


def test_retries_stop_after_auto_retry_attempts(tmp_path: Path, fast_backoff: None) -> None:
    """A lock that is never released: the workflow runs 1 + auto_retry_attempts times, then fails with the transient cause."""
    path = tmp_path / "locked.db"
    with DataFlow(f"sqlite:///{path}", auto_retry_attempts=2) as db:

        @db.model
        class Note:
            text: str

        db.engine.run(lambda c: c.execute("PRAGMA busy_timeout = 5"), transactional=False)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            wf = WorkflowBuilder(db)
            wf.add_node("NoteCreateNode", "a", {"text": "one"})
            wf.add_node("NoteCreateNode", "b", {"text": "two"})
            with pytest.raises(WorkflowFailed) as info:
                LocalRuntime().execute(wf.build())
        finally:
            holder.close()
    assert info.value.attempts == 3
    assert isinstance(info.value.__cause__, TransientError)


@pytest.mark.usefixtures("fast_backoff")
def test_retry_compensates_the_failed_attempt_first(db: DataFlow, caplog: pytest.LogCaptureFixture) -> None:
    """Before a retry the failed attempt is rolled back and its outside steps undone; the run then applies once."""

    @db.model
    class Order:
        item: str

    log: list[str] = []
    _step(db, log)
    calls = _flaky(db, failures=1)
    wf = WorkflowBuilder(db)
    wf.add_node("Step", "pay", {"name": "pay"})
    wf.add_node("OrderCreateNode", "order", {"item": "pen"})
    wf.add_node("Flaky", "flaky")
    with caplog.at_level(logging.INFO, logger="dataflow"):
        results, _ = LocalRuntime().execute(wf.build())
    assert log == ["do pay", "undo pay", "do pay"]
    assert results["flaky"] == {"call": 2}
    assert calls["n"] == 2
    assert table_count(db, "orders") == 1
    assert _retries(caplog) == 1


@pytest.mark.usefixtures("fast_backoff")
def test_non_transient_errors_fail_once(db: DataFlow) -> None:
    """A unique violation is not worth a retry: the workflow runs once and fails."""

    @db.model
    class Tag:
        name: str
        __indexes__ = [{"name": "idx_tag_name_unique", "fields": ["name"], "unique": True}]  # noqa: RUF012

    log: list[str] = []
    _step(db, log)
    wf = WorkflowBuilder(db)
    wf.add_node("Step", "s", {"name": "s"})
    wf.add_node("TagCreateNode", "a", {"name": "x"})
    wf.add_node("TagCreateNode", "b", {"name": "x"})
    with pytest.raises(WorkflowFailed) as info:
        LocalRuntime().execute(wf.build())
    assert info.value.attempts == 1
    assert isinstance(info.value.__cause__, IntegrityError)
    assert log == ["do s", "undo s"]


def test_a_user_error_is_not_retried(memdb: DataFlow) -> None:
    """Only errors the dialect classifies as transient are retried; anything else fails at once."""
    calls = {"n": 0}

    def broken() -> dict[str, Any]:
        calls["n"] += 1
        raise Permanent("bad input")

    memdb.register_node("Broken", broken)
    wf = WorkflowBuilder(memdb)
    wf.add_node("Broken", "b")
    with pytest.raises(WorkflowFailed) as info:
        LocalRuntime().execute(wf.build())
    assert (calls["n"], info.value.attempts) == (1, 1)


@pytest.mark.usefixtures("fast_backoff")
def test_a_connection_lost_before_commit_is_retried_on_a_fresh_connection(db: DataFlow) -> None:
    """The server drops the connection mid-workflow: nothing committed, so the workflow runs again elsewhere, once."""

    @db.model
    class Note:
        text: str

    state = {"killed": False}
    with capture_connections(db) as seen:

        def sabotage() -> dict[str, Any]:
            if not state["killed"]:
                state["killed"] = True
                kill(db, seen[-1])
            return {}

        db.register_node("Sabotage", sabotage)
        wf = WorkflowBuilder(db)
        wf.add_node("NoteCreateNode", "a", {"text": "one"})
        wf.add_node("Sabotage", "cut")
        wf.add_node("NoteCreateNode", "b", {"text": "two"})
        LocalRuntime().execute(wf.build())
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert table_count(db, "notes") == 2


def test_backoff_delays_grow_with_jitter(memdb: DataFlow, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delay before each retry starts at Backoff.INITIAL_DELAY and doubles, within the jitter."""
    delays: list[float] = []
    monkeypatch.setattr(_execute, "time", types.SimpleNamespace(sleep=delays.append, perf_counter=time.perf_counter))
    _flaky(memdb, failures=3)
    wf = WorkflowBuilder(memdb)
    wf.add_node("Flaky", "f")
    LocalRuntime().execute(wf.build())
    assert len(delays) == 3
    jitter = Backoff.DELAY_JITTER
    for i, delay in enumerate(delays):
        nominal = Backoff.INITIAL_DELAY * Backoff.DELAY_BACKOFF ** i
        assert nominal * (1 - jitter) <= delay <= nominal * (1 + jitter)


@pytest.mark.usefixtures("fast_backoff")
def test_async_runtime_retries_too(db: DataFlow) -> None:
    """AsyncLocalRuntime retries a transient failure the same way, awaiting the backoff."""

    @db.model
    class Order:
        item: str

    log: list[str] = []
    _step(db, log)
    _flaky(db, failures=2)

    async def main() -> dict[str, Any]:
        wf = WorkflowBuilder(db)
        wf.add_node("Step", "pay", {"name": "pay"})
        wf.add_node("OrderCreateNode", "order", {"item": "pen"})
        wf.add_node("Flaky", "flaky")
        results, _ = await AsyncLocalRuntime().execute_async(wf.build())
        return results

    results = asyncio.run(main())
    assert results["flaky"] == {"call": 3}
    assert log == ["do pay", "undo pay", "do pay", "undo pay", "do pay"]
    assert table_count(db, "orders") == 1


# -- conflicts between concurrent workflows (servers) ---------------------------------------


def _server_only(db: DataFlow) -> None:
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): two workflows cannot interleave")


def _two_at_once(flows: list[Any]) -> list[Any]:
    """Run each workflow on its own thread; return results or exceptions, in order."""
    out: list[Any] = [None] * len(flows)

    def run(i: int) -> None:
        try:
            out[i] = LocalRuntime().execute(flows[i])[0]
        except Exception as exc:  # noqa: BLE001 - judged by the caller
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(flows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _first_time_barrier(db: DataFlow, parties: int) -> None:
    """Register ``Meet``: on each caller's first call, wait for the others (so the workflows interleave)."""
    barrier = threading.Barrier(parties, timeout=20)
    met: set[str] = set()

    def meet(who: str) -> dict[str, Any]:
        if who not in met:
            met.add(who)
            barrier.wait()
        return {}

    db.register_node("Meet", meet)


@pytest.mark.usefixtures("fast_backoff")
def test_a_deadlock_between_two_workflows_is_retried(db: DataFlow, caplog: pytest.LogCaptureFixture) -> None:
    """Two workflows lock two rows in opposite orders; the server kills one, which retries and succeeds."""
    _server_only(db)

    @db.model
    class Account:
        name: str
        balance: int

    ids = [LocalRuntime().execute(_create(db, "Account", {"name": n, "balance": 0}))[0]["c"]["id"] for n in "ab"]
    _first_time_barrier(db, 2)
    flows = []
    for who, (first, second) in (("w1", ids), ("w2", ids[::-1])):
        wf = WorkflowBuilder(db)
        wf.add_node("AccountUpdateNode", "first", {"filter": {"id": first}, "fields": {"balance": 1}})
        wf.add_node("Meet", "meet", {"who": who})
        wf.add_node("AccountUpdateNode", "second", {"filter": {"id": second}, "fields": {"balance": 2}})
        flows.append(wf.build())
    with caplog.at_level(logging.INFO, logger="dataflow"):
        outcomes = _two_at_once(flows)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert _retries(caplog) >= 1


@pytest.mark.usefixtures("fast_backoff")
def test_serializable_keeps_an_invariant_that_read_committed_loses(
    open_db: Callable[..., DataFlow], caplog: pytest.LogCaptureFixture
) -> None:
    """Write skew at "maximum" (SERIALIZABLE): one workflow fails transiently, retries, sees the change and stops."""
    db = open_db(data_safety_level="maximum")
    _server_only(db)

    @db.model
    class Doctor:
        name: str
        on_call: bool

    for name in ("alice", "bob"):
        LocalRuntime().execute(_create(db, "Doctor", {"name": name, "on_call": True}))
    _first_time_barrier(db, 2)

    def enough(count: int) -> dict[str, Any]:
        if count < 2:
            raise Permanent("someone must stay on call")
        return {}

    db.register_node("Enough", enough)
    flows = []
    for name in ("alice", "bob"):
        wf = WorkflowBuilder(db)
        wf.add_node("DoctorListNode", "on_call", {"filter": {"on_call": True}, "count_only": True})
        wf.add_node("Enough", "enough")
        wf.add_connection("on_call", "count", "enough", "count")
        wf.add_node("Meet", "meet", {"who": name})
        wf.add_node("DoctorBulkUpdateNode", "off", {"filter": {"name": name}, "fields": {"on_call": False}})
        flows.append(wf.build())
    with caplog.at_level(logging.INFO, logger="dataflow"):
        outcomes = _two_at_once(flows)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert len(failed) == 1, outcomes
    assert isinstance(failed[0], WorkflowFailed) and isinstance(failed[0].__cause__, Permanent)
    assert failed[0].attempts >= 2
    assert _retries(caplog) >= 1
    count = LocalRuntime().execute(_list(db, "Doctor", {"filter": {"on_call": True}, "count_only": True}))[0]["l"]
    assert count == {"count": 1}


def _create(db: DataFlow, model: str, values: dict[str, Any]) -> Any:
    wf = WorkflowBuilder(db)
    wf.add_node(f"{model}CreateNode", "c", values)
    return wf.build()


def _list(db: DataFlow, model: str, params: dict[str, Any]) -> Any:
    wf = WorkflowBuilder(db)
    wf.add_node(f"{model}ListNode", "l", params)
    return wf.build()


# -- data_safety_level ----------------------------------------------------------------------


def test_unknown_safety_level_is_a_configuration_error() -> None:
    """A level that is not one of the three is refused, with the closest name suggested."""
    with pytest.raises(ConfigurationError, match="did you mean 'maximum'"):
        DataFlow(data_safety_level="maximal")
    with pytest.raises(ConfigurationError):
        DataFlow(data_safety_level=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_auto_retry_attempts_must_be_a_whole_number(bad: Any) -> None:
    """auto_retry_attempts is a count of retries: a whole number >= 0."""
    with pytest.raises(ConfigurationError, match="auto_retry_attempts"):
        DataFlow(auto_retry_attempts=bad)


def test_the_levels_are_bundles() -> None:
    """Each level is a fixed bundle; auto_retry_attempts overrides only the retries."""
    seen = {}
    for level in ("development", "balanced", "maximum"):
        with DataFlow(data_safety_level=level) as db:
            s = db.safety
            seen[level] = (s.isolation, s.retries, s.durable_journal, s.ledger, s.full_sync)
    assert seen == {
        "development": (None, 0, False, False, False),
        "balanced": (None, 3, False, False, False),
        "maximum": ("SERIALIZABLE", 5, False, True, True),  # in memory: no durable journal to keep
    }
    with DataFlow(data_safety_level="maximum", auto_retry_attempts=1) as db:
        assert (db.safety.retries, db.safety.ledger) == (1, True)
    with DataFlow() as db:
        assert db.safety.level == "balanced"


def test_the_level_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATAFLOW_DATA_SAFETY_LEVEL and DATAFLOW_AUTO_RETRY_ATTEMPTS apply when no argument is given."""
    monkeypatch.setenv("DATAFLOW_DATA_SAFETY_LEVEL", "development")
    monkeypatch.setenv("DATAFLOW_AUTO_RETRY_ATTEMPTS", "7")
    with DataFlow() as db:
        assert (db.safety.level, db.safety.retries) == ("development", 7)
    with DataFlow(data_safety_level="maximum", auto_retry_attempts=0) as db:
        assert (db.safety.level, db.safety.retries) == ("maximum", 0)


def test_development_does_not_retry() -> None:
    """"development" surfaces the first transient error instead of retrying it."""
    with DataFlow(data_safety_level="development") as db:
        calls = _flaky(db, failures=1)
        wf = WorkflowBuilder(db)
        wf.add_node("Flaky", "f")
        with pytest.raises(WorkflowFailed) as info:
            LocalRuntime().execute(wf.build())
        assert (calls["n"], info.value.attempts) == (1, 1)


def test_maximum_applies_its_settings_to_every_connection(open_db: Callable[..., DataFlow]) -> None:
    """"maximum": SERIALIZABLE transactions on the servers, synchronous=FULL on a SQLite file, a durable journal."""
    db = open_db(data_safety_level="maximum")
    assert db.safety.durable_journal and db.engine.safety.durable
    dialect = db.dialect
    query = {
        "sqlite": "PRAGMA synchronous",
        "postgresql": "SHOW transaction_isolation",
        "mysql": "SELECT @@SESSION.tx_isolation",
    }[dialect.name]
    value = db.engine.run(lambda c: dialect.execute(c, query).fetchone()[0])
    expected = {"sqlite": 2, "postgresql": "serializable", "mysql": "SERIALIZABLE"}[dialect.name]
    assert value == expected


def test_balanced_keeps_the_database_defaults(db: DataFlow) -> None:
    """"balanced" changes no session setting (no SessionDriver, SQLite stays at synchronous=NORMAL)."""
    assert db.supervisor.driver is db.dialect
    if db.dialect.name == "sqlite":
        assert db.engine.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1
