"""Running a built workflow: parameters, connections between nodes, the
transaction on one leased connection, compensations, retries, and the one error.

One *attempt* runs every node on one lease, in one transaction. A failed
attempt is rolled back, then its journalled compensations run (the safety
actor, ``actors/safety.py``); a transient failure then starts a new attempt
on a fresh connection after a jittered backoff, up to the safety level's
retries. A COMMIT whose connection was lost is never replayed blindly: the
run ledger resolves it (``dataflow/_ledger.py``) or it is reported as
:class:`~dataflow.OutcomeUnknownError`. ``docs/safety.md`` is the user's view.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import time
from typing import TYPE_CHECKING, Any

from actors import (
    Backoff,
    CommitOutcomeUnknown,
    CompensationReport,
    ConnectionLost,
    Saga,
    WorkflowActor,
)
from actors._loop import run_coroutine

from . import _telemetry
from ._logging import error_type
from .errors import (
    CompensationFailed,
    OutcomeUnknownError,
    VersionConflictError,
    WorkflowConnectionError,
    WorkflowError,
    WorkflowFailed,
    WorkflowVersionConflict,
)
from .nodes import RunContext

if TYPE_CHECKING:
    from ._engine import DataFlow
    from ._telemetry import Telemetry
    from .workflow import Step, Workflow

__all__ = [
    "AttemptFailed", "Plan", "StepFailure", "after_failure", "attempt", "new_run_id", "plan",
    "resolve_commit", "run_on_connection", "run_sync",
]


Plan = list[tuple["Step", Any, dict[str, Any]]]


def new_run_id() -> str:
    return os.urandom(8).hex()


class StepFailure(Exception):
    """Internal: a critical node failed; carries what is needed to report and compensate."""

    def __init__(self, node_id: str, error: BaseException, results: dict[str, Any], saga: Saga | None = None) -> None:
        super().__init__(node_id)
        self.node_id = node_id
        self.error = error
        self.results = results
        self.saga = saga


class AttemptFailed(Exception):
    """Internal: one attempt failed and was rolled back (or lost its COMMIT); ``kind`` says what follows."""

    #: nothing committed; worth another attempt on a fresh connection
    RETRY = "retry"
    #: nothing committed; running it again would fail the same way
    FAIL = "fail"
    #: the COMMIT may or may not have happened, and nothing can tell: never replayed
    UNKNOWN = "unknown"
    #: the COMMIT may or may not have happened; the run ledger can tell
    RESOLVE = "resolve"

    def __init__(self, kind: str, node_id: str, error: BaseException, results: dict[str, Any]) -> None:
        super().__init__(f"{kind} at {node_id}")
        self.kind = kind
        self.node_id = node_id
        self.error = error
        self.results = results


def plan(workflow: Workflow, parameters: dict[str, Any] | None) -> Plan:
    """Merge runtime ``parameters`` into each step and check them, before any SQL."""
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise WorkflowError(f"parameters must be a dict of node id → dict, got {type(parameters).__name__}")
    for key in parameters:
        if key not in workflow:
            ids = [s.id for s in workflow.steps]
            close = difflib.get_close_matches(str(key), ids, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise WorkflowError(f"parameters name node {key!r}, which is not in the workflow{hint}")
    out: Plan = []
    for step in workflow.steps:
        extra = parameters.get(step.id)
        if extra is None:
            if step.deferred is not None:
                raise step.deferred
            out.append((step, step.prepared, step.params))
            continue
        if not isinstance(extra, dict):
            raise WorkflowError(f"parameters for node {step.id!r} must be a dict")
        merged = {**step.params, **extra}
        partial = bool(step.inputs) or not step.node.is_database
        prepared = step.node.prepare(step.id, merged, partial=partial)
        out.append((step, None if step.inputs else prepared, merged))
    return out


def _lookup(results: dict[str, Any], source: str, path: tuple[str, ...], target: str) -> Any:
    value: Any = results[source]
    for i, key in enumerate(path):
        try:
            if isinstance(value, (list, tuple)):
                value = value[int(key)]
            else:
                value = value[key]
        except (KeyError, IndexError, ValueError, TypeError):
            where = ".".join(path[: i + 1])
            raise WorkflowConnectionError(
                f"node {target!r} needs {source}.{'.'.join(path)}, but node {source!r} returned no {where!r}"
            ) from None
    return value


def _with_inputs(step: Step, params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    merged = dict(params)
    for conn in step.inputs:
        value = _lookup(results, conn.source, conn.source_path, step.id)
        target = merged
        for key in conn.target_path[:-1]:
            inner = target.get(key)
            inner = dict(inner) if isinstance(inner, dict) else {}
            target[key] = inner
            target = inner
        target[conn.target_path[-1]] = value
    return merged


def run_on_connection(
    steps: Plan, conn: Any, run_id: str, node_timeout: float, loop: asyncio.AbstractEventLoop | None,
    results: dict[str, Any], saga: Saga, tenant: str | None = None, tel: Telemetry | None = None,
) -> dict[str, Any]:
    """Run every step in order on ``conn`` (the caller owns the transaction).

    ``results`` fills as it goes; each completed step with a compensation is
    journalled in ``saga`` before its result is stored (acknowledged);
    ``tenant`` is the tenant this run was resolved for (nodes read it from the RunContext).
    ``tel`` is given when the run is observed: each node then gets a span.
    Lines marked ``# [telemetry]`` are removed by ``benchmarks/telemetry_cost.py``
    to measure the code with instrumentation compiled out: keep each one a
    whole statement that the code stays valid without.
    """
    rc = RunContext(conn, run_id, results, tenant)
    for step, prepared, params in steps:
        node = step.node
        mark = tel.node_start(step) if tel is not None else None  # [telemetry]
        try:
            if prepared is None:
                params = _with_inputs(step, params, results)
                prepared = node.prepare(step.id, params, partial=not node.is_database)
            op = node.op
            if op is not None:
                out = op.run(node, rc, prepared)
            else:
                out = _call_user(node.func, node.is_async, prepared, node_timeout, loop)
        except Exception as exc:
            if tel is not None: tel.node_end(mark, None, exc)  # [telemetry]
            if node.critical or node.is_database:
                raise StepFailure(step.id, exc, results, saga) from exc
            node.db.telemetry.log.warning(
                "node_failed", run_id=run_id, tenant_id=tenant, node_id=step.id, node_type=node.name,
                model=node.model.name if node.model is not None else None, error_type=error_type(exc), critical=False,
            )
            results[step.id] = {"failed": True, "error": f"{type(exc).__name__}: {exc}"}
            continue
        if tel is not None: tel.node_end(mark, out)  # [telemetry]
        if node.compensation is not None:
            try:
                saga.record(step.id, node.name, node.compensation, prepared, out)
            except Exception as exc:  # not journalled: the step cannot be acknowledged
                raise StepFailure(step.id, exc, results, saga) from exc
        results[step.id] = out
    return results


def _call_user(func: Any, is_async: bool, params: dict[str, Any], timeout: float,
               loop: asyncio.AbstractEventLoop | None) -> dict[str, Any]:
    if is_async:
        if loop is not None:
            out = asyncio.run_coroutine_threadsafe(func(**params), loop).result(timeout)
        else:
            out = run_coroutine(func(**params), timeout)
    else:
        out = func(**params)
    return out if isinstance(out, dict) else {"result": out}


def _writes(workflow: Workflow) -> bool:
    return any(s.node.op is not None and s.node.op.writes for s in workflow.steps)


def attempt(workflow: Workflow, steps: Plan, run_id: str, saga: Saga, loop: asyncio.AbstractEventLoop | None,
            lease: Any, tenant: str | None = None, tel: Telemetry | None = None) -> dict[str, Any]:
    """Run one attempt on ``lease`` (released here; None for a workflow without database nodes).

    Returns the results, or raises :class:`AttemptFailed` once the attempt's
    database work is rolled back (its compensations have not run yet).
    """
    db = workflow.db
    assert db is not None
    engine = db.engine
    timeout = db.node_timeout
    results: dict[str, Any] = {}
    if lease is None:
        try:
            return run_on_connection(steps, None, run_id, timeout, loop, results, saga, tenant, tel)
        except StepFailure as failure:
            kind = AttemptFailed.RETRY if engine.dialect.is_transient(failure.error) else AttemptFailed.FAIL
            raise AttemptFailed(kind, failure.node_id, failure.error, results) from failure.error
    ledger = db.safety.ledger and _writes(workflow)
    transactional = workflow.transactional or ledger
    ledgered = False

    def body(conn: Any) -> dict[str, Any]:
        nonlocal ledgered
        out = run_on_connection(steps, conn, run_id, timeout, loop, results, saga, tenant, tel)
        # The ledger row commits exactly when the writes do. A durable journal
        # needs it too: it is how recovery knows the run committed.
        if transactional and (ledger or (saga.count and engine.safety.durable)):
            engine.ledger.write(conn, run_id, saga.attempt)
            ledgered = True
        return out

    try:
        try:
            out = WorkflowActor(engine.dialect, lease).run(body, transactional=transactional)
        finally:
            lease.release()
    except Exception as exc:
        raise _classify(workflow, exc, transactional, ledgered, results, saga) from exc
    if ledgered:
        engine.ledger.written()
    return out


def _classify(workflow: Workflow, exc: BaseException, transactional: bool, ledgered: bool,
              results: dict[str, Any], saga: Saga) -> AttemptFailed:
    assert workflow.db is not None
    dialect = workflow.db.engine.dialect
    if isinstance(exc, StepFailure):
        kind = AttemptFailed.RETRY if dialect.is_transient(exc.error) else AttemptFailed.FAIL
        return AttemptFailed(kind, exc.node_id, exc.error, results)
    if isinstance(exc, CommitOutcomeUnknown):
        if ledgered:
            kind = AttemptFailed.RESOLVE
        elif not _writes(workflow) and not saga.count:
            kind = AttemptFailed.RETRY  # nothing to commit: safe to run again
        else:
            kind = AttemptFailed.UNKNOWN
        return AttemptFailed(kind, "(commit)", exc, results)
    if isinstance(exc, ConnectionLost):
        node, cause = "(connection)", exc.__cause__
        if isinstance(cause, StepFailure):
            node = cause.node_id
            if not (dialect.is_disconnect(cause.error) or dialect.is_transient(cause.error)):
                # The node failed for good; only the rollback after it lost the connection.
                return AttemptFailed(AttemptFailed.FAIL, node, cause.error, results)
        if not transactional and _writes(workflow):
            # A lone statement commits by itself: lost, it may have committed.
            return AttemptFailed(AttemptFailed.UNKNOWN, node, exc, results)
        return AttemptFailed(AttemptFailed.RETRY, node, exc, results)  # the server rolls it back
    # BEGIN or COMMIT failed with the connection intact (busy, serialization failure, ...).
    kind = AttemptFailed.RETRY if dialect.is_transient(exc) else AttemptFailed.FAIL
    return AttemptFailed(kind, "(commit)", exc, results)


def resolve_commit(db: DataFlow, failure: AttemptFailed, run_id: str) -> AttemptFailed | None:
    """Ask the run ledger, on a fresh connection, whether a lost COMMIT happened.

    None: it committed (``failure.results`` are the run's results). Else the
    failure to go on with: RETRY (it did not commit) or UNKNOWN (no answer).
    """
    try:
        committed = db.engine.ledger.committed(run_id)
    except Exception as exc:  # noqa: BLE001 - no answer is an answer: the outcome stays unknown
        db.telemetry.log.warning("commit_resolution_failed", run_id=run_id, error_type=type(exc).__name__)
        return AttemptFailed(AttemptFailed.UNKNOWN, failure.node_id, failure.error, failure.results)
    db.telemetry.log.info("commit_resolved", run_id=run_id, committed=committed)
    if committed:
        return None
    return AttemptFailed(AttemptFailed.RETRY, failure.node_id, failure.error, failure.results)


def abandon(saga: Saga) -> CompensationReport:
    """The outcome is unknown: run no compensation, keep durable entries for recovery."""
    saga.forget(journal=False)
    return CompensationReport()


def after_failure(db: DataFlow, failure: AttemptFailed, report: CompensationReport, run_id: str,
                  attempt_no: int, pending: list[str], backoff: Backoff) -> float:
    """Report the attempt's compensations; return the delay before the next attempt, or raise the error."""
    for node_id in report.compensated:
        _telemetry.record_compensation(db, run_id, node_id, True)
    for node_id, exc in report.errors:
        _telemetry.record_compensation(db, run_id, node_id, False, exc)
    if failure.kind == AttemptFailed.RETRY and attempt_no <= db.safety.retries:
        delay = backoff.next_delay()
        _telemetry.record_retry(db, run_id, attempt_no, failure.error, delay)
        return delay
    cause = db.engine.map(failure.error)
    if failure.kind == AttemptFailed.UNKNOWN:
        _telemetry.record_unknown_outcome(db, run_id, failure.error)
        raise OutcomeUnknownError(
            f"workflow run {run_id}: the connection was lost while its COMMIT was in flight, so its writes "
            f"may or may not be in the database ({type(cause).__name__}: {cause}); it was not retried and no "
            "compensation ran" + (f" (pending: {', '.join(pending)})" if pending else ""),
            run_id=run_id, results=dict(failure.results), pending_compensations=pending,
        ) from cause
    raise _failed(failure, run_id, cause, report, attempt_no) from cause


def _failed(failure: AttemptFailed, run_id: str, cause: BaseException, report: CompensationReport,
            attempts: int) -> WorkflowFailed:
    message = f"workflow run {run_id} failed at node {failure.node_id!r}: {type(cause).__name__}: {cause}"
    if attempts > 1:
        message += f" (attempt {attempts}; the earlier ones failed transiently)"
    if report.compensated:
        message += f"; compensated {', '.join(report.compensated)}"
    if report.errors:
        message += "; compensation failed for " + ", ".join(f"{n} ({type(e).__name__}: {e})" for n, e in report.errors)
    message += "; every database write of the workflow was rolled back"
    cls: type[WorkflowFailed] = WorkflowFailed
    if report.errors:
        cls = CompensationFailed
    elif isinstance(cause, VersionConflictError):
        cls = WorkflowVersionConflict
    error = cls(message, node=failure.node_id, run_id=run_id, results=dict(failure.results),
                compensated=list(report.compensated), compensation_errors=list(report.errors), attempts=attempts)
    if isinstance(error, WorkflowVersionConflict) and isinstance(cause, VersionConflictError):
        error.model, error.stale = cause.model, cause.stale
    return error


def run_sync(workflow: Workflow, steps: Plan, run_id: str, loop: asyncio.AbstractEventLoop | None = None,
             lease: Any = None, *, tenant: str | None = None, tel: Telemetry | None = None) -> dict[str, Any]:
    """Run ``steps`` on this thread, retrying transient failures; the first attempt uses ``lease`` if given.

    ``tel`` is given when the run is observed (see :func:`run_on_connection`).
    """
    db = workflow.db
    assert db is not None
    engine = db.engine
    backoff: Backoff | None = None  # made on the first failure: the common path needs none
    attempt_no = 0
    while True:
        attempt_no += 1
        saga = engine.safety.saga(run_id, attempt_no, loop)
        if lease is None and workflow.uses_database:
            if tel is not None: waiting = time.perf_counter()  # [telemetry]
            lease = engine.checkout()
            if tel is not None: tel.waited(time.perf_counter() - waiting)  # [telemetry]
        try:
            results = attempt(workflow, steps, run_id, saga, loop, lease, tenant, tel)
        except AttemptFailed as failure:
            lease = None
            if failure.kind == AttemptFailed.RESOLVE:
                resolved = resolve_commit(db, failure, run_id)
                if resolved is None:
                    saga.forget()
                    return failure.results
                failure = resolved
            pending = list(saga.nodes)
            report = abandon(saga) if failure.kind == AttemptFailed.UNKNOWN else saga.compensate()
            backoff = backoff or Backoff()
            time.sleep(after_failure(db, failure, report, run_id, attempt_no, pending, backoff))
            continue
        saga.forget()
        return results
