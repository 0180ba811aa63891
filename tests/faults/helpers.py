"""Workflows and checks shared by the fault tests."""

from __future__ import annotations

from typing import Any

from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

from .servers import admin, server_connections, wait_for

__all__ = ["create", "names", "pool_back_to_size", "run"]


def run(builder: WorkflowBuilder) -> dict[str, Any]:
    results, _ = LocalRuntime().execute(builder.build())
    return results


def create(db: DataFlow, name: str) -> WorkflowBuilder:
    """A one-statement workflow: create one Item."""
    wf = WorkflowBuilder(db)
    wf.add_node("ItemCreateNode", "create", {"name": name})
    return wf


def names(db: DataFlow) -> list[str]:
    """Every Item name in the database, read past DataFlow where there is a server."""
    table = db.models["Item"].table
    if db.dialect.name == "sqlite":
        rows = db.engine.run(lambda conn: conn.execute(f'SELECT name FROM "{table}"').fetchall())
    else:
        with admin(db) as conn:
            cur = conn.cursor()
            cur.execute(f"SELECT name FROM {db.dialect.quote(table)}")
            rows = cur.fetchall()
    return sorted(r[0] for r in rows)


def pool_back_to_size(db: DataFlow, size: int) -> dict[str, Any]:
    """Wait (bounded) until the pool holds ``size`` idle connections and nothing else, and the
    server agrees; return the pool's stats."""
    stats = wait_for(
        lambda: (s := db.pool_stats())["size"] == size and s["idle"] == size and s["connecting"] == 0
        and s["in_use"] == 0 and s["waiting"] == 0 and s,
        what=f"pool back to {size} idle connections",
    )
    if db.dialect.name != "sqlite":
        wait_for(lambda: server_connections(db) == size, what=f"server sees {size} connections")
    return stats
