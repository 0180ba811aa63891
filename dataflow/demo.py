"""The main job of the README: models, CRUD and a bulk workflow on the embedded default.

Run it with ``dataflow-demo`` or ``python -m dataflow.demo``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Optional, TextIO

from . import BulkProgress, DataFlow, LocalRuntime, WorkflowBuilder, WorkflowFailed


def progress_bar(label: str, stream: TextIO | None = None, width: int = 30) -> Callable[[BulkProgress], Any] | None:
    """An ``on_progress`` callback drawing a one-line bar on ``stream`` (stderr), or None off a terminal.

    Hand-rolled: a line rewritten with a carriage return needs no library.
    Off a TTY (a pipe, a log file, CI) there is no bar at all.
    """
    out = sys.stderr if stream is None else stream
    if not out.isatty():
        return None

    def show(event: BulkProgress) -> None:
        if event.total:
            filled = int(width * event.done / event.total)
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {event.done:,}/{event.total:,}"
        else:
            bar = f"{event.done:,} records"
        out.write(f"\r{label} {bar}  {event.rate:,.0f}/s")
        if event.finished:
            out.write("\n")
        out.flush()

    return show


def main() -> None:
    with DataFlow() as db:  # a private in-memory SQLite database
        @db.model
        class Product:
            name: str
            price: float
            stock: int = 0
            category: Optional[str] = None
            __indexes__ = [{"name": "idx_product_category", "fields": ["category"]}]

        runtime = LocalRuntime()

        wf = WorkflowBuilder()
        wf.add_node("ProductCreateNode", "create", {"name": "Pen", "price": 1.5})
        wf.add_node("ProductUpdateNode", "restock", {"fields": {"stock": 10}})
        wf.add_connection("create", "id", "restock", "filter.id")
        wf.add_node("ProductReadNode", "read", {})
        wf.add_connection("create", "id", "read", "id")
        results, run_id = runtime.execute(wf.build())
        pen = results["read"]
        print(f"run {run_id}: created {pen['name']!r} (id {pen['id']}), restocked to {pen['stock']}")

        records = [{"name": f"Item {i}", "price": 0.5 + i % 20, "category": f"c{i % 5}"} for i in range(10_000)]
        wf = WorkflowBuilder()
        wf.add_node("ProductBulkCreateNode", "import", {"records": records, "chunk_size": 2_000,
                                                         "on_progress": progress_bar("importing")})
        wf.add_node("ProductBulkUpdateNode", "reprice", {"filter": {"category": "c3"}, "fields": {"price": 9.99}})
        wf.add_node("ProductListNode", "cheapest", {"filter": {"price": {"$lt": 1}}, "order_by": ["name"], "limit": 3})
        wf.add_node("ProductListNode", "total", {"count_only": True})
        results, _ = runtime.execute(wf.build())
        imported = results["import"]
        print(f"bulk import: {imported['inserted']} rows in {imported['chunks']} chunks; "
              f"repriced {results['reprice']['updated']}; table now holds {results['total']['count']} rows")
        print("cheapest:", ", ".join(f"{r['name']} ({r['price']})" for r in results["cheapest"]["records"]))

        wf = WorkflowBuilder()
        wf.add_node("ProductCreateNode", "good", {"name": "Stapler", "price": 7.0})
        wf.add_node("ProductUpdateNode", "bad", {"filter": {"name": "Stapler"}, "fields": {"price": 1.0}})
        wf.add_node("ProductReadNode", "missing", {"id": 999_999})
        try:
            runtime.execute(wf.build())
        except WorkflowFailed as exc:
            print(f"atomic: node {exc.node!r} failed ({type(exc.__cause__).__name__}), so nothing of the workflow was kept")
        wf = WorkflowBuilder()
        wf.add_node("ProductListNode", "staplers", {"filter": {"name": "Stapler"}, "count_only": True})
        print("staplers in the table after the failed workflow:", runtime.execute(wf.build())[0]["staplers"]["count"])


if __name__ == "__main__":
    main()
