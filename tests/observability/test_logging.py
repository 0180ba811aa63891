"""Structured log events: names, bound context, rendering, and no values or passwords."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from structlog.testing import capture_logs

from dataflow import DataFlow, LocalRuntime, WorkflowBuilder, WorkflowFailed

from .conftest import SECRET, add_customer, create_read


def events(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] == name]


def test_library_adds_a_null_handler_and_configures_nothing() -> None:
    """Importing dataflow and opening a database leaves the root logger alone and gives 'dataflow' a NullHandler."""
    code = (
        "import logging, dataflow; db = dataflow.DataFlow(); db.close(); "
        "print(len(logging.getLogger().handlers), "
        "[type(h).__name__ for h in logging.getLogger('dataflow').handlers])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOW_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=True)
    assert out.stdout.strip() == "0 ['NullHandler']"
    assert out.stderr == ""


def test_workflow_failed_is_logged_with_ids_and_error_type(db: DataFlow) -> None:
    """A failing workflow logs workflow_failed with run_id, node_id and error_type, without the secret value."""
    add_customer(db)
    LocalRuntime().execute(create_read())
    with capture_logs() as captured, pytest.raises(WorkflowFailed) as info:
        LocalRuntime().execute(create_read())
    [failed] = events(captured, "workflow_failed")
    assert failed["run_id"] == info.value.run_id
    assert failed["node_id"] == "create"
    assert failed["error_type"] == "IntegrityError"
    assert failed["log_level"] == "warning"
    assert SECRET not in repr(captured)


def test_a_users_exception_message_never_reaches_the_log(make_db: Any) -> None:
    """A user node failing with a parameter value in its message logs the type only, observed or not."""

    def charge(card: str) -> dict[str, Any]:
        raise RuntimeError(f"card {card} declined")

    for traced in (False, True):
        db = make_db(traced=traced, monitoring=traced)
        db.register_node("Charge", charge)
        wf = WorkflowBuilder()
        wf.add_node("Charge", "charge", {"card": SECRET})
        with capture_logs() as captured, pytest.raises(WorkflowFailed):
            LocalRuntime().execute(wf.build())
        assert events(captured, "workflow_failed")[0]["error_type"] == "RuntimeError"
        assert SECRET not in repr(captured)


def test_non_critical_node_failure_binds_run_and_node(memdb: DataFlow) -> None:
    """A non-critical node that fails logs node_failed with run_id, node_id and node_type."""

    def flaky(**params: Any) -> dict[str, Any]:
        raise OSError(f"mail server said no to {params['to']}")

    memdb.register_node("Notify", flaky, critical=False)
    wf = WorkflowBuilder()
    wf.add_node("Notify", "notify", {"to": SECRET})
    with capture_logs() as captured:
        _, run_id = LocalRuntime().execute(wf.build())
    [failed] = events(captured, "node_failed")
    assert (failed["run_id"], failed["node_id"], failed["node_type"]) == (run_id, "notify", "Notify")
    assert failed["error_type"] == "OSError"
    assert SECRET not in repr(captured)


def test_completed_workflows_log_at_debug_only_when_enabled(make_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    """workflow_completed is a DEBUG event: absent at the default level, present with run_id when DEBUG is on."""
    db = make_db(monitoring=True)
    add_customer(db)
    with capture_logs() as quiet:
        LocalRuntime().execute(create_read("a@example.com"))
    assert not events(quiet, "workflow_completed")
    caplog.set_level(logging.DEBUG, logger="dataflow")
    with capture_logs() as captured:
        _, run_id = LocalRuntime().execute(create_read("b@example.com"))
    [done] = events(captured, "workflow_completed")
    assert done["run_id"] == run_id and done["duration_ms"] > 0


def test_slow_query_logs_one_warning_with_summary_and_duration(make_db: Any) -> None:
    """A statement slower than slow_query_threshold logs one slow_query warning: summary and duration, no values."""
    db = make_db(slow_query_threshold=1e-6)
    add_customer(db)
    wf = WorkflowBuilder()
    wf.add_node("CustomerCreateNode", "create", {"name": "Ada", "email": SECRET})
    with capture_logs() as captured:
        _, run_id = LocalRuntime().execute(wf.build())
    [slow] = events(captured, "slow_query")  # one statement: a lone INSERT needs no BEGIN/COMMIT
    assert slow["query_summary"] == "INSERT customers"
    assert slow["duration_ms"] > 0 and slow["threshold_ms"] == 0.001
    assert (slow["run_id"], slow["node_id"]) == (run_id, "create")
    assert slow["log_level"] == "warning"
    assert SECRET not in repr(captured)


@pytest.mark.usefixtures("pristine_structlog")
def test_json_rendering_by_one_setting(make_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    """log_format='json' renders each stdlib record as one JSON object with the event and its keys."""
    caplog.set_level(logging.INFO, logger="dataflow")
    db = make_db(log_format="json")
    db.close()
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "dataflow"]
    assert [r["event"] for r in records] == ["database_opened", "database_closed"]
    assert records[0]["backend"] == "sqlite" and records[0]["level"] == "info"


@pytest.mark.usefixtures("pristine_structlog")
def test_console_rendering_is_the_default(make_db: Any, caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a setting, events render as console lines; DATAFLOW_LOG_FORMAT=json switches to JSON."""
    caplog.set_level(logging.INFO, logger="dataflow")
    make_db()
    line = caplog.records[-1].getMessage()
    assert "database_opened" in line and not line.startswith("{")
    monkeypatch.setenv("DATAFLOW_LOG_FORMAT", "json")
    make_db()
    assert json.loads(caplog.records[-1].getMessage())["event"] == "database_opened"


def test_bad_log_format_is_rejected() -> None:
    """An unknown log format is a ConfigurationError at construction."""
    from dataflow import ConfigurationError

    with pytest.raises(ConfigurationError, match="log_format"):
        DataFlow(log_format="xml")


def test_password_never_logged(engine_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The database URL in log events masks its password."""
    caplog.set_level(logging.INFO, logger="dataflow")
    if not engine_url.startswith("postgresql://"):
        pytest.skip("needs a server that accepts any password (PostgreSQL with trust auth)")
    url = engine_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2-pw@")
    with capture_logs() as captured:
        try:
            db = DataFlow(url)
        except Exception as exc:  # noqa: BLE001 - an auth failure means the server checks passwords
            pytest.skip(f"server rejected the password: {type(exc).__name__}")
        db.close()
    assert events(captured, "database_opened")
    assert "hunter2-pw" not in repr(captured)


def test_tenant_id_is_bound(make_db: Any, span_exporter: Any) -> None:
    """A run for a tenant carries tenant_id in its failure event and its workflow span."""
    db = make_db(traced=True, multi_tenant=True)
    add_customer(db)
    LocalRuntime().execute(create_read(), tenant_id="acme")
    with capture_logs() as captured, pytest.raises(WorkflowFailed):
        LocalRuntime().execute(create_read(), tenant_id="acme")
    assert events(captured, "workflow_failed")[0]["tenant_id"] == "acme"
    spans = [s for s in span_exporter.get_finished_spans() if s.name == "dataflow.workflow"]
    assert {s.attributes["dataflow.tenant_id"] for s in spans} == {"acme"}
