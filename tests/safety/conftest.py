"""Fixtures for the data-safety tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors import Backoff
from dataflow import DataFlow


@pytest.fixture
def open_db(engine_url: str) -> Iterator[Callable[..., DataFlow]]:
    """``open_db(**options)``: a DataFlow on each engine's test database with the options given; closed after."""
    made: list[DataFlow] = []

    def make(**options: Any) -> DataFlow:
        database = DataFlow(engine_url, **options)
        made.append(database)
        return database

    yield make
    for database in made:
        database.close()


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink retry delays to milliseconds."""
    monkeypatch.setattr(Backoff, "INITIAL_DELAY", 0.002)
    monkeypatch.setattr(Backoff, "MAX_DELAY", 0.02)
