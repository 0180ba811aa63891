"""The observability options of ``DataFlow(...)``, checked once at construction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._logging import log_format
from .errors import ConfigurationError, FeatureNotAvailableError

__all__ = ["OPTION_NAMES", "MonitoringSettings", "settings_from"]

#: the DataFlow(...) keyword options read here
OPTION_NAMES = (
    "monitoring", "slow_query_threshold", "query_insights", "performance_monitoring", "safety_monitoring",
    "monitoring_export_format", "monitoring_endpoint", "monitoring_port", "tracer_provider", "meter_provider",
    "log_format",
)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464  # the port registered for the OpenTelemetry Prometheus exporter
_LATER_FORMATS = ("datadog", "cloudwatch", "otlp", "statsd")


@dataclass(frozen=True, slots=True)
class MonitoringSettings:
    """What to observe and where to export it (see ``docs/adr/0004-observability.md``)."""

    monitoring: bool = False
    slow_query_threshold: float | None = None  # seconds
    query_insights: bool = False
    performance_monitoring: bool = False
    safety_monitoring: bool = False
    export_format: str | None = None  # "prometheus"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path: str = "/metrics"
    tracer_provider: Any = None
    meter_provider: Any = None
    log_format: str = "console"

    @property
    def collecting(self) -> bool:
        """Some in-process statistics are kept (the monitor views have data)."""
        return (self.monitoring or self.query_insights or self.performance_monitoring
                or self.safety_monitoring or self.slow_query_threshold is not None)


def settings_from(options: dict[str, Any]) -> MonitoringSettings:
    """Remove the observability options from ``options`` and check them.

    ``DATAFLOW_MONITORING`` supplies ``monitoring`` when the argument is not given.
    """
    given = {name: options.pop(name) for name in OPTION_NAMES if name in options}
    monitoring = given.get("monitoring")
    if monitoring is None:
        monitoring = _env_bool("DATAFLOW_MONITORING")
    monitoring = _bool("monitoring", monitoring)
    fmt = _export_format(given.get("monitoring_export_format"))
    host, port, path = _endpoint(given.get("monitoring_endpoint"), given.get("monitoring_port"), fmt)
    if fmt == "prometheus":
        if given.get("meter_provider") is not None:
            raise ConfigurationError(
                "give either meter_provider or monitoring_export_format='prometheus' (which makes DataFlow's own "
                "meter provider); to export your provider's metrics add a PrometheusMetricReader to it"
            )
        if "monitoring" not in given and not _env_set("DATAFLOW_MONITORING"):
            monitoring = True  # exporting metrics means monitoring them
    return MonitoringSettings(
        monitoring=monitoring,
        slow_query_threshold=_threshold(given.get("slow_query_threshold")),
        query_insights=_bool("query_insights", given.get("query_insights", False)),
        performance_monitoring=_bool("performance_monitoring", given.get("performance_monitoring", monitoring)),
        safety_monitoring=_bool("safety_monitoring", given.get("safety_monitoring", monitoring)),
        export_format=fmt,
        host=host,
        port=port,
        path=path,
        tracer_provider=_provider("tracer_provider", given.get("tracer_provider"), "get_tracer"),
        meter_provider=_provider("meter_provider", given.get("meter_provider"), "get_meter"),
        log_format=log_format(given.get("log_format")),
    )


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def _env_set(name: str) -> bool:
    return os.environ.get(name, "").strip() != ""


def _env_bool(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"environment variable {name}={raw!r} is not a boolean")


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"slow_query_threshold must be a positive number of seconds, got {value!r}")
    return float(value)


def _export_format(value: Any) -> str | None:
    if value is None:
        return None
    fmt = str(value).strip().lower()
    if fmt == "prometheus":
        return fmt
    if fmt in _LATER_FORMATS:
        raise FeatureNotAvailableError(
            f"monitoring_export_format={value!r} is not available yet; use 'prometheus', or pass your own "
            "OpenTelemetry meter_provider / tracer_provider (any OpenTelemetry exporter works through them)"
        )
    raise ConfigurationError(f"monitoring_export_format must be 'prometheus', got {value!r}")


def _endpoint(endpoint: Any, port: Any, fmt: str | None) -> tuple[str, int, str]:
    """``"/metrics"``, ``"host:port/metrics"`` or ``"http://host:port/metrics"`` → host, port, path."""
    if (endpoint is not None or port is not None) and fmt is None:
        raise ConfigurationError("monitoring_endpoint / monitoring_port need monitoring_export_format='prometheus'")
    host, path, url_port = DEFAULT_HOST, "/metrics", None
    if endpoint is not None:
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise ConfigurationError(f"monitoring_endpoint must be a path such as '/metrics', got {endpoint!r}")
        text = endpoint.strip()
        if not text.startswith("/"):
            parts = urlsplit(text if "://" in text else f"http://{text}")
            try:
                url_port = parts.port
            except ValueError:
                raise ConfigurationError(f"monitoring_endpoint {endpoint!r} has a bad port") from None
            if parts.scheme != "http":
                raise ConfigurationError(f"monitoring_endpoint {endpoint!r}: only plain http is served")
            host = parts.hostname or DEFAULT_HOST
            text = parts.path or "/metrics"
        path = text
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"monitoring_port must be a port number (0 = any free port), got {port!r}")
        if url_port is not None and url_port != port:
            raise ConfigurationError(f"monitoring_endpoint says port {url_port} but monitoring_port says {port}")
    chosen = port if port is not None else url_port if url_port is not None else DEFAULT_PORT
    return host, chosen, path


def _provider(name: str, value: Any, method: str) -> Any:
    if value is not None and not callable(getattr(value, method, None)):
        raise ConfigurationError(f"{name} must be an OpenTelemetry {name.replace('_', ' ')} (with .{method}())")
    return value
