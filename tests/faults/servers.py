"""Faults from outside: kill a server connection, count the server's connections, threads.

Each engine is faulted the way it fails in production: a PostgreSQL backend
is ended with ``pg_terminate_backend``, a MariaDB connection with ``KILL``,
both from a separate raw connection; SQLite has no server, so its
connection is closed under the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dataflow import DataFlow

__all__ = [
    "admin",
    "backend_id",
    "idle_backend",
    "kill_backend",
    "server_connections",
    "thread_names",
    "wait_for",
]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s (last: {value!r})")
        time.sleep(0.005)


@contextmanager
def admin(db: DataFlow) -> Iterator[Any]:
    """A raw autocommit connection to ``db``'s database, outside DataFlow's pool."""
    u = db.url
    if db.dialect.name == "postgresql":
        import psycopg

        conn = psycopg.connect(host=u.host, port=u.port, user=u.user, password=u.password, dbname=u.database,
                               autocommit=True, connect_timeout=10)
    else:
        import pymysql

        conn = pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.user or "root",
                               password=u.password or "", database=u.database, autocommit=True, connect_timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def _rows(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return [tuple(r) for r in cur.fetchall()]


def backend_id(db: DataFlow, conn: Any) -> int:
    """The server's id for one of ``db``'s connections (PostgreSQL pid, MariaDB thread id)."""
    if db.dialect.name == "postgresql":
        return int(conn.info.backend_pid)
    return int(conn.thread_id())


def idle_backend(db: DataFlow) -> Any:
    """Lease a connection and give it back: it is the one the next checkout takes (LIFO).

    Returns the driver connection (for SQLite, the one to close).
    """
    with db.engine.checkout() as lease:
        return lease.connection


def server_connections(db: DataFlow) -> int:
    """How many connections the server has open to ``db``'s database, not counting this check's own."""
    with admin(db) as conn:
        if db.dialect.name == "postgresql":
            sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                   " AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        else:
            sql = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()"
                   " AND ID <> CONNECTION_ID()")
        return int(_rows(conn, sql)[0][0])


def kill_backend(db: DataFlow, conn: Any, *, wait: bool = True) -> None:
    """Kill ``conn`` from outside; with ``wait``, return once the server has let it go."""
    if db.dialect.name == "sqlite":
        conn.close()
        return
    ident = backend_id(db, conn)
    with admin(db) as other:
        if db.dialect.name == "postgresql":
            _rows(other, "SELECT pg_terminate_backend(%s)", (ident,))
            gone = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
        else:
            other.cursor().execute(f"KILL {ident}")
            gone = "SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s"
        if wait:
            wait_for(lambda: not _rows(other, gone, (ident,)), what=f"backend {ident} gone")


def thread_names() -> set[str]:
    """The names of the live threads."""
    return {t.name for t in threading.enumerate()}
