"""What the engine needs from a database driver, and nothing more.

``dataflow.dialects`` implements :class:`Driver` once per backend; the unit
tests implement it with a fake. Connections are opaque to the engine.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

__all__ = ["Driver", "TxState"]


class TxState(enum.Enum):
    """Where a connection stands with respect to transactions."""

    IDLE = "idle"  # no transaction open: safe to hand to the next lease
    INTRANS = "intrans"  # a transaction is open: roll it back before reuse
    INERROR = "inerror"  # a failed transaction is open: roll it back before reuse
    UNKNOWN = "unknown"  # the connection is broken: replace it


class Driver(Protocol):
    """A backend's connection life cycle and transaction verbs."""

    def connect(self) -> Any:
        """Open one connection. Runs on the connection actor's thread."""

    def close(self, conn: Any) -> None:
        """Close a connection; must not raise for an already broken one."""

    def begin(self, conn: Any) -> None:
        """Open a transaction on ``conn``."""

    def commit(self, conn: Any) -> None:
        """Commit the open transaction."""

    def rollback(self, conn: Any) -> None:
        """Roll back the open transaction, if any."""

    def ping(self, conn: Any) -> bool:
        """Return True if the connection still works (a round trip)."""

    def alive(self, conn: Any) -> bool:
        """Return False if an idle connection is visibly gone, without a round trip.

        Called before an idle connection is leased, so it must be cheap and
        must not block: look at the socket, and fall back to :meth:`ping`
        only when the server has sent something to an idle connection.
        """

    def transaction_state(self, conn: Any) -> TxState:
        """Report the connection's transaction state."""

    def is_disconnect(self, exc: BaseException) -> bool:
        """True if ``exc`` means the connection is gone."""

    def is_transient(self, exc: BaseException) -> bool:
        """True if ``exc`` is worth retrying the whole unit of work for."""
