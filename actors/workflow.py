"""WorkflowActor: one workflow run's lease, transaction and failure handling.

A workflow actor is a unit of state and failure, not a thread: it runs on
the thread that holds its lease (the caller's thread for sync callers, the
connection actor's thread for asyncio callers), so a workflow costs no
thread hand-off beyond the one needed to leave an event loop.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from .errors import CommitOutcomeUnknown, ConnectionLost
from .protocols import Driver
from .supervisor import Lease

__all__ = ["WorkflowActor"]

T = TypeVar("T")


class WorkflowActor:
    """Runs one unit of work on one leased connection, in one transaction."""

    __slots__ = ("driver", "lease")

    def __init__(self, driver: Driver, lease: Lease) -> None:
        self.driver = driver
        self.lease = lease

    def run(self, body: Callable[[Any], T], *, transactional: bool = True) -> T:
        """Run ``body(connection)`` inside a transaction; commit, or roll back and re-raise.

        With ``transactional=False`` the body is a single statement that the
        database commits by itself, and no BEGIN/COMMIT round trips are spent.
        A driver error that means the connection is gone is re-raised as
        :class:`ConnectionLost` (the driver's error chained) and the lease is
        marked broken so the supervisor replaces the connection. If it is
        COMMIT that lost the connection, the transaction may or may not have
        committed: that raises :class:`CommitOutcomeUnknown` instead.
        """
        driver = self.driver
        conn = self._begin() if transactional else self.lease.connection
        try:
            result = body(conn)
        except BaseException as exc:
            self._abort(conn, exc)
            raise
        if transactional:
            try:
                driver.commit(conn)
            except BaseException as exc:
                if self._is_disconnect(exc):
                    self.lease.mark_broken()
                    raise CommitOutcomeUnknown(f"the connection was lost during COMMIT: {exc}") from exc
                self._abort(conn, exc)
                raise
        return result

    def _begin(self) -> Any:
        """BEGIN on the leased connection; return the connection it succeeded on.

        A connection that turns out to be dead on BEGIN has done no work for
        this run, so it is swapped for a fresh one (``Lease.renew``) and BEGIN
        is tried again, without counting as a retry of the workflow. The
        supervisor's idle check catches most dead connections before they are
        leased; this catches the ones killed a moment before.
        """
        lease = self.lease
        conn = lease.connection
        tries = lease.max_renewals
        while True:
            try:
                self.driver.begin(conn)
                return conn
            except BaseException as exc:
                if not self.driver.is_disconnect(exc):
                    self._abort(conn, exc)
                    raise
                if tries <= 0:
                    lease.mark_broken()
                    raise ConnectionLost(f"the connection was lost: {exc}") from exc
            tries -= 1
            conn = lease.renew()

    def _is_disconnect(self, exc: BaseException) -> bool:
        # A body may wrap the driver's error (raise NodeFailed(...) from exc).
        cause = exc.__cause__
        return self.driver.is_disconnect(exc) or (cause is not None and self.driver.is_disconnect(cause))

    def _abort(self, conn: Any, exc: BaseException) -> None:
        # Returns to let the caller re-raise ``exc``, or raises ConnectionLost.
        if self._is_disconnect(exc):
            self.lease.mark_broken()
            raise ConnectionLost(f"the connection was lost: {exc}") from exc
        try:
            self.driver.rollback(conn)
        except Exception as rollback_exc:
            self.lease.mark_broken()
            if self.driver.is_disconnect(rollback_exc):
                raise ConnectionLost("the connection was lost while rolling back") from exc
