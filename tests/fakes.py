"""In-memory stand-ins for a database driver, with fault knobs for tests.

:class:`FakeDriver` satisfies :class:`actors.protocols.Driver` structurally;
no real database is involved. Every knob and counter is guarded by one lock,
since connection actors call the driver from their own threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from actors.protocols import TxState

__all__ = [
    "FakeConnectError",
    "FakeConnection",
    "FakeDisconnect",
    "FakeDriver",
    "FakeTransientError",
    "wait_until",
]


class FakeDisconnect(Exception):
    """The fake connection is gone; ``FakeDriver.is_disconnect`` recognises it."""


class FakeTransientError(Exception):
    """A retryable fake error (think serialization failure)."""


class FakeConnectError(Exception):
    """Raised by ``FakeDriver.connect`` while ``fail_connect`` is positive."""


class FakeConnection:
    """One fake connection: an id, a closed flag, a dead flag and a transaction state."""

    def __init__(self, conn_id: int) -> None:
        self.id = conn_id
        self.closed = False
        self.dead = False
        self.silent = False
        self.tx = TxState.IDLE
        self.statements: list[str] = []

    def check(self) -> None:
        """Raise :class:`FakeDisconnect` if the connection may not be used."""
        if self.closed:
            raise FakeDisconnect(f"connection {self.id} is closed")
        if self.dead:
            raise FakeDisconnect(f"connection {self.id} lost its server")

    def execute(self, sql: str) -> str:
        """Record ``sql`` and return it, like a statement that always succeeds."""
        self.check()
        self.statements.append(sql)
        return sql

    def __repr__(self) -> str:
        return f"<FakeConnection {self.id} {self.tx.value}{' closed' if self.closed else ''}>"


class FakeDriver:
    """A Driver whose connections live in memory.

    Knobs: ``fail_connect`` (the next N connects raise :class:`FakeConnectError`),
    ``connect_gate`` (connect waits on this Event, at most ``gate_timeout`` s),
    :meth:`kill` (a connection "dies": later use raises :class:`FakeDisconnect`).
    Counters: ``connects`` (attempts), ``opens``, ``closes``, ``begins``,
    ``commits``, ``rollbacks``, ``alive_checks``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_connect = 0
        self.connect_gate: threading.Event | None = None
        self.gate_timeout = 10.0
        self.connections: list[FakeConnection] = []
        self.connects = 0
        self.opens = 0
        self.closes = 0
        self.begins = 0
        self.commits = 0
        self.rollbacks = 0
        self.alive_checks = 0

    # -- the Driver protocol ------------------------------------------------

    def connect(self) -> FakeConnection:
        gate = self.connect_gate
        if gate is not None:
            gate.wait(self.gate_timeout)
        with self.lock:
            self.connects += 1
            if self.fail_connect > 0:
                self.fail_connect -= 1
                raise FakeConnectError(f"connect attempt {self.connects} refused")
            self.opens += 1
            conn = FakeConnection(self.opens)
            self.connections.append(conn)
            return conn

    def close(self, conn: FakeConnection) -> None:
        with self.lock:
            if not conn.closed:
                conn.closed = True
                self.closes += 1

    def begin(self, conn: FakeConnection) -> None:
        conn.check()
        if conn.tx is not TxState.IDLE:
            raise RuntimeError(f"begin on {conn!r}: a transaction is already open")
        conn.tx = TxState.INTRANS
        with self.lock:
            self.begins += 1

    def commit(self, conn: FakeConnection) -> None:
        conn.check()
        conn.tx = TxState.IDLE
        with self.lock:
            self.commits += 1

    def rollback(self, conn: FakeConnection) -> None:
        conn.check()
        conn.tx = TxState.IDLE
        with self.lock:
            self.rollbacks += 1

    def ping(self, conn: FakeConnection) -> bool:
        return not (conn.closed or conn.dead)

    def alive(self, conn: FakeConnection) -> bool:
        with self.lock:
            self.alive_checks += 1
        return not (conn.closed or (conn.dead and not conn.silent))

    def transaction_state(self, conn: FakeConnection) -> TxState:
        if conn.closed or conn.dead:
            return TxState.UNKNOWN
        return conn.tx

    def is_disconnect(self, exc: BaseException) -> bool:
        return isinstance(exc, FakeDisconnect)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, FakeTransientError)

    # -- knobs and views ------------------------------------------------------

    def kill(self, conn: FakeConnection, *, silent: bool = False) -> None:
        """Make ``conn`` die: every later use raises :class:`FakeDisconnect`.

        ``silent``: :meth:`alive` does not see it (think of a server killed
        a moment ago, whose goodbye has not reached the socket yet).
        """
        conn.dead = True
        conn.silent = silent

    @property
    def open_count(self) -> int:
        """How many connections are open right now."""
        with self.lock:
            return self.opens - self.closes


def wait_until(predicate: Callable[[], Any], timeout: float = 2.0, interval: float = 0.002) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout:g}s: {predicate}")
        time.sleep(interval)
