"""``LocalRuntime`` and ``AsyncLocalRuntime``: thin facades that run built workflows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors import Backoff, CompensationReport, Saga

from . import _execute
from ._tenant import resolve_tenant
from .errors import EngineError, WorkflowError
from .workflow import Workflow, WorkflowBuilder

__all__ = ["AsyncLocalRuntime", "LocalRuntime"]


def _check(workflow: Any, tenant_id: Any) -> tuple[Workflow, str | None]:
    """The workflow and the tenant it runs for (resolved here, once, on the caller's context)."""
    if isinstance(workflow, WorkflowBuilder):
        raise WorkflowError("execute() takes a built workflow: call workflow.build() first")
    if not isinstance(workflow, Workflow):
        raise WorkflowError(f"execute() takes a built Workflow, got {type(workflow).__name__}")
    db = workflow.db
    if db is None or db.closed:
        raise EngineError("the workflow's DataFlow instance is closed")
    needed = [s.id for s in workflow.steps if s.node.model is not None and s.node.model.multi_tenant]
    what = f"node {needed[0]!r}" if needed else "the workflow"
    tenant = resolve_tenant(db.tenant_context, tenant_id, bool(needed), what)
    return workflow, tenant


class LocalRuntime:
    """Runs a workflow on the calling thread and returns ``(results, run_id)``.

    The thread leases one connection for the whole workflow, so a workflow
    costs no thread hand-off (``docs/adr/0001-one-hop-budget.md``).
    """

    def execute(
        self, workflow: Workflow, parameters: dict[str, Any] | None = None, *, tenant_id: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """Run ``workflow``; raise :class:`~dataflow.WorkflowFailed` if a node fails.

        Inside a running event loop this raises instead of blocking it: use
        :class:`AsyncLocalRuntime` there.
        """
        if asyncio._get_running_loop() is not None:
            raise WorkflowError(
                "LocalRuntime.execute() was called inside a running event loop, where it would block it; "
                "use 'await AsyncLocalRuntime().execute_async(...)'"
            )
        wf, tenant = _check(workflow, tenant_id)
        steps = _execute.plan(wf, parameters)
        run_id = _execute.new_run_id()
        db = wf.db
        assert db is not None
        # Lines marked [telemetry]: see _execute.run_on_connection.
        tel = db.telemetry.for_run()  # [telemetry]
        if tel is not None: return tel.run(wf, run_id, tenant, lambda: _execute.run_sync(wf, steps, run_id, tenant=tenant, tel=tel)), run_id  # [telemetry]
        try:
            return _execute.run_sync(wf, steps, run_id, tenant=tenant), run_id
        except Exception as exc:
            db.telemetry.workflow_failed(exc, run_id, tenant)
            raise


class AsyncLocalRuntime:
    """Runs a workflow for asyncio code without blocking the event loop.

    The lease is awaited (no thread waits for it) and the workflow runs on
    the leased connection's actor thread, which resolves this loop's future.
    """

    async def execute_async(
        self, workflow: Workflow, parameters: dict[str, Any] | None = None, *, tenant_id: str | None = None
    ) -> tuple[dict[str, Any], str]:
        wf, tenant = _check(workflow, tenant_id)
        steps = _execute.plan(wf, parameters)
        run_id = _execute.new_run_id()
        db = wf.db
        assert db is not None
        tel = db.telemetry.for_run()  # [telemetry]
        if tel is not None: return await tel.run_async(wf, run_id, tenant, _run_async(wf, steps, run_id, tenant, tel)), run_id  # [telemetry]
        try:
            return await _run_async(wf, steps, run_id, tenant), run_id
        except Exception as exc:
            db.telemetry.workflow_failed(exc, run_id, tenant)
            raise

    execute = execute_async


async def _run_async(wf: Workflow, steps: _execute.Plan, run_id: str, tenant: str | None, tel: Any = None) -> dict[str, Any]:
    """Run a workflow for the running loop, retrying transient failures like ``_execute.run_sync``.

    Each attempt runs on a worker thread if it needs no database, else on the
    leased connection's actor thread; leases, compensations, backoff and the
    commit probe are awaited, never waited for on a thread the loop needs.
    """
    db = wf.db
    assert db is not None
    loop = asyncio.get_running_loop()
    backoff: Backoff | None = None  # made on the first failure: the common path needs none
    attempt_no = 0
    while True:
        attempt_no += 1
        saga = db.engine.safety.saga(run_id, attempt_no, loop)
        try:
            results = await _attempt_async(wf, steps, run_id, saga, loop, tenant, tel)
        except _execute.AttemptFailed as failure:
            if failure.kind == _execute.AttemptFailed.RESOLVE:
                resolved = await asyncio.to_thread(_execute.resolve_commit, db, failure, run_id)
                if resolved is None:
                    saga.forget()
                    return failure.results
                failure = resolved
            pending = list(saga.nodes)
            if failure.kind == _execute.AttemptFailed.UNKNOWN:
                report = _execute.abandon(saga)
            else:
                report = await _compensate(saga, loop, db.node_timeout)
            backoff = backoff or Backoff()
            await asyncio.sleep(_execute.after_failure(db, failure, report, run_id, attempt_no, pending, backoff))
            continue
        saga.forget()
        return results


async def _attempt_async(wf: Workflow, steps: _execute.Plan, run_id: str, saga: Saga,
                         loop: asyncio.AbstractEventLoop, tenant: str | None, tel: Any) -> dict[str, Any]:
    db = wf.db
    assert db is not None
    if not wf.uses_database:
        return await asyncio.to_thread(_execute.attempt, wf, steps, run_id, saga, loop, None, tenant, tel)
    if tel is not None: waiting = time.perf_counter()  # [telemetry]
    lease = await _lease(db, loop)
    if tel is not None: tel.waited(time.perf_counter() - waiting)  # [telemetry]
    done: asyncio.Future[dict[str, Any]] = loop.create_future()

    def reply(result: Any, error: BaseException | None) -> None:
        # Runs on the actor thread.
        loop.call_soon_threadsafe(_settle, done, result, error)

    def body(conn: Any) -> dict[str, Any]:
        # Runs on the actor thread.
        return _execute.attempt(wf, steps, run_id, saga, loop, lease, tenant, tel)

    work = body
    if tel is not None: work = tel.carry(body)  # [telemetry]
    try:
        lease.submit(work, reply)
    except BaseException as exc:
        lease.release()
        raise db.engine.map(exc) from exc
    return await done


async def _compensate(saga: Saga, loop: asyncio.AbstractEventLoop, timeout: float) -> CompensationReport:
    """The attempt's compensations, run by the safety actor while this loop stays free."""
    bound = saga.count * timeout + 5.0
    done: asyncio.Future[CompensationReport] = loop.create_future()

    def reply(report: CompensationReport) -> None:
        # Runs on the safety actor's thread.
        loop.call_soon_threadsafe(_settle, done, report, None)

    saga.compensate_then(reply)
    try:
        return await asyncio.wait_for(done, bound)
    except TimeoutError as exc:
        return CompensationReport((), (("*", exc),))


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _lease(db: Any, loop: asyncio.AbstractEventLoop) -> Any:
    got: asyncio.Future[Any] = loop.create_future()

    def deliver(lease: Any, error: BaseException | None) -> None:
        # Runs with the supervisor's lock held, on whichever thread freed a connection.
        loop.call_soon_threadsafe(_hand, got, lease, error)

    withdraw = db.engine.checkout_callback(deliver)
    timeout = db.engine.supervisor.policy.checkout_timeout
    try:
        return await asyncio.wait_for(asyncio.shield(got), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        if not withdraw():
            # Served while we gave up: hand the lease straight back.
            got.add_done_callback(lambda f: f.result().release() if not f.exception() else None)
        if isinstance(exc, TimeoutError):
            from actors import CheckoutTimeout

            raise db.engine.map(CheckoutTimeout(f"no connection free within {timeout:g}s")) from None
        raise
    except BaseException as exc:
        raise db.engine.map(exc) from exc


def _hand(future: asyncio.Future[Any], lease: Any, error: BaseException | None) -> None:
    if future.done():
        if lease is not None:
            lease.release()
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(lease)
