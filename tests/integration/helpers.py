"""Small helpers shared by the integration tests: run one node, count rows, raw SQL."""

from __future__ import annotations

from typing import Any

from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

__all__ = ["columns", "count", "list_records", "raw", "run_node", "run_wf", "table_count"]


def run_wf(builder: WorkflowBuilder, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build and run ``builder`` with a LocalRuntime; return the results."""
    results, _ = LocalRuntime().execute(builder.build(), parameters=parameters)
    return results


def run_node(db: DataFlow, node_type: str, params: dict[str, Any] | None = None) -> Any:
    """Run a one-node workflow and return that node's result."""
    wf = WorkflowBuilder(db)
    wf.add_node(node_type, "n", params or {})
    return run_wf(wf)["n"]


def count(db: DataFlow, model: str, flt: dict[str, Any] | None = None) -> int:
    """Rows of ``model`` matching ``flt``, counted by the database (List count_only)."""
    params: dict[str, Any] = {"count_only": True}
    if flt:
        params["filter"] = flt
    n = run_node(db, f"{model}ListNode", params)["count"]
    assert isinstance(n, int)
    return n


def list_records(db: DataFlow, model: str, **params: Any) -> list[dict[str, Any]]:
    """Every record of ``model`` matching the List parameters given."""
    out = run_node(db, f"{model}ListNode", params)
    assert out["count"] == len(out["records"])
    return list(out["records"])


def raw(db: DataFlow, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one raw statement through the dialect on a leased connection; return its rows.

    ``{ph}`` in ``sql`` is replaced by the dialect's placeholder; quote identifiers
    with ``db.dialect.quote``.
    """
    text = sql.replace("{ph}", db.dialect.placeholder)

    def body(conn: Any) -> list[tuple[Any, ...]]:
        cursor = db.dialect.execute(conn, text, params)
        if cursor.description is None:  # a statement without a result set
            return []
        return [tuple(r) for r in cursor.fetchall()]

    return db.engine.run(body)


def table_count(db: DataFlow, table: str) -> int:
    """``SELECT count(*)`` of ``table`` through raw SQL (independent of the List node)."""
    return int(raw(db, f"SELECT count(*) FROM {db.dialect.quote(table)}")[0][0])


def columns(db: DataFlow, table: str) -> set[str]:
    """The column names the live table has, read from a cursor's description."""

    def body(conn: Any) -> set[str]:
        cursor = db.dialect.execute(conn, f"SELECT * FROM {db.dialect.quote(table)} WHERE 1 = 0")
        cursor.fetchall()
        return {d[0] for d in cursor.description}

    return db.engine.run(body)
