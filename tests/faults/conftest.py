"""Fixtures for the fault tests: DataFlow instances to break, a model, fast backoff."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors import Backoff
from dataflow import DataFlow

#: the engines whose connections can be killed from outside
SERVERS = ("postgresql", "mysql")
servers_only = pytest.mark.parametrize("engine_url", SERVERS, indirect=True)


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect and retry delays of milliseconds, so each fault test takes well under a second."""
    monkeypatch.setattr(Backoff, "INITIAL_DELAY", 0.002)
    monkeypatch.setattr(Backoff, "MAX_DELAY", 0.02)


@pytest.fixture
def open_db(engine_url: str) -> Iterator[Callable[..., DataFlow]]:
    """``open_db(**options)``: a DataFlow on the engine's test database with an ``Item`` model; closed after."""
    made: list[DataFlow] = []

    def make(**options: Any) -> DataFlow:
        database = DataFlow(engine_url, **options)
        made.append(database)

        @database.model
        class Item:
            name: str

        return database

    yield make
    for database in made:
        database.close()
