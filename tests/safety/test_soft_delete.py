"""``soft_delete``: Delete and BulkDelete set ``deleted_at``; reads, counts and updates skip such rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from dataflow import DataFlow, ModelError, NodeParameterError, NotFoundError
from tests.safety.helpers import fails, raw, rejected, run_node


def _define(db: DataFlow, *, versioned: bool = False) -> None:
    options = {"soft_delete": True, "versioned": versioned}

    @db.model
    class Task:
        title: str
        done: bool = False
        note: str | None = None
        __dataflow__ = options
        __indexes__ = [{"name": "uq_task_title", "fields": ["title"], "unique": True}]  # noqa: RUF012

    @db.model
    class Page:
        id: str
        body: str
        __dataflow__ = options


def _make(db: DataFlow, *titles: str) -> list[int]:
    return [run_node(db, "TaskCreateNode", {"title": t})["id"] for t in titles]


def _titles(db: DataFlow, **params: Any) -> list[str]:
    return [r["title"] for r in run_node(db, "TaskListNode", {"order_by": ["title"], **params})["records"]]


def _stored(db: DataFlow) -> int:
    return int(raw(db, f"SELECT COUNT(*) FROM {db.dialect.quote('tasks')}")[0][0])


def test_create_has_no_deleted_at(db: DataFlow) -> None:
    """A new record has deleted_at None."""
    _define(db)
    assert run_node(db, "TaskCreateNode", {"title": "a"})["deleted_at"] is None


def test_delete_sets_deleted_at_and_keeps_the_row(db: DataFlow) -> None:
    """Delete marks the row deleted (deleted_at set) instead of removing it from the table."""
    _define(db)
    (a,) = _make(db, "a")
    assert run_node(db, "TaskDeleteNode", {"id": a}) == {"deleted": True, "rows_affected": 1}
    assert _stored(db) == 1
    row = run_node(db, "TaskReadNode", {"id": a, "include_deleted": True})
    assert isinstance(row["deleted_at"], datetime)
    assert row["updated_at"] == row["deleted_at"]
    assert row["title"] == "a"


def test_deleted_rows_are_hidden_from_read(db: DataFlow) -> None:
    """Read of a deleted row raises NotFoundError, or returns found False when not raising."""
    _define(db)
    (a,) = _make(db, "a")
    run_node(db, "TaskDeleteNode", {"id": a})
    assert isinstance(fails(db, "TaskReadNode", {"id": a}), NotFoundError)
    assert run_node(db, "TaskReadNode", {"id": a, "raise_on_not_found": False}) == {"found": False}


def test_deleted_rows_are_hidden_from_list_and_counts(db: DataFlow) -> None:
    """List and count_only leave deleted rows out, whatever the filter."""
    _define(db)
    a, _b, _c = _make(db, "a", "b", "c")
    run_node(db, "TaskDeleteNode", {"filter": {"title": "b"}})
    assert _titles(db) == ["a", "c"]
    assert _titles(db, filter={"$or": [{"title": "b"}, {"id": a}]}) == ["a"]
    assert run_node(db, "TaskListNode", {"count_only": True})["count"] == 2
    assert run_node(db, "TaskListNode", {"count_only": True, "filter": {"title": "b"}})["count"] == 0


def test_include_deleted_shows_them(db: DataFlow) -> None:
    """include_deleted=True on Read and List returns deleted rows too, and counts them."""
    _define(db)
    a, _b = _make(db, "a", "b")
    run_node(db, "TaskDeleteNode", {"id": a})
    assert _titles(db, include_deleted=True) == ["a", "b"]
    assert run_node(db, "TaskListNode", {"count_only": True, "include_deleted": True})["count"] == 2
    assert run_node(db, "TaskReadNode", {"id": a, "include_deleted": True})["id"] == a


def test_filter_on_deleted_at_finds_the_deleted_rows(db: DataFlow) -> None:
    """With include_deleted, a filter on deleted_at lists exactly the deleted rows."""
    _define(db)
    a, _b = _make(db, "a", "b")
    run_node(db, "TaskDeleteNode", {"id": a})
    assert _titles(db, include_deleted=True, filter={"deleted_at": {"$exists": True}}) == ["a"]
    assert _titles(db, filter={"deleted_at": {"$exists": True}}) == []


def test_deleting_twice_affects_nothing_the_second_time(db: DataFlow) -> None:
    """A second Delete of the same row reports nothing deleted and keeps the first deleted_at."""
    _define(db)
    (a,) = _make(db, "a")
    run_node(db, "TaskDeleteNode", {"id": a})
    first = run_node(db, "TaskReadNode", {"id": a, "include_deleted": True})["deleted_at"]
    assert run_node(db, "TaskDeleteNode", {"id": a}) == {"deleted": False, "rows_affected": 0}
    assert run_node(db, "TaskReadNode", {"id": a, "include_deleted": True})["deleted_at"] == first


def test_bulk_delete_sets_deleted_at(db: DataFlow) -> None:
    """BulkDelete marks every matched row deleted, keeps them stored, and counts only newly deleted rows."""
    _define(db)
    _make(db, "a", "b", "c")
    assert run_node(db, "TaskBulkDeleteNode", {"filter": {"title": {"$in": ["a", "b"]}}}) == {"deleted": 2}
    assert _titles(db) == ["c"]
    assert _stored(db) == 3
    assert run_node(db, "TaskBulkDeleteNode", {"filter": {}, "confirmed": True}) == {"deleted": 1}
    assert _titles(db) == []
    assert _titles(db, include_deleted=True) == ["a", "b", "c"]


def test_update_does_not_touch_deleted_rows(db: DataFlow) -> None:
    """Update by id or by filter skips deleted rows: nothing is counted and the stored row is unchanged."""
    _define(db)
    a, _b = _make(db, "a", "b")
    run_node(db, "TaskDeleteNode", {"id": a})
    before = run_node(db, "TaskReadNode", {"id": a, "include_deleted": True})
    assert run_node(db, "TaskUpdateNode", {"id": a, "done": True})["rows_affected"] == 0
    out = run_node(db, "TaskUpdateNode", {"filter": {"title": {"$in": ["a", "b"]}}, "fields": {"note": "x"}})
    assert out["rows_affected"] == 1
    assert run_node(db, "TaskReadNode", {"id": a, "include_deleted": True}) == before


def test_bulk_update_does_not_touch_deleted_rows(db: DataFlow) -> None:
    """BulkUpdate by filter and by records skips deleted rows."""
    _define(db)
    a, b = _make(db, "a", "b")
    run_node(db, "TaskDeleteNode", {"id": a})
    before = run_node(db, "TaskReadNode", {"id": a, "include_deleted": True})
    assert run_node(db, "TaskBulkUpdateNode", {"filter": {}, "fields": {"done": True}, "confirmed": True}) == {"updated": 1}
    assert run_node(db, "TaskBulkUpdateNode", {"records": [{"id": a, "note": "n"}, {"id": b, "note": "n"}]}) == {"updated": 1}
    assert run_node(db, "TaskReadNode", {"id": a, "include_deleted": True}) == before
    assert run_node(db, "TaskReadNode", {"id": b})["note"] == "n"


@pytest.mark.parametrize(("node", "params"), [
    ("TaskCreateNode", {"title": "x", "deleted_at": None}),
    ("TaskUpdateNode", {"id": 1, "deleted_at": None}),
    ("TaskUpdateNode", {"filter": {"id": 1}, "fields": {"deleted_at": "2024-01-01T00:00:00"}}),
    ("TaskBulkUpdateNode", {"filter": {"id": 1}, "fields": {"deleted_at": None}}),
    ("TaskBulkCreateNode", {"records": [{"title": "x", "deleted_at": None}]}),
    ("TaskBulkUpsertNode", {"records": [{"title": "x", "deleted_at": None}], "conflict_on": ["title"]}),
])
def test_caller_cannot_set_deleted_at(db: DataFlow, node: str, params: dict[str, Any]) -> None:
    """Writing deleted_at directly is a NodeParameterError naming the field; undelete goes through an upsert."""
    _define(db)
    (a,) = _make(db, "a")
    run_node(db, "TaskDeleteNode", {"id": a})
    err = rejected(db, node, params)
    assert err.field == "deleted_at"
    assert _titles(db) == []


def test_upsert_revives_a_soft_deleted_row(db: DataFlow) -> None:
    """BulkUpsert over a deleted row's key revives it (deleted_at None), updates it, and counts it as updated."""
    _define(db)
    (a,) = _make(db, "a")
    run_node(db, "TaskUpdateNode", {"id": a, "note": "kept"})
    run_node(db, "TaskDeleteNode", {"id": a})
    out = run_node(db, "TaskBulkUpsertNode", {"records": [{"title": "a", "done": True}], "conflict_on": ["title"]})
    assert out == {"inserted": 0, "updated": 1}
    row = run_node(db, "TaskReadNode", {"id": a})
    assert (row["deleted_at"], row["done"], row["note"]) == (None, True, "kept")
    assert _stored(db) == 1


def test_upsert_by_id_revives_a_soft_deleted_row(db: DataFlow) -> None:
    """BulkUpsert on a caller-supplied id revives the deleted row with that id instead of failing on the key."""
    _define(db)
    run_node(db, "PageCreateNode", {"id": "p1", "body": "one"})
    run_node(db, "PageDeleteNode", {"id": "p1"})
    assert run_node(db, "PageBulkUpsertNode", {"records": [{"id": "p1", "body": "again"}]}) == {"inserted": 0, "updated": 1}
    row = run_node(db, "PageReadNode", {"id": "p1"})
    assert (row["body"], row["deleted_at"]) == ("again", None)


def test_bulk_create_skip_leaves_a_deleted_row_deleted(db: DataFlow) -> None:
    """BulkCreate with conflict_resolution 'skip' over a deleted row's key skips it: the row stays deleted."""
    _define(db)
    run_node(db, "PageCreateNode", {"id": "p1", "body": "one"})
    run_node(db, "PageDeleteNode", {"id": "p1"})
    out = run_node(db, "PageBulkCreateNode", {"records": [{"id": "p1", "body": "x"}], "conflict_resolution": "skip"})
    assert (out["inserted"], out["skipped"]) == (0, 1)
    assert run_node(db, "PageReadNode", {"id": "p1", "raise_on_not_found": False}) == {"found": False}


def test_bulk_create_update_revives_a_deleted_row(db: DataFlow) -> None:
    """BulkCreate with conflict_resolution 'update' over a deleted row's id revives and updates it."""
    _define(db)
    run_node(db, "PageCreateNode", {"id": "p1", "body": "one"})
    run_node(db, "PageDeleteNode", {"id": "p1"})
    out = run_node(db, "PageBulkCreateNode", {"records": [{"id": "p1", "body": "x"}], "conflict_resolution": "update"})
    assert (out["inserted"], out["updated"]) == (0, 1)
    assert run_node(db, "PageReadNode", {"id": "p1"})["body"] == "x"


def test_soft_delete_of_a_versioned_row_adds_one(db: DataFlow) -> None:
    """On a versioned model a soft delete is a change too: version grows by one."""
    _define(db, versioned=True)
    (a,) = _make(db, "a")
    run_node(db, "TaskDeleteNode", {"id": a})
    assert run_node(db, "TaskReadNode", {"id": a, "include_deleted": True})["version"] == 2


def test_versioned_update_of_a_deleted_row_is_not_found_not_a_conflict(db: DataFlow) -> None:
    """An Update naming a version for a deleted row matches nothing and raises nothing."""
    _define(db, versioned=True)
    (a,) = _make(db, "a")
    run_node(db, "TaskDeleteNode", {"id": a})
    out = run_node(db, "TaskUpdateNode", {"filter": {"id": a, "version": 2}, "fields": {"done": True}})
    assert out["rows_affected"] == 0


def test_include_deleted_is_a_no_op_without_the_option(db: DataFlow) -> None:
    """A model without soft_delete accepts include_deleted and its Delete removes the row."""

    @db.model
    class Plain:
        name: str

    created = run_node(db, "PlainCreateNode", {"name": "p"})
    assert run_node(db, "PlainListNode", {"include_deleted": True})["count"] == 1
    run_node(db, "PlainDeleteNode", {"id": created["id"]})
    assert run_node(db, "PlainListNode", {"include_deleted": True})["count"] == 0


def test_include_deleted_must_be_a_bool(db: DataFlow) -> None:
    """include_deleted takes True or False only."""
    _define(db)
    with pytest.raises(NodeParameterError, match="include_deleted"):
        run_node(db, "TaskListNode", {"include_deleted": "yes"})


def test_declaring_deleted_at_on_a_soft_delete_model_is_a_model_error(db: DataFlow) -> None:
    """A soft-delete model may not declare 'deleted_at' itself."""
    with pytest.raises(ModelError, match="deleted_at"):

        @db.model
        class Bad:
            deleted_at: datetime | None
            __dataflow__ = {"soft_delete": True}  # noqa: RUF012


def test_existing_rows_are_not_deleted_when_the_option_is_turned_on(db: DataFlow, engine_url: str) -> None:
    """Turning soft_delete on for an existing table adds deleted_at as NULL: the old rows stay visible."""

    @db.model
    class Memo:
        text: str
        __tablename__ = "memos_sd"

    run_node(db, "MemoCreateNode", {"text": "old"})
    with DataFlow(engine_url) as db2:

        @db2.model
        class Memo:
            text: str
            __tablename__ = "memos_sd"
            __dataflow__ = {"soft_delete": True}  # noqa: RUF012

        (row,) = run_node(db2, "MemoListNode", {})["records"]
        assert row["deleted_at"] is None
        run_node(db2, "MemoDeleteNode", {"id": row["id"]})
        assert run_node(db2, "MemoListNode", {"count_only": True})["count"] == 0
