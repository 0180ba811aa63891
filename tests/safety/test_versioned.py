"""``versioned``: a managed ``version`` that grows on every update, and optimistic locks on it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dataflow import (
    DataFlow,
    LocalRuntime,
    NodeParameterError,
    VersionConflictError,
    WorkflowBuilder,
    WorkflowFailed,
)
from tests.safety.helpers import fails, raw, rejected, run_node


def _define(db: DataFlow) -> None:
    @db.model
    class Account:
        owner: str
        balance: int = 0
        __dataflow__ = {"versioned": True}  # noqa: RUF012
        __indexes__ = [{"name": "uq_account_owner", "fields": ["owner"], "unique": True}]  # noqa: RUF012

    @db.model
    class Doc:
        id: str
        title: str
        __dataflow__ = {"versioned": True}  # noqa: RUF012


def _make(db: DataFlow, *owners: str) -> list[int]:
    return [run_node(db, "AccountCreateNode", {"owner": o})["id"] for o in owners]


def _versions(db: DataFlow) -> dict[str, int]:
    return {r["owner"]: r["version"] for r in run_node(db, "AccountListNode", {})["records"]}


def test_create_starts_at_version_one(db: DataFlow) -> None:
    """A created record has version 1, in the Create result and when read back."""
    _define(db)
    created = run_node(db, "AccountCreateNode", {"owner": "ann"})
    assert created["version"] == 1
    assert run_node(db, "AccountReadNode", {"id": created["id"]})["version"] == 1


def test_every_update_adds_one(db: DataFlow) -> None:
    """Each Update (flat or filter form) raises the version by exactly one."""
    _define(db)
    (ann,) = _make(db, "ann")
    assert run_node(db, "AccountUpdateNode", {"id": ann, "balance": 5})["record"]["version"] == 2
    assert run_node(db, "AccountUpdateNode", {"filter": {"id": ann}, "fields": {"balance": 6}})["record"]["version"] == 3
    assert run_node(db, "AccountReadNode", {"id": ann})["version"] == 3


def test_bulk_update_by_filter_adds_one_to_each_row(db: DataFlow) -> None:
    """A BulkUpdate by filter raises the version of every matched row by one, and of no other row."""
    _define(db)
    _make(db, "ann", "bob", "cid")
    run_node(db, "AccountUpdateNode", {"filter": {"owner": "ann"}, "fields": {"balance": 1}})
    out = run_node(db, "AccountBulkUpdateNode", {"filter": {"owner": {"$in": ["ann", "bob"]}}, "fields": {"balance": 9}})
    assert out["updated"] == 2
    assert _versions(db) == {"ann": 3, "bob": 2, "cid": 1}


def test_bulk_update_by_records_adds_one(db: DataFlow) -> None:
    """A BulkUpdate of records raises the version of each updated record by one."""
    _define(db)
    ann, bob = _make(db, "ann", "bob")
    out = run_node(db, "AccountBulkUpdateNode", {"records": [{"id": ann, "balance": 1}, {"id": bob, "balance": 2}]})
    assert out["updated"] == 2
    assert _versions(db) == {"ann": 2, "bob": 2}


def test_upsert_inserts_at_one_and_updates_add_one(db: DataFlow) -> None:
    """BulkUpsert inserts new rows at version 1 and raises an existing row's version by one."""
    _define(db)
    _make(db, "ann")
    out = run_node(db, "AccountBulkUpsertNode", {
        "records": [{"owner": "ann", "balance": 7}, {"owner": "bob", "balance": 8}], "conflict_on": ["owner"],
    })
    assert out == {"inserted": 1, "updated": 1}
    assert _versions(db) == {"ann": 2, "bob": 1}
    run_node(db, "AccountBulkUpsertNode", {"records": [{"owner": "ann", "balance": 1}], "conflict_on": ["owner"]})
    assert _versions(db) == {"ann": 3, "bob": 1}


def test_upsert_by_id_updates_add_one(db: DataFlow) -> None:
    """BulkUpsert on a caller-supplied id raises the version of the row it updates."""
    _define(db)
    run_node(db, "DocCreateNode", {"id": "d1", "title": "one"})
    out = run_node(db, "DocBulkUpsertNode", {"records": [{"id": "d1", "title": "uno"}, {"id": "d2", "title": "two"}]})
    assert out == {"inserted": 1, "updated": 1}
    docs = {r["id"]: (r["title"], r["version"]) for r in run_node(db, "DocListNode", {})["records"]}
    assert docs == {"d1": ("uno", 2), "d2": ("two", 1)}


def test_bulk_create_conflict_update_adds_one(db: DataFlow) -> None:
    """BulkCreate with conflict_resolution 'update' raises the version of the row it updates."""
    _define(db)
    run_node(db, "DocCreateNode", {"id": "d1", "title": "one"})
    out = run_node(db, "DocBulkCreateNode", {"records": [{"id": "d1", "title": "uno"}, {"id": "d2", "title": "two"}],
                                             "conflict_resolution": "update"})
    assert (out["inserted"], out["updated"]) == (1, 1)
    docs = {r["id"]: (r["title"], r["version"]) for r in run_node(db, "DocListNode", {})["records"]}
    assert docs == {"d1": ("uno", 2), "d2": ("two", 1)}


@pytest.mark.parametrize(("node", "params"), [
    ("AccountCreateNode", {"owner": "x", "version": 5}),
    ("AccountUpdateNode", {"id": 1, "version": 5}),
    ("AccountUpdateNode", {"filter": {"id": 1}, "fields": {"version": 5}}),
    ("AccountBulkCreateNode", {"records": [{"owner": "x", "version": 5}]}),
    ("AccountBulkUpsertNode", {"records": [{"owner": "x", "version": 5}], "conflict_on": ["owner"]}),
    ("AccountBulkUpsertNode", {"records": [{"owner": "x"}], "conflict_on": ["owner"], "update_fields": ["version"]}),
    ("AccountBulkUpdateNode", {"filter": {"id": 1}, "fields": {"version": 5}}),
])
def test_caller_cannot_set_version(db: DataFlow, node: str, params: dict[str, Any]) -> None:
    """Giving 'version' as a value to write is a NodeParameterError naming the field, and nothing is written."""
    _define(db)
    assert isinstance(rejected(db, node, params), NodeParameterError)
    assert run_node(db, "AccountListNode", {"count_only": True})["count"] == 0


def test_bulk_update_record_version_is_a_lock_not_a_value(db: DataFlow) -> None:
    """In BulkUpdate records, 'version' next to 'id' is the expected version: matching it updates and adds one."""
    _define(db)
    (ann,) = _make(db, "ann")
    out = run_node(db, "AccountBulkUpdateNode", {"records": [{"id": ann, "version": 1, "balance": 3}]})
    assert out["updated"] == 1
    assert run_node(db, "AccountReadNode", {"id": ann})["version"] == 2


def test_filters_may_name_version(db: DataFlow) -> None:
    """List, count and Delete may filter on version like on any other field."""
    _define(db)
    ann, _bob = _make(db, "ann", "bob")
    run_node(db, "AccountUpdateNode", {"id": ann, "balance": 1})
    assert [r["owner"] for r in run_node(db, "AccountListNode", {"filter": {"version": 2}})["records"]] == ["ann"]
    assert run_node(db, "AccountListNode", {"filter": {"version": {"$lt": 2}}, "count_only": True})["count"] == 1


def test_update_with_current_version_succeeds(db: DataFlow) -> None:
    """An Update whose filter names the current version updates the row and adds one."""
    _define(db)
    (ann,) = _make(db, "ann")
    out = run_node(db, "AccountUpdateNode", {"filter": {"id": ann, "version": 1}, "fields": {"balance": 10}})
    assert out["rows_affected"] == 1
    assert (out["record"]["balance"], out["record"]["version"]) == (10, 2)


def test_update_with_stale_version_raises_and_writes_nothing(db: DataFlow) -> None:
    """An Update naming a version that is no longer current raises VersionConflictError and changes nothing."""
    _define(db)
    (ann,) = _make(db, "ann")
    run_node(db, "AccountUpdateNode", {"id": ann, "balance": 1})
    before = run_node(db, "AccountReadNode", {"id": ann})
    err = fails(db, "AccountUpdateNode", {"filter": {"id": ann, "version": 1}, "fields": {"balance": 99}})
    assert isinstance(err, VersionConflictError)
    assert err.model == "Account"
    assert run_node(db, "AccountReadNode", {"id": ann}) == before


def test_update_of_missing_row_with_version_is_not_a_conflict(db: DataFlow) -> None:
    """An Update naming a version for an id that does not exist updates nothing and raises nothing."""
    _define(db)
    out = run_node(db, "AccountUpdateNode", {"filter": {"id": 12345, "version": 1}, "fields": {"balance": 1}})
    assert out == {"rows_affected": 0, "updated": False, "record": None}


def test_version_inside_or_and_in_delete_is_an_ordinary_condition(db: DataFlow) -> None:
    """A version named inside $or, or in a Delete filter, only filters: a stale one matches nothing and raises nothing."""
    _define(db)
    (ann,) = _make(db, "ann")
    run_node(db, "AccountUpdateNode", {"id": ann, "balance": 1})
    out = run_node(db, "AccountUpdateNode", {"filter": {"id": ann, "$or": [{"version": 1}]}, "fields": {"balance": 2}})
    assert out["rows_affected"] == 0
    assert run_node(db, "AccountDeleteNode", {"filter": {"id": ann, "version": 1}}) == {"deleted": False, "rows_affected": 0}
    assert run_node(db, "AccountReadNode", {"id": ann})["balance"] == 1


def test_stale_update_rolls_back_the_whole_workflow(db: DataFlow) -> None:
    """A stale-version Update later in a workflow rolls back the writes of the nodes before it."""
    _define(db)
    (ann,) = _make(db, "ann")
    run_node(db, "AccountUpdateNode", {"id": ann, "balance": 1})
    wf = WorkflowBuilder(db)
    wf.add_node("AccountCreateNode", "new", {"owner": "zed"})
    wf.add_node("AccountUpdateNode", "stale", {"filter": {"id": ann, "version": 1}, "fields": {"balance": 2}})
    with pytest.raises(WorkflowFailed) as info:
        LocalRuntime().execute(wf.build())
    assert info.value.node == "stale"
    assert isinstance(info.value.__cause__, VersionConflictError)
    assert sorted(_versions(db)) == ["ann"]


def test_bulk_update_by_filter_with_stale_version_writes_nothing(db: DataFlow) -> None:
    """A BulkUpdate whose filter names a version some matched rows no longer have raises and changes no row."""
    _define(db)
    ann, bob = _make(db, "ann", "bob")
    run_node(db, "AccountUpdateNode", {"id": bob, "balance": 1})
    before = run_node(db, "AccountListNode", {"order_by": ["id"]})["records"]
    err = fails(db, "AccountBulkUpdateNode", {"filter": {"id": {"$in": [ann, bob]}, "version": 1},
                                              "fields": {"balance": 50}})
    assert isinstance(err, VersionConflictError)
    assert err.stale == 1
    assert run_node(db, "AccountListNode", {"order_by": ["id"]})["records"] == before


def test_bulk_update_by_records_with_stale_version_writes_nothing(db: DataFlow) -> None:
    """A BulkUpdate record carrying a stale version raises, and the other records of the node are not kept."""
    _define(db)
    ann, bob = _make(db, "ann", "bob")
    run_node(db, "AccountUpdateNode", {"id": bob, "balance": 1})
    before = run_node(db, "AccountListNode", {"order_by": ["id"]})["records"]
    err = fails(db, "AccountBulkUpdateNode", {"records": [
        {"id": ann, "version": 1, "balance": 70}, {"id": bob, "version": 1, "balance": 80},
    ]})
    assert isinstance(err, VersionConflictError)
    assert run_node(db, "AccountListNode", {"order_by": ["id"]})["records"] == before


def test_version_given_to_unversioned_model_is_an_ordinary_field(db: DataFlow) -> None:
    """Without the option, a model may declare its own 'version' field and set it freely."""

    @db.model
    class Release:
        version: int
        name: str

    created = run_node(db, "ReleaseCreateNode", {"version": 7, "name": "r"})
    out = run_node(db, "ReleaseUpdateNode", {"filter": {"id": created["id"]}, "fields": {"version": 3}})
    assert out["record"]["version"] == 3


def test_declaring_version_on_a_versioned_model_is_a_model_error(db: DataFlow) -> None:
    """A versioned model may not declare 'version' itself: DataFlow manages that column."""
    from dataflow import ModelError

    with pytest.raises(ModelError, match="version"):

        @db.model
        class Bad:
            version: int
            __dataflow__ = {"versioned": True}  # noqa: RUF012


def test_existing_rows_get_version_one_when_the_option_is_turned_on(db: DataFlow, engine_url: str) -> None:
    """Turning versioned on for an existing table adds the column with version 1 for the rows already there."""

    @db.model
    class Ticket:
        title: str
        __tablename__ = "tickets_v"

    run_node(db, "TicketCreateNode", {"title": "old"})
    with DataFlow(engine_url) as db2:

        @db2.model
        class Ticket:
            title: str
            __tablename__ = "tickets_v"
            __dataflow__ = {"versioned": True}  # noqa: RUF012

        (row,) = run_node(db2, "TicketListNode", {})["records"]
        assert row["version"] == 1
        assert run_node(db2, "TicketUpdateNode", {"filter": {"id": row["id"], "version": 1},
                                                  "fields": {"title": "new"}})["record"]["version"] == 2


def _race(db: DataFlow, account: int, version: int, value: int) -> list[Any]:
    """Two threads update ``account`` naming ``version`` at the same moment; each outcome."""
    gate = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def worker(slot: int) -> None:
        wf = WorkflowBuilder(db)
        wf.add_node("AccountUpdateNode", "u", {"filter": {"id": account, "version": version},
                                               "fields": {"balance": value + slot}})
        built = wf.build()
        gate.wait()
        try:
            outcomes[slot] = LocalRuntime().execute(built)[0]["u"]["rows_affected"]
        except WorkflowFailed as exc:
            outcomes[slot] = exc.__cause__
        except Exception as exc:  # pragma: no cover - reported by the assertion below  # noqa: BLE001
            outcomes[slot] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_two_concurrent_updates_of_one_version_exactly_one_wins(db: DataFlow) -> None:
    """Two threads updating the same row naming the same version: one updates, the other gets VersionConflictError."""
    _define(db)
    (ann,) = _make(db, "ann")
    for round_ in range(10):
        version = round_ + 1
        outcomes = _race(db, ann, version, 100 * round_)
        wins = [o for o in outcomes if o == 1]
        conflicts = [o for o in outcomes if isinstance(o, VersionConflictError)]
        assert (len(wins), len(conflicts)) == (1, 1), outcomes
        row = run_node(db, "AccountReadNode", {"id": ann})
        assert row["version"] == version + 1
        assert row["balance"] in (100 * round_, 100 * round_ + 1)
    assert raw(db, f"SELECT COUNT(*) FROM {db.dialect.quote('accounts')}")[0][0] == 1


def test_stale_version_is_catchable_as_version_conflict_error(db: DataFlow) -> None:
    """execute() itself raises an error that is both a VersionConflictError and a WorkflowFailed."""
    _define(db)
    (ann,) = _make(db, "ann")
    run_node(db, "AccountUpdateNode", {"id": ann, "balance": 1})
    wf = WorkflowBuilder()
    wf.add_node("AccountUpdateNode", "stale", {"filter": {"id": ann, "version": 1}, "fields": {"balance": 5}})
    with pytest.raises(VersionConflictError) as info:
        LocalRuntime().execute(wf.build())
    assert isinstance(info.value, WorkflowFailed)
    assert info.value.node == "stale" and info.value.model == "Account"
