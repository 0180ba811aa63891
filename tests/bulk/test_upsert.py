"""BulkUpsert (and BulkCreate's "update") on every engine: exact inserted/updated counts across chunks."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import DataFlow, IntegrityError, WorkflowFailed
from tests.bulk.conftest import bulk, item, items_gen, stored
from tests.integration.helpers import list_records


def test_upsert_half_new(items: DataFlow) -> None:
    """2,000 records over chunks of 300, half of them stored already: 1,000 inserted, 1,000 updated."""
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(1000)})
    records = ({"sku": f"k{i}", "name": f"v2 {i}", "qty": i + 1} for i in range(500, 2500))
    out = bulk(items, "ItemBulkUpsertNode", {"records": records, "conflict_on": ["sku"], "chunk_size": 300})
    assert out == {"inserted": 1500, "updated": 500}
    assert stored(items) == 2500
    rows = {r["sku"]: r for r in list_records(items, "Item", filter={"sku": {"$in": ["k0", "k700", "k2000"]}})}
    assert (rows["k0"]["name"], rows["k0"]["qty"]) == ("item 0", 0)
    assert (rows["k700"]["name"], rows["k700"]["qty"]) == ("v2 700", 701)
    assert (rows["k2000"]["name"], rows["k2000"]["qty"]) == ("v2 2000", 2001)


@pytest.mark.parametrize("chunk_size", [2, 4, 100])
def test_repeated_keys_count_once_inserted_then_updated(items: DataFlow, chunk_size: int) -> None:
    """A key repeated within a chunk or across chunks: one insert, then updates; the last values win."""
    bulk(items, "ItemBulkCreateNode", {"records": [item(1)]})
    records = [
        {"sku": "k1", "name": "a"}, {"sku": "new", "name": "n1"}, {"sku": "new", "name": "n2"},
        {"sku": "k1", "name": "b"}, {"sku": "other", "name": "o"}, {"sku": "new", "name": "n3"},
        {"sku": "k1", "name": "c"},
    ]
    out = bulk(items, "ItemBulkUpsertNode", {"records": records, "conflict_on": ["sku"], "chunk_size": chunk_size})
    assert out == {"inserted": 2, "updated": 5}
    assert stored(items) == 3
    names = {r["sku"]: r["name"] for r in list_records(items, "Item")}
    assert names == {"k1": "c", "new": "n3", "other": "o"}


def test_records_without_a_field_leave_it_alone(items: DataFlow) -> None:
    """Fields no record of a chunk gives are not overwritten with defaults on update."""
    bulk(items, "ItemBulkCreateNode", {"records": [item(i, note="kept") for i in range(3)]})
    out = bulk(items, "ItemBulkUpsertNode", {"records": [{"sku": "k1", "name": "renamed"}], "conflict_on": ["sku"]})
    assert out == {"inserted": 0, "updated": 1}
    row = list_records(items, "Item", filter={"sku": "k1"})[0]
    assert (row["name"], row["qty"], row["note"]) == ("renamed", 1, "kept")


def test_update_fields_limits_what_changes(items: DataFlow) -> None:
    """update_fields: only those change on a conflict, over many chunks."""
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(50)})
    records = ({"sku": f"k{i}", "name": "IGNORED", "qty": 1000 + i} for i in range(50))
    out = bulk(items, "ItemBulkUpsertNode", {"records": records, "conflict_on": ["sku"],
                                             "update_fields": ["qty"], "chunk_size": 7})
    assert out == {"inserted": 0, "updated": 50}
    rows = list_records(items, "Item", filter={"name": "IGNORED"})
    assert rows == []
    assert [r["qty"] for r in list_records(items, "Item", order_by=["qty"])][:2] == [1000, 1001]


def test_updated_at_moves_and_created_at_stays(items: DataFlow) -> None:
    """An upsert that updates a row sets a later updated_at and keeps created_at."""
    bulk(items, "ItemBulkCreateNode", {"records": [item(1)]})
    before = list_records(items, "Item")[0]
    bulk(items, "ItemBulkUpsertNode", {"records": [{"sku": "k1", "name": "x"}], "conflict_on": ["sku"]})
    after = list_records(items, "Item")[0]
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]


def test_create_conflict_update_counts_across_chunks(items: DataFlow) -> None:
    """BulkCreate with conflict_resolution "update": counts of inserted and updated match the database."""
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(300)})
    out = bulk(items, "ItemBulkCreateNode", {"records": items_gen(600, name="again"), "conflict_resolution": "update",
                                             "chunk_size": 128})
    assert (out["inserted"], out["updated"], out["skipped"], out["failed"]) == (300, 300, 0, 0)
    assert stored(items) == 600
    assert len(list_records(items, "Item", filter={"name": "again"})) == 600


def test_fail_fast_names_the_record_a_second_key_refuses(db: DataFlow) -> None:
    """An upsert on one key that clashes on another unique key fails naming the record; nothing is kept."""

    @db.model
    class Part:
        sku: str
        code: str
        __indexes__ = [{"name": "ux_part_sku", "fields": ["sku"], "unique": True},  # noqa: RUF012
                       {"name": "ux_part_code", "fields": ["code"], "unique": True}]

    bulk(db, "PartBulkCreateNode", {"records": [{"sku": "a", "code": "taken"}]})
    records: list[dict[str, Any]] = [{"sku": f"s{i}", "code": f"c{i}"} for i in range(20)]
    records[13] = {"sku": "s13", "code": "taken"}
    with pytest.raises(WorkflowFailed) as info:
        bulk(db, "PartBulkUpsertNode", {"records": records, "conflict_on": ["sku"], "chunk_size": 8})
    assert isinstance(info.value.__cause__, IntegrityError)
    assert "records[13]:" in str(info.value.__cause__)
    assert stored(db, "parts") == 1


def test_versioned_soft_delete_upsert_over_chunks(db: DataFlow) -> None:
    """A versioned, soft-delete model: an upsert adds one to existing rows' version and revives deleted ones
    (their delete already added one); new rows start at version 1."""

    @db.model
    class Doc:
        slug: str
        body: str
        __dataflow__ = {"versioned": True, "soft_delete": True}  # noqa: RUF012
        __indexes__ = [{"name": "ux_doc_slug", "fields": ["slug"], "unique": True}]  # noqa: RUF012

    bulk(db, "DocBulkCreateNode", {"records": [{"slug": f"d{i}", "body": "v1"} for i in range(40)]})
    bulk(db, "DocBulkDeleteNode", {"filter": {"slug": {"$in": ["d0", "d1"]}}})
    out = bulk(db, "DocBulkUpsertNode", {"records": [{"slug": f"d{i}", "body": "v2"} for i in range(80)],
                                         "conflict_on": ["slug"], "chunk_size": 25})
    assert out == {"inserted": 40, "updated": 40}
    rows = list_records(db, "Doc", order_by=["id"])
    assert len(rows) == 80 == stored(db, "docs")
    assert {(r["version"], r["body"]) for r in rows[:2]} == {(3, "v2")}
    assert {(r["version"], r["body"]) for r in rows[2:40]} == {(2, "v2")}
    assert {(r["version"], r["body"]) for r in rows[40:]} == {(1, "v2")}


def test_multi_tenant_upsert_over_chunks_stays_in_its_tenant(db: DataFlow) -> None:
    """A multi-tenant upsert over many chunks updates only its tenant's rows and inserts its own copies."""

    @db.model
    class Member:
        email: str
        name: str
        __dataflow__ = {"multi_tenant": True}  # noqa: RUF012
        __indexes__ = [{"name": "ux_member_email", "fields": ["email"], "unique": True}]  # noqa: RUF012

    records = [{"email": f"m{i}@x", "name": "acme"} for i in range(30)]
    bulk(db, "MemberBulkCreateNode", {"records": records}, tenant="acme")
    out = bulk(db, "MemberBulkUpsertNode", {"records": [{"email": f"m{i}@x", "name": "globex"} for i in range(60)],
                                            "conflict_on": ["email"], "chunk_size": 16}, tenant="globex")
    assert out == {"inserted": 60, "updated": 0}
    out = bulk(db, "MemberBulkUpsertNode", {"records": [{"email": f"m{i}@x", "name": "acme 2"} for i in range(45)],
                                            "conflict_on": ["email"], "chunk_size": 16}, tenant="acme")
    assert out == {"inserted": 15, "updated": 30}
    assert stored(db, "members") == 105
    acme = bulk(db, "MemberListNode", {"filter": {"name": "acme 2"}, "count_only": True}, tenant="acme")
    globex = bulk(db, "MemberListNode", {"filter": {"name": "globex"}, "count_only": True}, tenant="globex")
    assert (acme["count"], globex["count"]) == (45, 60)


def test_chunks_giving_different_fields_update_only_what_each_gives(items: DataFlow) -> None:
    """Chunks whose records give different fields each update only those (a new merge per field set)."""
    bulk(items, "ItemBulkCreateNode", {"records": [item(i, note="kept") for i in range(9)]})
    records: list[dict[str, Any]] = [{"sku": f"k{i}", "name": "renamed"} for i in range(3)]
    records += [{"sku": f"k{i}", "name": "requantified", "qty": 500 + i} for i in range(3, 6)]
    records += [{"sku": f"k{i}", "name": "renamed again"} for i in range(6, 9)]
    records += [{"sku": "fresh", "name": "new"}]
    out = bulk(items, "ItemBulkUpsertNode", {"records": records, "conflict_on": ["sku"], "chunk_size": 3})
    assert out == {"inserted": 1, "updated": 9}
    rows = {r["sku"]: r for r in list_records(items, "Item")}
    assert (rows["k1"]["name"], rows["k1"]["qty"], rows["k1"]["note"]) == ("renamed", 1, "kept")
    assert (rows["k4"]["name"], rows["k4"]["qty"]) == ("requantified", 504)
    assert (rows["k7"]["name"], rows["k7"]["qty"]) == ("renamed again", 7)
    assert (rows["fresh"]["qty"], stored(items)) == (0, 10)
