"""The dialect contract: a SQL flavour plus a driver adapter.

A dialect also satisfies :class:`actors.protocols.Driver`, so the engine can
open, check and close its connections. Node code calls dialect methods and
never asks which backend it is on.
"""

from __future__ import annotations

import abc
import logging
import os
import select
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from actors import PoolPolicy, TxState

from .._models import FieldSpec, IndexSpec, ModelSpec
from ._bulk import BulkPaths
from ._url import DatabaseURL

if TYPE_CHECKING:
    from ..errors import DataFlowError

__all__ = [
    "Converter",
    "Dialect",
    "datetime_to_text",
    "decimal_canonical",
    "default_pool_size",
    "socket_quiet",
    "text_to_datetime",
]

Converter = Callable[[Any], Any]

log = logging.getLogger("dataflow")


# The value rules every dialect shares (docs/adr/0003-types.md).


def datetime_to_text(value: datetime) -> str:
    """A datetime as stored: fixed-width ISO 8601; aware values in UTC with ``+00:00``.

    Fixed width (always microseconds) makes text order time order, and the
    offset suffix is what keeps a naive value naive and an aware one aware.
    """
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")


def text_to_datetime(value: Any) -> datetime:
    """The datetime back from its stored text (naive stays naive, aware comes back in UTC)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def decimal_canonical(value: Any) -> Decimal:
    """A Decimal in one form on every backend: no exponent, no trailing fractional zeros.

    MySQL pads to the column's scale and SQLite cannot keep a scale at all,
    so ``Decimal("1.50")`` comes back as ``Decimal("1.5")`` everywhere (an equal value).
    """
    text = format(value if isinstance(value, Decimal) else Decimal(str(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal(text)


def socket_quiet(fd: int) -> bool:
    """True if nothing is waiting on socket ``fd``: no data, no end of file, no error.

    An idle client connection expects nothing from its server, so anything
    there (a FATAL message and a close from ``pg_terminate_backend``, the
    close after MySQL's ``KILL``) means the server has probably dropped it.
    A poll that does not wait: about a microsecond, no round trip.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def default_pool_size() -> int:
    """The pool size when none is configured: from this machine's CPU count."""
    return min(32, 2 * (os.cpu_count() or 1) + 1)


class Dialect(BulkPaths, abc.ABC):
    """One backend. Subclasses fill in the flavour and the driver calls."""

    name: ClassVar[str]
    #: the driver's placeholder for a bound parameter
    placeholder: ClassVar[str] = "?"
    #: INSERT … RETURNING is supported
    insert_returning: ClassVar[bool] = False
    #: UPDATE … RETURNING is supported
    update_returning: ClassVar[bool] = False
    #: what OFFSET without LIMIT needs in front of it ("" where none is needed)
    unbounded_limit: ClassVar[str] = ""
    #: appended to a SELECT that must lock the rows it reads ("" where writes serialise anyway)
    for_update: ClassVar[str] = " FOR UPDATE"

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url

    # -- identifiers and types -------------------------------------------

    #: column type per Python type; bind and result converters per Python type
    column_types: ClassVar[dict[type, str]] = {}
    binders: ClassVar[dict[type, Converter]] = {}
    readers: ClassVar[dict[type, Converter]] = {}

    def quote(self, name: str) -> str:
        """Quote an identifier that already passed the model's name check."""
        return f'"{name}"'

    def column_type(self, field: FieldSpec) -> str:
        """The column type for ``field`` (without NULL / NOT NULL)."""
        return self.column_types[field.type]

    @abc.abstractmethod
    def primary_key_ddl(self, field: FieldSpec) -> str:
        """The whole column definition of the primary key."""

    def bind_converter(self, py_type: type) -> Converter | None:
        """A function turning a Python value into what the driver binds, or None."""
        return self.binders.get(py_type)

    def result_converter(self, py_type: type) -> Converter | None:
        """A function turning what the driver returns into the declared type, or None."""
        return self.readers.get(py_type)

    # -- DDL ---------------------------------------------------------------

    def column_ddl(self, field: FieldSpec) -> str:
        if field.primary_key:
            return self.primary_key_ddl(field)
        null = " NULL" if field.nullable else " NOT NULL"
        return f"{self.quote(field.name)} {self.column_type(field)}{null}"

    def create_table_sql(self, model: ModelSpec) -> str:
        cols = ", ".join(self.column_ddl(f) for f in model.fields.values())
        return f"CREATE TABLE IF NOT EXISTS {self.quote(model.table)} ({cols})"

    def add_column_sql(self, model: ModelSpec, field: FieldSpec) -> str:
        # New columns are nullable: existing rows have no value for them.
        ddl = f"{self.quote(field.name)} {self.column_type(field)} NULL"
        return f"ALTER TABLE {self.quote(model.table)} ADD COLUMN {ddl}"

    def create_index_sql(self, model: ModelSpec, index: IndexSpec) -> str:
        unique = "UNIQUE " if index.unique else ""
        cols = ", ".join(self.quote(c) for c in index.fields)
        return f"CREATE {unique}INDEX IF NOT EXISTS {self.quote(index.name)} ON {self.quote(model.table)} ({cols})"

    #: the SQL expression naming the schema (database) tables live in
    current_schema: ClassVar[str] = "current_schema()"

    def existing_columns(self, conn: Any, table: str) -> set[str] | None:
        """The table's column names, or None when the table does not exist."""
        rows = self.execute(
            conn,
            "SELECT column_name FROM information_schema.columns"
            f" WHERE table_schema = {self.current_schema} AND table_name = {self.placeholder}",
            (table,),
        ).fetchall()
        return {r[0] for r in rows} or None

    # -- expressions ---------------------------------------------------------

    def like(self, column: str) -> str:
        """Case-sensitive LIKE of ``column`` against one bound pattern."""
        return f"{column} LIKE {self.placeholder}"

    def ilike(self, column: str) -> str:
        """Case-insensitive LIKE."""
        return f"LOWER({column}) LIKE LOWER({self.placeholder})"

    @abc.abstractmethod
    def regex(self, column: str) -> str:
        """``column`` matches one bound regular expression."""

    @abc.abstractmethod
    def upsert_sql(
        self, model: ModelSpec, columns: Sequence[str], conflict: Sequence[str], update: Sequence[str]
    ) -> str:
        """INSERT of ``columns`` that updates ``update`` when ``conflict`` collides (skips when empty).

        An empty ``conflict`` (only with an empty ``update``) means a clash on
        any unique key skips the row: ``ON CONFLICT DO NOTHING``.
        """

    # -- execution -----------------------------------------------------------

    def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return a cursor (fetchone/fetchall/rowcount/lastrowid)."""
        return conn.execute(sql, params)

    def executemany(self, conn: Any, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run one statement for many rows; return the rows affected."""
        return int(conn.executemany(sql, rows).rowcount)

    # -- errors ----------------------------------------------------------------

    @abc.abstractmethod
    def map_error(self, exc: BaseException) -> DataFlowError | None:
        """The DataFlow error for a driver error (caller chains it), or None if not a driver error."""

    # -- driver (actors.protocols.Driver) --------------------------------------

    @abc.abstractmethod
    def connect(self) -> Any: ...

    @abc.abstractmethod
    def close(self, conn: Any) -> None: ...

    @abc.abstractmethod
    def begin(self, conn: Any) -> None: ...

    @abc.abstractmethod
    def commit(self, conn: Any) -> None: ...

    @abc.abstractmethod
    def rollback(self, conn: Any) -> None: ...

    @abc.abstractmethod
    def ping(self, conn: Any) -> bool: ...

    def alive(self, conn: Any) -> bool:
        """No round trip: False if an idle connection is visibly gone (see ``Driver.alive``).

        True by default: an embedded database cannot be killed from outside.
        """
        return True

    @abc.abstractmethod
    def transaction_state(self, conn: Any) -> TxState: ...

    @abc.abstractmethod
    def is_disconnect(self, exc: BaseException) -> bool: ...

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool: ...

    def shutdown(self) -> None:
        """Release what the dialect itself holds (after every connection is closed)."""

    # -- data safety (see dataflow/_safety.py) -------------------------------------

    def isolation_sql(self, level: str) -> str | None:
        """The statement that makes ``level`` ("READ COMMITTED", "REPEATABLE READ",
        "SERIALIZABLE") the isolation of every later transaction on a connection;
        None where the backend has only one. The default is the SQL standard form.
        """
        return f"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level}"

    def durability_sql(self, full: bool) -> list[str]:
        """Per-connection statements that make every commit durable (``full``) or the default."""
        return []

    def journal_dialect(self) -> Dialect:
        """A dialect of its own for the durable compensation journal's connection.

        By default the same database (its URL equals this one's). SQLite
        returns a companion database instead, whose writes never wait for a
        running workflow's write lock (its file has one writer at a time).
        """
        return type(self)(self.url)

    # -- pool policy -------------------------------------------------------------

    def pool_policy(self, pool_size: int | None, pool_timeout: float | None, pool_recycle: float | None) -> PoolPolicy:
        """The pool policy for this backend, given the user's settings (None = default)."""
        size = pool_size or default_pool_size()
        return PoolPolicy(
            min_size=1,
            max_size=size,
            checkout_timeout=pool_timeout or 30.0,
            max_lifetime=pool_recycle or 3600.0,
        )

    def policy_within(
        self, available: int, pool_size: int | None, pool_timeout: float | None, pool_recycle: float | None
    ) -> PoolPolicy:
        """The policy for a server that can give this process ``available`` more connections.

        The size is ``pool_size`` (or the CPU-count default), never above
        ``available``; asking for more logs a warning and is capped.
        """
        size = pool_size or default_pool_size()
        if size > available:
            if pool_size:
                log.warning("pool_size_capped url=%s pool_size=%d server_allows=%d", self.url, pool_size, available)
            size = max(1, available)
        return PoolPolicy(
            min_size=1,
            max_size=size,
            checkout_timeout=pool_timeout or 30.0,
            max_lifetime=pool_recycle or 3600.0,
        )
