"""Workflows: connections, build-time checks, order, parameters, atomicity, user nodes, async."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from dataflow import (
    AsyncLocalRuntime,
    DataFlow,
    DataFlowError,
    IntegrityError,
    LocalRuntime,
    NotFoundError,
    UnknownNodeError,
    WorkflowBuilder,
    WorkflowConnectionError,
    WorkflowError,
    WorkflowFailed,
)
from tests.integration.helpers import count, list_records, run_node, run_wf


@pytest.fixture
def shop(db: DataFlow) -> DataFlow:
    """``db`` with Order and OrderLine models (unique order number)."""

    @db.model
    class Order:
        number: str
        customer_id: int
        total: float = 0.0
        note: str | None = None
        __indexes__ = [{"name": "idx_order_number", "fields": ["number"], "unique": True}]  # noqa: RUF012

    @db.model
    class OrderLine:
        order_id: int
        sku: str
        qty: int

    return db


# -- connections ----------------------------------------------------------------------------------


def test_connection_feeds_an_id_into_a_new_record(shop: DataFlow) -> None:
    """The NODES.md example: the order's id flows into the line's order_id; runtime parameters merge in."""
    wf = WorkflowBuilder()
    wf.add_node("OrderCreateNode", "order", {"number": "A1", "customer_id": 7})
    wf.add_node("OrderLineCreateNode", "line", {"sku": "pen", "qty": 2})
    wf.add_connection("order", "id", "line", "order_id")
    results, run_id = LocalRuntime().execute(wf.build(), parameters={"order": {"total": 3.0}})
    assert isinstance(run_id, str) and run_id
    assert results["line"]["order_id"] == results["order"]["id"]
    assert run_node(shop, "OrderReadNode", {"id": results["order"]["id"]})["total"] == 3.0
    assert count(shop, "OrderLine", {"order_id": results["order"]["id"]}) == 1


def test_dotted_paths_on_both_sides(shop: DataFlow) -> None:
    """"records.0.id" from a List feeds "filter.id" of an Update."""
    run_node(shop, "OrderBulkCreateNode", {"records": [
        {"number": "B1", "customer_id": 1}, {"number": "B2", "customer_id": 2}]})
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderListNode", "find", {"filter": {"number": "B2"}})
    wf.add_node("OrderUpdateNode", "mark", {"fields": {"note": "found"}})
    wf.add_connection("find", "records.0.id", "mark", "filter.id")
    results = run_wf(wf)
    assert results["mark"]["rows_affected"] == 1
    assert [r["number"] for r in list_records(shop, "Order", filter={"note": "found"})] == ["B2"]


def test_unknown_source_output_is_rejected_at_build(shop: DataFlow) -> None:
    """A connection from an output the source node never returns fails build(), naming both nodes."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "C1", "customer_id": 1})
    wf.add_node("OrderLineCreateNode", "line", {"sku": "x", "qty": 1})
    wf.add_connection("order", "order_identifier", "line", "order_id")
    with pytest.raises(WorkflowConnectionError) as info:
        wf.build()
    assert "order" in str(info.value) and "line" in str(info.value) and "order_identifier" in str(info.value)
    assert count(shop, "Order") == 0


def test_unknown_connection_node_is_rejected_at_build(shop: DataFlow) -> None:
    """A connection naming a node that is not in the workflow fails build()."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "C1", "customer_id": 1})
    wf.add_connection("ghost", "id", "order", "customer_id")
    with pytest.raises(WorkflowConnectionError, match="ghost"):
        wf.build()


def test_missing_output_at_run_fails_and_writes_nothing(shop: DataFlow) -> None:
    """A dotted path that is absent at run time fails the workflow naming both nodes, rolling back earlier writes."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "first", {"number": "D1", "customer_id": 1})
    wf.add_node("OrderListNode", "find", {"filter": {"number": "nope"}})
    wf.add_node("OrderUpdateNode", "mark", {"fields": {"note": "x"}})
    wf.add_connection("find", "records.0.id", "mark", "filter.id")
    with pytest.raises(WorkflowFailed) as info:
        run_wf(wf)
    assert info.value.node == "mark"
    assert isinstance(info.value.__cause__, WorkflowConnectionError)
    assert "find" in str(info.value) and "records.0" in str(info.value)
    assert count(shop, "Order") == 0


def test_unknown_node_type_suggests_the_closest_name(shop: DataFlow) -> None:
    """A misspelt node type fails build() with UnknownNodeError suggesting the right name."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreatNode", "order", {"number": "E1", "customer_id": 1})
    with pytest.raises(UnknownNodeError) as info:
        wf.build()
    assert "OrderCreateNode" in info.value.suggestions
    assert "OrderCreateNode" in str(info.value) and "order" in str(info.value)


def test_cycles_are_rejected(shop: DataFlow) -> None:
    """Connections that form a cycle fail build(), naming the nodes in it."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderReadNode", "a", {"id": 1})
    wf.add_node("OrderReadNode", "b", {"id": 1})
    wf.add_node("OrderReadNode", "c", {"id": 1})
    wf.add_connection("a", "id", "b", "id")
    wf.add_connection("b", "id", "c", "id")
    wf.add_connection("c", "id", "a", "id")
    with pytest.raises(WorkflowConnectionError, match="cycle") as info:
        wf.build()
    assert all(n in str(info.value) for n in ("a", "b", "c"))


def test_dependency_order_wins_over_insertion_order(db: DataFlow) -> None:
    """Nodes run after the nodes they depend on; independent nodes run in the order added."""
    ran: list[str] = []

    def step(name: str, value: int = 0) -> dict[str, Any]:
        ran.append(name)
        return {"value": value + 1}

    db.register_node("Step", step)
    wf = WorkflowBuilder(db)
    wf.add_node("Step", "late", {"name": "late"})
    wf.add_node("Step", "free1", {"name": "free1"})
    wf.add_node("Step", "early", {"name": "early"})
    wf.add_node("Step", "free2", {"name": "free2"})
    wf.add_connection("early", "value", "late", "value")
    results = run_wf(wf)
    assert ran == ["free1", "early", "late", "free2"]
    assert results["late"]["value"] == 2


# -- parameters -----------------------------------------------------------------------------------


def test_runtime_parameters_override_and_complete(shop: DataFlow) -> None:
    """Runtime parameters override build-time ones and may supply a required field left out at build."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "F1", "total": 1.0})  # customer_id comes at run time
    built = wf.build()
    results, _ = LocalRuntime().execute(built, parameters={"order": {"customer_id": 9, "total": 5.0}})
    stored = run_node(shop, "OrderReadNode", {"id": results["order"]["id"]})
    assert (stored["customer_id"], stored["total"], stored["number"]) == (9, 5.0, "F1")
    results, _ = LocalRuntime().execute(built, parameters={"order": {"customer_id": 10, "number": "F2"}})
    assert count(shop, "Order") == 2 and count(shop, "Order", {"total": 1.0, "number": "F2"}) == 1


def test_unknown_node_id_in_parameters_is_rejected(shop: DataFlow) -> None:
    """Runtime parameters for a node id that is not in the workflow are refused before anything runs."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "G1", "customer_id": 1})
    with pytest.raises(WorkflowError, match="ordr"):
        LocalRuntime().execute(wf.build(), parameters={"ordr": {"total": 1.0}})
    assert count(shop, "Order") == 0


# -- atomicity and the one error -------------------------------------------------------------------


def test_failing_third_node_leaves_nothing(shop: DataFlow) -> None:
    """When the third node fails, the rows written by the first two are rolled back."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "one", {"number": "H1", "customer_id": 1})
    wf.add_node("OrderLineCreateNode", "two", {"sku": "a", "qty": 1})
    wf.add_node("OrderCreateNode", "three", {"number": "H1", "customer_id": 2})  # duplicate number
    wf.add_connection("one", "id", "two", "order_id")
    with pytest.raises(WorkflowFailed) as info:
        run_wf(wf)
    err = info.value
    assert err.node == "three" and "three" in str(err)
    assert isinstance(err.__cause__, IntegrityError)
    assert isinstance(err, DataFlowError)
    assert count(shop, "Order") == 0 and count(shop, "OrderLine") == 0


def test_failing_node_after_bulk_and_update_rolls_everything_back(shop: DataFlow) -> None:
    """A bulk insert and an update of pre-existing rows are both undone when a later node fails."""
    run_node(shop, "OrderCreateNode", {"number": "I0", "customer_id": 1, "total": 1.0})
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderBulkCreateNode", "bulk", {"records": [{"number": f"I{i}", "customer_id": 1} for i in range(1, 50)]})
    wf.add_node("OrderBulkUpdateNode", "touch", {"filter": {"customer_id": 1}, "fields": {"total": 99.0}})
    wf.add_node("OrderReadNode", "boom", {"id": 10**9})
    with pytest.raises(WorkflowFailed) as info:
        run_wf(wf)
    assert info.value.node == "boom" and isinstance(info.value.__cause__, NotFoundError)
    assert count(shop, "Order") == 1 and count(shop, "Order", {"total": 99.0}) == 0


# -- user nodes -----------------------------------------------------------------------------------


def test_sync_and_async_user_nodes(shop: DataFlow) -> None:
    """A sync and an async function registered as nodes run with their parameters and feed DB nodes."""

    def pick_customer(base: int) -> dict[str, Any]:
        return {"customer_id": base * 2}

    async def pick_number(prefix: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"number": prefix + "-async"}

    shop.register_node("PickCustomer", pick_customer)
    shop.register_node("PickNumber", pick_number)
    wf = WorkflowBuilder(shop)
    wf.add_node("PickCustomer", "cust", {"base": 21})
    wf.add_node("PickNumber", "num", {"prefix": "J"})
    wf.add_node("OrderCreateNode", "order", {})
    wf.add_connection("cust", "customer_id", "order", "customer_id")
    wf.add_connection("num", "number", "order", "number")
    results = run_wf(wf)
    assert results["cust"] == {"customer_id": 42} and results["num"] == {"number": "J-async"}
    assert count(shop, "Order", {"customer_id": 42, "number": "J-async"}) == 1


def test_compensations_run_in_reverse_when_a_later_node_fails(shop: DataFlow) -> None:
    """When a later node fails, completed steps' compensations run once each, newest first, and no row stays."""
    log: list[str] = []

    def charge(amount: float) -> dict[str, Any]:
        log.append(f"charge {amount}")
        return {"charged": amount}

    async def email(to: str) -> dict[str, Any]:
        log.append(f"email {to}")
        return {"sent": to}

    def refund(params: dict[str, Any], result: dict[str, Any]) -> None:
        log.append(f"refund {result['charged']}")

    async def unsend(params: dict[str, Any], result: dict[str, Any]) -> None:
        log.append(f"unsend {params['to']}")

    shop.register_node("Charge", charge, compensation=refund)
    shop.register_node("Email", email, compensation=unsend)
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "K1", "customer_id": 1})
    wf.add_node("Charge", "pay", {"amount": 9.5})
    wf.add_node("Email", "mail", {"to": "a@x.io"})
    wf.add_node("OrderCreateNode", "dup", {"number": "K1", "customer_id": 1})
    with pytest.raises(WorkflowFailed) as info:
        run_wf(wf)
    assert log == ["charge 9.5", "email a@x.io", "unsend a@x.io", "refund 9.5"]
    assert info.value.node == "dup" and info.value.compensated == ["mail", "pay"]
    assert count(shop, "Order") == 0


def test_compensations_do_not_run_on_success(shop: DataFlow) -> None:
    """A workflow that succeeds runs no compensation and commits its rows."""
    log: list[str] = []
    shop.register_node("Charge", lambda amount: {"charged": amount},
                       compensation=lambda p, r: log.append("refund"))
    wf = WorkflowBuilder(shop)
    wf.add_node("Charge", "pay", {"amount": 1.0})
    wf.add_node("OrderCreateNode", "order", {"number": "L1", "customer_id": 1})
    run_wf(wf)
    assert log == [] and count(shop, "Order") == 1


def test_non_critical_failure_is_recorded_and_workflow_completes(shop: DataFlow) -> None:
    """A critical=False node that raises is recorded in the results and the other writes commit."""

    def flaky(**_: Any) -> dict[str, Any]:
        raise RuntimeError("smtp down")

    shop.register_node("Notify", flaky, critical=False)
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "M1", "customer_id": 1})
    wf.add_node("Notify", "notify", {})
    wf.add_node("OrderCreateNode", "after", {"number": "M2", "customer_id": 1})
    results = run_wf(wf)
    assert results["notify"]["failed"] is True and "smtp down" in results["notify"]["error"]
    assert count(shop, "Order") == 2


def test_critical_user_node_failure_chains_its_error(shop: DataFlow) -> None:
    """A critical user node that raises fails the workflow with its exception as the cause."""

    def boom() -> dict[str, Any]:
        raise ValueError("card declined")

    shop.register_node("Pay", boom)
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "N1", "customer_id": 1})
    wf.add_node("Pay", "pay", {})
    with pytest.raises(WorkflowFailed) as info:
        run_wf(wf)
    assert info.value.node == "pay" and isinstance(info.value.__cause__, ValueError)
    assert "card declined" in str(info.value)
    assert count(shop, "Order") == 0


# -- runtimes -------------------------------------------------------------------------------------


def test_execute_async_many_concurrent_workflows_do_not_block_the_loop(shop: DataFlow) -> None:
    """Many workflows under asyncio.gather all commit while a ticker on the same loop keeps ticking."""
    shop.register_node("Slow", lambda **_: time.sleep(0.02) or {"ok": True})
    n = 30

    def workflow(i: int) -> Any:
        wf = WorkflowBuilder(shop)
        wf.add_node("OrderCreateNode", "order", {"number": f"P{i}", "customer_id": i})
        wf.add_node("Slow", "slow", {})
        wf.add_node("OrderLineCreateNode", "line", {"sku": "s", "qty": i})
        wf.add_connection("order", "id", "line", "order_id")
        return wf.build()

    async def main() -> tuple[list[Any], float, int]:
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        runtime = AsyncLocalRuntime()
        out = await asyncio.gather(*(runtime.execute_async(workflow(i)) for i in range(n)))
        stop.set()
        await task
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        return out, max(gaps), len(ticks)

    out, worst_gap, ticks = asyncio.run(asyncio.wait_for(main(), 60))
    assert len({run_id for _, run_id in out}) == n
    assert all(res["line"]["order_id"] == res["order"]["id"] for res, _ in out)
    assert count(shop, "Order") == n and count(shop, "OrderLine") == n
    # Each workflow sleeps 20 ms in a sync node; on the loop thread that would stall the ticker for 600 ms.
    assert ticks >= 10 and worst_gap < 0.25, (ticks, worst_gap)


def test_execute_async_failure_raises_workflow_failed(shop: DataFlow) -> None:
    """execute_async raises the same WorkflowFailed and rolls back like execute."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "one", {"number": "Q1", "customer_id": 1})
    wf.add_node("OrderCreateNode", "two", {"number": "Q1", "customer_id": 1})
    built = wf.build()
    with pytest.raises(WorkflowFailed) as info:
        asyncio.run(AsyncLocalRuntime().execute_async(built))
    assert info.value.node == "two" and isinstance(info.value.__cause__, IntegrityError)
    assert count(shop, "Order") == 0


def test_sync_execute_inside_a_running_loop_is_a_clear_error(shop: DataFlow) -> None:
    """LocalRuntime.execute inside a running event loop raises, pointing at AsyncLocalRuntime, and writes nothing."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "R1", "customer_id": 1})
    built = wf.build()

    async def main() -> None:
        LocalRuntime().execute(built)

    with pytest.raises(WorkflowError, match="AsyncLocalRuntime"):
        asyncio.run(main())
    assert count(shop, "Order") == 0


def test_execute_without_build_is_a_clear_error(shop: DataFlow) -> None:
    """Passing the builder instead of a built workflow raises an error telling the caller to build()."""
    wf = WorkflowBuilder(shop)
    wf.add_node("OrderCreateNode", "order", {"number": "S1", "customer_id": 1})
    with pytest.raises(WorkflowError, match=r"build\(\)"):
        LocalRuntime().execute(wf)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match=r"build\(\)"):
        asyncio.run(AsyncLocalRuntime().execute_async(wf))  # type: ignore[arg-type]
    assert count(shop, "Order") == 0
