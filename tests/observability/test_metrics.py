"""Metrics from an in-memory reader: operation durations, pool, workflows, bulk rows, safety hooks."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from dataflow import DataFlow, LocalRuntime, PoolTimeoutError, WorkflowBuilder, WorkflowFailed
from dataflow._telemetry import (
    DB_DURATION_BUCKETS,
    record_compensation,
    record_retry,
    record_unknown_outcome,
)

from .conftest import add_customer, create_read, metric_points


def test_operation_duration_histogram(observed_db: DataFlow, metric_reader: InMemoryMetricReader) -> None:
    """db.client.operation.duration has the conventions' buckets and one point per operation and table."""
    add_customer(observed_db)
    LocalRuntime().execute(create_read())
    points = metric_points(metric_reader)["db.client.operation.duration"]
    [insert] = [p for p in points if p.attributes.get("db.query.summary") == "INSERT customers"]
    assert insert.count == 1
    assert tuple(insert.explicit_bounds) == DB_DURATION_BUCKETS
    assert insert.attributes["db.operation.name"] == "INSERT"
    assert insert.attributes["db.collection.name"] == "customers"
    assert insert.attributes["db.system.name"] == observed_db.url.backend
    assert any(p.attributes.get("db.query.summary") == "SELECT customers" for p in points)


def test_failed_operation_carries_error_type(observed_db: DataFlow, metric_reader: InMemoryMetricReader) -> None:
    """A failed statement is recorded with error.type."""
    add_customer(observed_db)
    LocalRuntime().execute(create_read())
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(create_read())
    points = metric_points(metric_reader)["db.client.operation.duration"]
    assert [p for p in points if p.attributes.get("db.query.summary") == "INSERT customers" and "error.type" in p.attributes]


def test_workflow_counts_and_durations_by_outcome(make_db: Any, metric_reader: InMemoryMetricReader) -> None:
    """dataflow.workflow.runs and .duration count successes and failures apart."""
    db = make_db(traced=True)
    add_customer(db)
    LocalRuntime().execute(create_read("a@example.com"))
    LocalRuntime().execute(create_read("b@example.com"))
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(create_read("a@example.com"))
    points = metric_points(metric_reader)
    runs = {p.attributes["dataflow.workflow.outcome"]: p.value for p in points["dataflow.workflow.runs"]}
    assert runs == {"success": 2, "failure": 1}
    durations = {p.attributes["dataflow.workflow.outcome"]: p.count for p in points["dataflow.workflow.duration"]}
    assert durations == {"success": 2, "failure": 1}
    [failure] = [p for p in points["dataflow.workflow.runs"] if p.attributes["dataflow.workflow.outcome"] == "failure"]
    assert failure.attributes["error.type"] == "IntegrityError"


def test_pool_metrics_from_the_supervisor(make_db: Any, metric_reader: InMemoryMetricReader) -> None:
    """Connection count by state, max, pending requests, timeouts and wait time follow the pool."""
    db = make_db(traced=True, pool_timeout=5)
    add_customer(db)
    LocalRuntime().execute(create_read())
    lease = db.engine.checkout()
    try:
        with pytest.raises(PoolTimeoutError):
            db.engine.checkout(timeout=0.05)
        points = metric_points(metric_reader)
    finally:
        lease.release()
    count = {p.attributes["db.client.connection.state"]: p.value for p in points["db.client.connection.count"]}
    assert count == {"idle": 0, "used": 1}
    assert [p.value for p in points["db.client.connection.max"]] == [1]
    assert [p.value for p in points["db.client.connection.pending_requests"]] == [0]
    assert [p.value for p in points["db.client.connection.timeouts"]] == [1]
    assert points["db.client.connection.wait_time"][0].count >= 1
    pool_names = {p.attributes["db.client.connection.pool.name"] for p in points["db.client.connection.count"]}
    assert pool_names == {"sqlite:///:memory:"}


def test_closed_database_leaves_the_pool_metrics(make_db: Any, metric_reader: InMemoryMetricReader) -> None:
    """After close() an instance no longer reports pool metrics (callbacks cannot be unregistered)."""
    db = make_db(traced=True)
    db.close()
    assert not metric_points(metric_reader).get("db.client.connection.count")


def test_bulk_rows_counted(observed_db: DataFlow, metric_reader: InMemoryMetricReader) -> None:
    """Rows processed by bulk nodes add to dataflow.bulk.rows by model and operation."""
    add_customer(observed_db)
    wf = WorkflowBuilder()
    records = [{"name": f"c{i}", "email": f"c{i}@example.com"} for i in range(7)]
    wf.add_node("CustomerBulkCreateNode", "load", {"records": records, "chunk_size": 3})
    LocalRuntime().execute(wf.build())
    [rows] = metric_points(metric_reader)["dataflow.bulk.rows"]
    assert rows.value == 7
    assert (rows.attributes["dataflow.model"], rows.attributes["dataflow.operation"]) == ("Customer", "BulkCreate")


def test_slow_queries_counted(make_db: Any, metric_reader: InMemoryMetricReader) -> None:
    """Statements over slow_query_threshold count in dataflow.db.slow_queries by summary."""
    db = make_db(traced=True, slow_query_threshold=1e-6)
    add_customer(db)
    LocalRuntime().execute(create_read())
    summaries = {p.attributes["db.query.summary"] for p in metric_points(metric_reader)["dataflow.db.slow_queries"]}
    assert {"INSERT customers", "SELECT customers"} <= summaries


def test_safety_hooks_count_retries_compensations_and_unknown_outcomes(
    make_db: Any, metric_reader: InMemoryMetricReader
) -> None:
    """record_retry / record_compensation / record_unknown_outcome feed their counters."""
    db = make_db(traced=True)
    record_retry(db, "run1", 1, TimeoutError("x"), delay=0.01)
    record_compensation(db, "run1", "charge", ok=True)
    record_compensation(db, "run1", "mail", ok=False, error=OSError("x"))
    record_unknown_outcome(db, "run2", ConnectionResetError("x"))
    points = metric_points(metric_reader)
    assert [(p.attributes["error.type"], p.value) for p in points["dataflow.workflow.retries"]] == [("TimeoutError", 1)]
    comps = {p.attributes["dataflow.compensation.outcome"]: p.value for p in points["dataflow.compensations"]}
    assert comps == {"ok": 1, "failed": 1}
    assert [p.value for p in points["dataflow.workflow.unknown_outcomes"]] == [1]


def test_nothing_recorded_without_a_provider(
    memdb: DataFlow, meter_provider: Any, metric_reader: InMemoryMetricReader
) -> None:
    """A DataFlow given no meter provider records nothing into a provider that exists but was not given."""
    add_customer(memdb)
    LocalRuntime().execute(create_read())
    assert metric_points(metric_reader) == {}
