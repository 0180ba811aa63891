"""BulkUpdate (by filter and by records) and BulkDelete on every engine, counts checked against the database."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import DataFlow, NodeParameterError, VersionConflictError, WorkflowFailed
from tests.bulk.conftest import bulk, items_gen, stored
from tests.integration.helpers import count, list_records


@pytest.fixture
def stocked(items: DataFlow) -> list[dict[str, Any]]:
    """3,000 stored items (qty = i); returns them in id order."""
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(3000)})
    return list_records(items, "Item", order_by=["id"])


def test_update_by_filter_is_one_statement_with_the_databases_count(items: DataFlow, stocked: Any) -> None:
    """BulkUpdate by filter updates every match and reports what the database counted."""
    out = bulk(items, "ItemBulkUpdateNode", {"filter": {"qty": {"$lt": 1500}}, "fields": {"note": "half"}})
    assert out == {"updated": 1500}
    assert count(items, "Item", {"note": "half"}) == 1500


def test_update_by_records_over_chunks(items: DataFlow, stocked: list[dict[str, Any]]) -> None:
    """Records of {id, fields} over many chunks, with different field sets and ids not stored: exact count."""
    records: list[dict[str, Any]] = []
    for row in stocked[:2000]:
        records.append({"id": row["id"], "qty": row["qty"] + 10_000} if row["qty"] % 2 else
                       {"id": row["id"], "name": "even", "note": "n"})
    records += [{"id": 10_000_000 + i, "qty": 1} for i in range(5)]  # no such rows
    out = bulk(items, "ItemBulkUpdateNode", {"records": iter(records), "chunk_size": 450})
    assert out == {"updated": 2000}
    assert count(items, "Item", {"qty": {"$gte": 10_000}}) == 1000
    assert count(items, "Item", {"name": "even", "note": "n"}) == 1000
    assert stored(items) == 3000
    untouched = list_records(items, "Item", filter={"id": stocked[2500]["id"]})[0]
    assert untouched == stocked[2500]


def test_update_by_records_repeated_id_applies_in_order(items: DataFlow, stocked: list[dict[str, Any]]) -> None:
    """The same id twice in one chunk: both updates run in order (the last wins), each counted."""
    rid = stocked[0]["id"]
    out = bulk(items, "ItemBulkUpdateNode", {"records": [{"id": rid, "qty": 1}, {"id": rid, "qty": 2},
                                                          {"id": stocked[1]["id"], "qty": 3}]})
    assert out == {"updated": 3}
    assert list_records(items, "Item", filter={"id": rid})[0]["qty"] == 2


def test_update_by_records_bumps_updated_at(items: DataFlow, stocked: list[dict[str, Any]]) -> None:
    """Records updated by id get a later updated_at; created_at stays."""
    bulk(items, "ItemBulkUpdateNode", {"records": [{"id": stocked[0]["id"], "qty": 77}]})
    row = list_records(items, "Item", filter={"id": stocked[0]["id"]})[0]
    assert row["updated_at"] > stocked[0]["updated_at"] and row["created_at"] == stocked[0]["created_at"]


def test_update_by_records_invalid_record_names_it_and_writes_nothing(items: DataFlow,
                                                                      stocked: list[dict[str, Any]]) -> None:
    """A record with a wrong-typed field fails the workflow naming records[i]; earlier chunks are rolled back."""
    records: list[dict[str, Any]] = [{"id": r["id"], "note": "x"} for r in stocked[:100]]
    records[70] = {"id": stocked[70]["id"], "qty": "seventy"}
    with pytest.raises(WorkflowFailed) as info:
        bulk(items, "ItemBulkUpdateNode", {"records": records, "chunk_size": 20})
    assert isinstance(info.value.__cause__, NodeParameterError) and "records[70]" in str(info.value.__cause__)
    assert count(items, "Item", {"note": "x"}) == 0


def test_versioned_records_update_over_chunks(db: DataFlow) -> None:
    """Versioned model: records without a version bump it; a stale version anywhere fails the whole node."""

    @db.model
    class Account:
        owner: str
        balance: int = 0
        __dataflow__ = {"versioned": True}  # noqa: RUF012

    bulk(db, "AccountBulkCreateNode", {"records": [{"owner": f"o{i}"} for i in range(100)]})
    rows = list_records(db, "Account", order_by=["id"])
    out = bulk(db, "AccountBulkUpdateNode", {"records": [{"id": r["id"], "balance": 5} for r in rows],
                                             "chunk_size": 30})
    assert out == {"updated": 100}
    assert {r["version"] for r in list_records(db, "Account")} == {2}
    locked = [{"id": r["id"], "version": 2, "balance": 6} for r in rows]
    locked[55]["version"] = 1  # stale
    with pytest.raises(WorkflowFailed) as info:
        bulk(db, "AccountBulkUpdateNode", {"records": locked, "chunk_size": 30})
    assert isinstance(info.value.__cause__, VersionConflictError)
    assert count(db, "Account", {"balance": 6}) == 0


def test_tenant_scoped_records_update(db: DataFlow) -> None:
    """Records naming another tenant's ids update nothing of theirs."""

    @db.model
    class Note:
        text: str
        __dataflow__ = {"multi_tenant": True}  # noqa: RUF012

    bulk(db, "NoteBulkCreateNode", {"records": [{"text": "a"} for _ in range(50)]}, tenant="acme")
    bulk(db, "NoteBulkCreateNode", {"records": [{"text": "g"} for _ in range(50)]}, tenant="globex")
    acme = bulk(db, "NoteListNode", {}, tenant="acme")["records"]
    globex = bulk(db, "NoteListNode", {}, tenant="globex")["records"]
    records = [{"id": r["id"], "text": "changed"} for r in acme + globex]
    out = bulk(db, "NoteBulkUpdateNode", {"records": records, "chunk_size": 16}, tenant="globex")
    assert out == {"updated": 50}
    assert bulk(db, "NoteListNode", {"filter": {"text": "changed"}, "count_only": True}, tenant="acme")["count"] == 0


def test_bulk_delete_counts(items: DataFlow, stocked: Any) -> None:
    """BulkDelete removes every match in one statement and reports the database's count."""
    assert bulk(items, "ItemBulkDeleteNode", {"filter": {"qty": {"$gte": 1000}}}) == {"deleted": 2000}
    assert stored(items) == 1000
