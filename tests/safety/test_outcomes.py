"""A COMMIT whose connection is lost: resolved through the run ledger, or OutcomeUnknownError.

The connection is killed for real at COMMIT (``faults.commit_fault``):
either after the server applied it (the reply is lost) or before it arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dataflow import DataFlow, LocalRuntime, OutcomeUnknownError, WorkflowBuilder, WorkflowFailed
from tests.integration.helpers import raw, table_count

from .faults import commit_fault

pytestmark = pytest.mark.usefixtures("fast_backoff")


def _setup(db: DataFlow) -> dict[str, int]:
    """A Note model and a counting outside step with a compensation; returns the counters."""

    @db.model
    class Note:
        text: str

    counts = {"calls": 0, "refunds": 0}

    def ping() -> dict[str, Any]:
        counts["calls"] += 1
        return {"n": counts["calls"]}

    def unping(params: dict[str, Any], result: dict[str, Any]) -> None:
        counts["refunds"] += 1

    db.register_node("Ping", ping, compensation=unping)
    return counts


def _write_flow(db: DataFlow) -> Any:
    wf = WorkflowBuilder(db)
    wf.add_node("Ping", "ping")
    wf.add_node("NoteCreateNode", "note", {"text": "hello"})
    return wf.build()


def test_lost_reply_after_commit_is_unknown_at_balanced(open_db: Callable[..., DataFlow]) -> None:
    """Without the ledger, a COMMIT whose reply is lost raises OutcomeUnknownError: not retried, not compensated."""
    db = open_db()
    counts = _setup(db)
    with commit_fault(db, "after") as fired, pytest.raises(OutcomeUnknownError) as info:
        LocalRuntime().execute(_write_flow(db))
    assert fired == [1]
    error = info.value
    assert not isinstance(error, WorkflowFailed)
    assert error.pending_compensations == ["ping"]
    assert error.results["note"]["text"] == "hello"
    assert counts == {"calls": 1, "refunds": 0}
    assert table_count(db, "notes") == 1  # it did commit: never reported as failed


def test_lost_commit_before_it_arrived_is_unknown_at_balanced(open_db: Callable[..., DataFlow]) -> None:
    """Without the ledger a COMMIT that never arrived is just as unknown to the client: not replayed."""
    db = open_db()
    counts = _setup(db)
    with commit_fault(db, "before"), pytest.raises(OutcomeUnknownError):
        LocalRuntime().execute(_write_flow(db))
    assert counts == {"calls": 1, "refunds": 0}
    assert table_count(db, "notes") == 0


def test_ledger_resolves_a_commit_that_happened(open_db: Callable[..., DataFlow]) -> None:
    """At "maximum" the ledger finds the run's row: the results come back once, nothing is compensated or replayed."""
    db = open_db(data_safety_level="maximum")
    counts = _setup(db)
    with commit_fault(db, "after") as fired:
        results, run_id = LocalRuntime().execute(_write_flow(db))
    assert fired == [1]
    assert results["note"]["text"] == "hello"
    assert counts == {"calls": 1, "refunds": 0}
    assert table_count(db, "notes") == 1
    assert raw(db, "SELECT attempt FROM dataflow_runs WHERE run_id = {ph}", (run_id,)) == [(1,)]


def test_ledger_resolves_a_commit_that_did_not_happen(open_db: Callable[..., DataFlow]) -> None:
    """At "maximum" a missing ledger row means rolled back: the attempt is compensated and retried, applied once."""
    db = open_db(data_safety_level="maximum")
    counts = _setup(db)
    with commit_fault(db, "before") as fired:
        results, run_id = LocalRuntime().execute(_write_flow(db))
    assert fired == [1]
    assert counts == {"calls": 2, "refunds": 1}
    assert results["ping"] == {"n": 2}
    assert table_count(db, "notes") == 1
    assert raw(db, "SELECT attempt FROM dataflow_runs WHERE run_id = {ph}", (run_id,)) == [(2,)]


def test_read_only_workflow_with_lost_commit_is_retried(open_db: Callable[..., DataFlow]) -> None:
    """A workflow that wrote nothing has no outcome to lose: its lost COMMIT is simply retried."""
    db = open_db()
    _setup(db)
    wf = WorkflowBuilder(db)
    wf.add_node("NoteListNode", "a", {})
    wf.add_node("NoteListNode", "b", {"count_only": True})
    with commit_fault(db, "after") as fired:
        results, _ = LocalRuntime().execute(wf.build())
    assert fired == [1]
    assert results["b"] == {"count": 0}


def test_single_statement_write_lost_is_unknown(open_db: Callable[..., DataFlow]) -> None:
    """A lone write runs without BEGIN/COMMIT at "balanced": lost mid-statement, its outcome is unknown."""
    db = open_db()
    _setup(db)
    wf = WorkflowBuilder(db)
    wf.add_node("NoteCreateNode", "note", {"text": "solo"})
    built = wf.build()
    assert not built.transactional
    original = db.dialect.execute
    fired: list[int] = []

    def execute(conn: Any, sql: str, params: Any = ()) -> Any:
        cursor = original(conn, sql, params)
        if sql.lstrip().upper().startswith("INSERT") and not fired:
            fired.append(1)
            from .faults import disconnect_error, kill

            kill(db, conn)
            raise disconnect_error(db, conn)
        return cursor

    from .faults import patched

    with patched(db.dialect, "execute", execute), pytest.raises(OutcomeUnknownError):
        LocalRuntime().execute(built)
    assert table_count(db, "notes") == 1


def test_maximum_wraps_a_single_write_in_a_ledgered_transaction(open_db: Callable[..., DataFlow]) -> None:
    """At "maximum" even a lone write gets a transaction and a ledger row, so its lost COMMIT can be resolved."""
    db = open_db(data_safety_level="maximum")
    _setup(db)
    wf = WorkflowBuilder(db)
    wf.add_node("NoteCreateNode", "note", {"text": "solo"})
    with commit_fault(db, "after"):
        results, run_id = LocalRuntime().execute(wf.build())
    assert results["note"]["text"] == "solo"
    assert table_count(db, "notes") == 1
    assert raw(db, "SELECT count(*) FROM dataflow_runs WHERE run_id = {ph}", (run_id,)) == [(1,)]


def test_ledger_rows_only_for_writing_workflows_at_maximum(open_db: Callable[..., DataFlow]) -> None:
    """The ledger costs one INSERT per writing workflow at "maximum" and nothing for reads."""
    db = open_db(data_safety_level="maximum")
    _setup(db)
    before = table_count(db, "dataflow_runs")
    wf = WorkflowBuilder(db)
    wf.add_node("NoteCreateNode", "note", {"text": "x"})
    LocalRuntime().execute(wf.build())
    read = WorkflowBuilder(db)
    read.add_node("NoteListNode", "all", {})
    LocalRuntime().execute(read.build())
    assert table_count(db, "dataflow_runs") == before + 1


def test_no_ledger_below_maximum(open_db: Callable[..., DataFlow]) -> None:
    """"balanced" writes no ledger row (and creates no ledger table)."""
    db = open_db()
    _setup(db)
    LocalRuntime().execute(_write_flow(db))
    assert "dataflow_runs" not in _tables(db)


def _tables(db: DataFlow) -> set[str]:
    return {name for name in ("dataflow_runs", "notes") if db.engine.run(lambda c, n=name: db.dialect.existing_columns(c, n))}
