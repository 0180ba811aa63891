"""Compensations of outside steps (sagas): order, exactly once, failures collected, durable journal."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors import Compensation, SafetyActor
from dataflow import (
    AsyncLocalRuntime,
    CompensationFailed,
    ConfigurationError,
    DataFlow,
    LocalRuntime,
    WorkflowBuilder,
    WorkflowFailed,
)
from dataflow._journal import SqlJournal, make_journal
from tests.integration.helpers import table_count

from . import _crash_worker

REPO = Path(__file__).resolve().parents[2]


class Boom(Exception):
    """The failure these tests inject."""


def _outside(db: DataFlow, log: list[tuple[str, Any]], *, failing_compensations: frozenset[str] = frozenset()) -> None:
    """Register ``Step`` (an outside step that logs) with a compensation that logs, and ``Fail``."""

    def step(name: str) -> dict[str, Any]:
        log.append(("do", name))
        return {"done": name}

    def undo(params: dict[str, Any], result: dict[str, Any]) -> None:
        log.append(("undo", params["name"]))
        if params["name"] in failing_compensations:
            raise Boom(f"cannot undo {params['name']}")

    def fail() -> dict[str, Any]:
        raise Boom("node failed")

    db.register_node("Step", step, compensation=undo)
    db.register_node("Fail", fail)


def _flow(db: DataFlow, names: list[str], *, fail: bool = True) -> Any:
    wf = WorkflowBuilder(db)
    for name in names:
        wf.add_node("Step", name, {"name": name})
    if fail:
        wf.add_node("Fail", "fail")
    return wf.build()


def test_compensations_run_in_reverse_after_the_rollback(db: DataFlow) -> None:
    """Completed outside steps are undone last-first, each once, after the database work is rolled back."""

    @db.model
    class Order:
        item: str

    log: list[tuple[str, Any]] = []
    rows_seen: list[int] = []

    def step(name: str) -> dict[str, Any]:
        log.append(("do", name))
        return {"done": name}

    def undo(params: dict[str, Any], result: dict[str, Any]) -> None:
        rows_seen.append(table_count(db, "orders"))
        log.append(("undo", result["done"]))

    db.register_node("Step", step, compensation=undo)
    db.register_node("Fail", lambda: (_ for _ in ()).throw(Boom("late failure")))
    wf = WorkflowBuilder(db)
    wf.add_node("Step", "pay", {"name": "pay"})
    wf.add_node("OrderCreateNode", "order", {"item": "pen"})
    wf.add_node("Step", "mail", {"name": "mail"})
    wf.add_node("Step", "ship", {"name": "ship"})
    wf.add_node("Fail", "fail")
    with pytest.raises(WorkflowFailed) as info:
        LocalRuntime().execute(wf.build())
    assert log == [("do", "pay"), ("do", "mail"), ("do", "ship"), ("undo", "ship"), ("undo", "mail"), ("undo", "pay")]
    assert rows_seen == [0, 0, 0]
    error = info.value
    assert not isinstance(error, CompensationFailed)
    assert (error.node, error.compensated, error.compensation_errors) == ("fail", ["ship", "mail", "pay"], [])
    assert isinstance(error.__cause__, Boom)


def test_a_failing_compensation_does_not_stop_the_others(memdb: DataFlow) -> None:
    """Every compensation runs even when some raise; CompensationFailed carries each failure."""
    log: list[tuple[str, Any]] = []
    _outside(memdb, log, failing_compensations=frozenset({"b", "d"}))
    with pytest.raises(CompensationFailed) as info:
        LocalRuntime().execute(_flow(memdb, ["a", "b", "c", "d"]))
    assert [e for e in log if e[0] == "undo"] == [("undo", "d"), ("undo", "c"), ("undo", "b"), ("undo", "a")]
    error = info.value
    assert isinstance(error, WorkflowFailed)
    assert error.compensated == ["c", "a"]
    assert [(node, str(exc)) for node, exc in error.compensation_errors] == [("d", "cannot undo d"), ("b", "cannot undo b")]
    assert "compensation failed for d" in str(error)


def test_a_successful_workflow_runs_no_compensation(db: DataFlow) -> None:
    """When the workflow commits, the journal is dropped and nothing is undone."""
    log: list[tuple[str, Any]] = []
    _outside(db, log)
    results, _ = LocalRuntime().execute(_flow(db, ["a", "b"], fail=False))
    assert results == {"a": {"done": "a"}, "b": {"done": "b"}}
    assert log == [("do", "a"), ("do", "b")]


def test_workflows_without_compensations_never_touch_the_safety_actor(db: DataFlow) -> None:
    """The hop budget: a workflow with no compensating step sends no message, so no safety actor even starts."""

    @db.model
    class Item:
        name: str
        __indexes__ = [{"name": "idx_item_name", "fields": ["name"], "unique": True}]  # noqa: RUF012

    db.register_node("Plain", lambda: {"ok": True})
    wf = WorkflowBuilder(db)
    wf.add_node("ItemCreateNode", "item", {"name": "x"})
    wf.add_node("Plain", "plain")
    LocalRuntime().execute(wf.build())
    bad = WorkflowBuilder(db)
    bad.add_node("ItemCreateNode", "item", {"name": "y"})
    bad.add_node("ItemCreateNode", "dup", {"name": "x"})  # unique violation
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(bad.build())
    assert pykka.ActorRegistry.get_by_class(SafetyActor) == []


def test_the_failing_step_itself_is_not_compensated(memdb: DataFlow) -> None:
    """Only completed steps are journalled: a step that raised has nothing to undo."""
    log: list[tuple[str, Any]] = []
    _outside(memdb, log)

    def half(name: str) -> dict[str, Any]:
        raise Boom("half done")

    memdb.register_node("Half", half, compensation=lambda p, r: log.append(("undo", "half")))
    wf = WorkflowBuilder(memdb)
    wf.add_node("Step", "a", {"name": "a"})
    wf.add_node("Half", "h", {"name": "h"})
    with pytest.raises(WorkflowFailed) as info:
        LocalRuntime().execute(wf.build())
    assert log == [("do", "a"), ("undo", "a")]
    assert info.value.node == "h"


def test_compensation_gets_the_steps_params_and_result(memdb: DataFlow) -> None:
    """A compensation is called with the step's parameters (connected inputs included) and its result."""
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    memdb.register_node("Source", lambda: {"amount": 42})
    memdb.register_node("Pay", lambda amount, card: {"payment": f"{card}:{amount}"},
                        compensation=lambda p, r: seen.append((p, r)))
    memdb.register_node("Fail", lambda: (_ for _ in ()).throw(Boom("x")))
    wf = WorkflowBuilder(memdb)
    wf.add_node("Source", "src")
    wf.add_node("Pay", "pay", {"card": "visa"})
    wf.add_connection("src", "amount", "pay", "amount")
    wf.add_node("Fail", "fail")
    wf.add_connection("pay", "payment", "fail", "ignored")
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(wf.build())
    assert seen == [({"card": "visa", "amount": 42}, {"payment": "visa:42"})]


def test_a_non_critical_failure_is_logged_and_the_workflow_completes(
    db: DataFlow, caplog: pytest.LogCaptureFixture
) -> None:
    """critical=False: the node's failure is recorded in the results and logged; nothing is compensated."""

    @db.model
    class Order:
        item: str

    log: list[tuple[str, Any]] = []
    _outside(db, log)

    def email(to: str) -> dict[str, Any]:
        raise Boom("smtp down")

    db.register_node("Email", email, critical=False)
    wf = WorkflowBuilder(db)
    wf.add_node("Step", "pay", {"name": "pay"})
    wf.add_node("OrderCreateNode", "order", {"item": "pen"})
    wf.add_node("Email", "email", {"to": "a@example.com"})
    with caplog.at_level(logging.WARNING):
        results, _ = LocalRuntime().execute(wf.build())
    assert results["email"] == {"failed": True, "error": "Boom: smtp down"}
    assert results["order"]["item"] == "pen"
    assert table_count(db, "orders") == 1
    assert log == [("do", "pay")]
    assert "node_failed" in caplog.text


def test_async_runtime_compensates_on_the_callers_loop(memdb: DataFlow) -> None:
    """Under AsyncLocalRuntime an async compensation runs on the caller's own event loop, in reverse order."""
    ran: list[tuple[str, asyncio.AbstractEventLoop]] = []

    async def step(name: str) -> dict[str, Any]:
        return {"done": name}

    async def undo(params: dict[str, Any], result: dict[str, Any]) -> None:
        ran.append((params["name"], asyncio.get_running_loop()))

    memdb.register_node("Step", step, compensation=undo)
    memdb.register_node("Fail", lambda: (_ for _ in ()).throw(Boom("x")))

    async def main() -> asyncio.AbstractEventLoop:
        wf = WorkflowBuilder(memdb)
        wf.add_node("Step", "a", {"name": "a"})
        wf.add_node("Step", "b", {"name": "b"})
        wf.add_node("Fail", "fail")
        with pytest.raises(WorkflowFailed) as info:
            await AsyncLocalRuntime().execute_async(wf.build())
        assert info.value.compensated == ["b", "a"]
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert [name for name, _ in ran] == ["b", "a"]
    assert all(seen is loop for _, seen in ran)


def test_async_runtime_compensates_a_database_workflow(db: DataFlow) -> None:
    """AsyncLocalRuntime rolls back and compensates a failed database workflow without blocking the loop."""

    @db.model
    class Order:
        item: str

    log: list[tuple[str, Any]] = []
    _outside(db, log)

    async def main() -> None:
        wf = WorkflowBuilder(db)
        wf.add_node("Step", "a", {"name": "a"})
        wf.add_node("OrderCreateNode", "order", {"item": "pen"})
        wf.add_node("Step", "b", {"name": "b"})
        wf.add_node("Fail", "fail")
        with pytest.raises(WorkflowFailed) as info:
            await AsyncLocalRuntime().execute_async(wf.build())
        assert info.value.compensated == ["b", "a"]

    asyncio.run(main())
    assert table_count(db, "orders") == 0
    assert log[-2:] == [("undo", "b"), ("undo", "a")]


# -- the durable journal --------------------------------------------------------------------


def _crash(url: str, log: Path, mode: str) -> int:
    """Run the crash worker in a child process; return its exit code."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(  # noqa: PLW1510 - the exit code is the point
        [sys.executable, "-m", "tests.safety._crash_worker", url, str(log), mode],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode in (0, _crash_worker.EXIT_DIED), done.stderr
    return done.returncode


def _journal_rows(db: DataFlow) -> int:
    journal = make_journal(db.dialect)
    journal.open()
    try:
        return int(journal._tx(lambda c: journal._exec(c, "SELECT count(*) FROM dataflow_compensations").fetchone()[0]))
    finally:
        journal.close()


def test_durable_journal_needs_a_database_that_outlives_the_process() -> None:
    """durable_compensations=True on an in-memory database is a configuration error."""
    with pytest.raises(ConfigurationError, match="outlives the process"):
        DataFlow(durable_compensations=True)


def test_a_process_that_died_has_its_compensations_run_at_the_next_start(
    engine_url: str, open_db: Callable[..., DataFlow], tmp_path: Path
) -> None:
    """A worker dies mid-workflow (os._exit); the next DataFlow on the database runs its journalled refunds."""
    log = tmp_path / "side-effects.txt"
    assert _crash(engine_url, log, "importable") == _crash_worker.EXIT_DIED
    assert log.read_text().splitlines() == ["charge 1", "charge 2"]
    db = open_db(durable_compensations=True)  # recovers at start: the refunds are importable
    assert log.read_text().splitlines() == ["charge 1", "charge 2", "refund 2 ch-2", "refund 1 ch-1"]
    assert table_count(db, "orders") == 0
    assert _journal_rows(db) == 0
    again = open_db(durable_compensations=True)
    assert again.recover_compensations().runs == 0  # exactly once
    assert log.read_text().count("refund") == 2


def test_a_compensation_found_only_by_node_type_runs_once_it_is_registered(
    engine_url: str, open_db: Callable[..., DataFlow], tmp_path: Path
) -> None:
    """A lambda cannot be imported back: it runs when the node type is registered again, by its name."""
    log = tmp_path / "side-effects.txt"
    _crash(engine_url, log, "closure")
    db = open_db(durable_compensations=True)
    assert "refund" not in log.read_text()
    assert db.engine.safety.unresolved == frozenset({"Charge"})
    db.register_node("Charge", _crash_worker.charge, compensation=lambda p, r: _crash_worker.refund(p, r))
    assert log.read_text().splitlines()[-2:] == ["refund 2 ch-2", "refund 1 ch-1"]
    assert db.engine.safety.unresolved == frozenset()


def test_a_run_that_committed_before_the_process_died_is_not_compensated(
    engine_url: str, open_db: Callable[..., DataFlow], tmp_path: Path
) -> None:
    """The run ledger tells recovery the workflow committed: its journal entries are dropped, not run."""
    log = tmp_path / "side-effects.txt"
    assert _crash(engine_url, log, "after_commit") == 0
    db = open_db(durable_compensations=True)
    assert "refund" not in log.read_text()
    assert table_count(db, "orders") == 1
    assert _journal_rows(db) == 0


def test_a_live_process_keeps_its_pending_compensations(open_db: Callable[..., DataFlow]) -> None:
    """A second DataFlow starting while a workflow runs does not take over that workflow's compensations."""
    first = open_db(durable_compensations=True)
    log: list[tuple[str, Any]] = []
    _outside(first, log)
    reached, release = threading.Event(), threading.Event()

    def wait() -> dict[str, Any]:
        reached.set()
        assert release.wait(10)
        raise Boom("failed after the second start")

    first.register_node("Wait", wait)
    wf = WorkflowBuilder(first)
    wf.add_node("Step", "a", {"name": "a"})
    wf.add_node("Wait", "wait")
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: _expect_failure(wf.build(), errors))
    worker.start()
    assert reached.wait(10)
    second = open_db(durable_compensations=True)
    assert second.recover_compensations().runs == 0
    release.set()
    worker.join(10)
    assert [type(e) for e in errors] == [WorkflowFailed]
    assert log == [("do", "a"), ("undo", "a")]


def _expect_failure(workflow: Any, errors: list[BaseException]) -> None:
    try:
        LocalRuntime().execute(workflow)
    except BaseException as exc:  # noqa: BLE001 - judged by the test
        errors.append(exc)


def test_concurrent_recoveries_run_each_compensation_once(
    engine_url: str, open_db: Callable[..., DataFlow], tmp_path: Path
) -> None:
    """Two processes starting at once after a crash: the claim lets exactly one run each refund."""
    log = tmp_path / "side-effects.txt"
    _crash(engine_url, log, "importable")
    starters = [threading.Thread(target=lambda: open_db(durable_compensations=True)) for _ in range(3)]
    for t in starters:
        t.start()
    for t in starters:
        t.join(30)
    assert sorted(line for line in log.read_text().splitlines() if line.startswith("refund")) == [
        "refund 1 ch-1", "refund 2 ch-2",
    ]


def test_an_owner_on_another_host_is_dead_only_when_its_heartbeat_is_stale(
    open_db: Callable[..., DataFlow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pid checks work on this host only; elsewhere an owner is taken for dead once its heartbeat is stale."""
    db = open_db(durable_compensations=True)
    elsewhere = make_journal(db.dialect)
    elsewhere.host = "some-other-host"
    elsewhere.open()
    elsewhere.append(Compensation("run-x", 1, 0, "pay", "Charge", "", {"a": 1}, {"b": 2}))
    claimer = make_journal(db.dialect)
    claimer.open()
    try:
        assert claimer.claim_orphans() == []
        monkeypatch.setattr(SqlJournal, "STALE_AFTER", 0.0)
        time.sleep(0.01)
        (orphan,) = claimer.claim_orphans()
        assert (orphan.run_id, orphan.attempt, orphan.committed) == ("run-x", 1, False)
        assert [(e.node_id, e.params, e.result) for e in orphan.entries] == [("pay", {"a": 1}, {"b": 2})]
        assert claimer.claim_orphans() == []
    finally:
        claimer.forget("run-x", 1)
        claimer.close()
        elsewhere.close()


def test_a_step_that_cannot_be_journalled_fails_and_is_compensated(
    open_db: Callable[..., DataFlow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the durable journal refuses an entry, the step is not acknowledged: the workflow fails there and undoes it."""
    db = open_db(durable_compensations=True)
    log: list[tuple[str, Any]] = []
    _outside(db, log)
    appended: list[str] = []
    real_append = SqlJournal.append

    def append(self: SqlJournal, entry: Compensation) -> None:
        appended.append(entry.node_id)
        if entry.node_id == "b":
            raise Boom("journal disk full")
        real_append(self, entry)

    monkeypatch.setattr(SqlJournal, "append", append)
    with pytest.raises(WorkflowFailed) as info:
        LocalRuntime().execute(_flow(db, ["a", "b", "c"], fail=False))
    assert info.value.node == "b"
    assert log == [("do", "a"), ("do", "b"), ("undo", "b"), ("undo", "a")]
    assert appended == ["a", "b"]


def test_an_orphan_older_than_the_ledger_is_expired_not_run(
    open_db: Callable[..., DataFlow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the ledger's retention "no ledger row" proves nothing: such an entry is marked expired, never run."""
    from dataflow._ledger import Ledger

    db = open_db(durable_compensations=True)
    dead = make_journal(db.dialect)
    dead.open()
    dead.append(Compensation("old-run", 1, 0, "pay", "Charge", "", {}, {}))
    dead._tx(lambda c: dead._exec(c, "DELETE FROM dataflow_journal_owners"))  # its owner is gone
    monkeypatch.setattr(Ledger, "RETENTION", 0.0)
    time.sleep(0.01)
    claimer = make_journal(db.dialect)
    claimer.open()
    try:
        assert claimer.claim_orphans() == []
        states = claimer._tx(lambda c: claimer._exec(
            c, "SELECT state FROM dataflow_compensations WHERE run_id = 'old-run'").fetchall())
        assert [s for (s,) in states] == ["expired"]
    finally:
        claimer.close()
        dead.close()
