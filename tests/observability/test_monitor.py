"""The monitoring options, db.get_monitor_nodes() views, and db.health()."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dataflow import (
    ConfigurationError,
    DataFlow,
    FeatureNotAvailableError,
    LocalRuntime,
    WorkflowBuilder,
    WorkflowFailed,
)
from dataflow._telemetry import record_compensation, record_retry, record_unknown_outcome

from .conftest import SECRET, add_customer, create_read


def test_views_are_the_four_of_the_guide(make_db: Any) -> None:
    """get_monitor_nodes() returns the transaction, metrics, bulk_operations and safety views."""
    views = make_db(monitoring=True).get_monitor_nodes()
    assert set(views) == {"transaction", "metrics", "bulk_operations", "safety"}
    assert all(view["enabled"] for view in views.values())


def test_views_are_live(make_db: Any) -> None:
    """A view read before workflows run shows them afterwards: it reads the current figures on access."""
    db = make_db(monitoring=True)
    add_customer(db)
    transaction = db.get_monitor_nodes()["transaction"]
    before = transaction["succeeded"]
    LocalRuntime().execute(create_read())
    assert transaction["succeeded"] == before + 1
    assert transaction["in_flight"] == 0
    assert transaction["duration_ms"]["p95"] > 0


def test_failures_are_listed_without_values(make_db: Any) -> None:
    """The transaction view lists recent failures by run, node and error type."""
    db = make_db(monitoring=True)
    add_customer(db)
    LocalRuntime().execute(create_read())
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(create_read())
    view = db.get_monitor_nodes()["transaction"].snapshot()
    assert view["failed"] == 1
    [failure] = view["recent_failures"]
    assert (failure["node_id"], failure["error_type"]) == ("create", "IntegrityError")
    assert SECRET not in repr(view)


def test_options_off_say_so(memdb: DataFlow) -> None:
    """With monitoring off the views say enabled=False; metrics still shows the live pool."""
    views = memdb.get_monitor_nodes()
    assert not views["transaction"]["enabled"] and not views["safety"]["enabled"]
    assert views["metrics"]["pool"]["state"] == "running"


def test_query_insights_per_summary(make_db: Any) -> None:
    """query_insights keeps count, total and p95 time, and rows, per query summary."""
    db = make_db(query_insights=True)
    add_customer(db)
    for i in range(3):
        LocalRuntime().execute(create_read(f"c{i}@example.com"))
    wf = WorkflowBuilder()
    wf.add_node("CustomerListNode", "all", {})
    LocalRuntime().execute(wf.build())
    queries = db.get_monitor_nodes()["metrics"]["queries"]
    insert, select = queries["INSERT customers"], queries["SELECT customers"]
    assert insert["count"] == 3 and insert["rows"] == 3
    assert select["count"] == 4 and select["rows"] == 3 + 3
    assert 0 < select["p95_ms"] and select["total_ms"] >= select["p95_ms"]


def test_performance_monitoring_tracks_bulk_throughput(make_db: Any) -> None:
    """performance_monitoring reports rows and rows per second of each bulk operation."""
    db = make_db(performance_monitoring=True)
    add_customer(db)
    wf = WorkflowBuilder()
    wf.add_node("CustomerBulkCreateNode", "load", {"records": [{"name": "n", "email": f"{i}@x"} for i in range(50)]})
    LocalRuntime().execute(wf.build())
    ops = db.get_monitor_nodes()["bulk_operations"]["operations"]
    assert ops["Customer.BulkCreate"]["rows"] == 50
    assert ops["Customer.BulkCreate"]["rows_per_second"] > 0


def test_safety_monitoring_counts_hook_events(make_db: Any) -> None:
    """safety_monitoring shows retries, compensations and unknown outcomes reported through the hooks."""
    db = make_db(safety_monitoring=True)
    record_retry(db, "r1", 1, TimeoutError(SECRET))
    record_compensation(db, "r1", "charge", ok=True)
    record_compensation(db, "r1", "mail", ok=False, error=OSError(SECRET))
    record_unknown_outcome(db, "r2", ConnectionError(SECRET))
    view = db.get_monitor_nodes()["safety"].snapshot()
    assert view["retries"] == 1
    assert view["compensations"] == {"ran": 1, "failed": 1}
    assert view["unknown_outcomes"] == 1
    assert [e["kind"] for e in view["recent"]] == ["retry", "compensation", "compensation", "unknown_outcome"]
    assert SECRET not in repr(view)


def test_monitoring_from_the_environment(monkeypatch: pytest.MonkeyPatch, make_db: Any) -> None:
    """DATAFLOW_MONITORING=true turns monitoring on; an argument wins over it."""
    monkeypatch.setenv("DATAFLOW_MONITORING", "true")
    assert make_db().get_monitor_nodes()["transaction"]["enabled"]
    assert not make_db(monitoring=False).get_monitor_nodes()["transaction"]["enabled"]
    monkeypatch.setenv("DATAFLOW_MONITORING", "maybe")
    with pytest.raises(ConfigurationError, match="DATAFLOW_MONITORING"):
        DataFlow()


@pytest.mark.parametrize("options", [
    {"monitoring": "yes"}, {"slow_query_threshold": 0}, {"slow_query_threshold": True},
    {"query_insights": 1}, {"tracer_provider": object()},
])
def test_bad_option_values_are_rejected(options: dict[str, Any]) -> None:
    """Option values of the wrong type or range are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        DataFlow(**options)


def test_options_not_built_stay_rejected() -> None:
    """A monitoring-adjacent option that is not built (real_time_alerts) still raises, naming it."""
    with pytest.raises(FeatureNotAvailableError, match="real_time_alerts"):
        DataFlow(real_time_alerts=True)


def test_health_ok_on_every_engine(db: DataFlow) -> None:
    """health() pings through a lease and reports ok with the pool's state."""
    report = db.health(timeout=5)
    assert report["status"] == "ok" and report["ok"] is True
    assert report["ping_ms"] is not None and report["pool"]["state"] == "running"
    assert db.pool_stats()["in_use"] == 0


def test_health_degraded_when_the_pool_is_saturated(memdb: DataFlow) -> None:
    """With every connection leased, health() answers 'degraded' within its timeout instead of waiting."""
    lease = memdb.engine.checkout()
    try:
        started = time.monotonic()
        report = memdb.health(timeout=0.2)
        assert time.monotonic() - started < 2
    finally:
        lease.release()
    assert report["status"] == "degraded" and report["error"] == "PoolTimeoutError"
    assert memdb.health(timeout=2)["ok"]


def test_health_of_a_closed_database(make_db: Any) -> None:
    """After close() health() says closed."""
    db = make_db()
    db.close()
    assert db.health()["status"] == "closed"


def test_health_down_when_the_ping_fails(memdb: DataFlow, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing ping reports down, and the connection is replaced rather than reused."""
    monkeypatch.setattr(memdb.dialect, "ping", lambda conn: False)
    assert memdb.health(timeout=2)["status"] == "down"
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while not memdb.health(timeout=2)["ok"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert memdb.health(timeout=2)["ok"]


def test_a_real_compensation_reaches_log_view_and_metric(
    make_db: Any, metric_reader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure after a compensated step reports compensation_ran in the log, the safety view and the counter."""
    import logging

    from structlog.testing import capture_logs

    caplog.set_level(logging.INFO, logger="dataflow")
    from .conftest import metric_points

    db = make_db(traced=True, safety_monitoring=True)
    undone: list[str] = []
    db.register_node("Reserve", lambda **p: {"ok": True}, compensation=lambda params, result: undone.append("r"))

    def fail(**params: Any) -> dict[str, Any]:
        raise ValueError(SECRET)

    db.register_node("Fail", fail)
    wf = WorkflowBuilder()
    wf.add_node("Reserve", "reserve", {})
    wf.add_node("Fail", "fail", {})
    wf.add_connection("reserve", "ok", "fail", "ok")
    with capture_logs() as captured, pytest.raises(WorkflowFailed):
        LocalRuntime().execute(wf.build())
    assert undone == ["r"]
    [ran] = [e for e in captured if e["event"] == "compensation_ran"]
    assert ran["node_id"] == "reserve"
    assert db.get_monitor_nodes()["safety"]["compensations"] == {"ran": 1, "failed": 0}
    [point] = metric_points(metric_reader)["dataflow.compensations"]
    assert point.value == 1 and point.attributes["dataflow.compensation.outcome"] == "ok"
    assert SECRET not in repr(captured)
