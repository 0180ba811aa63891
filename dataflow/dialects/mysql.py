"""MySQL / MariaDB through PyMySQL, used on the leasing thread.

Connections run in autocommit mode with ``CLIENT.FOUND_ROWS`` (so UPDATE
counts matched rows, as on the other backends), strict SQL mode and UTC.
Tables are utf8mb4 with the binary NO PAD collation: comparison, LIKE and
REGEXP are case-sensitive and trailing spaces count, as on SQLite and
PostgreSQL. Errors are classified by MySQL error number, never by message.
Tested on MariaDB 10.11 (``CREATE INDEX IF NOT EXISTS`` and the collation
name are MariaDB's).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pymysql
from pymysql.constants import CLIENT

from actors import PoolPolicy, TxState

from .. import errors
from .._models import FieldSpec, ModelSpec
from ._bulk_mysql import MySQLBulk
from ._url import DatabaseURL
from .base import Converter, Dialect, datetime_to_text, decimal_canonical, socket_quiet

__all__ = ["MySQLDialect"]

COLLATION = "utf8mb4_nopad_bin"
#: a string or bytes column that is part of a key needs a bounded length
KEY_LENGTH = 255
_TYPES = {
    int: "BIGINT",
    float: "DOUBLE",
    str: "LONGTEXT",
    bool: "BOOLEAN",
    Decimal: "DECIMAL(65,30)",
    datetime: "VARCHAR(32)",
    date: "DATE",
    bytes: "LONGBLOB",
    dict: "JSON",
    list: "JSON",
}
_KEYED_TYPES = {str: f"VARCHAR({KEY_LENGTH})", bytes: f"VARBINARY({KEY_LENGTH})"}
_BIND: dict[type, Converter] = {
    datetime: datetime_to_text,
    Decimal: decimal_canonical,  # never an exponent: 1E+2 would be read as a DOUBLE
    dict: json.dumps,
    list: json.dumps,
}
_RESULT: dict[type, Converter] = {
    bool: bool,
    datetime: datetime.fromisoformat,  # the column is VARCHAR: always text
    Decimal: decimal_canonical,
    dict: json.loads,
    list: json.loads,
}
_INTEGRITY = frozenset({
    1048,  # column cannot be null
    1062,  # duplicate entry
    1216, 1217, 1451, 1452,  # foreign key
    1364,  # field has no default value
    1557, 1586,  # duplicate key (other forms)
    3819, 4025,  # check constraint (MySQL, MariaDB)
})
_TRANSIENT = frozenset({1213, 1205})  # deadlock, lock wait timeout
_GONE = frozenset({
    1053,  # server shutdown in progress
    1927,  # MariaDB: connection was killed
    2003,  # can't connect
    2006,  # server has gone away
    2013,  # lost connection during query
    2055,  # lost connection (system error)
    4031,  # disconnected by the server (idle timeout)
})
_PROGRAMMING = frozenset({1054, 1064, 1146, 1060, 1061, 1091, 1149})
_DUPLICATE = 1062
_IGNORE = "INSERT IGNORE INTO "
_ON_DUPLICATE = " ON DUPLICATE KEY UPDATE "
# Bounds one INSERT IGNORE statement so that its warnings can be checked.
_IGNORE_BATCH_BYTES = 4 * 1024 * 1024


class _Connection(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection that remembers whether we opened a transaction."""

    in_transaction = False


class MySQLDialect(MySQLBulk, Dialect):
    """MariaDB 10.5+ (and MySQL, minus the MariaDB-only DDL) on PyMySQL."""

    column_types = _TYPES
    binders = _BIND
    readers = _RESULT
    current_schema = "DATABASE()"

    name = "mysql"
    placeholder = "%s"
    insert_returning = False  # lastrowid comes free in the OK packet
    update_returning = False  # MariaDB has no UPDATE … RETURNING
    unbounded_limit = " LIMIT 18446744073709551615"

    def __init__(self, url: DatabaseURL) -> None:
        super().__init__(url)
        params: dict[str, Any] = {
            "host": url.host or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.user or "root",
            "password": url.password or "",
            "database": url.database,
            "charset": "utf8mb4",
            "autocommit": True,
            "client_flag": CLIENT.FOUND_ROWS,
            "connect_timeout": 10,
            "init_command": "SET SESSION sql_mode = 'TRADITIONAL,NO_AUTO_VALUE_ON_ZERO',"
                            " time_zone = '+00:00'",
        }
        # ?connect_timeout=5&read_timeout=30: PyMySQL wants numbers as numbers
        params.update({k: int(v) if v.isdigit() else v for k, v in url.query})
        self._params = params
        self._lock = threading.Lock()
        self._spare: _Connection | None = None

    # -- identifiers and types

    def quote(self, name: str) -> str:
        return f"`{name}`"

    def column_type(self, field: FieldSpec) -> str:
        return self._column_type(field, keyed=False)

    def _column_type(self, field: FieldSpec, keyed: bool) -> str:
        if keyed and field.type in _KEYED_TYPES:
            return _KEYED_TYPES[field.type]
        return _TYPES[field.type]

    def _column_ddl(self, field: FieldSpec, keyed: bool) -> str:
        if field.primary_key:
            return self.primary_key_ddl(field)
        null = " NULL" if field.nullable else " NOT NULL"
        return f"{self.quote(field.name)} {self._column_type(field, keyed)}{null}"

    def primary_key_ddl(self, field: FieldSpec) -> str:
        if field.auto:
            return f"{self.quote(field.name)} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"
        return f"{self.quote(field.name)} {self._column_type(field, keyed=True)} NOT NULL PRIMARY KEY"

    def create_table_sql(self, model: ModelSpec) -> str:
        keyed = _keyed_columns(model)
        cols = ", ".join(self._column_ddl(f, f.name in keyed) for f in model.fields.values())
        return (f"CREATE TABLE IF NOT EXISTS {self.quote(model.table)} ({cols})"
                f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={COLLATION}")

    def add_column_sql(self, model: ModelSpec, field: FieldSpec) -> str:
        ddl = f"{self.quote(field.name)} {self._column_type(field, field.name in _keyed_columns(model))} NULL"
        return f"ALTER TABLE {self.quote(model.table)} ADD COLUMN {ddl}"

    # -- expressions

    def regex(self, column: str) -> str:
        # MariaDB's REGEXP is PCRE, an unanchored search; the binary collation
        # makes it case-sensitive like Python's re.
        return f"{column} REGEXP %s"

    def upsert_sql(
        self, model: ModelSpec, columns: Sequence[str], conflict: Sequence[str], update: Sequence[str]
    ) -> str:
        # MySQL has no conflict target: any unique key that collides counts.
        q = self.quote
        cols = ", ".join(q(c) for c in columns)
        marks = ", ".join("%s" for _ in columns)
        if not update:
            # INSERT IGNORE skips duplicates; executemany() turns every other
            # error it would downgrade to a warning back into an error.
            return f"{_IGNORE}{q(model.table)} ({cols}) VALUES ({marks})"
        sets = ", ".join(f"{q(c)} = VALUES({q(c)})" for c in update)
        return f"INSERT INTO {q(model.table)} ({cols}) VALUES ({marks}){_ON_DUPLICATE}{sets}"

    # -- execution

    def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = conn.cursor()
        # No parameters: PyMySQL then leaves the text alone (no % formatting).
        cur.execute(sql, params if params else None)
        return cur

    def executemany(self, conn: Any, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Rows affected, counted as the other backends count them.

        Upsert: MySQL reports 1 per inserted row and 2 per updated one; every
        row was written, so the count is the number of rows. INSERT IGNORE:
        the count is the rows inserted.
        """
        rows = list(rows)
        if not rows:
            return 0
        cur = conn.cursor()
        if sql.startswith(_IGNORE):
            cur.max_stmt_length = 2 * _IGNORE_BATCH_BYTES  # one statement per batch
            inserted = 0
            for batch in _batches(rows, _IGNORE_BATCH_BYTES):
                cur.executemany(sql, batch)
                inserted += cur.rowcount
                self._raise_ignored(conn, len(batch) - cur.rowcount)
            return inserted
        cur.executemany(sql, rows)
        if _ON_DUPLICATE in sql:
            return len(rows)
        return int(cur.rowcount)

    def _raise_ignored(self, conn: Any, skipped: int) -> None:
        # Each skipped duplicate leaves one warning; any other warning is an
        # error that IGNORE downgraded (truncation, out of range, ...).
        cur = conn.cursor()
        cur.execute("SHOW COUNT(*) WARNINGS")
        (count,) = cur.fetchone()
        if count == skipped:
            return
        cur.execute("SHOW WARNINGS")
        for _level, code, message in cur.fetchall():
            if code != _DUPLICATE:
                raise pymysql.err.DataError(code, message)
        raise pymysql.err.DataError(0, f"INSERT IGNORE left {count} warnings for {skipped} skipped rows")

    # -- errors

    def map_error(self, exc: BaseException) -> errors.DataFlowError | None:
        if not isinstance(exc, pymysql.err.MySQLError):
            return None
        code = _errno(exc)
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        text = self.url.mask(f"{code}: {message}" if code else str(message))
        if code in _INTEGRITY:
            return errors.IntegrityError(text, dialect=self.name)
        if code in _TRANSIENT:
            return errors.TransientError(text, dialect=self.name)
        if self.is_disconnect(exc):
            return errors.ConnectionLostError(text, dialect=self.name)
        if code in _PROGRAMMING:
            return errors.ProgrammingError(text, dialect=self.name)
        if isinstance(exc, pymysql.err.OperationalError):
            return errors.OperationalError(text, dialect=self.name)
        return errors.DatabaseError(text, dialect=self.name)

    def is_disconnect(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.InterfaceError):
            return True  # PyMySQL's "(0, '')": the socket is already closed
        return isinstance(exc, pymysql.err.MySQLError) and _errno(exc) in _GONE

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.MySQLError) and _errno(exc) in _TRANSIENT

    # -- driver

    def _open(self) -> _Connection:
        return _Connection(**self._params)

    def connect(self) -> _Connection:
        with self._lock:
            conn, self._spare = self._spare, None
        if conn is not None and conn.open:
            return conn
        return self._open()

    def close(self, conn: _Connection) -> None:
        if conn.open:
            try:
                conn.close()
            except pymysql.err.Error:
                pass

    def begin(self, conn: _Connection) -> None:
        conn.begin()
        conn.in_transaction = True

    def commit(self, conn: _Connection) -> None:
        try:
            conn.commit()
        finally:
            conn.in_transaction = False

    def rollback(self, conn: _Connection) -> None:
        try:
            conn.rollback()
        finally:
            conn.in_transaction = False

    def ping(self, conn: _Connection) -> bool:
        try:
            conn.ping(reconnect=False)
        except pymysql.err.Error:
            return False
        return True

    def alive(self, conn: _Connection) -> bool:
        # The server never speaks to an idle client unasked: anything on the
        # socket is the close after KILL, wait_timeout or a shutdown. The
        # round trip only confirms it.
        sock = conn._sock
        if sock is None:
            return False
        try:
            fd = sock.fileno()
        except OSError:
            return False
        return fd >= 0 and (socket_quiet(fd) or self.ping(conn))

    def transaction_state(self, conn: _Connection) -> TxState:
        if not conn.open:
            return TxState.UNKNOWN
        # MySQL keeps a transaction usable after a failed statement, so there
        # is no INERROR state.
        return TxState.INTRANS if conn.in_transaction else TxState.IDLE

    def shutdown(self) -> None:
        with self._lock:
            conn, self._spare = self._spare, None
        if conn is not None:
            self.close(conn)

    def isolation_sql(self, level: str) -> str | None:
        return f"SET SESSION TRANSACTION ISOLATION LEVEL {level}"

    # -- pool policy

    def pool_policy(self, pool_size: int | None, pool_timeout: float | None, pool_recycle: float | None) -> PoolPolicy:
        # One probe connection reads what the server allows; it then becomes
        # the pool's first connection.
        try:
            conn = self._open()
            cur = conn.cursor()
            cur.execute("SELECT @@max_connections")
            (max_conn,) = cur.fetchone()
            cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            (_, in_use) = cur.fetchone()
        except pymysql.err.MySQLError as exc:
            raise errors.ConfigurationError(
                f"cannot connect to {self.url}: {self.url.mask(str(exc))}"
            ) from None
        # The probe is counted in use, but it is one of ours.
        available = max(1, int(max_conn) - int(in_use) + 1)
        with self._lock:
            self._spare = conn
        return self.policy_within(available, pool_size, pool_timeout, pool_recycle)


def _errno(exc: BaseException) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def _keyed_columns(model: ModelSpec) -> set[str]:
    """Columns in an index or unique key: these need a bounded-length type."""
    keyed = {"id"}
    for index in model.indexes:
        keyed.update(index.fields)
    return keyed


def _batches(rows: list[Sequence[Any]], limit: int) -> Iterator[list[Sequence[Any]]]:
    batch: list[Sequence[Any]] = []
    size = 0
    for row in rows:
        row_size = sum(len(v) if isinstance(v, (str, bytes)) else 24 for v in row) * 2 + 16
        if batch and size + row_size > limit:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch
