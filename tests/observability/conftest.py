"""Fixtures for observability tests: in-memory OpenTelemetry providers passed to
DataFlow explicitly (never installed globally), and a tiny model and workflow."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dataflow import DataFlow, WorkflowBuilder

SECRET = "s3cr3t-value-7f1e"


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    """Finished spans, in the order they ended."""
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """An SDK tracer provider that exports to ``span_exporter`` synchronously."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """Collects on demand: ``metric_reader.get_metrics_data()``."""
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    """An SDK meter provider read by ``metric_reader``."""
    provider = MeterProvider(metric_readers=[metric_reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def observed_db(engine_url: str, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> Iterator[DataFlow]:
    """A DataFlow on each engine, traced and metered by the in-memory providers."""
    database = DataFlow(engine_url, tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def make_db(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> Iterator[Callable[..., DataFlow]]:
    """``make_db(url=None, **options)``: DataFlow instances closed after the test; ``traced=True``
    passes the in-memory providers."""
    made: list[DataFlow] = []

    def make(url: str | None = None, *, traced: bool = False, **options: Any) -> DataFlow:
        if traced:
            options.update(tracer_provider=tracer_provider, meter_provider=meter_provider)
        database = DataFlow(url, **options)
        made.append(database)
        return database

    yield make
    for database in made:
        database.close()


@pytest.fixture
def pristine_structlog() -> Iterator[None]:
    """structlog as an application that never configured it (capture_logs configures it)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def add_customer(db: DataFlow) -> None:
    """Register a ``Customer`` model with a unique email."""

    @db.model
    class Customer:
        name: str
        email: str
        __indexes__ = [{"name": "uq_customer_email", "fields": ["email"], "unique": True}]  # noqa: RUF012


def create_read(email: str = SECRET) -> Any:
    """A create + read workflow of one Customer."""
    wf = WorkflowBuilder()
    wf.add_node("CustomerCreateNode", "create", {"name": "Ada", "email": email})
    wf.add_node("CustomerReadNode", "read", {})
    wf.add_connection("create", "id", "read", "id")
    return wf.build()


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """metric name → its data points, from one collection."""
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out
