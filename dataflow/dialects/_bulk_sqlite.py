"""SQLite's bulk paths: ``executemany`` in the workflow's one transaction (the defaults),
and an upsert counted by rowid instead of a lookup of every key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._bulk import BulkPaths, Rows

if TYPE_CHECKING:
    from ..sql import CompiledModel

__all__ = ["SQLiteBulk"]


class SQLiteBulk(BulkPaths):
    """The SQLite overrides of :class:`~dataflow.dialects._bulk.BulkPaths`."""

    bulk_chunk_size = 5000
    bulk_overlap = False  # the database runs in this process: a second thread only contends for the GIL

    def bulk_upsert(self, conn: Any, table: CompiledModel, rows: Rows, key: Sequence[str],
                    update: Sequence[str]) -> tuple[int, int]:
        """Upsert, then count the rows whose rowid is above the largest before it: the inserted ones.

        SQLite gives a new row the largest rowid plus one, and an upsert that
        updates keeps the row's rowid; the transaction holds the write lock,
        so nobody else inserts meanwhile. Where the caller supplies an integer
        ``id`` (which then is the rowid) the keys are looked up instead.
        """
        pk = table.model.primary_key
        if pk.type is int and not pk.auto:
            return super().bulk_upsert(conn, table, rows, key, update)
        before = self.execute(conn, f"SELECT max(rowid) FROM {table.table}").fetchone()[0] or 0
        self.executemany(conn, self.upsert_sql(table.model, table.insert_columns, key, update), rows)
        inserted = int(self.execute(conn, f"SELECT count(*) FROM {table.table} WHERE rowid > ?", (before,))
                       .fetchone()[0])
        return inserted, len(rows) - inserted
