"""A Hypothesis state machine that leases, kills, crashes and resizes a pool."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from actors import CheckoutTimeout, Lease, PoolPolicy, Supervisor
from tests.fakes import FakeDriver, wait_until

MIN_SIZE = 1


class PoolMachine(RuleBasedStateMachine):
    """Drives one Supervisor from one thread; the model is the list of leases held."""

    def __init__(self) -> None:
        super().__init__()
        self.driver = FakeDriver()
        self.max_size = 3
        policy = PoolPolicy(
            min_size=MIN_SIZE,
            max_size=self.max_size,
            checkout_timeout=2.0,
            max_idle=None,
            max_lifetime=None,
            max_restarts=10_000,
            restart_period=60.0,
            connect_timeout=5.0,
        )
        self.sup = Supervisor(self.driver, policy)
        self.sup.start()
        self.held: list[Lease] = []

    def settle(self) -> None:
        """Wait (bounded) until no connection is being opened, so the next precondition is stable."""
        wait_until(lambda: self.sup.stats().connecting == 0)

    @rule()
    def checkout(self) -> None:
        if len(self.held) >= self.max_size:
            with pytest.raises(CheckoutTimeout):
                self.sup.checkout(timeout=0.02)
        else:
            self.held.append(self.sup.checkout(timeout=2.0))
        self.settle()

    @precondition(lambda self: self.held)
    @rule(i=st.integers(min_value=0, max_value=7))
    def release(self, i: int) -> None:
        self.held.pop(i % len(self.held)).release()
        self.settle()

    @precondition(lambda self: self.held)
    @rule(i=st.integers(min_value=0, max_value=7))
    def kill_connection(self, i: int) -> None:
        lease = self.held.pop(i % len(self.held))
        self.driver.kill(lease.connection)
        lease.release()
        self.settle()

    @precondition(lambda self: self.sup.stats().idle > 0)
    @rule()
    def crash(self) -> None:
        # Only an idle actor is crashed, and we wait for the crash to land, so
        # that no lease the model holds can lose its connection underneath it.
        restarts = self.sup.stats().restarts
        self.sup.crash_one()
        wait_until(lambda: self.sup.stats().restarts == restarts + 1)
        self.settle()

    @rule(size=st.integers(min_value=1, max_value=4))
    def resize(self, size: int) -> None:
        self.sup.resize(size)
        self.max_size = size
        self.settle()

    @invariant()
    def bounded(self) -> None:
        stats = self.sup.stats()
        total = stats.in_use + stats.idle + stats.connecting
        assert total == stats.size
        assert stats.max_size == self.max_size
        if len(self.held) <= self.max_size:
            assert total <= self.max_size
        else:  # shrunk below the leases held: nothing else may exist
            assert stats.idle == stats.connecting == 0

    @invariant()
    def no_lease_lost(self) -> None:
        assert self.sup.stats().in_use == len(self.held)
        conns = [lease.connection for lease in self.held]
        assert len({id(conn) for conn in conns}) == len(conns)
        assert not any(conn.closed or conn.dead for conn in conns)

    def teardown(self) -> None:
        try:
            while self.held:
                self.held.pop().release()
            wait_until(lambda: self.sup.stats().connecting == 0)
            stats = self.sup.stats()
            assert stats.in_use == 0 and stats.waiting == 0
            assert stats.size <= self.max_size
            wait_until(lambda: self.driver.open_count == self.sup.stats().size)
        finally:
            self.sup.stop(timeout=2.0)
        wait_until(lambda: self.driver.open_count == 0)


def test_pool_machine() -> None:
    """Under any sequence of checkouts, releases, kills, crashes and resizes, no lease is lost or over-issued."""
    run_state_machine_as_test(
        PoolMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
