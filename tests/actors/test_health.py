"""Connection health against FakeDriver: idle checks, BEGIN on a dead connection, one-for-one replacement."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from actors import ConnectionLost, PoolPolicy, SupervisorFailed, WorkflowActor
from tests.fakes import FakeDriver, wait_until

from .conftest import SupervisorFactory


def timer_threads() -> list[threading.Thread]:
    """Live backoff timers."""
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer)]


class TestIdleCheck:
    def test_visibly_dead_idle_connection_is_replaced_not_leased(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """An idle connection the server closed is retired at checkout; the lease gets a fresh one."""
        sup = supervisor(min_size=1, max_size=2, check_idle=0.0)
        with sup.checkout() as lease:
            dead = lease.connection
        driver.kill(dead)
        with sup.checkout() as lease:
            assert lease.connection is not dead and not lease.connection.dead
        wait_until(lambda: dead.closed)
        stats = sup.stats()
        assert (stats.size, stats.idle, stats.restarts) == (1, 1, 0)

    def test_check_skipped_for_a_connection_just_released(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A connection reused within check_idle of its release is not checked: a busy pool pays nothing."""
        sup = supervisor(min_size=1, max_size=1, check_idle=60.0)
        for _ in range(5):
            with sup.checkout():
                pass
        assert driver.alive_checks == 0

    def test_check_runs_after_the_threshold(self, supervisor: SupervisorFactory, driver: FakeDriver) -> None:
        """A connection idle for longer than check_idle is checked once per checkout."""
        sup = supervisor(min_size=1, max_size=1, check_idle=0.01)
        with sup.checkout():
            pass
        time.sleep(0.02)
        with sup.checkout():
            pass
        assert driver.alive_checks == 1

    def test_every_dead_idle_connection_is_skipped(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """After a server restart every idle connection is dead: none is leased, each is replaced."""
        sup = supervisor(min_size=3, max_size=3, check_idle=0.0)
        old = [c for c in driver.connections]
        for conn in old:
            driver.kill(conn)
        leases = [sup.checkout(timeout=2.0) for _ in range(3)]
        assert not {id(lease.connection) for lease in leases} & {id(c) for c in old}
        for lease in leases:
            lease.release()
        wait_until(lambda: all(c.closed for c in old))
        assert sup.stats().restarts == 0 and sup.stats().idle == 3

    def test_checkout_callback_checks_too(self, supervisor: SupervisorFactory, driver: FakeDriver) -> None:
        """The asyncio path's checkout skips a dead idle connection as well."""
        sup = supervisor(min_size=1, max_size=1, check_idle=0.0)
        with sup.checkout() as lease:
            dead = lease.connection
        driver.kill(dead)
        got: list[Any] = []
        done = threading.Event()
        sup.checkout_callback(lambda lease, error: (got.append((lease, error)), done.set()))
        assert done.wait(2.0)
        lease, error = got[0]
        assert error is None and lease.connection is not dead
        lease.release()

    def test_expired_idle_connection_is_recycled_at_checkout(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """An idle connection past max_lifetime is replaced when next asked for, not handed out."""
        sup = supervisor(min_size=1, max_size=1, max_lifetime=0.05)
        with sup.checkout() as lease:
            old = lease.connection
        time.sleep(0.06)
        with sup.checkout() as lease:
            assert lease.connection is not old
        wait_until(lambda: old.closed)

    def test_lifetime_is_jittered_below_the_limit(self, supervisor: SupervisorFactory) -> None:
        """Each connection expires between 95% and 100% of max_lifetime after it opened."""
        sup = supervisor(min_size=3, max_size=3, max_lifetime=100.0)
        with sup._lock:
            ages = [s.expires - s.born for s in sup._slots if s.expires is not None]
        assert len(ages) == 3 and all(95.0 <= a <= 100.0 for a in ages)

    def test_bad_check_idle_is_refused(self) -> None:
        """A negative check_idle is a ValueError."""
        with pytest.raises(ValueError):
            PoolPolicy(check_idle=-1)


class TestBeginOnADeadConnection:
    def test_dead_on_begin_moves_to_a_fresh_connection(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A connection that died unseen fails BEGIN; the run goes on with a fresh one and the body runs once."""
        sup = supervisor(min_size=1, max_size=2)
        calls: list[Any] = []
        with sup.checkout() as lease:
            dead = lease.connection
            driver.kill(dead, silent=True)
            result = WorkflowActor(driver, lease).run(lambda conn: calls.append(conn) or conn.execute("insert"))
            assert lease.connection is not dead
        assert result == "insert" and len(calls) == 1
        assert calls[0] is not dead and calls[0].statements == ["insert"]
        assert driver.commits == 1
        wait_until(lambda: dead.closed)
        wait_until(lambda: sup.stats().idle == sup.stats().size == 1)

    def test_gives_up_after_every_connection_failed(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """If every fresh connection is dead on BEGIN too, ConnectionLost is raised and the body never runs."""
        sup = supervisor(min_size=1, max_size=1)
        real_begin = driver.begin

        def begin(conn: Any) -> None:
            driver.kill(conn, silent=True)
            real_begin(conn)

        driver.begin = begin  # type: ignore[method-assign]
        lease = sup.checkout()
        with pytest.raises(ConnectionLost):
            WorkflowActor(driver, lease).run(lambda conn: pytest.fail("the body ran"))
        lease.release()
        assert driver.opens == 1 + lease.max_renewals

    def test_a_failed_renewal_leaves_the_lease_released(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """When no fresh connection comes, the checkout's error is raised and release is a no-op."""
        sup = supervisor(min_size=1, max_size=1, checkout_timeout=0.1, max_restarts=1000)
        lease = sup.checkout()
        driver.kill(lease.connection, silent=True)
        driver.fail_connect = 10_000
        with pytest.raises(TimeoutError):
            WorkflowActor(driver, lease).run(lambda conn: None)
        lease.release()
        assert sup.stats().in_use == 0


class TestReplacement:
    def test_broken_lease_is_replaced_above_min_size(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A connection lost under a lease is replaced one-for-one even when the pool is above min_size."""
        sup = supervisor(min_size=1, max_size=3)
        leases = [sup.checkout() for _ in range(3)]
        leases[0].mark_broken()
        for lease in leases:
            lease.release()
        wait_until(lambda: sup.stats().idle == 3)
        assert driver.opens == 4 and sup.stats().size == 3

    def test_failed_replacement_is_retried_until_the_pool_is_back(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A replacement that cannot connect is retried with backoff until it does."""
        sup = supervisor(min_size=1, max_size=3, max_restarts=100)
        leases = [sup.checkout() for _ in range(3)]
        driver.fail_connect = 3
        leases[0].mark_broken()
        for lease in leases:
            lease.release()
        wait_until(lambda: sup.stats().idle == 3)
        assert sup.stats().restarts == 3
        wait_until(lambda: not timer_threads())

    def test_failure_closes_idle_connections_and_stops_timers(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """Past max_restarts the pool closes what is idle, schedules nothing more, and refuses checkouts."""
        sup = supervisor(min_size=3, max_size=3, max_restarts=2)
        driver.fail_connect = 10_000
        sup.crash_one(timeout=2.0)
        wait_until(lambda: sup.state == "failed")
        wait_until(lambda: driver.open_count == 0)
        assert sup.stats().size == 0
        wait_until(lambda: not timer_threads())
        connects = driver.connects
        time.sleep(0.05)
        assert driver.connects == connects
        with pytest.raises(SupervisorFailed):
            sup.checkout(timeout=0.1)

    def test_crash_one_can_wait_for_the_crash(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """crash_one(timeout=...) returns once the connection is closed and the death reported."""
        sup = supervisor(min_size=1, max_size=1)
        lease = sup.checkout()
        conn = lease.connection
        sup.crash_one(timeout=2.0)
        assert conn.closed
        lease.release()
        wait_until(lambda: sup.stats().idle == 1)
        assert sup.stats().restarts == 1

    def test_stop_cancels_pending_reconnects(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A reconnect waiting on its backoff timer is cancelled by stop(): no thread outlives it."""
        from actors import Backoff

        Backoff.INITIAL_DELAY = Backoff.MAX_DELAY = 5.0  # restored by the autouse fixture
        sup = supervisor(min_size=1, max_size=1, max_restarts=100)
        driver.fail_connect = 1
        sup.crash_one(timeout=2.0)
        wait_until(lambda: timer_threads())
        sup.stop(timeout=2.0)
        assert not timer_threads()
        assert driver.connects == 2  # the original, and the one failed replacement


def test_stop_waits_for_connections_being_retired(supervisor: SupervisorFactory, driver: FakeDriver) -> None:
    """When stop() returns, connections retired a moment before are closed and their actors gone."""
    import pykka

    from actors.connection import ConnectionActor

    sup = supervisor(min_size=2, max_size=2, check_idle=0.0)
    for conn in list(driver.connections):
        driver.kill(conn)
    with sup.checkout(timeout=2.0):
        pass
    sup.stop(timeout=2.0)
    assert driver.open_count == 0
    assert not pykka.ActorRegistry.get_by_class(ConnectionActor)
