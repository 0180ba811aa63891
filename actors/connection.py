"""ConnectionActor: owns exactly one driver connection for its whole life."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pykka

from .errors import ActorStopped
from .messages import Close, Connect, Crash, Run
from .protocols import Driver

if TYPE_CHECKING:
    from .supervisor import Slot, Supervisor

__all__ = ["ConnectionActor", "InjectedCrash"]

log = logging.getLogger(__name__)


class InjectedCrash(Exception):
    """Raised inside a connection actor that was asked to crash."""


class ConnectionActor(pykka.ThreadingActor):
    """One thread, one connection.

    The actor opens and closes its connection and runs work sent to it as
    :class:`Run` messages (the asyncio path). A sync workflow that holds a
    lease uses the connection from its own thread instead: the lease makes
    that use exclusive, and saves a thread hand-off per workflow (see
    ``docs/adr/0001-one-hop-budget.md``).
    """

    use_daemon_thread = True

    def __init__(self, driver: Driver, supervisor: Supervisor, slot: Slot) -> None:
        # Runs in the thread that starts the actor.
        super().__init__()
        self._driver = driver
        self._supervisor = supervisor
        self._slot = slot
        self._conn: Any = None

    def on_start(self) -> None:
        # Runs in the actor's thread, before any message.
        self._slot.thread_id = threading.get_ident()

    def on_receive(self, message: Any) -> Any:
        # Runs in the actor's thread; may block on the driver.
        if isinstance(message, Run):
            self._run(message)
        elif isinstance(message, Connect):
            self._connect()
        elif isinstance(message, Close):
            self._close()
            self.stop()
        elif isinstance(message, Crash):
            raise InjectedCrash(message.reason)
        return None

    def _run(self, message: Run) -> None:
        try:
            result = message.fn(self._conn)
        except BaseException as exc:  # handed to the caller, never swallowed
            message.reply(None, exc)
        else:
            message.reply(result, None)

    def _connect(self) -> None:
        try:
            self._conn = self._driver.connect()
        except Exception as exc:
            self._supervisor._connect_failed(self._slot, exc)
            self.stop()
            return
        self._supervisor._connected(self._slot, self._conn)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self._driver.close(conn)
            except Exception:
                log.debug("connection_close_failed", exc_info=True)

    def on_stop(self) -> None:
        # Runs in the actor's thread just before it exits after a Close or an
        # outside stop (ActorRegistry.stop_all()).
        self._close()
        self._answer_pending()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Runs in the actor's thread just before it exits.
        self._close()
        self._supervisor._child_died(self._slot, exception_value)
        self._answer_pending()

    def _answer_pending(self) -> None:
        # pykka silently drops told messages still queued when an actor stops,
        # so answer every pending Run here: otherwise its caller (an asyncio
        # future) would wait forever. pykka has already marked the actor
        # stopped, so tell() refuses new messages from now on. Other messages
        # go back for pykka's own teardown.
        kept = []
        while not self.actor_inbox.empty():  # only this thread reads the inbox
            envelope = self.actor_inbox.get()
            if isinstance(envelope.message, Run):
                error = ActorStopped(f"connection actor {self._slot.id} stopped before running this")
                envelope.message.reply(None, error)
            else:
                kept.append(envelope)
        for envelope in kept:
            self.actor_inbox.put(envelope)
