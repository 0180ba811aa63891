"""Supervisor: owns the connection actors of one database and leases them out.

Checkout is a critical section on the caller's thread, not a message: a
thread hand-off costs more here than a whole SQLite statement (see
``docs/adr/0001-one-hop-budget.md``). Connection actors report back
(connected, connect failed, died) by calling the ``_connected`` /
``_connect_failed`` / ``_child_died`` hooks from their own threads.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from typing import Any, Callable, NamedTuple

import pykka

from .connection import ConnectionActor
from .errors import (
    ActorStopped,
    CheckoutTimeout,
    LeaseReleased,
    PoolClosed,
    SupervisorFailed,
)
from .messages import Close, Connect, Crash, Run
from .policy import Backoff, PoolPolicy
from .protocols import Driver, TxState

__all__ = ["Lease", "PoolStats", "Slot", "Supervisor"]


class PoolStats(NamedTuple):
    """A snapshot of the pool: every count read under one lock."""

    state: str
    size: int
    in_use: int
    idle: int
    connecting: int
    waiting: int
    restarts: int
    max_size: int


class Slot:
    """One connection actor and the connection it owns."""

    __slots__ = ("actor", "born", "conn", "expires", "id", "idle_since", "replaces", "state", "thread_id")

    def __init__(self, slot_id: int, replaces: bool = False) -> None:
        self.id = slot_id
        self.actor: pykka.ActorRef[Any] | None = None
        self.conn: Any = None
        self.state = "connecting"
        self.born = time.monotonic()
        self.idle_since = self.born
        #: when the connection is recycled (monotonic), None for never
        self.expires: float | None = None
        #: opened to replace a lost one: retried with backoff until it connects
        self.replaces = replaces
        #: the ident of the actor's thread, once it runs
        self.thread_id: int | None = None


class Lease:
    """Exclusive use of one connection until :meth:`release`.

    The thread holding a lease may use :attr:`connection` directly, or send
    work to the connection's own actor thread with :meth:`submit`. After
    release every use raises :class:`LeaseReleased`.
    """

    __slots__ = ("_broken", "_conn", "_released", "_slot", "_supervisor")

    def __init__(self, supervisor: Supervisor, slot: Slot) -> None:
        self._supervisor = supervisor
        self._slot = slot
        self._conn = slot.conn
        self._released = False
        self._broken = False

    @property
    def connection(self) -> Any:
        if self._released:
            raise LeaseReleased("this lease was released; its connection is gone")
        return self._conn

    @property
    def slot_id(self) -> int:
        return self._slot.id

    def mark_broken(self) -> None:
        """Say the connection must not be reused: it is replaced on release."""
        self._broken = True

    def submit(self, fn: Callable[[Any], Any], reply: Callable[[Any, BaseException | None], None]) -> None:
        """Run ``fn(connection)`` on the connection actor's thread; ``reply`` gets the outcome."""
        if self._released:
            raise LeaseReleased("this lease was released; its connection is gone")
        actor = self._slot.actor
        try:
            if actor is None:
                raise pykka.ActorDeadError("no actor")
            actor.tell(Run(fn, reply))
        except pykka.ActorDeadError as exc:
            self._broken = True
            raise ActorStopped(f"connection actor {self._slot.id} has stopped") from exc

    @property
    def max_renewals(self) -> int:
        """How often :meth:`renew` may be tried for one piece of work: once per pooled connection, plus one."""
        return self._supervisor.policy.max_size + 1

    def renew(self, timeout: float | None = None) -> Any:
        """Swap a connection found dead before any work was done on it for a fresh one.

        The old connection is retired (and replaced); this lease then holds
        another connection, waiting for one at most ``timeout`` seconds (the
        policy's checkout timeout by default). Returns the new connection.
        If no connection can be had, the lease ends released and the
        checkout's error is raised.
        """
        if self._released:
            raise LeaseReleased("this lease was released; its connection is gone")
        supervisor = self._supervisor
        self._released = True
        supervisor._release(self._slot, True)
        fresh = supervisor.checkout(timeout)
        # The fresh lease's slot now belongs to this lease.
        fresh._released = True
        self._slot, self._conn = fresh._slot, fresh._conn
        self._broken = False
        self._released = False
        return self._conn

    def release(self) -> None:
        """Give the connection back; idempotent."""
        if self._released:
            return
        self._released = True
        self._supervisor._release(self._slot, self._broken)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Waiter:
    __slots__ = ("callback", "error", "event", "lease")

    def __init__(self, callback: Callable[[Lease | None, BaseException | None], None] | None) -> None:
        self.callback = callback
        self.event = threading.Event() if callback is None else None
        self.lease: Lease | None = None
        self.error: BaseException | None = None

    def deliver(self, lease: Lease | None, error: BaseException | None) -> None:
        # Called with the supervisor's lock held: must not block.
        self.lease, self.error = lease, error
        if self.callback is not None:
            self.callback(lease, error)
        else:
            assert self.event is not None
            self.event.set()


class Supervisor:
    """Starts, leases, replaces and stops the connection actors of one pool."""

    def __init__(self, driver: Driver, policy: PoolPolicy) -> None:
        self.driver = driver
        self.policy = policy
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._slots: set[Slot] = set()
        self._idle: deque[Slot] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._restart_times: deque[float] = deque()
        self._restarts = 0
        self._next_id = 0
        self._state = "new"
        self._failure: BaseException | None = None
        self._failed_at = 0.0
        self._backoff = Backoff()
        self._timers: set[threading.Timer] = set()
        #: actors told to close whose stop is not confirmed yet
        self._retiring: set[pykka.ActorRef[Any]] = set()
        self._retiring_lock = threading.Lock()
        self._starting = False
        self._first_error: BaseException | None = None

    # -- life cycle -------------------------------------------------------

    def start(self) -> None:
        """Open ``min_size`` connections; raise the driver's error if the first fails."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"supervisor is {self._state}, not new")
            self._state = "running"
            self._starting = True
            for _ in range(self.policy.min_size):
                self._spawn_locked()
            deadline = time.monotonic() + self.policy.connect_timeout
            while len(self._idle) < self.policy.min_size and self._state == "running":
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._first_error is not None:
                    break
                self._changed.wait(remaining)
            error = self._first_error
            self._starting = False
        if error is not None or len(self._idle) < self.policy.min_size:
            self.stop()
            if error is not None:
                raise error
            raise CheckoutTimeout(f"could not open {self.policy.min_size} connection(s) in time")

    def stop(self, timeout: float = 5.0) -> None:
        """Close every idle connection, fail every waiter, refuse new leases.

        Leased connections are closed when their lease is released.
        """
        with self._lock:
            if self._state == "stopped":
                return
            self._state = "stopped"
            waiters, self._waiters = list(self._waiters), deque()
            for waiter in waiters:
                waiter.deliver(None, PoolClosed("the database was closed"))
            idle, self._idle = list(self._idle), deque()
            connecting = [s for s in self._slots if s.state == "connecting"]
            for slot in idle:
                self._slots.discard(slot)
            timers = self._cancel_timers_locked()
        for slot in idle + connecting:
            self._stop_actor(slot, timeout)
        for timer in timers:
            timer.join(timeout)
        with self._retiring_lock:
            retiring, self._retiring = self._retiring, set()
        for actor in retiring:
            actor.actor_stopped.wait(timeout)

    @property
    def state(self) -> str:
        """``new``, ``running``, ``failed`` or ``stopped``."""
        return self._state

    @property
    def failure(self) -> BaseException | None:
        """The error that made the supervisor fail, if it did."""
        return self._failure

    def stats(self) -> PoolStats:
        with self._lock:
            in_use = sum(1 for s in self._slots if s.state == "leased")
            connecting = sum(1 for s in self._slots if s.state == "connecting")
            return PoolStats(
                self._state, len(self._slots), in_use, len(self._idle), connecting,
                len(self._waiters), self._restarts, self.policy.max_size,
            )

    def actors(self) -> list[pykka.ActorRef[Any]]:
        """The live connection actors (for inspection and failure tests)."""
        with self._lock:
            return [s.actor for s in self._slots if s.actor is not None and s.actor.is_alive()]

    def crash_one(self, reason: str = "crash requested", timeout: float | None = None) -> int:
        """Crash one connection actor (an idle one if any); return its slot id.

        With ``timeout``, wait until the actor has closed its connection and
        reported its death (raise TimeoutError past it), unless called from
        that actor's own thread, which cannot crash while it waits.
        """
        with self._lock:
            candidates = list(self._idle) or [s for s in self._slots if s.actor is not None]
            if not candidates:
                raise RuntimeError("no connection actor to crash")
            slot = candidates[-1]
        assert slot.actor is not None
        slot.actor.tell(Crash(reason))
        if timeout is not None and slot.thread_id != threading.get_ident():
            with self._lock:
                if not self._changed.wait_for(lambda: slot.state == "dead", timeout):
                    raise TimeoutError(f"connection actor {slot.id} did not crash within {timeout:g}s")
        return slot.id

    def resize(self, max_size: int) -> None:
        """Set a new ``max_size`` (``min_size`` is lowered to it if larger).

        Growing serves waiting checkouts at once. Shrinking closes idle
        connections above the new size now, drops connections still being
        opened, and closes leased ones as they are released.
        """
        with self._lock:
            self.policy = dataclasses.replace(
                self.policy, max_size=max_size, min_size=min(self.policy.min_size, max_size)
            )
            closing: list[Slot] = []
            while len(self._slots) > max_size and self._idle:
                slot = self._idle.popleft()
                self._slots.discard(slot)
                slot.state = "closing"
                closing.append(slot)
            connecting = [s for s in self._slots if s.state == "connecting"]
            while len(self._slots) > max_size and connecting:
                # Out of the pool: _connected() closes it when it arrives.
                self._slots.discard(connecting.pop())
            while self._state == "running" and self._needs_growth_locked():
                self._spawn_locked()
        for slot in closing:
            self._stop_actor(slot, 0)

    # -- leasing ----------------------------------------------------------

    def checkout(self, timeout: float | None = None) -> Lease:
        """Lease a connection, waiting at most ``timeout`` (default: the policy's).

        An idle connection that is past its age or visibly dead (see
        :meth:`_fit`) is retired and replaced instead of leased.
        """
        while True:
            # Critical section: take an idle connection, or queue up for one.
            with self._lock:
                if self._idle and self._state == "running":
                    slot = self._idle.pop()
                    slot.state = "leased"
                else:
                    self._check_running_locked()
                    waiter = _Waiter(None)
                    self._waiters.append(waiter)
                    self._grow_locked()
                    break
            if self._fit(slot):
                return Lease(self, slot)
            self._retire(slot)
        wait = self.policy.checkout_timeout if timeout is None else timeout
        assert waiter.event is not None
        if not waiter.event.wait(wait):
            with self._lock:
                if waiter.lease is None and waiter.error is None:
                    self._waiters.remove(waiter)
                    raise CheckoutTimeout(
                        f"no connection free within {wait:g}s "
                        f"(pool of {self.policy.max_size}, all in use)"
                    )
        if waiter.error is not None:
            raise waiter.error
        assert waiter.lease is not None
        return waiter.lease

    def checkout_callback(
        self, callback: Callable[[Lease | None, BaseException | None], None]
    ) -> Callable[[], bool]:
        """Lease without blocking: ``callback(lease, error)`` is called exactly once.

        The callback runs on whichever thread frees or opens a connection, with
        the supervisor's lock held, so it must only schedule work (for example
        ``loop.call_soon_threadsafe``). Returns a function that withdraws the
        request if it is still waiting (True) or says it was already served.
        """
        waiter = _Waiter(callback)
        while True:
            with self._lock:
                self._maybe_recover_locked()
                if self._state != "running":
                    waiter.deliver(None, self._not_running_error_locked())
                    return lambda: False
                if not self._idle:
                    self._waiters.append(waiter)
                    self._grow_locked()
                    break
                slot = self._idle.pop()
                slot.state = "leased"
            if self._fit(slot):
                waiter.deliver(Lease(self, slot), None)
                return lambda: False
            self._retire(slot)

        def withdraw() -> bool:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    return True
                return False

        return withdraw

    def _release(self, slot: Slot, broken: bool) -> None:
        # Runs on the releasing thread. Clean the connection outside the lock.
        retire = broken or self._state != "running"
        if not retire:
            retire = not self._clean(slot)
        if not retire and slot.expires is not None and time.monotonic() >= slot.expires:
            retire = True
        with self._lock:
            # Decide again under the lock: the actor may have died while we
            # cleaned (its slot left the pool and was replaced already), or
            # the pool may have shrunk (then the slot is not replaced).
            replace = slot in self._slots and len(self._slots) <= self.policy.max_size
            if not replace:
                retire = True
            if retire:
                self._retire_locked(slot, replace)
            else:
                self._hand_over_locked(slot)
                self._reap_idle_locked()
        if retire:
            self._stop_actor(slot, 0)

    def _fit(self, slot: Slot) -> bool:
        """Whether an idle connection may be leased: not past its age, not visibly dead.

        Runs on the checking-out thread, outside the lock. The liveness check
        costs no round trip (``Driver.alive`` looks at the socket) and is
        skipped for a connection released less than ``check_idle`` ago, so a
        busy pool never pays for it (docs/adr/0006-pool-and-supervision.md).
        """
        now = time.monotonic()
        if slot.expires is not None and now >= slot.expires:
            return False
        check = self.policy.check_idle
        if check is None or now - slot.idle_since < check:
            return True
        try:
            return bool(self.driver.alive(slot.conn))
        except Exception:  # noqa: BLE001 - whatever the check raises, the connection is not fit
            return False

    def _retire(self, slot: Slot) -> None:
        """Close a leased-but-unfit connection and replace it one-for-one."""
        with self._lock:
            self._retire_locked(slot, True)
        self._stop_actor(slot, 0)

    def _clean(self, slot: Slot) -> bool:
        """Roll back anything left open; False if the connection is unusable."""
        try:
            state = self.driver.transaction_state(slot.conn)
            if state is TxState.IDLE:
                return True
            if state is TxState.UNKNOWN:
                return False
            self.driver.rollback(slot.conn)
            return self.driver.transaction_state(slot.conn) is TxState.IDLE
        except Exception:  # noqa: BLE001 - a connection that cannot be cleaned is replaced
            return False

    # -- children's reports (called from connection actor threads) --------

    def _connected(self, slot: Slot, conn: Any) -> None:
        with self._lock:
            slot.conn = conn
            slot.born = time.monotonic()
            lifetime = self.policy.max_lifetime
            if lifetime is not None:
                # psycopg_pool's jitter: 95-100% of max_lifetime, so that
                # connections opened together are not recycled together.
                slot.expires = slot.born + lifetime * random.uniform(0.95, 1.0)
            if self._state != "running" or slot not in self._slots:
                self._slots.discard(slot)
                stale = True
            else:
                stale = False
                self._backoff = Backoff()
                self._hand_over_locked(slot)
                self._changed.notify_all()
        if stale:
            self._stop_actor(slot, 0)

    def _connect_failed(self, slot: Slot, exc: BaseException) -> None:
        with self._lock:
            was_in_pool = slot in self._slots
            self._slots.discard(slot)
            slot.state = "dead"
            if self._starting:
                self._first_error = exc
                self._changed.notify_all()
                return
            if not was_in_pool:  # dropped by resize() while connecting
                return
            self._count_restart_locked(exc)
            if self._state == "running" and (slot.replaces or self._needs_growth_locked()):
                delay = self._backoff.next_delay()
                timer = threading.Timer(delay, self._respawn, args=(slot.replaces,))
                timer.daemon = True
                self._timers.add(timer)
                timer.start()

    def _child_died(self, slot: Slot, exc: BaseException | None) -> None:
        with self._lock:
            was_in_pool = slot in self._slots
            self._slots.discard(slot)
            if slot.state == "idle":
                try:
                    self._idle.remove(slot)
                except ValueError:
                    pass
            slot.state = "dead"
            self._changed.notify_all()
            if not was_in_pool:
                return
            self._count_restart_locked(exc)
            if self._state == "running":
                self._replace_locked()
                self._grow_locked()

    def _respawn(self, replace: bool) -> None:
        # Runs on a backoff timer's thread.
        with self._lock:
            self._timers = {t for t in self._timers if t is not threading.current_thread()}
            if self._state == "running":
                if replace:
                    self._replace_locked()
                self._grow_locked()

    # -- helpers (lock held) ---------------------------------------------

    def _needs_growth_locked(self) -> bool:
        live = len(self._slots)
        return live < self.policy.min_size or (len(self._waiters) > self._connecting_locked() and live < self.policy.max_size)

    def _connecting_locked(self) -> int:
        return sum(1 for s in self._slots if s.state == "connecting")

    def _grow_locked(self) -> None:
        if self._needs_growth_locked():
            self._spawn_locked()

    def _replace_locked(self) -> None:
        # One-for-one: a lost connection is replaced, up to max_size.
        if len(self._slots) < self.policy.max_size:
            self._spawn_locked(replaces=True)

    def _retire_locked(self, slot: Slot, replace: bool) -> None:
        # The caller stops the slot's actor after leaving the lock. A slot no
        # longer in the pool died meanwhile and was replaced by _child_died.
        was_in_pool = slot in self._slots
        self._slots.discard(slot)
        slot.state = "closing"
        if self._state == "running":
            if replace and was_in_pool:
                self._replace_locked()
            self._grow_locked()

    def _spawn_locked(self, replaces: bool = False) -> None:
        slot = Slot(self._next_id, replaces)
        self._next_id += 1
        self._slots.add(slot)
        slot.actor = ConnectionActor.start(self.driver, self, slot)
        slot.actor.tell(Connect())

    def _hand_over_locked(self, slot: Slot) -> None:
        if self._waiters:
            slot.state = "leased"
            self._waiters.popleft().deliver(Lease(self, slot), None)
            return
        slot.state = "idle"
        slot.idle_since = time.monotonic()
        self._idle.append(slot)

    def _reap_idle_locked(self) -> None:
        # Close every connection idle for longer than max_idle, oldest first
        # (the idle deque is ordered by idle_since), but never below min_size.
        max_idle = self.policy.max_idle
        if max_idle is None:
            return
        now = time.monotonic()
        while (
            self._idle
            and len(self._slots) > self.policy.min_size
            and now - self._idle[0].idle_since > max_idle
        ):
            oldest = self._idle.popleft()
            self._slots.discard(oldest)
            oldest.state = "closing"
            if oldest.actor is not None:
                try:
                    oldest.actor.tell(Close())
                except pykka.ActorDeadError:
                    pass

    def _count_restart_locked(self, exc: BaseException | None) -> None:
        now = time.monotonic()
        self._restarts += 1
        self._restart_times.append(now)
        while self._restart_times and now - self._restart_times[0] > self.policy.restart_period:
            self._restart_times.popleft()
        if len(self._restart_times) > self.policy.max_restarts and self._state == "running":
            self._fail_locked(exc)

    def _fail_locked(self, exc: BaseException | None) -> None:
        # No more restarts: fail every waiter, close every idle connection
        # (leased ones close on release), and stop the backoff timers.
        self._state = "failed"
        self._failed_at = time.monotonic()
        self._failure = exc
        error = self._not_running_error_locked()
        waiters, self._waiters = list(self._waiters), deque()
        for waiter in waiters:
            waiter.deliver(None, error)
        idle, self._idle = list(self._idle), deque()
        for slot in idle:
            self._slots.discard(slot)
            slot.state = "closing"
            self._stop_actor(slot, 0)  # only tells Close: safe under the lock
        self._cancel_timers_locked()
        self._changed.notify_all()

    def _cancel_timers_locked(self) -> list[threading.Timer]:
        timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()
        return [t for t in timers if t is not threading.current_thread()]

    def _maybe_recover_locked(self) -> None:
        # Half-open, like a circuit breaker: a pool that failed refuses every
        # call at once for restart_period, then lets the next call try again
        # with a fresh restart budget, so a service outlives a database outage.
        if self._state == "failed" and time.monotonic() - self._failed_at >= self.policy.restart_period:
            self._state = "running"
            self._restart_times.clear()
            self._backoff = Backoff()

    def _check_running_locked(self) -> None:
        self._maybe_recover_locked()
        if self._state != "running":
            raise self._not_running_error_locked()

    def _not_running_error_locked(self) -> BaseException:
        if self._state == "failed":
            error = SupervisorFailed(
                f"connection restarts exceeded {self.policy.max_restarts} within "
                f"{self.policy.restart_period:g}s; the pool has given up"
            )
            error.__cause__ = self._failure
            return error
        if self._state == "new":
            return PoolClosed("the supervisor has not been started")
        return PoolClosed("the database was closed")

    def _stop_actor(self, slot: Slot, timeout: float) -> None:
        actor = slot.actor
        if actor is None:
            return
        try:
            actor.tell(Close())
        except pykka.ActorDeadError:
            return
        if timeout:
            try:
                actor.stop(block=True, timeout=timeout)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
            return
        # Closing on its own thread: stop() waits for it, so that no
        # connection outlives the supervisor. (May run under self._lock.)
        with self._retiring_lock:
            if len(self._retiring) > 32:
                self._retiring = {a for a in self._retiring if not a.actor_stopped.is_set()}
            self._retiring.add(actor)
