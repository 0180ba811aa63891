"""The Supervisor against FakeDriver: leasing, growth, recycling, supervision, shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka
import pytest

from actors import (
    ActorStopped,
    CheckoutTimeout,
    Lease,
    LeaseReleased,
    PoolClosed,
    SupervisorFailed,
)
from actors.connection import ConnectionActor
from tests.fakes import FakeConnectError, FakeDisconnect, FakeDriver, wait_until

from .conftest import SupervisorFactory


def connection_actors() -> list[Any]:
    """The registered connection actors."""
    return pykka.ActorRegistry.get_by_class(ConnectionActor)


def connection_threads() -> list[threading.Thread]:
    """The live threads that run connection actors."""
    return [t for t in threading.enumerate() if t.name.startswith("ConnectionActor-")]


def start_waiter(sup: Any, results: list[Any], timeout: float = 5.0) -> threading.Thread:
    """Start a thread that checks out and appends the lease or the error to ``results``."""

    def run() -> None:
        try:
            results.append(sup.checkout(timeout=timeout))
        except Exception as exc:
            results.append(exc)

    before = sup.stats().waiting
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: sup.stats().waiting > before)
    return thread


class TestCheckout:
    def test_checkout_and_release(self, supervisor: SupervisorFactory) -> None:
        """A lease gives exclusive use of a connection, and release makes it idle again."""
        sup = supervisor(min_size=1, max_size=1)
        lease = sup.checkout()
        conn = lease.connection
        assert conn.execute("select 1") == "select 1"
        assert sup.stats()[:5] == ("running", 1, 1, 0, 0)
        lease.release()
        assert sup.stats()[:5] == ("running", 1, 0, 1, 0)
        with sup.checkout() as again:
            assert again.connection is conn

    def test_min_size_opened_at_start(self, supervisor: SupervisorFactory, driver: FakeDriver) -> None:
        """start() returns once min_size connections are open and idle."""
        sup = supervisor(min_size=3, max_size=5)
        assert driver.opens == 3
        assert sup.stats().idle == 3
        assert len(connection_actors()) == 3

    def test_grows_to_max_size_and_never_beyond(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """Connections open on demand up to max_size, and a further checkout waits instead."""
        sup = supervisor(min_size=1, max_size=3)
        leases = [sup.checkout(timeout=2.0) for _ in range(3)]
        assert len({lease.connection.id for lease in leases}) == 3
        with pytest.raises(CheckoutTimeout):
            sup.checkout(timeout=0.05)
        stats = sup.stats()
        assert (stats.size, stats.in_use, driver.opens) == (3, 3, 3)
        for lease in leases:
            lease.release()
        assert sup.stats().idle == 3

    def test_checkout_timeout(self, supervisor: SupervisorFactory) -> None:
        """A checkout that cannot be served raises CheckoutTimeout, a TimeoutError, after about the bound."""
        sup = supervisor(min_size=1, max_size=1, checkout_timeout=0.2)
        held = sup.checkout()
        start = time.monotonic()
        with pytest.raises(CheckoutTimeout) as info:
            sup.checkout()  # the policy's checkout_timeout applies
        elapsed = time.monotonic() - start
        assert isinstance(info.value, TimeoutError)
        assert 0.19 <= elapsed < 1.0
        assert sup.stats().waiting == 0
        held.release()
        assert sup.stats().idle == 1

    def test_checkout_timeout_while_connect_blocks(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A timed-out checkout leaves no waiter; the connection it asked for becomes idle later."""
        sup = supervisor(min_size=0, max_size=1)
        driver.connect_gate = threading.Event()
        with pytest.raises(CheckoutTimeout):
            sup.checkout(timeout=0.1)
        assert sup.stats().waiting == 0
        assert sup.stats().connecting == 1
        driver.connect_gate.set()
        wait_until(lambda: sup.stats().idle == 1)

    def test_waiters_are_served_fifo(self, supervisor: SupervisorFactory) -> None:
        """Waiters receive a released connection in the order they started waiting."""
        sup = supervisor(min_size=1, max_size=1)
        held = sup.checkout()
        order: list[int] = []

        def run(i: int) -> None:
            with sup.checkout(timeout=5.0):
                order.append(i)

        threads = []
        for i in range(4):
            thread = threading.Thread(target=run, args=(i,), daemon=True)
            thread.start()
            wait_until(lambda n=i + 1: sup.stats().waiting == n)
            threads.append(thread)
        held.release()
        for thread in threads:
            thread.join(5.0)
        assert order == [0, 1, 2, 3]

    def test_checkout_before_start_raises_pool_closed(self, supervisor: SupervisorFactory) -> None:
        """A supervisor that was never started hands out no lease."""
        sup = supervisor(start=False)
        with pytest.raises(PoolClosed):
            sup.checkout(timeout=0.1)


class TestReturnPath:
    def test_open_transaction_is_rolled_back_on_release(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A connection released inside a transaction is rolled back and reused."""
        sup = supervisor(min_size=1, max_size=1)
        with sup.checkout() as lease:
            conn = lease.connection
            driver.begin(conn)
        assert driver.rollbacks == 1
        assert not conn.closed
        with sup.checkout() as lease:
            assert lease.connection is conn
            assert driver.transaction_state(conn).value == "idle"

    def test_broken_lease_is_replaced(self, supervisor: SupervisorFactory, driver: FakeDriver) -> None:
        """A lease marked broken closes its connection on release and the pool returns to size."""
        sup = supervisor(min_size=2, max_size=2)
        lease = sup.checkout()
        conn = lease.connection
        lease.mark_broken()
        lease.release()
        wait_until(lambda: conn.closed)
        wait_until(lambda: sup.stats().idle == 2)
        assert driver.opens == 3
        assert sup.stats().size == 2

    def test_dead_connection_is_replaced(self, supervisor: SupervisorFactory, driver: FakeDriver) -> None:
        """A connection whose transaction state is unknown is replaced on release."""
        sup = supervisor(min_size=1, max_size=1)
        with sup.checkout() as lease:
            conn = lease.connection
            driver.kill(conn)
            with pytest.raises(FakeDisconnect):
                conn.execute("select 1")
        wait_until(lambda: conn.closed)
        with sup.checkout() as lease:
            assert lease.connection is not conn

    def test_lease_used_after_release_raises(self, supervisor: SupervisorFactory) -> None:
        """After release, connection and submit raise LeaseReleased (a RuntimeError); release is idempotent."""
        sup = supervisor()
        lease = sup.checkout()
        lease.release()
        with pytest.raises(LeaseReleased):
            lease.connection  # noqa: B018
        with pytest.raises(RuntimeError):
            lease.submit(lambda conn: None, lambda result, error: None)
        lease.release()
        assert sup.stats().idle == 1

    def test_max_lifetime_recycles_on_release(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A connection older than max_lifetime is closed when released and replaced."""
        sup = supervisor(min_size=1, max_size=1, max_lifetime=0.05)
        lease = sup.checkout()
        conn = lease.connection
        time.sleep(0.06)
        lease.release()
        wait_until(lambda: conn.closed)
        wait_until(lambda: sup.stats().idle == 1)
        assert driver.opens == 2

    def test_young_connection_is_kept_on_release(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A connection younger than max_lifetime goes back to the pool."""
        sup = supervisor(min_size=1, max_size=1, max_lifetime=60.0)
        with sup.checkout() as lease:
            conn = lease.connection
        assert not conn.closed
        assert driver.opens == 1

    def test_max_idle_reaps_above_min_size(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """Connections idle longer than max_idle are closed down to min_size, never below."""
        sup = supervisor(min_size=1, max_size=3, max_idle=0.2)
        leases = [sup.checkout() for _ in range(3)]
        for lease in leases:
            lease.release()
        assert sup.stats().size == 3
        time.sleep(0.25)
        with sup.checkout():
            pass
        assert sup.stats().size == 1
        wait_until(lambda: driver.closes == 2)
        time.sleep(0.25)
        with sup.checkout():
            pass
        assert sup.stats().size == 1


class TestCallbacks:
    def test_checkout_callback_delivers_exactly_once(self, supervisor: SupervisorFactory) -> None:
        """A callback checkout is served once, immediately if idle, else when a lease is released."""
        sup = supervisor(min_size=1, max_size=1)
        calls: list[tuple[Lease | None, BaseException | None]] = []
        withdraw = sup.checkout_callback(lambda lease, error: calls.append((lease, error)))
        assert len(calls) == 1 and calls[0][1] is None
        assert withdraw() is False
        first = calls[0][0]
        assert first is not None

        second: list[tuple[Lease | None, BaseException | None]] = []
        withdraw = sup.checkout_callback(lambda lease, error: second.append((lease, error)))
        assert second == [] and sup.stats().waiting == 1
        first.release()
        assert len(second) == 1 and second[0][1] is None
        assert withdraw() is False
        assert second[0][0] is not None
        second[0][0].release()
        assert len(second) == 1

    def test_checkout_callback_withdraw(self, supervisor: SupervisorFactory) -> None:
        """A withdrawn callback request is never served and leaves no waiter."""
        sup = supervisor(min_size=1, max_size=1)
        held = sup.checkout()
        calls: list[Any] = []
        withdraw = sup.checkout_callback(lambda lease, error: calls.append((lease, error)))
        assert withdraw() is True
        assert withdraw() is False
        held.release()
        assert calls == []
        assert sup.stats().waiting == 0 and sup.stats().idle == 1

    def test_checkout_callback_after_stop_gets_pool_closed(self, supervisor: SupervisorFactory) -> None:
        """A callback checkout on a stopped supervisor gets PoolClosed once."""
        sup = supervisor()
        sup.stop()
        calls: list[Any] = []
        sup.checkout_callback(lambda lease, error: calls.append((lease, error)))
        assert len(calls) == 1
        assert calls[0][0] is None and isinstance(calls[0][1], PoolClosed)

    def test_submit_runs_on_the_connection_actor_thread(self, supervisor: SupervisorFactory) -> None:
        """Lease.submit runs the function on the connection actor's thread and replies with its result."""
        sup = supervisor()
        leases: list[Lease | None] = []
        sup.checkout_callback(lambda lease, error: leases.append(lease))
        lease = leases[0]
        assert lease is not None
        done = threading.Event()
        replies: list[Any] = []

        def reply(result: Any, error: BaseException | None) -> None:
            replies.append((result, error))
            done.set()

        lease.submit(lambda conn: (threading.current_thread().name, conn.execute("x")), reply)
        assert done.wait(2.0)
        (thread_name, sql), error = replies[0]
        assert error is None and sql == "x"
        assert thread_name.startswith("ConnectionActor-")
        lease.release()

    def test_submit_error_is_replied(self, supervisor: SupervisorFactory) -> None:
        """An exception raised by submitted work is handed to the reply, and the actor lives on."""
        sup = supervisor()
        lease = sup.checkout()
        done = threading.Event()
        replies: list[Any] = []

        def boom(conn: Any) -> None:
            raise ValueError("bad node")

        lease.submit(boom, lambda result, error: (replies.append(error), done.set()))
        assert done.wait(2.0)
        assert isinstance(replies[0], ValueError)
        lease.release()
        assert len(sup.actors()) == 1

    def test_submit_queued_behind_a_crash_is_answered(self, supervisor: SupervisorFactory) -> None:
        """Work queued on a connection actor that then crashes gets an ActorStopped reply, not silence."""
        sup = supervisor(min_size=1, max_size=1)
        lease = sup.checkout()
        gate = threading.Event()
        busy = threading.Event()
        replies: list[Any] = []
        answered = threading.Event()

        def block(conn: Any) -> None:
            busy.set()
            gate.wait(5.0)

        lease.submit(block, lambda result, error: None)
        assert busy.wait(2.0)
        sup.crash_one()
        lease.submit(lambda conn: "late", lambda result, error: (replies.append((result, error)), answered.set()))
        gate.set()
        assert answered.wait(2.0), "the queued work was dropped without a reply"
        assert replies[0][0] is None and isinstance(replies[0][1], ActorStopped)
        lease.release()


class TestSupervision:
    def test_crash_one_is_replaced_one_for_one(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A crashed idle connection actor is replaced by exactly one new one and the restart is counted."""
        sup = supervisor(min_size=2, max_size=2)
        before = set(sup.actors())
        sup.crash_one()
        wait_until(lambda: sup.stats().restarts == 1 and sup.stats().idle == 2)
        after = set(sup.actors())
        assert len(after) == 2 and len(after & before) == 1
        assert driver.opens == 3 and driver.closes == 1
        assert sup.state == "running"

    def test_crash_of_a_leased_connection(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A crash under a lease fails that lease's connection; release does not return it to the pool."""
        sup = supervisor(min_size=1, max_size=1)
        lease = sup.checkout()
        conn = lease.connection
        sup.crash_one()
        wait_until(lambda: sup.stats().restarts == 1 and sup.stats().idle == 1)
        with pytest.raises(FakeDisconnect):
            conn.execute("select 1")
        lease.release()
        stats = sup.stats()
        assert (stats.size, stats.idle, stats.in_use) == (1, 1, 0)
        with sup.checkout() as fresh:
            assert fresh.connection is not conn and not fresh.connection.closed

    def test_released_lease_of_a_dead_actor_is_not_reused(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A lease whose actor died is retired on release even if the driver calls its connection idle."""
        driver.transaction_state = lambda conn: conn.tx  # type: ignore[method-assign]
        sup = supervisor(min_size=1, max_size=1)
        lease = sup.checkout()
        dead = lease.connection
        sup.crash_one()
        wait_until(lambda: sup.stats().restarts == 1 and sup.stats().idle == 1)
        lease.release()
        stats = sup.stats()
        assert (stats.size, stats.idle, stats.in_use) == (1, 1, 0)
        with sup.checkout() as fresh:
            assert fresh.connection is not dead

    def test_restart_intensity_exceeded_fails_the_supervisor(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """Too many restarts in the period fail the pool once, with the cause chained, and no restart storm."""
        sup = supervisor(min_size=1, max_size=1, max_restarts=3, restart_period=10.0)
        held = sup.checkout()
        results: list[Any] = []
        waiter = start_waiter(sup, results)
        driver.fail_connect = 1000
        sup.crash_one()
        wait_until(lambda: sup.state == "failed")
        waiter.join(2.0)
        assert len(results) == 1 and isinstance(results[0], SupervisorFailed)
        assert isinstance(results[0].__cause__, FakeConnectError)
        with pytest.raises(SupervisorFailed) as info:
            sup.checkout(timeout=0.1)
        assert isinstance(info.value.__cause__, FakeConnectError)
        assert sup.failure is info.value.__cause__
        connects = driver.connects
        time.sleep(0.1)
        assert driver.connects == connects <= 1 + 3 + 1
        assert sup.stats().restarts == 4
        held.release()

    def test_failed_pool_tries_again_after_the_restart_period(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """A failed pool refuses calls at once, then after restart_period the next call reconnects and succeeds."""
        sup = supervisor(min_size=1, max_size=1, max_restarts=1, restart_period=0.3)
        driver.fail_connect = 1000
        sup.crash_one()
        wait_until(lambda: sup.state == "failed")
        with pytest.raises(SupervisorFailed):
            sup.checkout(timeout=0.1)
        driver.fail_connect = 0
        time.sleep(0.35)
        lease = sup.checkout(timeout=2.0)
        assert sup.state == "running"
        lease.release()

    def test_start_raises_the_drivers_error(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """start() raises the driver's own error when the first connect fails, and leaves nothing running."""
        driver.fail_connect = 1
        sup = supervisor(start=False, min_size=2, max_size=2)
        with pytest.raises(FakeConnectError):
            sup.start()
        assert sup.state == "stopped"
        wait_until(lambda: not connection_actors())
        wait_until(lambda: driver.open_count == 0)


class TestStop:
    def test_stop_closes_every_connection(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """stop() fails waiters with PoolClosed, refuses checkouts, and closes leased connections on release."""
        sup = supervisor(min_size=2, max_size=3)
        leases = [sup.checkout() for _ in range(3)]
        leases.pop().release()
        leases.append(sup.checkout())
        results: list[Any] = []
        waiter = start_waiter(sup, results)
        sup.stop()
        waiter.join(2.0)
        assert len(results) == 1 and isinstance(results[0], PoolClosed)
        assert driver.open_count == 3  # all leased: closed on release
        with pytest.raises(PoolClosed):
            sup.checkout(timeout=0.1)
        for lease in leases:
            lease.release()
        wait_until(lambda: driver.open_count == 0)
        assert driver.closes == driver.opens == 3

    def test_stop_closes_idle_connections_at_once(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """When stop() returns, every idle connection is closed and its actor unregistered."""
        sup = supervisor(min_size=3, max_size=3)
        sup.stop()
        assert driver.open_count == 0 and driver.closes == 3
        assert not connection_actors()

    def test_stop_leaves_no_actor_or_thread(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """After stop() and the release of every lease, no connection actor or thread is left."""
        sup = supervisor(min_size=2, max_size=3)
        lease = sup.checkout()
        extra = sup.checkout()
        extra2 = sup.checkout()
        extra2.release()
        sup.stop()
        lease.release()
        extra.release()
        wait_until(lambda: driver.open_count == 0)
        assert driver.closes == driver.opens == 3
        wait_until(lambda: not connection_actors())
        wait_until(lambda: not connection_threads())

    def test_stop_is_idempotent(self, supervisor: SupervisorFactory, driver: FakeDriver) -> None:
        """Stopping twice is harmless and closes each connection once."""
        sup = supervisor(min_size=2, max_size=2)
        sup.stop()
        sup.stop()
        assert driver.closes == 2 and driver.open_count == 0
        assert sup.state == "stopped"


class TestResize:
    def test_growing_serves_waiters(self, supervisor: SupervisorFactory) -> None:
        """Raising max_size opens connections for checkouts that were waiting."""
        sup = supervisor(min_size=1, max_size=1)
        held = sup.checkout()
        results: list[Any] = []
        waiters = [start_waiter(sup, results) for _ in range(2)]
        sup.resize(3)
        for waiter in waiters:
            waiter.join(2.0)
        assert len(results) == 2 and all(isinstance(r, Lease) for r in results)
        stats = sup.stats()
        assert (stats.size, stats.in_use, stats.waiting, stats.max_size) == (3, 3, 0, 3)
        for lease in [held, *results]:
            lease.release()

    def test_shrinking_retires_idle_now_and_leased_on_release(
        self, supervisor: SupervisorFactory, driver: FakeDriver
    ) -> None:
        """Lowering max_size closes idle connections above it at once and leased ones on release."""
        sup = supervisor(min_size=2, max_size=4)
        leases = [sup.checkout() for _ in range(4)]
        leases[0].release()
        leases[1].release()
        sup.resize(1)
        assert sup.policy.min_size == 1
        stats = sup.stats()
        assert (stats.size, stats.idle, stats.in_use) == (2, 0, 2)
        wait_until(lambda: driver.closes == 2)
        leases[2].release()
        assert sup.stats().size == 1 and sup.stats().idle == 0
        leases[3].release()
        assert sup.stats()[1:5] == (1, 0, 1, 0)
        wait_until(lambda: driver.open_count == 1)

    def test_resize_rejects_a_bad_size(self, supervisor: SupervisorFactory) -> None:
        """resize() refuses a max_size below 1 with ValueError and keeps the old policy."""
        sup = supervisor(max_size=2)
        with pytest.raises(ValueError):
            sup.resize(0)
        assert sup.policy.max_size == 2
