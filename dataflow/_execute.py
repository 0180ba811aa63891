"""Running a built workflow: parameters, connections between nodes, the
transaction on one leased connection, compensations, and the one error."""

from __future__ import annotations

import asyncio
import difflib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors import WorkflowActor
from actors._loop import run_coroutine

from ._logging import error_type
from .errors import DataFlowError, WorkflowConnectionError, WorkflowError, WorkflowFailed
from .nodes import RunContext

if TYPE_CHECKING:
    from ._telemetry import Telemetry
    from .workflow import Step, Workflow

__all__ = ["Plan", "StepFailure", "new_run_id", "plan", "run_on_connection", "run_sync"]

Plan = list[tuple["Step", Any, dict[str, Any]]]
Done = list[tuple[str, Callable[..., Any], dict[str, Any], Any]]


def new_run_id() -> str:
    return os.urandom(8).hex()


class StepFailure(Exception):
    """Internal: a critical node failed; carries what is needed to report and compensate."""

    def __init__(self, node_id: str, error: BaseException, results: dict[str, Any], done: Done) -> None:
        super().__init__(node_id)
        self.node_id = node_id
        self.error = error
        self.results = results
        self.done = done


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
    results: dict[str, Any], done: Done, tenant: str | None = None, tel: Telemetry | None = None,
) -> dict[str, Any]:
    """Run every step in order on ``conn`` (the caller owns the transaction).

    ``results`` and ``done`` (completed steps with a compensation) fill as it goes;
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
            if tel is not None: tel.node_end(mark, None, exc)  # [telemetry]  # noqa: E701
            if node.critical or node.is_database:
                raise StepFailure(step.id, exc, results, done) from exc
            node.db.telemetry.log.warning(
                "node_failed", run_id=run_id, tenant_id=tenant, node_id=step.id, node_type=node.name,
                model=node.model.name if node.model is not None else None, error_type=error_type(exc), critical=False,
            )
            results[step.id] = {"failed": True, "error": f"{type(exc).__name__}: {exc}"}
            continue
        if tel is not None: tel.node_end(mark, out)  # [telemetry]  # noqa: E701
        results[step.id] = out
        if node.compensation is not None:
            done.append((step.id, node.compensation, prepared, out))
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


def compensate(failure: StepFailure, timeout: float, loop: asyncio.AbstractEventLoop | None) -> tuple[list[str], list[tuple[str, BaseException]]]:
    """Run the completed steps' compensations in reverse order, each once; collect failures."""
    ran: list[str] = []
    errors: list[tuple[str, BaseException]] = []
    for node_id, comp, params, result in reversed(failure.done):
        try:
            out = comp(params, result)
            if asyncio.iscoroutine(out):
                if loop is not None:
                    asyncio.run_coroutine_threadsafe(out, loop).result(timeout)
                else:
                    run_coroutine(out, timeout)
            ran.append(node_id)
        except Exception as exc:
            errors.append((node_id, exc))
    return ran, errors


def failed(failure: StepFailure, run_id: str, cause: BaseException, timeout: float,
           loop: asyncio.AbstractEventLoop | None) -> WorkflowFailed:
    """The WorkflowFailed for ``failure``, after compensating (the caller raises it from ``cause``)."""
    ran, comp_errors = compensate(failure, timeout, loop)
    message = f"workflow run {run_id} failed at node {failure.node_id!r}: {type(cause).__name__}: {cause}"
    if ran:
        message += f"; compensated {', '.join(ran)}"
    if comp_errors:
        message += "; compensation failed for " + ", ".join(f"{n} ({type(e).__name__}: {e})" for n, e in comp_errors)
    message += "; every database write of the workflow was rolled back"
    return WorkflowFailed(message, node=failure.node_id, run_id=run_id, results=dict(failure.results),
                          compensated=ran, compensation_errors=comp_errors)


def run_sync(workflow: Workflow, steps: Plan, run_id: str, loop: asyncio.AbstractEventLoop | None = None,
             lease: Any = None, *, tenant: str | None = None, tel: Telemetry | None = None) -> dict[str, Any]:
    """Run ``steps`` on this thread: on ``lease`` if given, else on a newly leased connection.

    ``tel`` is given when the run is observed (see :func:`run_on_connection`).
    """
    db = workflow.db
    assert db is not None
    engine = db.engine
    timeout = db.node_timeout
    results: dict[str, Any] = {}
    done: Done = []
    if not workflow.uses_database:
        try:
            return run_on_connection(steps, None, run_id, timeout, loop, results, done, tenant, tel)
        except StepFailure as failure:
            raise failed(failure, run_id, failure.error, timeout, loop) from failure.error
    if lease is None:
        if tel is not None: waiting = time.perf_counter()  # [telemetry]  # noqa: E701
        lease = engine.checkout()
        if tel is not None: tel.waited(time.perf_counter() - waiting)  # [telemetry]  # noqa: E701
    try:
        try:
            return WorkflowActor(engine.dialect, lease).run(
                lambda conn: run_on_connection(steps, conn, run_id, timeout, loop, results, done, tenant, tel),
                transactional=workflow.transactional,
            )
        finally:
            lease.release()
    except StepFailure as failure:
        cause = engine.map(failure.error)
        raise failed(failure, run_id, cause, timeout, loop) from cause
    except Exception as exc:  # the commit itself failed, or the connection was lost
        cause = engine.map(exc)
        failure = StepFailure("(commit)", cause, results, done)
        raise failed(failure, run_id, cause, timeout, loop) from cause
