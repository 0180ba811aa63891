"""``data_safety_level``: what each level turns on, and the per-connection settings it needs.

The three levels are bundles of the settings below; ``docs/safety.md`` is
the user's description of them and must change with :data:`LEVELS`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from actors import TxState

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .dialects import DatabaseURL
    from .dialects.base import Dialect

__all__ = ["LEVELS", "SafetySettings", "SessionDriver", "resolve_settings", "session_statements"]


@dataclass(frozen=True, slots=True)
class SafetySettings:
    """One ``data_safety_level``, resolved for one database."""

    #: "development", "balanced" or "maximum"
    level: str
    #: transaction isolation every connection is set to; None keeps the database's default
    isolation: str | None
    #: how many times a workflow that failed transiently is run again (``auto_retry_attempts``)
    retries: int
    #: compensations are also written to the durable journal (``durable_compensations``)
    durable_journal: bool
    #: every writing workflow inserts its run id into ``dataflow_runs`` in its own
    #: transaction, so that a COMMIT whose connection was lost can be resolved
    ledger: bool
    #: SQLite files fsync every commit (``PRAGMA synchronous=FULL``, else NORMAL)
    full_sync: bool


#: The bundles. docs/safety.md describes them; keep the two in step.
LEVELS: dict[str, SafetySettings] = {
    "development": SafetySettings("development", None, 0, False, False, False),
    "balanced": SafetySettings("balanced", None, 3, False, False, False),
    "maximum": SafetySettings("maximum", "SERIALIZABLE", 5, True, True, True),
}
DEFAULT_LEVEL = "balanced"


def resolve_settings(
    level: Any, auto_retry_attempts: Any, durable_compensations: Any, url: DatabaseURL
) -> SafetySettings:
    """The bundle for ``level`` with the explicit overrides applied (None = the bundle's value)."""
    if level is None:
        level = DEFAULT_LEVEL
    if not isinstance(level, str) or level not in LEVELS:
        close = difflib.get_close_matches(str(level), list(LEVELS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"data_safety_level must be one of {', '.join(repr(k) for k in LEVELS)}, got {level!r}{hint}"
        )
    settings = LEVELS[level]
    if auto_retry_attempts is not None:
        if isinstance(auto_retry_attempts, bool) or not isinstance(auto_retry_attempts, int) or auto_retry_attempts < 0:
            raise ConfigurationError(
                f"auto_retry_attempts must be a whole number >= 0 (retries after the first attempt), "
                f"got {auto_retry_attempts!r}"
            )
        settings = replace(settings, retries=auto_retry_attempts)
    if durable_compensations is not None and not isinstance(durable_compensations, bool):
        raise ConfigurationError(f"durable_compensations must be True or False, got {durable_compensations!r}")
    if url.memory:
        # An in-memory database dies with the process: there is nothing to recover from.
        if durable_compensations:
            raise ConfigurationError(
                "durable_compensations needs a database that outlives the process; "
                "an in-memory SQLite database does not"
            )
        durable_compensations = False
    if durable_compensations is not None:
        settings = replace(settings, durable_journal=durable_compensations)
    return settings


def session_statements(dialect: Dialect, settings: SafetySettings) -> list[str]:
    """What every new connection runs once, to apply ``settings``."""
    out: list[str] = []
    if settings.isolation is not None:
        sql = dialect.isolation_sql(settings.isolation)
        if sql is not None:
            out.append(sql)
    out.extend(dialect.durability_sql(settings.full_sync))
    return out


class SessionDriver:
    """The dialect as the supervisor's driver, running per-connection settings after connect.

    Used only when there are settings to run, so the default level costs nothing.
    """

    def __init__(self, dialect: Dialect, statements: Sequence[str]) -> None:
        self.dialect = dialect
        self.statements = tuple(statements)

    def connect(self) -> Any:
        # Runs on the connection actor's thread.
        dialect = self.dialect
        conn = dialect.connect()
        try:
            for sql in self.statements:
                dialect.execute(conn, sql)
            if dialect.transaction_state(conn) is not TxState.IDLE:
                # A driver that opened a transaction for the SETs: keep them.
                dialect.commit(conn)
        except BaseException:
            dialect.close(conn)
            raise
        return conn

    def close(self, conn: Any) -> None:
        self.dialect.close(conn)

    def begin(self, conn: Any) -> None:
        self.dialect.begin(conn)

    def commit(self, conn: Any) -> None:
        self.dialect.commit(conn)

    def rollback(self, conn: Any) -> None:
        self.dialect.rollback(conn)

    def ping(self, conn: Any) -> bool:
        return self.dialect.ping(conn)

    def alive(self, conn: Any) -> bool:
        return self.dialect.alive(conn)

    def transaction_state(self, conn: Any) -> TxState:
        return self.dialect.transaction_state(conn)

    def is_disconnect(self, exc: BaseException) -> bool:
        return self.dialect.is_disconnect(exc)

    def is_transient(self, exc: BaseException) -> bool:
        return self.dialect.is_transient(exc)
