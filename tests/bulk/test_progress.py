"""Progress of bulk nodes: the on_progress callback and the bulk_progress / bulk_completed log events."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from structlog.testing import capture_logs

from dataflow import BulkProgress, DataFlow, NodeParameterError, WorkflowBuilder, WorkflowFailed
from tests.bulk.conftest import bulk, items_gen, stored


def test_events_after_each_chunk_and_at_the_end(items: DataFlow) -> None:
    """One event per chunk with growing counts, then a finished one; a list's length is the total."""
    events: list[BulkProgress] = []
    records = list(items_gen(1000))
    bulk(items, "ItemBulkCreateNode", {"records": records, "chunk_size": 300, "on_progress": events.append})
    assert [e.done for e in events] == [300, 600, 900, 1000, 1000]
    assert [e.chunks for e in events] == [1, 2, 3, 4, 4]
    assert [e.finished for e in events] == [False] * 4 + [True]
    last = events[-1]
    assert (last.node_id, last.node_type, last.model, last.operation) == ("bulk", "ItemBulkCreateNode", "Item",
                                                                          "BulkCreate")
    assert all(e.total == 1000 for e in events)
    assert last.elapsed > 0 and last.rate == pytest.approx(1000 / last.elapsed)
    assert last.failed == 0


def test_total_is_unknown_for_a_generator(items: DataFlow) -> None:
    """A generator has no length: total is None, done still counts."""
    events: list[BulkProgress] = []
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(50), "chunk_size": 20, "on_progress": events.append})
    assert {e.total for e in events} == {None}
    assert events[-1].done == 50 and events[-1].finished


def test_failed_records_are_counted(items: DataFlow) -> None:
    """Under continue, the events count failed records too."""
    events: list[BulkProgress] = []
    records: list[Any] = list(items_gen(10))
    records[4] = {"sku": "bad", "name": 5}
    bulk(items, "ItemBulkCreateNode", {"records": records, "chunk_size": 4, "error_strategy": "continue",
                                       "on_progress": events.append})
    assert [(e.done, e.failed) for e in events] == [(4, 0), (8, 1), (10, 1), (10, 1)]


@pytest.mark.parametrize(("node", "params", "done"), [
    ("ItemBulkUpdateNode", {"filter": {"qty": {"$lt": 10}}, "fields": {"note": "x"}}, 10),
    ("ItemBulkDeleteNode", {"filter": {"qty": {"$gte": 15}}}, 5),
    ("ItemBulkUpsertNode", {"records": list(items_gen(30)), "conflict_on": ["sku"], "chunk_size": 12}, 30),
    ("ItemBulkUpdateNode", {"records": [{"id": i, "qty": 0} for i in range(1, 21)], "chunk_size": 8}, 20),
])
def test_every_bulk_node_reports(items: DataFlow, node: str, params: dict[str, Any], done: int) -> None:
    """Update, delete and upsert report progress too; filter forms send one finished event with the count."""
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(20)})
    events: list[BulkProgress] = []
    bulk(items, node, {**params, "on_progress": events.append})
    assert events[-1].finished and events[-1].done == done
    assert events[-1].operation == node.removeprefix("Item").removesuffix("Node")


def test_a_failing_callback_fails_the_node(items: DataFlow) -> None:
    """An exception from on_progress fails the workflow, which then writes nothing."""

    def boom(event: BulkProgress) -> None:
        if event.chunks == 2:
            raise RuntimeError("stop")

    with pytest.raises(WorkflowFailed) as info:
        bulk(items, "ItemBulkCreateNode", {"records": items_gen(100), "chunk_size": 30, "on_progress": boom})
    assert isinstance(info.value.__cause__, RuntimeError)
    assert stored(items) == 0


def test_on_progress_must_be_callable(items: DataFlow) -> None:
    """on_progress that is not callable is refused when the workflow is built."""
    wf = WorkflowBuilder(items)
    wf.add_node("ItemBulkCreateNode", "b", {"records": [], "on_progress": "print"})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert info.value.field == "on_progress"


def test_log_events(items: DataFlow, caplog: pytest.LogCaptureFixture) -> None:
    """bulk_progress is a DEBUG event per chunk, bulk_completed an INFO event; both carry counts, never records."""
    caplog.set_level(logging.DEBUG, logger="dataflow")
    with capture_logs() as captured:
        bulk(items, "ItemBulkCreateNode", {"records": items_gen(100, note="secret-note"), "chunk_size": 40})
    progress = [e for e in captured if e["event"] == "bulk_progress"]
    [done] = [e for e in captured if e["event"] == "bulk_completed"]
    assert [e["done"] for e in progress] == [40, 80, 100]
    assert {e["log_level"] for e in progress} == {"debug"} and done["log_level"] == "info"
    assert (done["done"], done.get("total"), done["chunks"], done["operation"], done["model"]) == (
        100, None, 3, "BulkCreate", "Item")  # None values are left out of events
    assert done["rate"] > 0 and done["node_id"] == "bulk"
    assert "secret-note" not in repr(captured)


def test_no_log_events_below_their_level(items: DataFlow, caplog: pytest.LogCaptureFixture) -> None:
    """At WARNING, a bulk node logs nothing."""
    caplog.set_level(logging.WARNING, logger="dataflow")
    with capture_logs() as captured:
        bulk(items, "ItemBulkCreateNode", {"records": items_gen(100), "chunk_size": 40})
    assert [e for e in captured if e["event"].startswith("bulk_")] == []
