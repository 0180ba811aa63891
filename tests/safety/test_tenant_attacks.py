"""Tenant B tries every node and filter shape against tenant A's rows; A's rows never change.

Each test runs B's attempt and then compares a full List under tenant A (soft-deleted
rows included) with the one taken before: equal records, in order, value for value.
The models run plain (``multi_tenant`` alone) and with every option on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dataflow import DataFlow, LocalRuntime, NotFoundError, WorkflowBuilder, WorkflowFailed
from tests.safety.helpers import fails, rejected, run_node, snapshot

A, B = "tenant-a", "tenant-b"


class World:
    """Tenant A's and tenant B's rows of two models, and A's rows as they were stored."""

    def __init__(self, db: DataFlow, all_options: bool) -> None:
        self.db = db
        self.all_options = all_options
        self.a_users = [run_node(db, "UserCreateNode", {"email": f"a{i}@a", "name": f"A{i}", "score": i}, tenant=A)["id"]
                        for i in range(3)]
        self.b_users = [run_node(db, "UserCreateNode", {"email": f"b{i}@b", "name": f"B{i}", "score": i}, tenant=B)["id"]
                        for i in range(2)]
        run_node(db, "DocBulkCreateNode", {"records": [{"id": f"a-doc-{i}", "body": "secret"} for i in range(3)]}, tenant=A)
        run_node(db, "DocBulkCreateNode", {"records": [{"id": f"b-doc-{i}", "body": "mine"} for i in range(2)]}, tenant=B)
        if all_options:  # A also has a soft-deleted row B must not see or revive
            run_node(db, "UserDeleteNode", {"id": self.a_users[2]}, tenant=A)
            run_node(db, "DocDeleteNode", {"id": "a-doc-2"}, tenant=A)
        self.before = self.rows_of_a()

    def rows_of_a(self) -> dict[str, list[dict[str, Any]]]:
        return {m: snapshot(self.db, m, A, include_deleted=True) for m in ("User", "Doc")}

    def b(self, node: str, params: dict[str, Any]) -> Any:
        return run_node(self.db, node, params, tenant=B)

    def all_user_ids(self) -> list[int]:
        return self.a_users + self.b_users


@pytest.fixture(params=["multi_tenant", "every_option"])
def world(request: pytest.FixtureRequest, db: DataFlow) -> Iterator[World]:
    """A's and B's rows; after the test, A's rows must be exactly as they were."""
    all_options = request.param == "every_option"
    options = {"multi_tenant": True, "soft_delete": all_options, "versioned": all_options}

    @db.model
    class User:
        email: str
        name: str
        score: int = 0
        note: str | None = None
        __dataflow__ = options
        __indexes__ = [{"name": "uq_user_email", "fields": ["email"], "unique": True}]  # noqa: RUF012

    @db.model
    class Doc:
        id: str
        body: str
        __dataflow__ = options

    w = World(db, all_options)
    yield w
    assert w.rows_of_a() == w.before, "tenant B changed tenant A's rows"
    assert repr(w.rows_of_a()) == repr(w.before)


# -- Read -------------------------------------------------------------------------


def test_read_by_a_id(world: World) -> None:
    """Reading A's id as B is NotFound, also with include_deleted and without raising."""
    for a_id in world.a_users:
        assert isinstance(fails(world.db, "UserReadNode", {"id": a_id}, tenant=B), NotFoundError)
        assert world.b("UserReadNode", {"id": a_id, "raise_on_not_found": False, "include_deleted": True}) == {"found": False}
    assert world.b("DocReadNode", {"id": "a-doc-0", "raise_on_not_found": False}) == {"found": False}


# -- Update -----------------------------------------------------------------------


def test_update_by_a_id(world: World) -> None:
    """Update of A's id (flat form and filter form) matches nothing."""
    for a_id in world.a_users:
        assert world.b("UserUpdateNode", {"id": a_id, "name": "pwned"})["rows_affected"] == 0
        assert world.b("UserUpdateNode", {"filter": {"id": a_id}, "fields": {"name": "pwned"}})["rows_affected"] == 0
    assert world.b("DocUpdateNode", {"id": "a-doc-0", "body": "pwned"})["rows_affected"] == 0


def test_update_by_filter_shapes(world: World) -> None:
    """Update filters that would match A's rows ($in, $or, $not, $ne, $like, $exists) reach only B's rows."""
    ids = world.all_user_ids()
    b_count = len(world.b_users)
    shapes: list[dict[str, Any]] = [
        {"id": {"$in": ids}},
        {"$or": [{"id": world.a_users[0]}, {"id": world.b_users[0]}]},
        {"$or": [{"name": {"$ne": "nobody"}}, {"id": {"$in": world.a_users}}]},
        {"$not": {"id": world.b_users[0]}},
        {"email": {"$like": "%@%"}},
        {"$or": [{}, {"id": world.a_users[0]}]},
        {"note": {"$exists": False}},
        {"$and": [{"$or": [{"score": {"$gte": 0}}, {"score": None}]}]},
    ]
    for flt in shapes:
        out = world.b("UserUpdateNode", {"filter": flt, "fields": {"note": "b was here"}})
        assert out["rows_affected"] <= b_count, flt
    assert all(r["note"] == "b was here" for r in snapshot(world.db, "User", B))


@pytest.mark.parametrize("world", ["every_option"], indirect=True)
def test_update_by_a_version(world: World) -> None:
    """An Update naming A's id with a version is neither an update nor a conflict for B."""
    a_id = world.a_users[0]
    out = world.b("UserUpdateNode", {"filter": {"id": a_id, "version": 1}, "fields": {"name": "pwned"}})
    assert out["rows_affected"] == 0


# -- Delete -----------------------------------------------------------------------


def test_delete_by_a_id_and_filters(world: World) -> None:
    """Delete of A's id or by filters that would match A's rows deletes none of A's rows."""
    for a_id in world.a_users:
        assert world.b("UserDeleteNode", {"id": a_id}) == {"deleted": False, "rows_affected": 0}
    assert world.b("DocDeleteNode", {"id": "a-doc-0"}) == {"deleted": False, "rows_affected": 0}
    out = world.b("UserDeleteNode", {"filter": {"$or": [{"id": world.a_users[0]}, {"id": world.b_users[0]}]}})
    assert out["rows_affected"] == 1
    out = world.b("UserDeleteNode", {"filter": {"$not": {"email": "nobody"}}})
    assert out["rows_affected"] == len(world.b_users) - 1


# -- List -------------------------------------------------------------------------


@pytest.mark.parametrize("flt", [
    {},
    {"$or": [{"email": "a0@a"}, {"email": "b0@b"}]},
    {"$or": [{}, {"email": "a0@a"}]},
    {"$not": {"email": "nobody"}},
    {"$not": {"$and": [{"email": "b0@b"}]}},
    {"email": {"$nin": ["b0@b"]}},
    {"email": {"$ne": None}},
    {"$or": [{"note": None}, {"note": {"$ne": None}}]},
    {"name": {"$regex": ".*"}},
    {"email": {"$ilike": "A%"}},
])
def test_list_filter_tricks(world: World, flt: dict[str, Any]) -> None:
    """No filter shape lists, counts or includes (even with include_deleted) a row of A."""
    for params in ({"filter": flt}, {"filter": flt, "include_deleted": True}):
        out = world.b("UserListNode", params)
        assert all(r["tenant_id"] == B for r in out["records"]), flt
        assert not {r["id"] for r in out["records"]} & set(world.a_users)
        count = world.b("UserListNode", {**params, "count_only": True})["count"]
        assert count == out["count"] <= len(world.b_users)


def test_list_projection_order_and_paging(world: World) -> None:
    """Projection, ordering by tenant_id and offsets past B's rows never surface A's rows."""
    out = world.b("UserListNode", {"fields": ["id", "tenant_id"], "order_by": ["tenant_id", "-id"], "limit": 100})
    assert {r["tenant_id"] for r in out["records"]} == {B}
    assert world.b("UserListNode", {"offset": len(world.b_users), "limit": 10})["records"] == []
    docs = world.b("DocListNode", {"filter": {"id": {"$like": "a-doc-%"}}, "include_deleted": True})
    assert docs["records"] == []


def test_filtering_on_tenant_id_is_refused(world: World) -> None:
    """A filter naming tenant_id, at the top or inside $or / $not, is refused before any SQL."""
    for flt in ({"tenant_id": A}, {"$or": [{"tenant_id": A}]}, {"$not": {"tenant_id": B}}):
        for node, params in (("UserListNode", {"filter": flt}), ("UserBulkDeleteNode", {"filter": flt}),
                             ("UserBulkUpdateNode", {"filter": flt, "fields": {"name": "x"}})):
            assert rejected(world.db, node, params, tenant=B).field == "tenant_id"


# -- Bulk update / delete -----------------------------------------------------------


def test_bulk_update_every_shape(world: World) -> None:
    """BulkUpdate by an empty confirmed filter, by $or with A's ids, and by records of A's ids touches only B."""
    out = world.b("UserBulkUpdateNode", {"filter": {}, "fields": {"note": "all"}, "confirmed": True})
    assert out["updated"] == len(world.b_users)
    out = world.b("UserBulkUpdateNode", {"filter": {"$or": [{"id": {"$in": world.a_users}}, {"score": {"$gte": 0}}]},
                                         "fields": {"score": 99}})
    assert out["updated"] == len(world.b_users)
    out = world.b("UserBulkUpdateNode", {"records": [{"id": i, "name": "pwned"} for i in world.a_users]})
    assert out["updated"] == 0
    out = world.b("DocBulkUpdateNode", {"records": [{"id": "a-doc-0", "body": "pwned"}, {"id": "b-doc-0", "body": "ok"}]})
    assert out["updated"] == 1


@pytest.mark.parametrize("world", ["every_option"], indirect=True)
def test_bulk_update_records_with_a_versions(world: World) -> None:
    """BulkUpdate records naming A's ids and versions are not updates and not conflicts for B."""
    out = world.b("UserBulkUpdateNode", {"records": [{"id": i, "version": 1, "name": "pwned"} for i in world.a_users]})
    assert out["updated"] == 0


def test_bulk_delete_confirmed_and_filters(world: World) -> None:
    """BulkDelete with A's ids, with $or tricks, and with an empty confirmed filter deletes only B's rows."""
    assert world.b("UserBulkDeleteNode", {"filter": {"id": {"$in": world.a_users}}}) == {"deleted": 0}
    assert world.b("DocBulkDeleteNode", {"filter": {"$or": [{"id": "a-doc-0"}, {"body": "secret"}]}}) == {"deleted": 0}
    assert world.b("UserBulkDeleteNode", {"filter": {}, "confirmed": True}) == {"deleted": len(world.b_users)}
    assert world.b("DocBulkDeleteNode", {"filter": {}, "confirmed": True}) == {"deleted": 2}


# -- Bulk upsert / create -------------------------------------------------------------


def test_bulk_upsert_with_a_ids_fails_and_changes_nothing(world: World) -> None:
    """BulkUpsert of A's ids is refused by the key (IntegrityError): no overwrite, no re-parenting, nothing written."""
    for params in (
        {"records": [{"id": "a-doc-0", "body": "pwned"}]},
        {"records": [{"id": "b-doc-0", "body": "ok"}, {"id": "a-doc-1", "body": "pwned"}]},
        {"records": [{"id": "a-doc-2", "body": "revived?"}], "update_fields": ["body"]},
    ):
        err = fails(world.db, "DocBulkUpsertNode", params, tenant=B)
        assert type(err).__name__ == "IntegrityError"
    assert [r["body"] for r in snapshot(world.db, "Doc", B)] == ["mine", "mine"]


def test_bulk_upsert_on_a_email_makes_b_its_own_row(world: World) -> None:
    """BulkUpsert on the unique email A uses inserts a row for B and leaves A's row alone."""
    out = world.b("UserBulkUpsertNode", {"records": [{"email": "a0@a", "name": "B's copy"}], "conflict_on": ["email"]})
    assert out == {"inserted": 1, "updated": 0}
    assert [r["name"] for r in snapshot(world.db, "User", B) if r["email"] == "a0@a"] == ["B's copy"]


def test_bulk_upsert_of_auto_ids_is_refused(world: World) -> None:
    """Records naming an auto-increment id (A's) are refused before anything is written."""
    assert rejected(world.db, "UserBulkUpsertNode", {"records": [{"id": world.a_users[0], "email": "x", "name": "x"}],
                                                     "conflict_on": ["email"]}, tenant=B).field == "id"


def test_bulk_create_with_explicit_tenant_id_is_refused(world: World) -> None:
    """BulkCreate records carrying tenant_id (A's) are a parameter error, whatever the error strategy."""
    for strategy in ("fail_fast", "continue"):
        params = {"records": [{"email": "x@x", "name": "x", "tenant_id": A}], "error_strategy": strategy}
        if strategy == "fail_fast":
            assert rejected(world.db, "UserBulkCreateNode", params, tenant=B).field == "tenant_id"
        else:
            out = world.b("UserBulkCreateNode", params)
            assert (out["inserted"], out["failed"]) == (0, 1)
            assert "tenant_id" in out["errors"][0]["error"]
    assert rejected(world.db, "UserCreateNode", {"email": "x@x", "name": "x", "tenant_id": A}, tenant=B).field == "tenant_id"


def test_bulk_create_with_a_ids(world: World) -> None:
    """BulkCreate of A's ids fails (error, update) or skips (skip); with 'continue' the record fails alone."""
    err = fails(world.db, "DocBulkCreateNode", {"records": [{"id": "a-doc-0", "body": "pwned"}]}, tenant=B)
    assert type(err).__name__ == "IntegrityError"
    err = fails(world.db, "DocBulkCreateNode", {"records": [{"id": "a-doc-1", "body": "pwned"}],
                                                "conflict_resolution": "update"}, tenant=B)
    assert type(err).__name__ == "IntegrityError"
    out = world.b("DocBulkCreateNode", {"records": [{"id": "a-doc-0", "body": "pwned"}], "conflict_resolution": "skip"})
    assert (out["inserted"], out["skipped"]) == (0, 1)
    out = world.b("DocBulkCreateNode", {"records": [{"id": "a-doc-2", "body": "pwned"}, {"id": "b-new", "body": "ok"}],
                                        "conflict_resolution": "update", "error_strategy": "continue"})
    assert (out["inserted"], out["updated"], out["failed"]) == (1, 0, 1)
    assert out["errors"][0]["index"] == 0


def test_bulk_create_conflict_update_on_a_email(world: World) -> None:
    """BulkCreate conflict 'update' on A's unique email inserts B's own row instead of updating A's."""
    out = world.b("UserBulkCreateNode", {"records": [{"email": "a1@a", "name": "B"}], "conflict_resolution": "update"})
    assert (out["inserted"], out["updated"]) == (1, 0)


# -- Workflows ---------------------------------------------------------------------


def test_a_workflow_chaining_nodes_stays_in_its_tenant(world: World) -> None:
    """A B workflow that lists, then feeds ids into Update and Delete, reaches only B's rows."""
    wf = WorkflowBuilder(world.db)
    wf.add_node("UserListNode", "list", {"filter": {"$or": [{}, {"id": world.a_users[0]}]}})
    wf.add_node("UserUpdateNode", "upd", {"fields": {"name": "chained"}})
    wf.add_connection("list", "records.0.id", "upd", "filter.id")
    wf.add_node("UserDeleteNode", "del", {"id": world.a_users[1]})
    results, _ = LocalRuntime().execute(wf.build(), tenant_id=B)
    assert results["upd"]["record"]["tenant_id"] == B
    assert results["del"]["deleted"] is False


def test_a_failed_attack_rolls_back_b_own_writes(world: World) -> None:
    """When B's upsert of A's id fails, B's earlier writes in the same workflow roll back too."""
    before_b = snapshot(world.db, "Doc", B)
    wf = WorkflowBuilder(world.db)
    wf.add_node("DocCreateNode", "mine", {"id": "b-extra", "body": "x"})
    wf.add_node("DocBulkUpsertNode", "steal", {"records": [{"id": "a-doc-0", "body": "pwned"}]})
    with pytest.raises(WorkflowFailed):
        LocalRuntime().execute(wf.build(), tenant_id=B)
    assert snapshot(world.db, "Doc", B) == before_b
