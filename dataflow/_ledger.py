"""The run ledger: one ``dataflow_runs`` row per ledgered workflow, written in its transaction.

The row commits exactly when the workflow's writes commit, so after a lost
COMMIT a fresh connection can tell what happened. The probe does not just
look for the row (a COMMIT still in flight on the server would not be
visible yet): it tries to insert the same run id. A committed row makes
that fail with a unique violation; an in-flight one makes it wait for the
outcome; success means the run did not commit, and the probe rolls back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import IntegrityError

if TYPE_CHECKING:
    from ._actors_bridge import Engine

__all__ = ["LEDGER_TABLE", "Ledger"]

log = logging.getLogger("dataflow")

LEDGER_TABLE = "dataflow_runs"


class Ledger:
    """Writes, probes and prunes ``dataflow_runs`` for one engine."""

    #: rows older than this are deleted (at start, and every PRUNE_EVERY writes)
    RETENTION = 7 * 24 * 3600.0
    PRUNE_EVERY = 10_000
    #: a probe that meets a serialization failure tries again this many times
    PROBE_TRIES = 3

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ph = engine.dialect.placeholder
        self._insert = f"INSERT INTO {LEDGER_TABLE} (run_id, attempt, created_at) VALUES ({ph}, {ph}, {ph})"
        self._writes = 0
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Create the table if missing (prune after any journal recovery, see :meth:`prune`)."""
        dialect = self.engine.dialect
        self.engine.run(lambda conn: dialect.execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (run_id VARCHAR(64) NOT NULL PRIMARY KEY, "
            "attempt INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL)",
        ))

    def write(self, conn: Any, run_id: str, attempt: int) -> None:
        """Insert the run's row on ``conn``, inside the workflow's own transaction."""
        self.engine.dialect.execute(conn, self._insert, (run_id, attempt, time.time()))

    def written(self) -> None:
        """Count a committed ledger row; prune now and then (on the caller's thread)."""
        with self._lock:
            self._writes += 1
            due = self._writes % self.PRUNE_EVERY == 0
        if due:
            try:
                self.prune()
            except Exception:
                log.warning("ledger_prune_failed", exc_info=True)

    def prune(self) -> None:
        """Delete rows older than RETENTION (journal entries that old are expired, never run)."""
        dialect = self.engine.dialect
        cutoff = time.time() - self.RETENTION
        self.engine.run(lambda conn: dialect.execute(
            conn, f"DELETE FROM {LEDGER_TABLE} WHERE created_at < {dialect.placeholder}", (cutoff,)
        ))

    def committed(self, run_id: str) -> bool:
        """Did the run's transaction commit? Asked on a fresh connection after a lost COMMIT.

        Raises the driver's error when the database cannot be asked.
        """
        for tries_left in range(self.PROBE_TRIES - 1, -1, -1):
            try:
                return self._probe(run_id)
            except Exception as exc:
                if tries_left and self.engine.dialect.is_transient(exc):
                    continue
                raise
        raise AssertionError("unreachable")

    def _probe(self, run_id: str) -> bool:
        engine = self.engine
        dialect = engine.dialect
        lease = engine.checkout()
        try:
            conn = lease.connection
            dialect.begin(conn)
            try:
                dialect.execute(conn, self._insert, (run_id, -1, time.time()))
            except Exception as exc:
                if dialect.is_disconnect(exc):
                    lease.mark_broken()
                    raise
                dialect.rollback(conn)
                if isinstance(engine.map(exc), IntegrityError):
                    return True
                raise
            dialect.rollback(conn)
            return False
        except Exception as exc:
            if dialect.is_disconnect(exc):
                lease.mark_broken()
            raise
        finally:
            lease.release()
