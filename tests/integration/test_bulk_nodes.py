"""The four bulk nodes: records, chunks, error strategies, conflicts, aliases, counts from the database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dataflow import DataFlow, IntegrityError, NodeParameterError, WorkflowBuilder, WorkflowFailed
from tests.integration.conftest import seed_products as _seed
from tests.integration.helpers import count, list_records, run_node

# -- BulkCreate -----------------------------------------------------------------------------------


def test_bulk_create_counts_and_chunks(products: DataFlow) -> None:
    """BulkCreate inserts every record, reports inserted/skipped/failed/errors/chunks."""
    out = run_node(products, "ProductBulkCreateNode", {
        "records": [{"sku": f"b{i}", "name": "n", "price": 1.0} for i in range(25)], "chunk_size": 10,
    })
    assert out == {"inserted": 25, "updated": 0, "skipped": 0, "failed": 0, "errors": [], "chunks": 3}
    assert count(products, "Product") == 25


def test_bulk_create_aliases_data_and_batch_size(products: DataFlow) -> None:
    """The upstream spellings ``data`` and ``batch_size`` work as ``records`` and ``chunk_size``."""
    out = run_node(products, "ProductBulkCreateNode", {
        "data": [{"sku": f"b{i}", "name": "n", "price": 1.0} for i in range(5)], "batch_size": 2,
    })
    assert (out["inserted"], out["chunks"]) == (5, 3)
    assert count(products, "Product") == 5


def test_bulk_create_from_generator(products: DataFlow) -> None:
    """Records may come from a generator, consumed once."""
    consumed = []

    def gen() -> Iterator[dict[str, Any]]:
        for i in range(30):
            consumed.append(i)
            yield {"sku": f"g{i}", "name": "n", "price": float(i)}

    out = run_node(products, "ProductBulkCreateNode", {"records": gen(), "chunk_size": 7})
    assert out["inserted"] == 30 and out["chunks"] == 5
    assert consumed == list(range(30))
    assert count(products, "Product", {"price": {"$gte": 0}}) == 30


def test_bulk_create_fail_fast_writes_nothing(products: DataFlow) -> None:
    """fail_fast (the default): one bad record fails the workflow, names its index, and nothing lands."""
    records = [{"sku": f"f{i}", "name": "n", "price": 1.0} for i in range(6)]
    records[4] = {"sku": "f4", "name": "n", "price": "not a number"}
    with pytest.raises((WorkflowFailed, NodeParameterError)) as info:
        run_node(products, "ProductBulkCreateNode", {"records": records, "chunk_size": 2})
    assert "records[4]" in str(info.value)
    assert count(products, "Product") == 0


def test_bulk_create_fail_fast_duplicate_writes_nothing(products: DataFlow) -> None:
    """fail_fast with a unique-key clash in a later chunk rolls back the earlier chunks too."""
    records = [{"sku": f"d{i}", "name": "n", "price": 1.0} for i in range(6)]
    records.append({"sku": "d1", "name": "dup", "price": 1.0})
    with pytest.raises(WorkflowFailed) as info:
        run_node(products, "ProductBulkCreateNode", {"records": records, "chunk_size": 3})
    assert isinstance(info.value.__cause__, IntegrityError)
    assert "records[6]" in str(info.value)
    assert count(products, "Product") == 0


def test_bulk_create_fail_fast_names_the_clashing_record(products: DataFlow) -> None:
    """fail_fast: a unique clash in the middle of a chunk names that record's index, not a range."""
    _seed(products, 1)
    records = [{"sku": f"m{i}", "name": "n", "price": 1.0} for i in range(8)]
    records[4] = {"sku": "s0", "name": "n", "price": 1.0}
    with pytest.raises(WorkflowFailed) as info:
        run_node(products, "ProductBulkCreateNode", {"records": records, "chunk_size": 100})
    assert isinstance(info.value.__cause__, IntegrityError)
    assert "records[4]:" in str(info.value.__cause__)
    assert count(products, "Product") == 1


def test_bulk_create_continue_keeps_good_rows(products: DataFlow) -> None:
    """error_strategy "continue": good rows land; bad ones (invalid or clashing) are reported by index."""
    run_node(products, "ProductCreateNode", {"sku": "taken", "name": "n", "price": 1.0})
    records: list[Any] = [{"sku": f"c{i}", "name": "n", "price": 1.0} for i in range(8)]
    records[2] = {"sku": "c2", "name": "n", "price": "bad"}
    records[5] = {"sku": "taken", "name": "n", "price": 1.0}
    out = run_node(products, "ProductBulkCreateNode",
                   {"records": records, "error_strategy": "continue", "chunk_size": 3})
    assert out["inserted"] == 6 and out["failed"] == 2 and out["skipped"] == 0
    assert [e["index"] for e in out["errors"]] == [2, 5]
    assert all(isinstance(e["error"], str) and e["error"] for e in out["errors"])
    assert count(products, "Product") == 7
    assert count(products, "Product", {"sku": {"$in": ["c2", "c5"]}}) == 0


def test_bulk_create_conflict_skip(products: DataFlow) -> None:
    """conflict_resolution "skip": records clashing with a stored unique key are skipped and counted, the rest land."""
    _seed(products, 3)
    out = run_node(products, "ProductBulkCreateNode", {"conflict_resolution": "skip", "records": [
        {"sku": "s0", "name": "changed", "price": 5.0}, {"sku": "new", "name": "n", "price": 1.0},
    ]})
    assert (out["inserted"], out["skipped"], out["failed"]) == (1, 1, 0)
    assert count(products, "Product") == 4
    assert list_records(products, "Product", filter={"sku": "s0"})[0]["name"] == "p0"


def test_bulk_create_conflict_update(products: DataFlow) -> None:
    """conflict_resolution "update": a record clashing with a stored unique key overwrites that row."""
    _seed(products, 3)
    out = run_node(products, "ProductBulkCreateNode", {"conflict_resolution": "update", "records": [
        {"sku": "s1", "name": "changed", "price": 5.0}, {"sku": "new", "name": "n", "price": 1.0},
    ]})
    assert (out["inserted"], out["updated"], out["failed"], out["errors"]) == (1, 1, 0, [])
    assert count(products, "Product") == 4
    row = list_records(products, "Product", filter={"sku": "s1"})[0]
    assert (row["name"], row["price"]) == ("changed", 5.0)


def test_bulk_create_conflict_on_caller_id(db: DataFlow) -> None:
    """With a caller-supplied id, skip keeps the stored row and update replaces it."""

    @db.model
    class Item:
        id: str
        label: str

    run_node(db, "ItemCreateNode", {"id": "a", "label": "orig"})
    out = run_node(db, "ItemBulkCreateNode", {"conflict_resolution": "skip", "records": [
        {"id": "a", "label": "skip-me"}, {"id": "b", "label": "b"}]})
    assert (out["inserted"], out["skipped"]) == (1, 1)
    assert run_node(db, "ItemReadNode", {"id": "a"})["label"] == "orig"
    out = run_node(db, "ItemBulkCreateNode", {"conflict_resolution": "update", "records": [{"id": "a", "label": "new"}]})
    assert (out["inserted"], out["updated"]) == (0, 1)
    assert run_node(db, "ItemReadNode", {"id": "a"})["label"] == "new"
    assert count(db, "Item") == 2


def test_bulk_create_conflict_error_is_default(products: DataFlow) -> None:
    """By default a record clashing with an existing row fails the workflow with an IntegrityError."""
    _seed(products, 2)
    with pytest.raises(WorkflowFailed) as info:
        run_node(products, "ProductBulkCreateNode", {"records": [
            {"sku": "fresh", "name": "n", "price": 1.0}, {"sku": "s1", "name": "n", "price": 1.0},
        ]})
    assert isinstance(info.value.__cause__, IntegrityError)
    assert count(products, "Product") == 2


# -- BulkUpdate / BulkDelete ----------------------------------------------------------------------


def test_bulk_update_filter_form(products: DataFlow) -> None:
    """BulkUpdate filter+fields updates every match and reports the database's count."""
    _seed(products, 7)
    expected = count(products, "Product", {"stock": {"$lte": 3}})
    out = run_node(products, "ProductBulkUpdateNode", {"filter": {"stock": {"$lte": 3}}, "fields": {"note": "x"}})
    assert out == {"updated": expected}
    assert count(products, "Product", {"note": "x"}) == expected


def test_bulk_update_records_form(products: DataFlow) -> None:
    """BulkUpdate records of {"id", field: value} update each row with its own values."""
    rows = _seed(products, 4)
    out = run_node(products, "ProductBulkUpdateNode", {"records": [
        {"id": rows[0]["id"], "stock": 100}, {"id": rows[1]["id"], "name": "solo"},
        {"id": rows[2]["id"], "stock": 300}, {"id": 987654, "stock": 1},
    ]})
    assert out == {"updated": 3}
    got = {r["id"]: r for r in list_records(products, "Product")}
    assert got[rows[0]["id"]]["stock"] == 100 and got[rows[2]["id"]]["stock"] == 300
    assert got[rows[1]["id"]]["name"] == "solo" and got[rows[1]["id"]]["stock"] == rows[1]["stock"]
    assert got[rows[3]["id"]] == rows[3]


def test_bulk_update_empty_filter_needs_confirmation(products: DataFlow) -> None:
    """An empty BulkUpdate filter is refused unless confirmed; confirmed, it updates every row."""
    _seed(products, 3)
    wf = WorkflowBuilder(products)
    wf.add_node("ProductBulkUpdateNode", "u", {"filter": {}, "fields": {"stock": 0}})
    with pytest.raises(NodeParameterError):
        wf.build()
    assert count(products, "Product", {"stock": 0}) == 1
    out = run_node(products, "ProductBulkUpdateNode", {"filter": {}, "fields": {"stock": 0}, "confirmed": True})
    assert out == {"updated": 3}
    assert count(products, "Product", {"stock": 0}) == 3


def test_bulk_delete_filter_and_confirmation(products: DataFlow) -> None:
    """BulkDelete removes matches; an empty filter is refused unless confirmed."""
    _seed(products, 6)
    matching = count(products, "Product", {"stock": {"$in": [1, 2]}})
    assert run_node(products, "ProductBulkDeleteNode", {"filter": {"stock": {"$in": [1, 2]}}}) == {"deleted": matching}
    assert count(products, "Product") == 6 - matching
    wf = WorkflowBuilder(products)
    wf.add_node("ProductBulkDeleteNode", "d", {})
    with pytest.raises(NodeParameterError, match="confirmed"):
        wf.build()
    assert count(products, "Product") == 6 - matching
    assert run_node(products, "ProductBulkDeleteNode", {"confirmed": True}) == {"deleted": 6 - matching}
    assert count(products, "Product") == 0


# -- BulkUpsert -----------------------------------------------------------------------------------


def test_bulk_upsert_on_unique_index(products: DataFlow) -> None:
    """BulkUpsert on a unique key inserts new keys and updates existing ones, with exact counts."""
    _seed(products, 3)
    out = run_node(products, "ProductBulkUpsertNode", {"conflict_on": ["sku"], "records": [
        {"sku": "s0", "name": "p0", "price": 500.0}, {"sku": "s2", "name": "p2", "price": 502.0},
        {"sku": "n1", "name": "new", "price": 1.0},
    ]})
    assert out == {"inserted": 1, "updated": 2}
    assert count(products, "Product") == 4
    assert count(products, "Product", {"price": {"$gte": 500}}) == 2


def test_bulk_upsert_update_fields_limits_changes(products: DataFlow) -> None:
    """update_fields: only the named fields change on a conflict; others keep their stored values."""
    _seed(products, 2)
    run_node(products, "ProductBulkUpsertNode", {"conflict_on": ["sku"], "update_fields": ["price"], "records": [
        {"sku": "s1", "name": "IGNORED", "price": 42.0, "stock": 999},
    ]})
    row = list_records(products, "Product", filter={"sku": "s1"})[0]
    assert (row["price"], row["name"], row["stock"]) == (42.0, "p1", 1)


def test_bulk_upsert_by_id_with_data_alias(db: DataFlow) -> None:
    """Upsert on the default key ``id`` (spelled with the ``data`` alias) updates and inserts by id."""

    @db.model
    class Item:
        id: str
        label: str

    run_node(db, "ItemCreateNode", {"id": "a", "label": "orig"})
    out = run_node(db, "ItemBulkUpsertNode", {"data": [{"id": "a", "label": "again"}, {"id": "b", "label": "new"}]})
    assert out == {"inserted": 1, "updated": 1}
    assert run_node(db, "ItemReadNode", {"id": "a"})["label"] == "again"
    assert run_node(db, "ItemReadNode", {"id": "b"})["label"] == "new"
    assert count(db, "Item") == 2


def test_bulk_upsert_repeated_key_in_one_batch(products: DataFlow) -> None:
    """The same new key twice in one batch counts as one insert then one update; the last values win."""
    out = run_node(products, "ProductBulkUpsertNode", {"conflict_on": ["sku"], "records": [
        {"sku": "z", "name": "first", "price": 1.0}, {"sku": "z", "name": "second", "price": 2.0},
    ]})
    assert out == {"inserted": 1, "updated": 1}
    rows = list_records(products, "Product")
    assert [(r["sku"], r["name"]) for r in rows] == [("z", "second")]


def test_bulk_upsert_conflict_on_must_be_a_key(products: DataFlow) -> None:
    """conflict_on naming a non-unique field is refused at build, naming the node and option."""
    wf = WorkflowBuilder(products)
    wf.add_node("ProductBulkUpsertNode", "up", {"conflict_on": ["name"], "records": []})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert info.value.node == "up" and info.value.field == "conflict_on"


def test_bulk_create_conflict_update_needs_a_key(db: DataFlow) -> None:
    """conflict_resolution "update" on a model with no key a record can clash on is refused at build."""

    @db.model
    class Loose:
        label: str

    wf = WorkflowBuilder(db)
    wf.add_node("LooseBulkCreateNode", "b", {"conflict_resolution": "update", "records": [{"label": "x"}]})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert info.value.field == "conflict_resolution" and "Loose" in str(info.value)
    assert count(db, "Loose") == 0
