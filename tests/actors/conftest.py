"""Fixtures for the actor engine's unit tests: a fake driver, supervisors, clean teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from actors import Backoff, PoolPolicy, Supervisor
from tests.fakes import FakeDriver

SupervisorFactory = Callable[..., Supervisor]

#: A policy small and quick enough for unit tests; tests override fields as keywords.
TEST_POLICY: dict[str, Any] = {
    "min_size": 1,
    "max_size": 2,
    "checkout_timeout": 2.0,
    "max_idle": None,
    "max_lifetime": None,
    "max_restarts": 5,
    "restart_period": 10.0,
    "connect_timeout": 5.0,
}


@pytest.fixture(autouse=True)
def _stop_all() -> Iterator[None]:
    """Stop every pykka actor a test left behind."""
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink reconnect delays so restart tests take milliseconds."""
    monkeypatch.setattr(Backoff, "INITIAL_DELAY", 0.001)
    monkeypatch.setattr(Backoff, "MAX_DELAY", 0.01)


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def supervisor(driver: FakeDriver) -> Iterator[SupervisorFactory]:
    """Build supervisors over ``driver`` (started unless ``start=False``); stop them afterwards."""
    made: list[Supervisor] = []

    def make(*, start: bool = True, drv: Any = None, **policy: Any) -> Supervisor:
        sup = Supervisor(drv or driver, PoolPolicy(**{**TEST_POLICY, **policy}))
        made.append(sup)
        if start:
            sup.start()
        return sup

    yield make
    for sup in made:
        sup.stop(timeout=2.0)
