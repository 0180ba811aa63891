"""MySQL / MariaDB bulk paths: multi-row statements, and a staging table for updates by id.

PyMySQL's ``executemany`` already sends an ``INSERT … VALUES`` as multi-row
statements (up to ``max_stmt_length`` bytes each), so create and skip keep
the dialect's own ``executemany``. The upsert reads its counts from the
affected rows of ``INSERT … ON DUPLICATE KEY UPDATE``: 1 per inserted row, 2
per updated one (a row set to its current values would count 1, which the
caller rules out by always setting a fresh ``updated_at``). Updates by id go
through a temporary staging table and one ``UPDATE … JOIN``; with
``CLIENT.FOUND_ROWS`` its count is the rows matched, as on the other backends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._bulk import BulkPaths, Rows

if TYPE_CHECKING:
    from ..sql import CompiledModel

__all__ = ["MySQLBulk"]


class MySQLBulk(BulkPaths):
    """The MySQL overrides of :class:`~dataflow.dialects._bulk.BulkPaths`."""

    bulk_chunk_size = 5000
    # PyMySQL builds each statement in Python on the writing thread; validating the
    # next chunk on another thread measured no gain (docs/adr/0008-bulk.md).
    bulk_overlap = False
    upsert_targets_key = False

    def bulk_upsert(self, conn: Any, table: CompiledModel, rows: Rows, key: Sequence[str],
                    update: Sequence[str]) -> tuple[int, int]:
        cur = conn.cursor()
        cur.executemany(self.upsert_sql(table.model, table.insert_columns, key, update), rows)
        n, affected = len(rows), int(cur.rowcount)
        updated = affected - n
        if not 0 <= updated <= n:  # pragma: no cover - a row set to its current values
            raise RuntimeError(f"upsert of {n} rows reported {affected} affected rows")
        return n - updated, updated

    def bulk_update(self, conn: Any, table: CompiledModel, names: Sequence[str], rows: Rows,
                    tenant: str | None) -> int:
        q = table.q
        columns = (*names, "id")
        digest = hashlib.sha1(f"{table.table}({','.join(columns)})".encode()).hexdigest()[:20]
        stage = f"dataflow_stage_{digest}"
        cols = ", ".join(q(c) for c in columns)
        # TEMPORARY: private to the session, and neither statement commits the transaction.
        self.execute(conn, f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} AS SELECT {cols} FROM {table.table} LIMIT 0")
        self.execute(conn, f"DELETE FROM {stage}")
        marks = ", ".join(self.placeholder for _ in columns)
        self.executemany(conn, f"INSERT INTO {stage} ({cols}) VALUES ({marks})", rows)
        parts, params = table.scope(tenant)
        where = " AND ".join([f"{table.table}.{q('id')} = s.{q('id')}", *parts])
        sql = f"UPDATE {table.table} JOIN {stage} s ON {where} SET {table.set_from(names, 's', table.table)}"
        return int(self.execute(conn, sql, params).rowcount)
