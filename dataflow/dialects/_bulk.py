"""The bulk write paths every dialect has, with portable defaults.

``nodes/_bulk.py`` validates records into bound rows (in the model's
``insert_columns`` order) and calls these methods chunk by chunk, inside the
workflow's transaction; a backend overrides the ones it has a faster honest
path for (PostgreSQL: COPY; MySQL: multi-row statements and a staging
table). Every method returns what the database reported, never a count
assumed from the input. See ``docs/adr/0008-bulk.md``.

The defaults are the SQLite paths: ``executemany`` of one prepared
statement. SQLite runs in-process, so a statement per row costs no round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from ..sql import CompiledModel

__all__ = ["BulkPaths", "InsertStream", "UpsertStream"]

Rows = Sequence[Sequence[Any]]


class UpsertStream(Protocol):
    """Rows on their way to one upsert (see :meth:`BulkPaths.bulk_upsert_stream`)."""

    #: rows the merge inserted, and rows it updated, once the stream is closed
    inserted: int
    updated: int

    def send(self, rows: Rows) -> None:
        """Stage ``rows``."""


class InsertStream(Protocol):
    """An INSERT statement open for rows (see :meth:`BulkPaths.bulk_insert_stream`)."""

    #: rows the database reported inserted, once the stream is closed
    count: int

    def send(self, rows: Rows) -> None:
        """Write ``rows`` into the statement."""


class BulkPaths:
    """Bulk INSERT, INSERT-or-skip, upsert and update-by-id of bound rows."""

    #: the bulk nodes' default ``chunk_size`` (rows per chunk)
    bulk_chunk_size: ClassVar[int] = 5000
    #: preparing the next chunk on the chunker's thread overlaps the database's work on
    #: this one: true where the server works in another process while the client waits
    bulk_overlap: ClassVar[bool] = False
    #: an upsert names the key it resolves conflicts on; False where a clash on any
    #: unique key updates (MySQL's ON DUPLICATE KEY UPDATE), so :meth:`bulk_upsert`
    #: is only right for models with a single unique key a record can give
    upsert_targets_key: ClassVar[bool] = True
    #: :meth:`bulk_insert_stream` and :meth:`bulk_upsert_stream` exist: one statement
    #: (and one merge) can span every chunk of a job
    bulk_streams: ClassVar[bool] = False

    if TYPE_CHECKING:  # provided by Dialect
        placeholder: ClassVar[str]

        def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any: ...

        def executemany(self, conn: Any, sql: str, rows: Any) -> int: ...

        def quote(self, name: str) -> str: ...

        def upsert_sql(self, model: Any, columns: Sequence[str], conflict: Sequence[str],
                       update: Sequence[str]) -> str: ...

    # -- the paths

    def bulk_insert(self, conn: Any, table: CompiledModel, rows: Rows) -> int:
        """INSERT ``rows``; the number inserted. A clash on a unique key is an error."""
        return self.executemany(conn, table.plain_insert_sql, rows)

    def bulk_insert_ignore(self, conn: Any, table: CompiledModel, rows: Rows) -> int:
        """INSERT ``rows``, skipping each one that clashes with a stored row on any unique key.

        Returns the number inserted; the rest were skipped.
        """
        return self.executemany(conn, self.upsert_sql(table.model, table.insert_columns, [], []), rows)

    def bulk_upsert(self, conn: Any, table: CompiledModel, rows: Rows, key: Sequence[str],
                    update: Sequence[str]) -> tuple[int, int]:
        """INSERT ``rows``; a row whose ``key`` is stored updates that row's ``update`` columns instead.

        No two of ``rows`` share a key (the caller splits repeats into later
        calls), and ``update`` includes ``updated_at`` with a time no stored
        row has yet. Returns ``(inserted, updated)``.

        The default asks which keys are stored first: exact, because the
        caller's transaction holds SQLite's write lock from its BEGIN IMMEDIATE.
        """
        cols = table.insert_columns
        get = itemgetter(*[cols.index(c) for c in key])
        keys = [(get(row),) for row in rows] if len(key) == 1 else [get(row) for row in rows]
        existing = self.stored_keys(conn, table, key, keys)
        self.executemany(conn, self.upsert_sql(table.model, cols, key, update), rows)
        updated = sum(1 for k in keys if k in existing)
        return len(rows) - updated, updated

    def bulk_update(self, conn: Any, table: CompiledModel, names: Sequence[str], rows: Rows,
                    tenant: str | None) -> int:
        """UPDATE by id: each row is the bound values of ``names`` followed by the id.

        Carries the model's scope (tenant, not soft-deleted) and version bump.
        No two rows share an id. Returns the rows updated.
        """
        q, ph = table.q, self.placeholder
        where, scope = table.scoped_condition(f"{q('id')} = {ph}", tenant)
        sql = table.update_sql(tuple(names)) + where
        n = len(names)
        return self.executemany(conn, sql, [[*row[:n], *scope, row[n]] for row in rows])

    def bulk_insert_stream(self, conn: Any, table: CompiledModel) -> AbstractContextManager[InsertStream]:
        """One INSERT of rows sent chunk by chunk (:attr:`bulk_streams` dialects only).

        Leaving the context ends the statement; the stream's ``count`` is then
        the rows inserted. An error may surface at any ``send`` or at the end,
        and :meth:`bulk_error_row` then gives the row's position in the whole stream.
        """
        raise NotImplementedError(f"{type(self).__name__} has no insert stream")

    def bulk_upsert_stream(self, conn: Any, table: CompiledModel, key: Sequence[str], update: Sequence[str], *,
                           locate: bool) -> AbstractContextManager[UpsertStream]:
        """Rows sent chunk by chunk into a staging table, merged by one upsert when the context ends.

        As :meth:`bulk_upsert` (an empty ``update`` skips clashing rows, as
        :meth:`bulk_insert_ignore`), except that rows may repeat a key: the
        last one of a key wins and each repeat counts as an update. With
        ``locate``, a merge the database refuses is searched for the first
        row at fault, which :meth:`bulk_error_row` then gives.
        """
        raise NotImplementedError(f"{type(self).__name__} has no upsert stream")

    def bulk_error_row(self, exc: BaseException) -> int | None:
        """For an error raised by one of the paths above: the position of the row at fault, if the driver says.

        For a stream, the position counts from the stream's first row.
        """
        return None

    # -- helpers

    def stored_keys(self, conn: Any, table: CompiledModel, cols: Sequence[str],
                    keys: Sequence[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
        """Which of ``keys`` (bound values of ``cols``) are stored, in batches of 500."""
        found: set[tuple[Any, ...]] = set()
        q, ph = table.q, self.placeholder
        select = ", ".join(q(c) for c in cols)
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            if len(cols) == 1:
                cond = f"{q(cols[0])} IN ({', '.join(ph for _ in part)})"
                params = [k[0] for k in part]
            else:
                one = "(" + " AND ".join(f"{q(c)} = {ph}" for c in cols) + ")"
                cond = " OR ".join(one for _ in part)
                params = [v for k in part for v in k]
            rows = self.execute(conn, f"SELECT {select} FROM {table.table} WHERE {cond}", params).fetchall()
            found.update(tuple(r) for r in rows)
        return found
