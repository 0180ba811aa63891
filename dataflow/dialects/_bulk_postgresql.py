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

from ._bulk import BulkPaths, InsertStream, Rows, UpsertStream

if TYPE_CHECKING:
    from ..sql import CompiledModel

__all__ = ["PostgresBulk"]

#: declared type → the PostgreSQL type whose binary form psycopg writes for the bound value
_BINARY = {int: "int8", float: "float8", str: "text", bool: "bool", Decimal: "numeric",
           datetime: "varchar", date: "date", bytes: "bytea"}
_COPY_LINE = re.compile(r"^COPY [^,]+, line (\d+)")


class CopyRowError(psycopg.DataError):
    """A row psycopg could not write into a COPY (out of range, wrong type); ``dataflow_row`` is its position."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.dataflow_row = row


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

    @contextmanager
    def bulk_upsert_stream(self, conn: Any, table: CompiledModel, key: Sequence[str], update: Sequence[str], *,
                           locate: bool) -> Iterator[UpsertStream]:
        """One COPY into a staging table for every chunk, then one INSERT … SELECT … ON CONFLICT.

        The staging table numbers its rows (``dataflow_seq``): a key staged
        twice is merged from its last row (``DISTINCT ON``), and a refused
        merge is bisected by row number on the server, without sending
        anything again.
        """
        columns = table.insert_columns
        q = table.q
        digest = hashlib.sha1(f"{table.table}(seq,{','.join(columns)})".encode()).hexdigest()[:20]
        stage = f"dataflow_stage_{digest}"
        cols = ", ".join(q(c) for c in columns)
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
                     f" SELECT 0::bigint AS dataflow_seq, {cols} FROM {table.table} WITH NO DATA")
        conn.execute(f"TRUNCATE {stage}")
        types = [_BINARY.get(table.model.fields[c].type) for c in columns]
        binary = all(types)
        cur = conn.cursor()
        with cur.copy(f"COPY {stage} (dataflow_seq, {cols}) FROM STDIN{' (FORMAT BINARY)' if binary else ''}") as copy:
            if binary:
                copy.set_types(["int8", *types])
            stream = _StageStream(copy)
            yield stream
        stream.inserted, stream.updated = _Merge(self, conn, table, stage, key, update).run(stream.sent, locate)

    def bulk_error_row(self, exc: BaseException) -> int | None:
        row = getattr(exc, "dataflow_row", None)
        if isinstance(row, int):
            return row
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


class _StageStream:
    """Rows numbered from 0 into an open COPY of a staging table."""

    __slots__ = ("copy", "inserted", "sent", "updated")

    def __init__(self, copy: Any) -> None:
        self.copy = copy
        self.sent = 0
        self.inserted = self.updated = 0

    def send(self, rows: Rows) -> None:
        write = self.copy.write_row
        seq = self.sent
        try:
            for row in rows:
                write((seq, *row))
                seq += 1
        except psycopg.Error:
            raise
        except Exception as exc:  # raised by a dumper: name the row; the COPY is aborted
            raise CopyRowError(f"row {seq + 1} of the COPY: {type(exc).__name__}: {exc}", seq) from exc
        self.sent = seq


class _Merge:
    """The one upsert from a staging table into its target, and the search for a row it refuses."""

    def __init__(self, dialect: Any, conn: Any, table: CompiledModel, stage: str, key: Sequence[str],
                 update: Sequence[str]) -> None:
        q = table.q
        self.dialect = dialect
        self.conn = conn
        self.stage = stage
        cols = ", ".join(q(c) for c in table.insert_columns)
        keys = ", ".join(q(c) for c in key)
        self.select = f"SELECT {cols} FROM {stage}"
        # A key staged twice: its last row wins. Without a key (skip on any clash) every row goes in order.
        self.distinct = f"SELECT DISTINCT ON ({keys}) {cols} FROM {stage}" if key else self.select
        self.order = f" ORDER BY {keys}, dataflow_seq DESC" if key else " ORDER BY dataflow_seq"
        self.insert = f"INSERT INTO {table.table} ({cols}) "
        if update:
            sets = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in update)
            self.conflict = f" ON CONFLICT ({keys}) DO UPDATE SET {sets} RETURNING (xmax = 0) AS fresh"
        else:
            self.conflict = " ON CONFLICT DO NOTHING"
        self.update = bool(update)

    def _gone(self, exc: BaseException) -> bool:
        """A lost connection or a transient error: about the transaction, nothing to search for."""
        return bool(self.dialect.is_disconnect(exc) or self.dialect.is_transient(exc))

    def run(self, sent: int, locate: bool) -> tuple[int, int]:
        """Merge every staged row; ``(inserted, updated)``, repeats of a key counted as updates."""
        conn = self.conn
        conn.execute("SAVEPOINT dataflow_merge")
        try:
            try:
                inserted, updated = self._merge(self.select)
            except psycopg.errors.CardinalityViolation:  # a key staged twice: its last row wins
                conn.execute("ROLLBACK TO SAVEPOINT dataflow_merge")
                inserted, updated = self._merge(self.distinct, self.order)
        except psycopg.Error as exc:
            if not locate or self._gone(exc):
                raise
            conn.execute("ROLLBACK TO SAVEPOINT dataflow_merge")
            exc.dataflow_row = self._first_bad(sent)  # type: ignore[attr-defined]
            raise
        conn.execute("RELEASE SAVEPOINT dataflow_merge")
        if self.update:
            updated += sent - inserted - updated  # the repeats DISTINCT ON merged away
        return inserted, updated

    def _merge(self, select: str, tail: str = "", where: str = "", params: Sequence[Any] = ()) -> tuple[int, int]:
        sql = self.insert + select + where + tail + self.conflict
        if not self.update:
            return int(self.conn.execute(sql, params or None).rowcount), 0
        row = self.conn.execute(f"WITH up AS ({sql}) SELECT count(*) FILTER (WHERE fresh),"
                                " count(*) FILTER (WHERE NOT fresh) FROM up", params or None).fetchone()
        return int(row[0]), int(row[1])

    def _first_bad(self, sent: int) -> int | None:
        """The first staged row the merge refuses after every row before it is merged (and kept)."""
        lo, hi = 0, sent  # rows [0, lo) are merged; the failure is in [lo, hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._try(lo, mid):
                lo = mid
            else:
                hi = mid
        return lo if hi - lo == 1 and not self._try(lo, hi) else None

    def _try(self, lo: int, hi: int) -> bool:
        conn = self.conn
        conn.execute("SAVEPOINT dataflow_search")
        try:
            self._merge(self.distinct, self.order, " WHERE dataflow_seq >= %s AND dataflow_seq < %s", (lo, hi))
        except psycopg.Error as exc:
            if self._gone(exc):
                raise
            conn.execute("ROLLBACK TO SAVEPOINT dataflow_search")
            conn.execute("RELEASE SAVEPOINT dataflow_search")
            return False
        conn.execute("RELEASE SAVEPOINT dataflow_search")
        return True

