"""PostgreSQL's bulk paths: COPY, and COPY into a staging table for the rest.

- create: ``COPY table FROM STDIN``, in the binary format when every column
  has a fixed binary form (JSON columns fall back to the text format);
- skip, upsert and update by id: COPY into a per-session temporary staging
  table, then one ``INSERT … SELECT … ON CONFLICT`` or ``UPDATE … FROM``.
  The upsert counts inserts and updates with ``RETURNING (xmax = 0)``: a
  freshly inserted row has no deleting transaction, an updated one has ours.

A COPY that fails tells which line (row) broke it; :meth:`bulk_error_row`
reads that, so a failing chunk needs no bisection to name its bad record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from ._bulk import BulkPaths, InsertStream, Rows

if TYPE_CHECKING:
    from ..sql import CompiledModel

__all__ = ["PostgresBulk"]

#: declared type → the PostgreSQL type whose binary form psycopg writes for the bound value
_BINARY = {int: "int8", float: "float8", str: "text", bool: "bool", Decimal: "numeric",
           datetime: "varchar", date: "date", bytes: "bytea"}
_COPY_LINE = re.compile(r"^COPY [^,]+, line (\d+)")


class CopyRowError(psycopg.DataError):
    """A row psycopg could not write into a COPY (out of range, wrong type); ``row`` is its position."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


class PostgresBulk(BulkPaths):
    """The PostgreSQL overrides of :class:`~dataflow.dialects._bulk.BulkPaths`."""

    bulk_chunk_size = 10_000
    bulk_overlap = True
    bulk_streams = True

    def bulk_insert(self, conn: Any, table: CompiledModel, rows: Rows) -> int:
        return self._copy(conn, table.table, table, table.insert_columns, rows)

    def bulk_insert_ignore(self, conn: Any, table: CompiledModel, rows: Rows) -> int:
        stage = self._stage(conn, table, table.insert_columns, rows)
        cols = ", ".join(table.q(c) for c in table.insert_columns)
        cur = conn.execute(f"INSERT INTO {table.table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING")
        return int(cur.rowcount)

    def bulk_upsert(self, conn: Any, table: CompiledModel, rows: Rows, key: Sequence[str],
                    update: Sequence[str]) -> tuple[int, int]:
        stage = self._stage(conn, table, table.insert_columns, rows)
        q = table.q
        cols = ", ".join(q(c) for c in table.insert_columns)
        sets = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in update)
        target = ", ".join(q(c) for c in key)
        row = conn.execute(
            f"WITH up AS (INSERT INTO {table.table} ({cols}) SELECT {cols} FROM {stage}"
            f" ON CONFLICT ({target}) DO UPDATE SET {sets} RETURNING (xmax = 0) AS fresh)"
            " SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM up"
        ).fetchone()
        return int(row[0]), int(row[1])

    def bulk_update(self, conn: Any, table: CompiledModel, names: Sequence[str], rows: Rows,
                    tenant: str | None) -> int:
        q = table.q
        stage = self._stage(conn, table, (*names, "id"), rows)
        parts, params = table.scope(tenant)
        where = " AND ".join([f"{table.table}.{q('id')} = s.{q('id')}", *parts])
        sql = f"UPDATE {table.table} SET {table.set_from(names, 's')} FROM {stage} s WHERE {where}"
        return int(conn.execute(sql, params or None).rowcount)

    @contextmanager
    def bulk_insert_stream(self, conn: Any, table: CompiledModel) -> Iterator[InsertStream]:
        """One COPY for every chunk: the server inserts while the next chunk is validated and sent."""
        columns = table.insert_columns
        types = [_BINARY.get(table.model.fields[c].type) for c in columns]
        binary = all(types)
        cols = ", ".join(table.q(c) for c in columns)
        fmt = " (FORMAT BINARY)" if binary else ""
        cur = conn.cursor()
        with cur.copy(f"COPY {table.table} ({cols}) FROM STDIN{fmt}") as copy:
            if binary:
                copy.set_types(types)
            stream = _CopyStream(copy)
            yield stream
        stream.count = int(cur.rowcount)

    def bulk_error_row(self, exc: BaseException) -> int | None:
        if isinstance(exc, CopyRowError):
            return exc.row
        if isinstance(exc, psycopg.Error):
            match = _COPY_LINE.match(exc.diag.context or "")
            if match:
                return int(match.group(1)) - 1
        return None

    def _stage(self, conn: Any, table: CompiledModel, columns: Sequence[str], rows: Rows) -> str:
        """COPY ``rows`` into this session's staging table for ``columns`` of ``table``; its name.

        The staging table is a temporary table (private to the connection,
        emptied at every commit) made once per session from the target's
        column types, and truncated before each use.
        """
        digest = hashlib.sha1(f"{table.table}({','.join(columns)})".encode()).hexdigest()[:20]
        stage = f"dataflow_stage_{digest}"
        cols = ", ".join(table.q(c) for c in columns)
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
                     f" SELECT {cols} FROM {table.table} WITH NO DATA")
        conn.execute(f"TRUNCATE {stage}")
        self._copy(conn, stage, table, columns, rows)
        return stage

    def _copy(self, conn: Any, target: str, table: CompiledModel, columns: Sequence[str], rows: Rows) -> int:
        """``COPY target (columns) FROM STDIN`` of ``rows``, binary when every column allows it.

        Goes through :meth:`executemany` (which sends a COPY statement to
        :meth:`copy_rows`), so whatever observes statements sees the COPY too.
        """
        fields = table.model.fields
        types = [_BINARY.get(fields[c].type) for c in columns]
        binary = all(types)
        cols = ", ".join(table.q(c) for c in columns)
        fmt = " (FORMAT BINARY)" if binary else ""
        sql = f"COPY {target} ({cols}) FROM STDIN{fmt}"
        return self.executemany(conn, sql, CopyRows(rows, types if binary else None))  # type: ignore[arg-type]

    def copy_rows(self, conn: Any, sql: str, rows: Rows) -> int:
        """Run the ``COPY … FROM STDIN`` statement ``sql``, writing ``rows``; the rows copied.

        A value psycopg cannot write (an int beyond BIGINT, say) aborts the
        COPY with a :class:`CopyRowError` naming the row.
        """
        types = getattr(rows, "types", None)
        data = getattr(rows, "rows", rows)
        cur = conn.cursor()
        row: Any = None
        with cur.copy(sql) as copy:
            if types:
                copy.set_types(types)
            write = copy.write_row
            try:
                for row in data:
                    write(row)
            except psycopg.Error:
                raise
            except Exception as exc:  # raised by a dumper: name the row; the COPY is aborted
                pos = next((i for i, r in enumerate(data) if r is row), -1)
                raise CopyRowError(f"row {pos + 1} of the COPY: {type(exc).__name__}: {exc}", pos) from exc
        return int(cur.rowcount)


class CopyRows(Sequence[Sequence[Any]]):
    """Rows for ``executemany`` of a COPY statement, with the binary types of its columns (None: text)."""

    __slots__ = ("rows", "types")

    def __init__(self, rows: Rows, types: list[str] | None) -> None:
        self.rows = rows
        self.types = types

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        return self.rows[index]

    def __iter__(self) -> Iterator[Sequence[Any]]:
        return iter(self.rows)




class _CopyStream:
    """Rows sent into an open COPY; a row psycopg cannot write raises :class:`CopyRowError`."""

    __slots__ = ("copy", "count", "sent")

    def __init__(self, copy: Any) -> None:
        self.copy = copy
        self.sent = 0
        self.count = 0

    def send(self, rows: Rows) -> None:
        write = self.copy.write_row
        row: Any = None
        try:
            for row in rows:
                write(row)
        except psycopg.Error:
            raise
        except Exception as exc:  # raised by a dumper: name the row; the COPY is aborted
            pos = self.sent + next((i for i, r in enumerate(rows) if r is row), -1)
            raise CopyRowError(f"row {pos + 1} of the COPY: {type(exc).__name__}: {exc}", pos) from exc
        self.sent += len(rows)
