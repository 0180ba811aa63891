"""Helpers for the safety tests: run nodes for a tenant, snapshot a tenant's rows, inspect indexes."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import DataFlow, LocalRuntime, WorkflowBuilder, WorkflowFailed

__all__ = ["cause_of", "fails", "index_columns", "raw", "rejected", "run_node", "snapshot"]


def run_node(db: DataFlow, node_type: str, params: dict[str, Any] | None = None, *, tenant: str | None = None) -> Any:
    """Run a one-node workflow (for ``tenant`` when given) and return that node's result."""
    wf = WorkflowBuilder(db)
    wf.add_node(node_type, "n", params or {})
    results, _ = LocalRuntime().execute(wf.build(), tenant_id=tenant)
    return results["n"]


def cause_of(exc: BaseException) -> BaseException:
    """The node's own error behind a WorkflowFailed."""
    assert isinstance(exc, WorkflowFailed), exc
    assert exc.__cause__ is not None
    return exc.__cause__


def fails(db: DataFlow, node_type: str, params: dict[str, Any], *, tenant: str | None = None) -> BaseException:
    """Run one node expecting WorkflowFailed; return its cause."""
    with pytest.raises(WorkflowFailed) as info:
        run_node(db, node_type, params, tenant=tenant)
    return cause_of(info.value)


def rejected(db: DataFlow, node_type: str, params: dict[str, Any], *, tenant: str | None = None) -> BaseException:
    """Run one node expecting a parameter error (at build, or for bulk records when they are read).

    Returns the NodeParameterError (unwrapped from WorkflowFailed when records are checked as they stream).
    """
    from dataflow import NodeParameterError

    with pytest.raises((NodeParameterError, WorkflowFailed)) as info:
        run_node(db, node_type, params, tenant=tenant)
    err = info.value
    if isinstance(err, WorkflowFailed):
        err = cause_of(err)
    assert isinstance(err, NodeParameterError), err
    return err


def snapshot(db: DataFlow, model: str, tenant: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
    """Every row of ``model`` that ``tenant`` has (a full List ordered by id), as stored."""
    params: dict[str, Any] = {"order_by": ["id"]}
    if include_deleted:
        params["include_deleted"] = True
    return list(run_node(db, f"{model}ListNode", params, tenant=tenant)["records"])


def raw(db: DataFlow, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One raw statement on a leased connection (``{ph}`` → the placeholder); its rows."""
    text = sql.replace("{ph}", db.dialect.placeholder)

    def body(conn: Any) -> list[tuple[Any, ...]]:
        cursor = db.dialect.execute(conn, text, params)
        try:
            return [tuple(r) for r in cursor.fetchall()]
        except Exception:  # a statement without a result set  # noqa: BLE001
            return []

    return db.engine.run(body)


def index_columns(db: DataFlow, table: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    """index name → (its columns in order, unique) for the live ``table``, read from the catalog."""
    name = db.dialect.name
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    if name == "sqlite":
        for row in raw(db, f"SELECT name, \"unique\" FROM pragma_index_list('{table}')"):
            cols = [r[2] for r in sorted(raw(db, f"SELECT * FROM pragma_index_info('{row[0]}')"))]
            out[row[0]] = (tuple(cols), bool(row[1]))
    elif name == "postgresql":
        rows = raw(db, """
            SELECT i.relname, a.attname, ix.indisunique, k.ord
            FROM pg_class t JOIN pg_index ix ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid
            CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE t.relname = {ph} ORDER BY i.relname, k.ord""", (table,))
        for idx, col, unique, _ in rows:
            cols, _u = out.get(idx, ((), unique))
            out[idx] = ((*cols, col), bool(unique))
    else:
        rows = raw(db, """
            SELECT index_name, column_name, non_unique, seq_in_index FROM information_schema.statistics
            WHERE table_schema = DATABASE() AND table_name = {ph} ORDER BY index_name, seq_in_index""", (table,))
        for idx, col, non_unique, _ in rows:
            cols, _u = out.get(idx, ((), not non_unique))
            out[idx] = ((*cols, col), not non_unique)
    return out
