"""Shared fixtures: one ``db`` fixture parametrised over every engine.

SQLite always runs. PostgreSQL and MariaDB run when ``DATAFLOW_TEST_PG_URL`` /
``DATAFLOW_TEST_MYSQL_URL`` are set (``.ci/run`` sets both, and
``DATAFLOW_REQUIRE_ALL_ENGINES=1`` turns a missing engine into a failure).
Each test session works in its own throw-away database on each server, and
every test starts with no tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from tests import servers

ENGINES = ("sqlite", "postgresql", "mysql")
_ENV = {"postgresql": "DATAFLOW_TEST_PG_URL", "mysql": "DATAFLOW_TEST_MYSQL_URL"}


def _require_all() -> bool:
    return os.environ.get("DATAFLOW_REQUIRE_ALL_ENGINES", "") == "1"


@pytest.fixture(scope="session")
def server_urls() -> Iterator[dict[str, str]]:
    """engine → URL of a throw-away database made for this session."""
    made: dict[str, str] = {}
    base: dict[str, str] = {}
    try:
        for engine, var in _ENV.items():
            url = os.environ.get(var)
            if not url:
                continue
            name = f"dataflow_t_{uuid.uuid4().hex[:10]}"
            made[engine] = servers.create_database(engine, url, name)
            base[engine] = url
        yield made
    finally:
        for engine, url in made.items():
            servers.drop_database(engine, base[engine], url)


@pytest.fixture(params=ENGINES)
def engine_url(request: pytest.FixtureRequest, server_urls: dict[str, str], tmp_path: Any) -> Iterator[str]:
    """A database URL for each engine: a fresh SQLite file, or the session's server database (emptied after)."""
    engine = request.param
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
        return
    url = server_urls.get(engine)
    if url is None:
        message = f"{_ENV[engine]} is not set"
        if _require_all():
            pytest.fail(f"{message} but DATAFLOW_REQUIRE_ALL_ENGINES=1")
        pytest.skip(message)
    try:
        yield url
    finally:
        servers.drop_all_tables(engine, url)


@pytest.fixture
def db(engine_url: str) -> Iterator[Any]:
    """A DataFlow instance on each engine; closed after the test."""
    from dataflow import DataFlow

    database = DataFlow(engine_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def memdb() -> Iterator[Any]:
    """The zero-configuration default: a private in-memory SQLite database."""
    from dataflow import DataFlow

    database = DataFlow()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(autouse=True)
def _no_leaked_actors() -> Iterator[None]:
    """Every test leaves no actor running (a fixture that forgot close() fails loudly)."""
    yield
    leftover = pykka.ActorRegistry.get_all()
    if leftover:
        pykka.ActorRegistry.stop_all(timeout=5)
        pytest.fail(f"{len(leftover)} actor(s) still running after the test: close every DataFlow")


@pytest.fixture
def run() -> Any:
    """``run(workflow_builder, parameters=None)`` → results, via LocalRuntime."""
    from dataflow import LocalRuntime

    runtime = LocalRuntime()

    def _run(builder: Any, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        results, _ = runtime.execute(builder.build(), parameters=parameters)
        return results

    return _run
