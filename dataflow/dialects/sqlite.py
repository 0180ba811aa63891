"""SQLite through the standard library's sqlite3, used on the leasing thread.

An in-memory database is a named shared-cache database private to one
DataFlow instance; the dialect holds one extra "keeper" connection so the
data outlives a replaced connection actor. A file database runs in WAL mode.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from actors import PoolPolicy, TxState

from .. import errors
from .._models import FieldSpec, ModelSpec
from ._bulk_sqlite import SQLiteBulk
from ._url import DatabaseURL
from .base import Converter, Dialect, datetime_to_text, decimal_canonical

__all__ = ["SQLiteDialect"]

_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_TYPES = {
    int: "INTEGER",
    float: "REAL",
    str: "TEXT",
    bool: "INTEGER",
    # NUMERIC affinity would turn the text into a REAL (15 digits); the
    # collation orders and compares the exact text as numbers.
    Decimal: "TEXT COLLATE dataflow_decimal",
    datetime: "TEXT",
    date: "TEXT",
    bytes: "BLOB",
    dict: "TEXT",
    list: "TEXT",
}


def _decimal_collation(a: str, b: str) -> int:
    x, y = Decimal(a), Decimal(b)
    return (x > y) - (x < y)


def _regexp(pattern: str, value: Any) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


_BIND: dict[type, Converter] = {
    datetime: datetime_to_text,
    date: date.isoformat,
    Decimal: lambda v: str(decimal_canonical(v)),
    dict: json.dumps,
    list: json.dumps,
}
_RESULT: dict[type, Converter] = {
    # A REAL with no fraction is stored as an integer, and UPDATE … RETURNING
    # hands it back before REAL affinity turns it into a float again.
    float: float,
    bool: bool,
    datetime: datetime.fromisoformat,  # a TEXT column: always a str here
    date: date.fromisoformat,
    Decimal: decimal_canonical,
    dict: json.loads,
    list: json.loads,
}


class SQLiteDialect(SQLiteBulk, Dialect):
    """SQLite 3.35+ (for RETURNING)."""

    column_types = _TYPES
    binders = _BIND
    readers = _RESULT

    name = "sqlite"
    placeholder = "?"
    insert_returning = False
    update_returning = True
    unbounded_limit = " LIMIT -1"
    for_update = ""

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        self._keeper: sqlite3.Connection | None = None
        if url.memory:
            self._target = f"file:dataflow-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._keeper = self._open()
        else:
            assert url.database is not None
            self._target = url.database

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._target,
            uri=self.url.memory,
            check_same_thread=False,  # the lease, not the thread, guarantees exclusive use
            isolation_level=None,  # autocommit; transactions are explicit
            timeout=5.0,
        )
        if not self.url.memory:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA case_sensitive_like=ON")
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        conn.create_collation("dataflow_decimal", _decimal_collation)
        return conn

    # -- identifiers and types

    def primary_key_ddl(self, field: FieldSpec) -> str:
        if field.auto:
            return f'{self.quote(field.name)} INTEGER PRIMARY KEY'
        return f"{self.quote(field.name)} {self.column_type(field)} PRIMARY KEY NOT NULL"

    def existing_columns(self, conn: Any, table: str) -> set[str] | None:
        rows = conn.execute("SELECT name FROM pragma_table_info(?)", (table,)).fetchall()
        return {r[0] for r in rows} or None

    # -- expressions

    def like(self, column: str) -> str:
        # SQLite has no default escape character; the others use backslash.
        return f"{column} LIKE ? ESCAPE '\\'"

    def ilike(self, column: str) -> str:
        return f"LOWER({column}) LIKE LOWER(?) ESCAPE '\\'"

    def regex(self, column: str) -> str:
        return f"{column} REGEXP ?"

    def upsert_sql(
        self, model: ModelSpec, columns: Sequence[str], conflict: Sequence[str], update: Sequence[str]
    ) -> str:
        q = self.quote
        cols = ", ".join(q(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        target = f"({', '.join(q(c) for c in conflict)}) " if conflict else ""
        head = f"INSERT INTO {q(model.table)} ({cols}) VALUES ({marks}) ON CONFLICT {target}DO "
        if not update:
            return head + "NOTHING"
        sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in update)
        return head + f"UPDATE SET {sets}"

    # -- errors

    def map_error(self, exc: BaseException) -> errors.DataFlowError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        text = str(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            return errors.IntegrityError(text, dialect=self.name)
        if self.is_transient(exc):
            return errors.TransientError(text, dialect=self.name)
        if self.is_disconnect(exc):
            return errors.ConnectionLostError(text, dialect=self.name)
        if isinstance(exc, sqlite3.OperationalError):
            return errors.OperationalError(text, dialect=self.name)
        if isinstance(exc, sqlite3.ProgrammingError):
            return errors.ProgrammingError(text, dialect=self.name)
        return errors.DatabaseError(text, dialect=self.name)

    # -- driver

    def connect(self) -> sqlite3.Connection:
        return self._open()

    def close(self, conn: sqlite3.Connection) -> None:
        conn.close()

    def begin(self, conn: sqlite3.Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two workflows never
        # deadlock upgrading read locks; a busy database waits up to `timeout`.
        conn.execute("BEGIN IMMEDIATE")

    def commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def ping(self, conn: sqlite3.Connection) -> bool:
        try:
            conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def transaction_state(self, conn: sqlite3.Connection) -> TxState:
        try:
            return TxState.INTRANS if conn.in_transaction else TxState.IDLE
        except sqlite3.ProgrammingError:
            return TxState.UNKNOWN

    def is_disconnect(self, exc: BaseException) -> bool:
        # A closed connection is the only way an embedded database "disconnects".
        return isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc)

    def is_transient(self, exc: BaseException) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        return isinstance(exc, sqlite3.OperationalError) and code is not None and (code & 0xFF) in _BUSY_CODES

    def isolation_sql(self, level: str) -> str | None:
        # SQLite transactions are always serializable.
        return None

    def durability_sql(self, full: bool) -> list[str]:
        # WAL with synchronous=NORMAL can lose the last commits on power loss
        # (never on a process crash); FULL fsyncs the WAL at every commit.
        if full and not self.url.memory:
            return ["PRAGMA synchronous=FULL"]
        return []

    def journal_dialect(self) -> Dialect:
        # A workflow holds the file's only write lock from BEGIN IMMEDIATE to
        # COMMIT, while its outside steps are journalled: the journal needs a
        # file of its own. (ATTACH would not do: BEGIN IMMEDIATE locks every
        # attached database.)
        assert self.url.database is not None
        return SQLiteDialect(dataclasses.replace(self.url, database=self.url.database + ".compensations"))

    def shutdown(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    def pool_policy(self, pool_size: int | None, pool_timeout: float | None, pool_recycle: float | None) -> PoolPolicy:
        if self.url.memory:
            # One connection: the database lives in this process's memory and
            # a second writer would only wait for the first.
            size = 1
        else:
            size = pool_size or 4
        return PoolPolicy(
            min_size=1,
            max_size=size,
            checkout_timeout=pool_timeout or 30.0,
            max_lifetime=pool_recycle,
            max_idle=None,
        )
