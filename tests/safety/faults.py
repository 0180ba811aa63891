"""Real faults for the data-safety tests: transient errors, killed connections, lost COMMITs.

Each engine is faulted the way it really fails: a SQLite connection closed
under the engine, a PostgreSQL backend terminated with
``pg_terminate_backend``, a MariaDB connection ``KILL``-ed from a second
connection. The driver then raises its own disconnect error.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dataflow import DataFlow

__all__ = ["capture_connections", "commit_fault", "disconnect_error", "kill", "patched", "transient_error"]


def transient_error(db: DataFlow) -> BaseException:
    """A driver error that ``db``'s dialect classifies as transient (busy, serialization, deadlock)."""
    name = db.dialect.name
    exc: BaseException
    if name == "sqlite":
        exc = sqlite3.OperationalError("database is locked")
        exc.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    elif name == "postgresql":
        import psycopg

        exc = psycopg.errors.SerializationFailure("could not serialize access due to concurrent update")
    else:
        import pymysql

        exc = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
    assert db.dialect.is_transient(exc), f"{name}: the dialect does not classify {exc!r} as transient"
    return exc


def _raw_pg(db: DataFlow) -> Any:
    import psycopg

    u = db.url
    return psycopg.connect(host=u.host, port=u.port, user=u.user, password=u.password, dbname=u.database,
                           autocommit=True, connect_timeout=10)


def _raw_mysql(db: DataFlow) -> Any:
    import pymysql

    u = db.url
    return pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.user or "root",
                           password=u.password or "", database=u.database, autocommit=True)


def kill(db: DataFlow, conn: Any) -> None:
    """Kill ``conn`` from outside, as a crashed server or a network cut would, and wait until it is gone."""
    name = db.dialect.name
    if name == "sqlite":
        conn.close()
    elif name == "postgresql":
        pid = conn.info.backend_pid
        with _raw_pg(db) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 5
            while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                assert time.monotonic() < deadline, "the backend did not terminate"
                time.sleep(0.01)
    else:
        thread_id = conn.thread_id()
        other = _raw_mysql(db)
        try:
            cur = other.cursor()
            cur.execute(f"KILL {int(thread_id)}")
            deadline = time.monotonic() + 5
            while True:
                cur.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s", (thread_id,))
                if cur.fetchone()[0] == 0:
                    break
                assert time.monotonic() < deadline, "the connection was not killed"
                time.sleep(0.01)
        finally:
            other.close()


def disconnect_error(db: DataFlow, conn: Any) -> BaseException:
    """The error the driver raises for ``conn`` once it is killed (the real one, not a made-up one)."""
    try:
        db.dialect.execute(conn, "SELECT 1").fetchall()
    except Exception as exc:  # noqa: BLE001 - checked on the next line
        assert db.dialect.is_disconnect(exc), f"{exc!r} is not a disconnect"
        return exc
    raise AssertionError("the killed connection still works")


@contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Shadow ``obj.name`` with ``value`` on the instance; restore what was there (another hook too)."""
    had = name in vars(obj)
    before = vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, before)
        else:
            delattr(obj, name)


@contextmanager
def capture_connections(db: DataFlow) -> Iterator[list[Any]]:
    """Collect each connection a transaction begins on (BEGIN), in order."""
    seen: list[Any] = []
    original = db.dialect.begin

    def begin(conn: Any) -> None:
        seen.append(conn)
        original(conn)

    with patched(db.dialect, "begin", begin):
        yield seen


@contextmanager
def commit_fault(db: DataFlow, when: str) -> Iterator[list[int]]:
    """Lose the connection at the next COMMIT: ``"after"`` the server applied it, or ``"before"``.

    ``"after"`` commits for real, then kills the connection and raises the
    driver's disconnect error, as if the reply was lost. ``"before"`` kills
    it first, so the COMMIT never arrives. Only the first COMMIT is faulted;
    the yielded list counts the faults.
    """
    assert when in ("after", "before")
    fired: list[int] = []
    original = db.dialect.commit
    lock = threading.Lock()

    def commit(conn: Any) -> None:
        with lock:
            first = not fired
            if first:
                fired.append(1)
        if not first:
            original(conn)
            return
        if when == "after":
            original(conn)
        kill(db, conn)
        if when == "before":
            original(conn)  # raises the driver's own disconnect error
            raise AssertionError("COMMIT on a killed connection succeeded")
        raise disconnect_error(db, conn)

    with patched(db.dialect, "commit", commit):
        yield fired
