"""Fixtures for the bulk tests: an ``Item`` model on every engine, and counting helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dataflow import DataFlow, LocalRuntime, WorkflowBuilder
from tests.integration.helpers import table_count


def define_item(db: DataFlow) -> DataFlow:
    """Register the ``Item`` model (unique ``sku``, table ``items``) on ``db``."""

    @db.model
    class Item:
        sku: str
        name: str
        qty: int = 0
        price: float = 1.0
        note: str | None = None
        __indexes__ = [{"name": "idx_item_sku", "fields": ["sku"], "unique": True}]  # noqa: RUF012

    return db


@pytest.fixture
def items(db: DataFlow) -> DataFlow:
    """``db`` with an ``Item`` model (unique ``sku``) and no rows."""
    return define_item(db)


def item(i: int, **extra: Any) -> dict[str, Any]:
    """Record number ``i``: sku ``k<i>``."""
    return {"sku": f"k{i}", "name": f"item {i}", "qty": i, **extra}


def items_gen(n: int, start: int = 0, **extra: Any) -> Iterator[dict[str, Any]]:
    return (item(i, **extra) for i in range(start, start + n))


def stored(db: DataFlow, table: str = "items") -> int:
    """``SELECT count(*)`` of ``table``: what the database holds, independent of any node."""
    return table_count(db, table)


def bulk(db: DataFlow, node: str, params: dict[str, Any], *, tenant: str | None = None) -> Any:
    """Run a workflow of the one bulk node (for ``tenant``); return its result."""
    wf = WorkflowBuilder(db)
    wf.add_node(node, "bulk", params)
    results, _ = LocalRuntime().execute(wf.build(), tenant_id=tenant)
    return results["bulk"]


@pytest.fixture
def fast_chunks(monkeypatch: pytest.MonkeyPatch) -> Callable[[DataFlow, int], None]:
    """``fast_chunks(db, n)``: make ``n`` rows the default chunk size of ``db``'s dialect for this test."""

    def set_size(db: DataFlow, n: int) -> None:
        monkeypatch.setattr(type(db.dialect), "bulk_chunk_size", n)

    return set_size
