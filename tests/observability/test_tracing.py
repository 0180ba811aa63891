"""Spans: one per workflow, per node and per database operation, in one tree across threads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dataflow import AsyncLocalRuntime, DataFlow, LocalRuntime, WorkflowBuilder, WorkflowFailed

from .conftest import SECRET, add_customer, create_read

SYSTEMS = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mysql"}


def by_name(spans: Any) -> dict[str, Any]:
    return {s.name: s for s in spans}


def parent_id(span: Any) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def check_tree(spans: Any, db: DataFlow) -> None:
    """workflow → two node spans → their INSERT / SELECT client spans; transaction spans under the workflow."""
    named = by_name(spans)
    workflow = named["dataflow.workflow"]
    create, read = named["CustomerCreateNode"], named["CustomerReadNode"]
    insert, select = named["INSERT customers"], named["SELECT customers"]
    assert parent_id(create) == parent_id(read) == workflow.context.span_id
    assert parent_id(insert) == create.context.span_id
    assert parent_id(select) == read.context.span_id
    assert parent_id(named["COMMIT"]) == workflow.context.span_id
    assert len({s.context.trace_id for s in spans}) == 1
    assert insert.kind is SpanKind.CLIENT and create.kind is SpanKind.INTERNAL
    assert insert.attributes["db.system.name"] == SYSTEMS[db.url.backend]


def test_span_names_and_attributes(observed_db: DataFlow, span_exporter: InMemorySpanExporter) -> None:
    """A create + read workflow yields the workflow, node and CLIENT spans with the database conventions."""
    add_customer(observed_db)
    span_exporter.clear()
    _, run_id = LocalRuntime().execute(create_read())
    spans = span_exporter.get_finished_spans()
    check_tree(spans, observed_db)
    named = by_name(spans)
    assert named["dataflow.workflow"].attributes["dataflow.run_id"] == run_id
    assert named["CustomerCreateNode"].attributes["dataflow.node.id"] == "create"
    assert named["CustomerCreateNode"].attributes["dataflow.model"] == "Customer"
    insert = named["INSERT customers"].attributes
    assert insert["db.operation.name"] == "INSERT"
    assert insert["db.collection.name"] == "customers"
    assert insert["db.query.summary"] == "INSERT customers"
    assert insert["db.query.text"].startswith("INSERT INTO")
    if observed_db.url.database and observed_db.url.backend != "sqlite":
        assert insert["db.namespace"] == observed_db.url.database
    for span in spans:
        assert SECRET not in repr(dict(span.attributes or {}))


def test_async_runtime_spans_form_one_tree_across_threads(
    observed_db: DataFlow, span_exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    """Under AsyncLocalRuntime the statements run on the connection actor's thread, yet the caller's span is the root."""
    add_customer(observed_db)
    span_exporter.clear()
    tracer = tracer_provider.get_tracer("test")

    async def main() -> None:
        with tracer.start_as_current_span("request"):
            await AsyncLocalRuntime().execute_async(create_read())

    asyncio.run(main())
    spans = span_exporter.get_finished_spans()
    check_tree(spans, observed_db)
    named = by_name(spans)
    assert parent_id(named["dataflow.workflow"]) == named["request"].context.span_id


def test_sync_runtime_span_is_a_child_of_the_callers_span(
    observed_db: DataFlow, span_exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    """Under LocalRuntime the workflow span is a child of the span current on the calling thread."""
    add_customer(observed_db)
    span_exporter.clear()
    with tracer_provider.get_tracer("test").start_as_current_span("request"):
        LocalRuntime().execute(create_read())
    named = by_name(span_exporter.get_finished_spans())
    assert parent_id(named["dataflow.workflow"]) == named["request"].context.span_id


def test_failing_node_sets_error_status(make_db: Any, span_exporter: InMemorySpanExporter) -> None:
    """A failing user node marks its span and the workflow span ERROR with error.type, never the message."""
    db = make_db(traced=True)

    def boom(**params: Any) -> dict[str, Any]:
        raise ValueError(f"rejected {SECRET}")

    db.register_node("Boom", boom)
    wf = WorkflowBuilder()
    wf.add_node("Boom", "charge", {})
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(wf.build())
    named = by_name(span_exporter.get_finished_spans())
    node, workflow = named["Boom"], named["dataflow.workflow"]
    assert node.status.status_code is StatusCode.ERROR
    assert node.attributes["error.type"] == "ValueError"
    assert workflow.status.status_code is StatusCode.ERROR
    assert workflow.attributes["error.type"] == "ValueError"
    assert workflow.attributes["dataflow.node.id"] == "charge"
    for span in named.values():
        assert SECRET not in repr(span.status.description) + repr(dict(span.attributes or {}))
        assert not span.events


def test_failing_statement_sets_error_status(observed_db: DataFlow, span_exporter: InMemorySpanExporter) -> None:
    """A unique violation marks the INSERT span ERROR with the driver's error type."""
    add_customer(observed_db)
    LocalRuntime().execute(create_read())
    span_exporter.clear()
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(create_read())
    named = by_name(span_exporter.get_finished_spans())
    insert = named["INSERT customers"]
    assert insert.status.status_code is StatusCode.ERROR
    # The driver's own class (sqlite3.IntegrityError, psycopg.errors.UniqueViolation, ...)
    assert insert.attributes["error.type"].split(".")[-1] in ("IntegrityError", "UniqueViolation")
    assert named["dataflow.workflow"].attributes["error.type"] == "IntegrityError"
    assert SECRET not in repr(insert.status.description) + repr(dict(insert.attributes))


def test_bulk_insert_span_has_batch_size(observed_db: DataFlow, span_exporter: InMemorySpanExporter) -> None:
    """A bulk create is one BATCH span carrying db.operation.batch.size."""
    add_customer(observed_db)
    span_exporter.clear()
    wf = WorkflowBuilder()
    records = [{"name": f"c{i}", "email": f"c{i}@example.com"} for i in range(5)]
    wf.add_node("CustomerBulkCreateNode", "load", {"records": records})
    LocalRuntime().execute(wf.build())
    batch = [s for s in span_exporter.get_finished_spans() if s.attributes.get("db.operation.batch.size")]
    assert len(batch) == 1
    assert batch[0].attributes["db.operation.batch.size"] == 5
    assert batch[0].attributes["db.operation.name"].startswith("BATCH ")
    assert by_name(span_exporter.get_finished_spans())["CustomerBulkCreateNode"].attributes["dataflow.bulk.rows"] == 5


def test_no_provider_means_no_hooks(memdb: DataFlow, span_exporter: InMemorySpanExporter) -> None:
    """With nothing configured the run takes the uninstrumented path: no hook on the dialect, no telemetry per run."""
    add_customer(memdb)
    LocalRuntime().execute(create_read())
    assert memdb.telemetry.for_run() is None
    assert "execute" not in vars(memdb.dialect)
    assert span_exporter.get_finished_spans() == ()


def test_a_global_provider_set_later_is_adopted(
    memdb: DataFlow, tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A global tracer provider set after the DataFlow was made is picked up by the next workflow."""
    import opentelemetry.trace as otel_trace

    add_customer(memdb)
    assert memdb.telemetry.for_run() is None
    # Isolated: the private global is restored by monkeypatch, and set_tracer_provider's
    # set-once latch is never touched.
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", tracer_provider)
    LocalRuntime().execute(create_read())
    assert "dataflow.workflow" in by_name(span_exporter.get_finished_spans())
