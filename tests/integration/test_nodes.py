"""The single-record nodes and List: parameters and result shapes as NODES.md gives them."""

from __future__ import annotations

import pytest

from dataflow import DataFlow, LocalRuntime, NotFoundError, WorkflowBuilder, WorkflowFailed
from tests.integration.conftest import seed_products as _seed
from tests.integration.helpers import count, list_records, run_node

# -- Create / Read --------------------------------------------------------------------------------


def test_create_returns_the_full_stored_record(products: DataFlow) -> None:
    """Create returns every column (id, defaults, timestamps) and equals what Read returns."""
    created = run_node(products, "ProductCreateNode", {"sku": "a", "name": "Pen", "price": 1.5})
    assert set(created) == {"id", "sku", "name", "price", "stock", "note", "created_at", "updated_at"}
    assert created == run_node(products, "ProductReadNode", {"id": created["id"]})
    assert created["stock"] == 0 and created["note"] is None


def test_read_not_found_raises_by_default(products: DataFlow) -> None:
    """Reading a missing id fails the workflow with a NotFoundError cause naming the id."""
    with pytest.raises(WorkflowFailed) as info:
        run_node(products, "ProductReadNode", {"id": 999})
    assert isinstance(info.value.__cause__, NotFoundError)
    assert "999" in str(info.value.__cause__)
    assert info.value.node == "n"


def test_read_not_found_without_raising(products: DataFlow) -> None:
    """With raise_on_not_found False a missing id returns {"found": False}."""
    assert run_node(products, "ProductReadNode", {"id": 999, "raise_on_not_found": False}) == {"found": False}


# -- Update ---------------------------------------------------------------------------------------


def test_update_filter_and_fields_one_row(products: DataFlow) -> None:
    """Update with filter+fields reports one row and returns the record after the update."""
    rows = _seed(products)
    out = run_node(products, "ProductUpdateNode", {"filter": {"sku": "s2"}, "fields": {"price": 99.0}})
    assert out["rows_affected"] == 1 and out["updated"] is True
    assert out["record"]["id"] == rows[2]["id"] and out["record"]["price"] == 99.0
    assert count(products, "Product", {"price": 99.0}) == 1


def test_update_flat_id_form(products: DataFlow) -> None:
    """Update with flat ``id`` plus field values changes exactly that row."""
    rows = _seed(products)
    out = run_node(products, "ProductUpdateNode", {"id": rows[0]["id"], "name": "renamed", "note": "n"})
    assert out["rows_affected"] == 1 and out["record"]["name"] == "renamed"
    read = run_node(products, "ProductReadNode", {"id": rows[0]["id"]})
    assert (read["name"], read["note"]) == ("renamed", "n")
    assert count(products, "Product", {"name": "renamed"}) == 1


def test_update_many_rows_has_no_record(products: DataFlow) -> None:
    """An update matching several rows reports their number (from the database) and record None."""
    _seed(products, 6)
    expected = count(products, "Product", {"stock": {"$gte": 2}})
    out = run_node(products, "ProductUpdateNode", {"filter": {"stock": {"$gte": 2}}, "fields": {"note": "bulk"}})
    assert out == {"rows_affected": expected, "updated": True, "record": None}
    assert count(products, "Product", {"note": "bulk"}) == expected


def test_update_no_match(products: DataFlow) -> None:
    """An update matching nothing reports 0 rows, updated False, record None."""
    _seed(products)
    out = run_node(products, "ProductUpdateNode", {"filter": {"sku": "none"}, "fields": {"stock": 1}})
    assert out == {"rows_affected": 0, "updated": False, "record": None}


def test_update_filter_conditions_are_anded(products: DataFlow) -> None:
    """All conditions of an Update filter must hold for a row to change."""
    rows = _seed(products)
    out = run_node(products, "ProductUpdateNode",
                   {"filter": {"id": rows[1]["id"], "sku": "s3"}, "fields": {"stock": 77}})
    assert out["rows_affected"] == 0
    assert count(products, "Product", {"stock": 77}) == 0


# -- Delete ---------------------------------------------------------------------------------------


def test_delete_by_id(products: DataFlow) -> None:
    """Delete by id removes that row and reports {"deleted": True, "rows_affected": 1}."""
    rows = _seed(products)
    assert run_node(products, "ProductDeleteNode", {"id": rows[0]["id"]}) == {"deleted": True, "rows_affected": 1}
    assert count(products, "Product") == len(rows) - 1
    assert run_node(products, "ProductReadNode", {"id": rows[0]["id"], "raise_on_not_found": False}) == {"found": False}


def test_delete_by_filter(products: DataFlow) -> None:
    """Delete by filter removes every match and reports how many."""
    _seed(products, 6)
    matching = count(products, "Product", {"stock": {"$lt": 3}})
    out = run_node(products, "ProductDeleteNode", {"filter": {"stock": {"$lt": 3}}})
    assert out == {"deleted": True, "rows_affected": matching}
    assert count(products, "Product", {"stock": {"$lt": 3}}) == 0
    assert count(products, "Product") == 6 - matching


def test_delete_missing_id(products: DataFlow) -> None:
    """Deleting an id that does not exist reports deleted False and 0 rows."""
    assert run_node(products, "ProductDeleteNode", {"id": 12345}) == {"deleted": False, "rows_affected": 0}


# -- List -----------------------------------------------------------------------------------------


def test_list_filter_order_limit_offset(products: DataFlow) -> None:
    """List filters, orders by "-price" then "name", and pages with limit/offset."""
    rows = _seed(products, 9)
    expect = sorted((r for r in rows if r["stock"] >= 1), key=lambda r: (-r["price"], r["name"]))
    out = run_node(products, "ProductListNode", {
        "filter": {"stock": {"$gte": 1}}, "order_by": ["-price", "name"], "limit": 3, "offset": 2,
    })
    assert [r["sku"] for r in out["records"]] == [r["sku"] for r in expect[2:5]]
    assert out["count"] == 3


def test_list_order_by_multiple_keys_breaks_ties(products: DataFlow) -> None:
    """A second order_by key orders rows that tie on the first."""
    run_node(products, "ProductBulkCreateNode", {"records": [
        {"sku": "x1", "name": "b", "price": 1.0}, {"sku": "x2", "name": "a", "price": 1.0},
        {"sku": "x3", "name": "c", "price": 2.0},
    ]})
    asc = [r["sku"] for r in list_records(products, "Product", order_by=["price", "name"])]
    desc = [r["sku"] for r in list_records(products, "Product", order_by=["-price", "-name"])]
    assert asc == ["x2", "x1", "x3"]
    assert desc == ["x3", "x1", "x2"]


def test_list_without_limit_returns_every_match(products: DataFlow) -> None:
    """No limit returns every matching row, even more than any default page size."""
    n = 1205
    run_node(products, "ProductBulkCreateNode",
             {"records": ({"sku": f"k{i}", "name": "n", "price": 1.0} for i in range(n))})
    out = run_node(products, "ProductListNode", {})
    assert out["count"] == len(out["records"]) == count(products, "Product") == n


def test_list_offset_without_limit(products: DataFlow) -> None:
    """An offset without a limit skips rows and returns all the rest."""
    rows = _seed(products, 7)
    got = list_records(products, "Product", order_by=["id"], offset=4)
    assert [r["id"] for r in got] == [r["id"] for r in rows[4:]]


def test_list_fields_projection(products: DataFlow) -> None:
    """``fields`` returns only the named columns."""
    _seed(products, 3)
    got = list_records(products, "Product", fields=["sku", "price"], order_by=["sku"])
    assert [set(r) for r in got] == [{"sku", "price"}] * 3
    assert [r["sku"] for r in got] == ["s0", "s1", "s2"]


def test_list_count_only(products: DataFlow) -> None:
    """count_only returns the number of matches counted by the database, and no records."""
    rows = _seed(products, 8)
    out = run_node(products, "ProductListNode", {"filter": {"stock": {"$gt": 4}}, "count_only": True})
    assert out["count"] == sum(1 for r in rows if r["stock"] > 4)
    assert not out.get("records")


def test_update_record_keeps_declared_float_type(db: DataFlow) -> None:
    """An Update's returned record gives a float field back as a float even when its value is integral."""

    @db.model
    class Gauge:
        reading: float

    wf = WorkflowBuilder()
    wf.add_node("GaugeCreateNode", "c", {"reading": 1.5})
    wf.add_node("GaugeUpdateNode", "u", {"fields": {"reading": 2.0}})
    wf.add_connection("c", "id", "u", "filter.id")
    results, _ = LocalRuntime().execute(wf.build())
    value = results["u"]["record"]["reading"]
    assert type(value) is float and value == 2.0
