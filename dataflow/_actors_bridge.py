"""The one module that starts actors and maps their errors to ``dataflow.errors``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import actors

from . import errors
from ._ledger import Ledger
from ._safety import SessionDriver
from .dialects.base import Dialect

__all__ = ["Engine", "map_actor_errors"]

T = TypeVar("T")


@contextlib.contextmanager
def map_actor_errors(dialect: Dialect) -> Iterator[None]:
    """Re-raise engine errors as DataFlow errors (the engine's error chained)."""
    try:
        yield
    except actors.CheckoutTimeout as exc:
        raise errors.PoolTimeoutError(str(exc), dialect=dialect.name) from exc
    except actors.SupervisorFailed as exc:
        raise errors.EngineError(f"{exc}; last failure: {dialect.url.mask(str(exc.__cause__))}") from exc
    except actors.PoolClosed as exc:
        raise errors.EngineError(str(exc)) from exc
    except actors.ConnectionLost as exc:
        raise errors.ConnectionLostError(str(exc), dialect=dialect.name) from exc
    except actors.ActorStopped as exc:
        raise errors.ConnectionLostError(str(exc), dialect=dialect.name) from exc


class Engine:
    """A dialect's supervisor, started; leases connections and runs work on them."""

    def __init__(self, dialect: Dialect, policy: actors.PoolPolicy, *, session: Sequence[str] = ()) -> None:
        """``session``: statements every new connection runs once (``dataflow/_safety.py``)."""
        self.dialect = dialect
        #: the compensation journal; :meth:`start_safety` replaces it when configured
        self.safety = actors.Safety(_no_resolver, timeout=300.0)
        #: the run ledger (``dataflow_runs``), used when the safety level asks for it
        self.ledger = Ledger(self)
        #: checkouts that gave up waiting (db.client.connection.timeouts)
        self.timeouts = 0
        driver: actors.Driver = SessionDriver(dialect, session) if session else dialect
        self.supervisor = actors.Supervisor(driver, policy)
        try:
            with map_actor_errors(dialect):
                self.supervisor.start()
        except Exception as exc:
            dialect.shutdown()
            mapped = dialect.map_error(exc)
            if mapped is not None:
                raise errors.ConfigurationError(
                    f"cannot connect to {dialect.url}: {dialect.url.mask(str(exc))}"
                ) from None
            raise

    def checkout(self, timeout: float | None = None) -> actors.Lease:
        try:
            with map_actor_errors(self.dialect):
                return self.supervisor.checkout(timeout)
        except errors.PoolTimeoutError:
            self.timeouts += 1
            raise

    def checkout_callback(
        self, callback: Callable[[actors.Lease | None, BaseException | None], None]
    ) -> Callable[[], bool]:
        return self.supervisor.checkout_callback(callback)

    def map(self, exc: BaseException) -> BaseException:
        """The DataFlow error for an engine or driver error (or ``exc`` itself)."""
        if isinstance(exc, actors.CheckoutTimeout):
            self.timeouts += 1
        try:
            with map_actor_errors(self.dialect):
                raise exc
        except errors.DataFlowError as mapped:
            return mapped
        except BaseException:
            pass
        mapped_db = self.dialect.map_error(exc)
        if mapped_db is not None:
            mapped_db.__cause__ = exc
            return mapped_db
        return exc

    def run(self, body: Callable[[Any], T], *, transactional: bool = True, timeout: float | None = None) -> T:
        """Lease a connection, run ``body(conn)`` in one transaction, release."""
        lease = self.checkout(timeout)
        try:
            return actors.WorkflowActor(self.dialect, lease).run(body, transactional=transactional)
        finally:
            lease.release()

    def start_safety(
        self, resolve: actors.safety.Resolver, *, timeout: float, journal: actors.Journal | None = None
    ) -> actors.Safety:
        """Configure the safety actor (started on first use, or now with a journal)."""
        self.safety.stop()
        self.safety = actors.Safety(resolve, timeout=timeout, journal=journal)
        return self.safety

    def stats(self) -> actors.PoolStats:
        return self.supervisor.stats()

    def close(self) -> None:
        # The safety actor first: a compensation still running may need a connection.
        self.safety.stop()
        self.supervisor.stop()
        self.dialect.shutdown()


def _no_resolver(entry: actors.Compensation) -> None:
    return None
