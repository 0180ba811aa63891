"""A Hypothesis state machine of sagas: random steps, a random failure point, retries.

A workflow is a random mix of outside steps (some with a compensation that
raises), database writes and non-critical failing nodes, with a failure at a
random position: permanent, or transient (the first attempt fails there and
is retried). After each run the compensation log must be exactly the
completed outside steps of each failed attempt in reverse order, each once;
the failure reports what ran and what raised; a committed attempt
compensates nothing, and a failed one leaves no row behind.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from actors import Backoff
from dataflow import (
    AsyncLocalRuntime,
    CompensationFailed,
    DataFlow,
    LocalRuntime,
    WorkflowBuilder,
    WorkflowFailed,
)
from tests.safety.faults import transient_error

KINDS = ("outside", "outside", "outside_bad_undo", "db_write", "noncritical")


class Injected(Exception):
    """The permanent failure at the chosen point."""


class SagaMachine(RuleBasedStateMachine):
    """Builds a workflow step by step and runs it; the model is the expected event log."""

    def __init__(self, db: DataFlow) -> None:
        super().__init__()
        self.db = db
        self.steps: list[str] = []
        self.log: list[tuple[str, str, str]] = []
        self.runs = 0
        self.prefix = uuid.uuid4().hex[:8]  # examples share the database: tag this machine's rows
        self.fired: set[str] = set()
        self._register()

    def _register(self) -> None:
        db, log, fired = self.db, self.log, self.fired

        @db.model
        class Entry:
            run: str

        def outside(run: str, node: str, bad_undo: bool) -> dict[str, Any]:
            log.append(("do", run, node))
            return {"node": node}

        def undo(params: dict[str, Any], result: dict[str, Any]) -> None:
            log.append(("undo", params["run"], result["node"]))
            if params["bad_undo"]:
                raise Injected(f"cannot undo {result['node']}")

        def fail(run: str, transient: bool) -> dict[str, Any]:
            if not transient:
                raise Injected(f"{run} failed")
            if run not in fired:
                fired.add(run)
                raise transient_error(db)
            return {}

        def noncritical(run: str) -> dict[str, Any]:
            raise Injected("a non-critical node failed")

        db.register_node("Outside", outside, compensation=undo)
        db.register_node("FailHere", fail)
        db.register_node("Optional", noncritical, critical=False)

    @precondition(lambda self: len(self.steps) < 6)
    @rule(kind=st.sampled_from(KINDS))
    def add_step(self, kind: str) -> None:
        self.steps.append(kind)

    @precondition(lambda self: bool(self.steps))
    @rule()
    def drop_first_step(self) -> None:
        self.steps.pop(0)

    @precondition(lambda self: bool(self.steps))
    @rule(fail_at=st.one_of(st.none(), st.integers(0, 6)), transient=st.booleans(), use_async=st.booleans())
    def run(self, fail_at: int | None, transient: bool, use_async: bool) -> None:
        self.runs += 1
        run = f"{self.prefix}-{self.runs}"
        wf = WorkflowBuilder(self.db)
        before_failure: list[str] = []  # outside steps that complete before the failure point
        all_outside: list[str] = []
        bad_undo: set[str] = set()
        for i, kind in enumerate(self.steps + ["end"]):
            if fail_at is not None and i == min(fail_at, len(self.steps)):
                wf.add_node("FailHere", "fail", {"run": run, "transient": transient})
                before_failure = list(all_outside)
            if kind == "end":
                break
            node = f"s{i}"
            if kind.startswith("outside"):
                wf.add_node("Outside", node, {"run": run, "node": node, "bad_undo": kind == "outside_bad_undo"})
                all_outside.append(node)
                if kind == "outside_bad_undo":
                    bad_undo.add(node)
            elif kind == "db_write":
                wf.add_node("EntryCreateNode", node, {"run": run})
            else:
                wf.add_node("Optional", node, {"run": run})
        start = len(self.log)
        outcome: Any
        try:
            if use_async:
                asyncio.run(AsyncLocalRuntime().execute_async(wf.build()))
            else:
                LocalRuntime().execute(wf.build())
            outcome = "ok"
        except WorkflowFailed as exc:
            outcome = exc
        events = self.log[start:]
        rows = self._rows(run)
        writes = self.steps.count("db_write")
        undone = list(reversed(before_failure))
        if fail_at is None:
            assert outcome == "ok"
            assert events == [("do", run, n) for n in all_outside]
            assert rows == writes
        elif transient:
            # Attempt 1 fails at the point and is compensated; attempt 2 runs everything and commits.
            assert outcome == "ok", outcome
            expected = [("do", run, n) for n in before_failure] + [("undo", run, n) for n in undone]
            assert events == expected + [("do", run, n) for n in all_outside]
            assert rows == writes
        else:
            assert isinstance(outcome, WorkflowFailed)
            assert events == [("do", run, n) for n in before_failure] + [("undo", run, n) for n in undone]
            assert outcome.compensated == [n for n in undone if n not in bad_undo]
            assert [n for n, _ in outcome.compensation_errors] == [n for n in undone if n in bad_undo]
            assert isinstance(outcome, CompensationFailed) == bool(bad_undo & set(before_failure))
            assert rows == 0

    def _rows(self, run: str) -> int:
        wf = WorkflowBuilder(self.db)
        wf.add_node("EntryListNode", "n", {"filter": {"run": run}, "count_only": True})
        count: int = LocalRuntime().execute(wf.build())[0]["n"]["count"]
        return count

    @invariant()
    def each_compensation_runs_at_most_once(self) -> None:
        undos = [e for e in self.log if e[0] == "undo"]
        assert len(undos) == len(set(undos))


def test_sagas(db: DataFlow) -> None:
    """Random sagas: compensations run in exact reverse order, each at most once, and only for failed attempts."""
    original = (Backoff.INITIAL_DELAY, Backoff.MAX_DELAY)
    Backoff.INITIAL_DELAY, Backoff.MAX_DELAY = 0.002, 0.02
    try:
        run_state_machine_as_test(
            lambda: SagaMachine(db),
            settings=settings(max_examples=40, stateful_step_count=15, deadline=None, database=None,
                              suppress_health_check=list(HealthCheck)),
        )
    finally:
        Backoff.INITIAL_DELAY, Backoff.MAX_DELAY = original
