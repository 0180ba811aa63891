"""Prometheus: a real HTTP scrape of the endpoint DataFlow serves, and its settings."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from dataflow import ConfigurationError, DataFlow, FeatureNotAvailableError, LocalRuntime

from .conftest import add_customer, create_read


def scrape(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_scrape_metrics_over_http(make_db: Any) -> None:
    """GET /metrics returns the operation, workflow and pool metrics in Prometheus text format."""
    db = make_db(monitoring_export_format="prometheus", monitoring_port=0)
    assert db.metrics_url is not None and db.metrics_url.endswith("/metrics")
    add_customer(db)
    LocalRuntime().execute(create_read())
    status, content_type, body = scrape(db.metrics_url)
    assert status == 200 and content_type.startswith("text/plain")
    assert 'db_client_operation_duration_seconds_bucket{' in body
    assert 'db_query_summary="INSERT customers"' in body
    assert 'le="0.005"' in body
    assert 'dataflow_workflow_runs_total{dataflow_workflow_outcome="success"' in body
    assert 'db_client_connection_count{' in body and 'db_client_connection_state="idle"' in body
    assert "db_client_connection_timeouts_total" in body


def test_other_paths_are_not_found_and_close_stops_serving(make_db: Any) -> None:
    """Only the endpoint's path is served, and close() stops the server."""
    db = make_db(monitoring_export_format="prometheus", monitoring_endpoint="http://127.0.0.1:0/stats")
    url = db.metrics_url
    assert url.endswith("/stats")
    assert scrape(url)[0] == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        scrape(url.replace("/stats", "/metrics"))
    assert info.value.code == 404
    info.value.close()
    db.close()
    with pytest.raises(urllib.error.URLError):
        scrape(url)


def test_two_instances_serve_their_own_series(make_db: Any) -> None:
    """Each DataFlow has its own registry and port: one's workflows do not show in the other's scrape."""
    busy = make_db(monitoring_export_format="prometheus", monitoring_port=0)
    idle = make_db(monitoring_export_format="prometheus", monitoring_port=0)
    add_customer(busy)
    LocalRuntime().execute(create_read())
    assert "dataflow_workflow_runs_total{" in scrape(busy.metrics_url)[2]
    assert "dataflow_workflow_runs_total{" not in scrape(idle.metrics_url)[2]


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the exporter installed, asking for Prometheus is a ConfigurationError naming the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    with pytest.raises(ConfigurationError, match=r"dataflow-actors\[monitoring\]"):
        DataFlow(monitoring_export_format="prometheus", monitoring_port=0)


def test_port_in_use_is_a_configuration_error(make_db: Any) -> None:
    """A port that cannot be bound is reported at construction, and nothing is left running."""
    first = make_db(monitoring_export_format="prometheus", monitoring_port=0)
    port = int(first.metrics_url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConfigurationError, match=f"{port}"):
        DataFlow(monitoring_export_format="prometheus", monitoring_port=port)


@pytest.mark.parametrize("fmt", ["datadog", "cloudwatch"])
def test_formats_not_built_yet_are_rejected(fmt: str) -> None:
    """Export formats from the guide that are not built raise FeatureNotAvailableError, naming them."""
    with pytest.raises(FeatureNotAvailableError, match=fmt):
        DataFlow(monitoring_export_format=fmt)


@pytest.mark.parametrize("options", [
    {"monitoring_export_format": "xml"},
    {"monitoring_endpoint": "/metrics"},
    {"monitoring_export_format": "prometheus", "monitoring_port": 70000},
    {"monitoring_export_format": "prometheus", "monitoring_endpoint": "https://0.0.0.0:9464/metrics"},
    {"monitoring_export_format": "prometheus", "meter_provider": object()},
])
def test_bad_export_settings_are_rejected(options: dict[str, Any]) -> None:
    """Wrong export settings are ConfigurationErrors at construction."""
    with pytest.raises(ConfigurationError):
        DataFlow(**options)


def test_prometheus_implies_monitoring(make_db: Any) -> None:
    """Exporting metrics turns the monitor views on unless monitoring=False is said."""
    on = make_db(monitoring_export_format="prometheus", monitoring_port=0)
    off = make_db(monitoring_export_format="prometheus", monitoring_port=0, monitoring=False)
    assert on.get_monitor_nodes()["transaction"]["enabled"] is True
    assert off.get_monitor_nodes()["transaction"]["enabled"] is False
