"""``monitoring_export_format="prometheus"``: DataFlow's own OpenTelemetry meter
provider, read by the OpenTelemetry Prometheus exporter and served over HTTP.

The SDK, the exporter and ``prometheus_client`` are the optional extra
``monitoring``; they are imported only here, and only when asked for. Each
DataFlow instance gets a private ``CollectorRegistry`` and its own small HTTP
server, so two instances never mix their series and closing one stops its
endpoint.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .errors import ConfigurationError

__all__ = ["PrometheusEndpoint"]

EXTRA = "dataflow-actors[monitoring]"


def _imports() -> tuple[Any, Any, Any, Any]:
    try:
        import prometheus_client
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError as exc:
        raise ConfigurationError(
            f"monitoring_export_format='prometheus' needs the optional extra: pip install '{EXTRA}' "
            f"(missing module {exc.name!r})"
        ) from None
    return prometheus_client, PrometheusMetricReader, MeterProvider, prometheus_client.CollectorRegistry


class PrometheusEndpoint:
    """A meter provider whose metrics are served at ``http://host:port/path``."""

    def __init__(self, host: str, port: int, path: str) -> None:
        prometheus_client, reader_class, provider_class, registry_class = _imports()
        self.registry = registry_class(auto_describe=True)
        try:
            reader = reader_class(registry=self.registry)
        except TypeError:  # exporters before the registry argument use the global registry
            reader = reader_class()
            self.registry = prometheus_client.REGISTRY
        self.meter_provider = provider_class(metric_readers=[reader])
        self.path = path
        self._closed = False
        handler = _handler(self.registry, path, prometheus_client)
        try:
            self._server = _Server((host, port), handler)
        except OSError as exc:
            self.meter_provider.shutdown()
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"dataflow-metrics-{self.port}", daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}{self.path}"

    def close(self) -> None:
        """Stop serving and shut the meter provider down; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.meter_provider.shutdown()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(registry: Any, path: str, prometheus_client: Any) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        # Runs on the server's request threads.
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != path:
                self.send_error(404, f"metrics are served at {path}")
                return
            body = prometheus_client.generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes are not worth a log line each

    return MetricsHandler
