"""Fixtures shared by the node tests."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import DataFlow
from tests.integration.helpers import list_records, run_node


@pytest.fixture
def products(db: DataFlow) -> DataFlow:
    """``db`` with a Product model (unique sku) and no rows."""

    @db.model
    class Product:
        sku: str
        name: str
        price: float
        stock: int = 0
        note: str | None = None
        __indexes__ = [{"name": "idx_product_sku", "fields": ["sku"], "unique": True}]  # noqa: RUF012

    return db


def seed_products(db: DataFlow, n: int = 5) -> list[dict[str, Any]]:
    """Bulk-create ``n`` products; return them as stored, in id order."""
    rows = [{"sku": f"s{i}", "name": f"p{i}", "price": float(10 * (i % 3) + i), "stock": i} for i in range(n)]
    out = run_node(db, "ProductBulkCreateNode", {"records": rows})
    assert out["inserted"] == n
    return list_records(db, "Product", order_by=["id"])

