"""The durable compensation journal: ``dataflow_compensations`` and its owners.

Implements :class:`actors.safety.Journal`. Every method runs on the safety
actor's thread, on a connection of the journal's own, each write in its own
short transaction, so that a workflow's rollback never erases an entry.

PostgreSQL and MySQL keep the tables in the application's database. A
SQLite file allows one writer at a time and a running workflow holds that
lock, so the journal lives in a companion file, ``<database>.compensations``,
and reads the run ledger through a second, read-only use of the
application's file (``docs/adr/0005-safety-journal-and-ledger.md``).

Each process that opens the journal registers an owner row (host, pid,
heartbeat). An owner is dead when its row is gone, when it ran on this host
and its pid no longer exists, or when its heartbeat is older than
``STALE_AFTER`` seconds; its pending entries are then claimed, in one
conditional UPDATE, by exactly one live process.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from actors import Compensation, OrphanRun

from ._ledger import LEDGER_TABLE, Ledger

if TYPE_CHECKING:
    from .dialects.base import Dialect

__all__ = ["SqlJournal", "make_journal"]

log = logging.getLogger("dataflow")

T = TypeVar("T")

_ENTRIES = "dataflow_compensations"
_OWNERS = "dataflow_journal_owners"
_COLUMNS = "run_id, attempt, seq, owner, node_id, node_type, compensation, params, result, state, error, created_at"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (Decimal, set, frozenset, tuple)):
        return str(value) if isinstance(value, Decimal) else list(value)
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable, sort_keys=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SqlJournal:
    """Journal entries as rows, on a dialect's connection of its own."""

    #: an owner whose heartbeat is older than this is taken for dead (tests shrink it)
    STALE_AFTER = 60.0

    def __init__(self, dialect: Dialect, *, setup: Sequence[str] = (), ledger_dialect: Dialect | None = None) -> None:
        """``dialect`` (the journal's own, shut down at close) opens the journal's
        connection and runs ``setup`` on it.

        ``ledger_dialect``, when given, is the application database's dialect,
        for a journal kept in a companion database: the ledger is then read on
        a connection of its own.
        """
        self.dialect = dialect
        self.setup = tuple(setup)
        self.ledger_dialect = ledger_dialect
        self._ledger_conn: Any = None
        self.owner = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._conn: Any = None
        ph = dialect.placeholder
        self._ph = ph
        self._insert = f"INSERT INTO {_ENTRIES} ({_COLUMNS}) VALUES ({', '.join([ph] * 12)})"

    # -- actors.safety.Journal --------------------------------------------------

    def open(self) -> None:
        ph = self._ph
        self._tx(lambda c: self._exec(c, (
            f"CREATE TABLE IF NOT EXISTS {_ENTRIES} (run_id VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL, "
            "seq INTEGER NOT NULL, owner VARCHAR(64) NOT NULL, node_id VARCHAR(255) NOT NULL, "
            "node_type VARCHAR(255) NOT NULL, compensation VARCHAR(512) NOT NULL, params TEXT NOT NULL, "
            "result TEXT NOT NULL, state VARCHAR(16) NOT NULL, error TEXT NULL, "
            "created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, attempt, seq))"
        )))
        self._tx(lambda c: self._exec(c, (
            f"CREATE TABLE IF NOT EXISTS {_OWNERS} (owner VARCHAR(64) NOT NULL PRIMARY KEY, "
            "host VARCHAR(255) NOT NULL, pid INTEGER NOT NULL, heartbeat_at DOUBLE PRECISION NOT NULL)"
        )))
        self._tx(lambda c: self._exec(
            c, f"INSERT INTO {_OWNERS} (owner, host, pid, heartbeat_at) VALUES ({ph}, {ph}, {ph}, {ph})",
            (self.owner, self.host, self.pid, time.time()),
        ))

    def close(self) -> None:
        try:
            self._tx(lambda c: self._exec(c, f"DELETE FROM {_OWNERS} WHERE owner = {self._ph}", (self.owner,)))
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                self.dialect.close(conn)
            ledger_conn, self._ledger_conn = self._ledger_conn, None
            if ledger_conn is not None and self.ledger_dialect is not None:
                self.ledger_dialect.close(ledger_conn)
            self.dialect.shutdown()

    def append(self, entry: Compensation) -> None:
        row = (
            entry.run_id, entry.attempt, entry.seq, self.owner, entry.node_id, entry.name, entry.qualname,
            _dumps(entry.params), _dumps(entry.result), "pending", None, time.time(),
        )
        self._tx(lambda c: self._exec(c, self._insert, row))

    def forget(self, run_id: str, attempt: int) -> None:
        ph = self._ph
        self._tx(lambda c: self._exec(
            c, f"DELETE FROM {_ENTRIES} WHERE run_id = {ph} AND attempt = {ph}", (run_id, attempt)
        ))

    def settle(self, run_id: str, attempt: int, done: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        ph = self._ph
        key = f"run_id = {ph} AND attempt = {ph} AND seq = {ph}"

        def body(c: Any) -> None:
            for seq in done:
                self._exec(c, f"DELETE FROM {_ENTRIES} WHERE {key}", (run_id, attempt, seq))
            for seq, error in failed:
                self._exec(c, f"UPDATE {_ENTRIES} SET state = 'failed', error = {ph} WHERE {key}",
                           (error[:4000], run_id, attempt, seq))

        self._tx(body)

    def heartbeat(self) -> None:
        ph = self._ph
        n = self._tx(lambda c: self._exec(
            c, f"UPDATE {_OWNERS} SET heartbeat_at = {ph} WHERE owner = {ph}", (time.time(), self.owner)
        ).rowcount)
        if n == 0:
            log.warning("journal_owner_expired owner=%s: another process may have taken over its entries", self.owner)
            self._tx(lambda c: self._exec(
                c, f"INSERT INTO {_OWNERS} (owner, host, pid, heartbeat_at) VALUES ({ph}, {ph}, {ph}, {ph})",
                (self.owner, self.host, self.pid, time.time()),
            ))

    def claim_orphans(self) -> list[OrphanRun]:
        out: list[OrphanRun] = []
        for dead in self._dead_owners():
            rows = self._tx(functools.partial(self._claim, dead=dead))
            by_run: dict[tuple[str, int], list[Compensation]] = {}
            for r in rows:
                entry = Compensation(r[0], int(r[1]), int(r[2]), r[4], r[5], r[6], json.loads(r[7]), json.loads(r[8]))
                by_run.setdefault((entry.run_id, entry.attempt), []).append(entry)
            for (run_id, attempt), entries in by_run.items():
                entries.sort(key=lambda e: e.seq)
                out.append(OrphanRun(run_id, attempt, self._committed(run_id, attempt), tuple(entries)))
        return out

    # -- helpers ------------------------------------------------------------------

    def _dead_owners(self) -> list[str]:
        def read(c: Any) -> tuple[list[Any], list[Any]]:
            owners = self._exec(c, f"SELECT owner, host, pid, heartbeat_at FROM {_OWNERS}").fetchall()
            pending = self._exec(
                c, f"SELECT DISTINCT owner FROM {_ENTRIES} WHERE state = 'pending' AND owner <> {self._ph}",
                (self.owner,),
            ).fetchall()
            return owners, pending

        owners, pending = self._tx(read)
        now = time.time()
        known = {r[0]: r for r in owners}
        dead = [
            owner for owner, host, pid, beat in owners
            if owner != self.owner
            and ((host == self.host and not _pid_alive(int(pid))) or float(beat) < now - self.STALE_AFTER)
        ]
        dead.extend(r[0] for r in pending if r[0] not in known)
        return dead

    def _claim(self, c: Any, dead: str) -> list[Any]:
        ph = self._ph
        rows = self._exec(
            c, f"SELECT {_COLUMNS} FROM {_ENTRIES} WHERE owner = {ph} AND state = 'pending'", (dead,)
        ).fetchall()
        n = self._exec(
            c, f"UPDATE {_ENTRIES} SET owner = {ph} WHERE owner = {ph} AND state = 'pending'", (self.owner, dead)
        ).rowcount
        self._exec(c, f"DELETE FROM {_OWNERS} WHERE owner = {ph}", (dead,))
        if n != len(rows):
            raise _Raced()
        # The ledger forgets runs after Ledger.RETENTION: for an entry that old,
        # "no ledger row" no longer means "did not commit". Leave it to an operator.
        cutoff = time.time() - Ledger.RETENTION
        fresh = [r for r in rows if float(r[11]) >= cutoff]
        for r in rows:
            if float(r[11]) < cutoff:
                self._exec(
                    c, f"UPDATE {_ENTRIES} SET state = 'expired', error = {ph} "
                    f"WHERE run_id = {ph} AND attempt = {ph} AND seq = {ph}",
                    ("older than the run ledger's retention: outcome unknown, not run", r[0], r[1], r[2]),
                )
        return fresh

    def _committed(self, run_id: str, attempt: int) -> bool:
        sql = f"SELECT attempt FROM {LEDGER_TABLE} WHERE run_id = {self._ph}"
        if self.ledger_dialect is None:
            row = self._tx(lambda c: self._exec(c, sql, (run_id,)).fetchone())
        else:
            if self._ledger_conn is None:
                self._ledger_conn = self.ledger_dialect.connect()
            row = self.ledger_dialect.execute(self._ledger_conn, sql, (run_id,)).fetchone()
        return row is not None and int(row[0]) == attempt

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.dialect.execute(conn, sql, params)

    def _connect(self) -> Any:
        if self._conn is None:
            conn = self.dialect.connect()
            try:
                for sql in self.setup:
                    self.dialect.execute(conn, sql)
            except BaseException:
                self.dialect.close(conn)
                raise
            self._conn = conn
        return self._conn

    def _tx(self, body: Callable[[Any], T]) -> T:
        """Run ``body(conn)`` in one short transaction.

        A connection found dead at BEGIN (idle too long, server restarted) is
        replaced once: nothing of ours was sent yet. A connection lost later
        is not retried here, since a lost COMMIT may have committed: the
        error goes to the caller (a failed append fails the workflow's step,
        which is then compensated from memory).
        """
        dialect = self.dialect
        for tries_left in (1, 0):
            conn = self._connect()
            try:
                dialect.begin(conn)
            except Exception as exc:
                self._drop(conn)
                if tries_left and dialect.is_disconnect(exc):
                    continue
                raise
            try:
                result = body(conn)
                dialect.commit(conn)
                return result
            except _Raced:
                dialect.rollback(conn)
                return []  # type: ignore[return-value]  # another process claimed them first
            except Exception as exc:
                if dialect.is_disconnect(exc):
                    self._drop(conn)
                else:
                    try:
                        dialect.rollback(conn)
                    except Exception:  # noqa: BLE001 - a connection that cannot roll back is dropped
                        self._drop(conn)
                raise
        raise AssertionError("unreachable")

    def _drop(self, conn: Any) -> None:
        self._conn = None
        try:
            self.dialect.close(conn)
        except Exception:
            log.debug("journal_close_failed", exc_info=True)


def make_journal(dialect: Dialect) -> SqlJournal:
    """The durable journal for the database ``dialect`` serves."""
    own = dialect.journal_dialect()
    if own.url == dialect.url:
        return SqlJournal(own)
    return SqlJournal(own, setup=own.durability_sql(True), ledger_dialect=dialect)


class _Raced(Exception):
    """Another process claimed a dead owner's entries between our read and our update."""
