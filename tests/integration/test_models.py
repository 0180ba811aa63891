"""@db.model: field types, defaults, keys, managed timestamps, tables, indexes, options."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Optional

import pytest

from dataflow import (
    DataFlow,
    FeatureNotAvailableError,
    IntegrityError,
    ModelError,
    NodeParameterError,
    WorkflowBuilder,
    WorkflowFailed,
)
from tests.integration.helpers import (
    columns,
    count,
    list_records,
    raw,
    run_node,
    run_wf,
    table_count,
)


def _define_everything(db: DataFlow) -> None:
    @db.model
    class Thing:
        name: str
        qty: int
        ratio: float
        flag: bool
        amount: Decimal
        when: datetime
        day: date
        blob: bytes
        meta: dict
        tags: list
        maybe_name: Optional[str]  # noqa: UP045 - the spelling NODES.md shows
        maybe_qty: int | None = None
        label: str = "plain"
        score: float = 1.25
        active: bool = True


def test_every_type_round_trips_as_declared(db: DataFlow) -> None:
    """Every supported field type comes back as the declared Python type with the value given."""
    _define_everything(db)
    when = datetime(2024, 2, 29, 13, 45, 7, 123456, tzinfo=UTC)
    values: dict[str, Any] = {
        "name": "widget", "qty": 7, "ratio": 0.5, "flag": False, "amount": Decimal("12.34"),
        "when": when, "day": date(2024, 2, 29), "blob": b"\x00\x01\xff", "meta": {"a": [1, 2], "b": None},
        "tags": ["x", 2, True], "maybe_name": "m",
    }
    created = run_node(db, "ThingCreateNode", values)
    read = run_node(db, "ThingReadNode", {"id": created["id"]})
    for record in (created, read):
        for key, value in values.items():
            assert record[key] == value, key
            assert type(record[key]) is type(value), key
    assert read["when"].astimezone(UTC) == when


def test_defaults_apply_when_fields_are_omitted(db: DataFlow) -> None:
    """Omitted fields take their declared defaults, and the stored row holds them."""
    _define_everything(db)
    created = run_node(db, "ThingCreateNode", {
        "name": "n", "qty": 1, "ratio": 1.0, "flag": True, "amount": Decimal(1),
        "when": datetime(2024, 1, 1), "day": date(2024, 1, 1), "blob": b"", "meta": {}, "tags": [],
    })
    read = run_node(db, "ThingReadNode", {"id": created["id"]})
    assert (read["label"], read["score"], read["active"]) == ("plain", 1.25, True)
    assert read["active"] is True


def test_optional_without_default_is_none(db: DataFlow) -> None:
    """An Optional field without a default may be omitted and is stored as NULL (read back None)."""
    _define_everything(db)
    created = run_node(db, "ThingCreateNode", {
        "name": "n", "qty": 1, "ratio": 1.0, "flag": True, "amount": Decimal(1),
        "when": datetime(2024, 1, 1), "day": date(2024, 1, 1), "blob": b"", "meta": {}, "tags": [],
    })
    read = run_node(db, "ThingReadNode", {"id": created["id"]})
    assert read["maybe_name"] is None and read["maybe_qty"] is None
    assert count(db, "Thing", {"maybe_name": None}) == 1


def test_mutable_defaults_are_not_shared(db: DataFlow) -> None:
    """A dict/list default is copied per record, so one record's value never leaks into another."""

    @db.model
    class Bag:
        items: list = []  # noqa: RUF012 - the point of the test

    first = run_node(db, "BagCreateNode", {})
    first["items"].append("leak")
    second = run_node(db, "BagCreateNode", {})
    assert second["items"] == []
    assert run_node(db, "BagReadNode", {"id": first["id"]})["items"] == []


def test_auto_id_is_assigned_and_increasing(db: DataFlow) -> None:
    """Without a declared id, the database assigns distinct increasing integer ids."""

    @db.model
    class Note:
        text: str

    ids = [run_node(db, "NoteCreateNode", {"text": str(i)})["id"] for i in range(3)]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [r["id"] for r in list_records(db, "Note", order_by=["id"])] == ids


def test_auto_id_may_not_be_given(db: DataFlow) -> None:
    """A caller may not supply the auto-increment id; nothing is written."""

    @db.model
    class Note:
        text: str

    wf = WorkflowBuilder(db)
    wf.add_node("NoteCreateNode", "c", {"id": 5, "text": "x"})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert info.value.field == "id"
    assert count(db, "Note") == 0


def test_caller_supplied_str_id(db: DataFlow) -> None:
    """A model declaring ``id: str`` stores and reads back the id the caller gives."""

    @db.model
    class Account:
        id: str
        owner: str

    created = run_node(db, "AccountCreateNode", {"id": "acc-0001", "owner": "ann"})
    assert created["id"] == "acc-0001"
    assert run_node(db, "AccountReadNode", {"id": "acc-0001"})["owner"] == "ann"


def test_caller_supplied_int_id_is_required_and_unique(db: DataFlow) -> None:
    """With ``id: int`` the caller must give the id, and a duplicate id is an IntegrityError."""

    @db.model
    class Ticket:
        id: int
        title: str

    wf = WorkflowBuilder(db)
    wf.add_node("TicketCreateNode", "c", {"title": "no id"})
    with pytest.raises(NodeParameterError) as info:  # build() defers it: runtime parameters may supply it
        run_wf(wf)
    assert info.value.field == "id"
    assert run_node(db, "TicketCreateNode", {"id": 42, "title": "a"})["id"] == 42
    with pytest.raises(WorkflowFailed) as failed:
        run_node(db, "TicketCreateNode", {"id": 42, "title": "b"})
    assert isinstance(failed.value.__cause__, IntegrityError)
    assert [r["title"] for r in list_records(db, "Ticket")] == ["a"]


def test_timestamps_are_set_on_create(db: DataFlow) -> None:
    """created_at and updated_at are set by DataFlow to the current time on create."""

    @db.model
    class Note:
        text: str

    before = datetime.now(UTC)
    created = run_node(db, "NoteCreateNode", {"text": "x"})
    after = datetime.now(UTC)
    read = run_node(db, "NoteReadNode", {"id": created["id"]})
    for key in ("created_at", "updated_at"):
        assert isinstance(read[key], datetime)
        assert before <= read[key].astimezone(UTC) <= after


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
def test_timestamps_may_not_be_set_by_caller(db: DataFlow, field: str) -> None:
    """A caller setting created_at/updated_at on create or update is refused, naming the field."""

    @db.model
    class Note:
        text: str

    stamp = datetime(2000, 1, 1, tzinfo=UTC)
    for node_type, params in (("NoteCreateNode", {"text": "x", field: stamp}),
                              ("NoteUpdateNode", {"filter": {"id": 1}, "fields": {field: stamp}})):
        wf = WorkflowBuilder(db)
        wf.add_node(node_type, "n", params)
        with pytest.raises(NodeParameterError) as info:
            wf.build()
        assert info.value.field == field and field in str(info.value)
    assert count(db, "Note") == 0


def test_updated_at_changes_on_update_created_at_does_not(db: DataFlow) -> None:
    """An update moves updated_at forward and leaves created_at alone."""

    @db.model
    class Note:
        text: str

    created = run_node(db, "NoteCreateNode", {"text": "x"})
    time.sleep(0.01)
    run_node(db, "NoteUpdateNode", {"filter": {"id": created["id"]}, "fields": {"text": "y"}})
    read = run_node(db, "NoteReadNode", {"id": created["id"]})
    assert read["created_at"] == created["created_at"]
    assert read["updated_at"] > created["updated_at"]


def test_model_may_not_declare_managed_fields(db: DataFlow) -> None:
    """Declaring created_at on a model is a ModelError (DataFlow manages it)."""
    with pytest.raises(ModelError, match="created_at"):

        @db.model
        class Bad:
            created_at: datetime


def test_tablename_is_used(db: DataFlow) -> None:
    """``__tablename__`` names the table the rows land in."""

    @db.model
    class Order:
        total: float
        __tablename__ = "shop_orders"

    run_node(db, "OrderCreateNode", {"total": 2.0})
    assert table_count(db, "shop_orders") == 1


@pytest.mark.parametrize(("cls_name", "table"), [
    ("BlogPost", "blog_posts"), ("Category", "categories"), ("Box", "boxes"), ("Key", "keys"),
])
def test_default_table_name_is_snake_case_plural(db: DataFlow, cls_name: str, table: str) -> None:
    """Without ``__tablename__`` the table is the snake_case plural of the class name."""
    cls = type(cls_name, (), {"__annotations__": {"title": str}})
    db.model(cls)
    run_node(db, f"{cls_name}CreateNode", {"title": "t"})
    assert table_count(db, table) == 1


def test_unique_index_is_enforced(db: DataFlow) -> None:
    """A unique ``__indexes__`` entry is created: a duplicate raises IntegrityError inside WorkflowFailed."""

    @db.model
    class User:
        email: str
        name: str
        __indexes__ = [{"name": "idx_user_email", "fields": ["email"], "unique": True}]  # noqa: RUF012

    run_node(db, "UserCreateNode", {"email": "a@x.io", "name": "a"})
    with pytest.raises(WorkflowFailed) as info:
        run_node(db, "UserCreateNode", {"email": "a@x.io", "name": "b"})
    assert isinstance(info.value.__cause__, IntegrityError)
    assert count(db, "User") == 1


def test_multi_column_unique_index_is_enforced(db: DataFlow) -> None:
    """A unique index over two fields allows each value alone but not the same pair twice."""

    @db.model
    class Seat:
        row: str
        number: int
        __indexes__ = [{"name": "idx_seat", "fields": ["row", "number"], "unique": True}]  # noqa: RUF012

    run_node(db, "SeatCreateNode", {"row": "A", "number": 1})
    run_node(db, "SeatCreateNode", {"row": "A", "number": 2})
    run_node(db, "SeatCreateNode", {"row": "B", "number": 1})
    with pytest.raises(WorkflowFailed) as info:
        run_node(db, "SeatCreateNode", {"row": "A", "number": 1})
    assert isinstance(info.value.__cause__, IntegrityError)
    assert count(db, "Seat") == 3


def test_non_unique_index_is_created_sqlite(memdb: DataFlow) -> None:
    """A non-unique index appears in SQLite's index list and allows duplicates."""

    @memdb.model
    class Order:
        customer_id: int
        __indexes__ = [{"name": "idx_customer", "fields": ["customer_id"], "unique": False}]  # noqa: RUF012

    names = [r[1] for r in raw(memdb, "SELECT * FROM pragma_index_list('orders')")]
    assert "idx_customer" in names
    run_node(memdb, "OrderCreateNode", {"customer_id": 1})
    run_node(memdb, "OrderCreateNode", {"customer_id": 1})
    assert count(memdb, "Order", {"customer_id": 1}) == 2


def test_new_field_adds_column_and_keeps_data(engine_url: str) -> None:
    """Re-registering a model with a new field adds its column; existing rows survive with NULL there."""
    with DataFlow(engine_url) as db:

        @db.model
        class Person:
            name: str

        run_node(db, "PersonCreateNode", {"name": "old"})

    with DataFlow(engine_url) as db:

        @db.model  # type: ignore[no-redef]
        class Person:
            name: str
            nickname: str | None = None

        run_node(db, "PersonCreateNode", {"name": "new", "nickname": "nu"})
        rows = {r["name"]: r["nickname"] for r in list_records(db, "Person")}
        assert rows == {"old": None, "new": "nu"}


def test_new_field_on_same_instance(db: DataFlow) -> None:
    """Registering a changed model again on the same instance extends the table in place."""

    @db.model
    class Person:
        name: str

    run_node(db, "PersonCreateNode", {"name": "old"})

    @db.model  # type: ignore[no-redef]
    class Person:  # noqa: F811 - the same model again, with a new field
        name: str
        age: int | None = None

    run_node(db, "PersonCreateNode", {"name": "new", "age": 3})
    assert count(db, "Person", {"age": None}) == 1
    assert count(db, "Person", {"age": 3}) == 1


@pytest.mark.parametrize("attrs", [
    {"__dataflow__": {"soft_delet": True}},
    {"__dataflow__": {"audit": False}},
    {"__indexes__": [{"name": "i", "fields": ["title"], "uniq": True}]},
    {"__indexes__": [{"name": "i", "fields": ["nope"]}]},
    {"__indexes__": [{"name": "i", "fields": ["title"], "type": "hash_ring"}]},
])
def test_unknown_option_or_index_key_is_an_error(db: DataFlow, attrs: dict[str, Any]) -> None:
    """An unknown ``__dataflow__``/``__indexes__`` key (or index field/type) is a ModelError, and no table is made."""
    cls = type("Widget", (), {"__annotations__": {"title": str}, **attrs})
    with pytest.raises(ModelError):
        db.model(cls)
    assert "WidgetCreateNode" not in db.nodes


@pytest.mark.parametrize(("option", "column"), [
    ("soft_delete", "deleted_at"), ("versioned", "version"), ("multi_tenant", "tenant_id"),
])
def test_model_options_are_never_silently_ignored(db: DataFlow, option: str, column: str) -> None:
    """soft_delete/versioned/multi_tenant either raise FeatureNotAvailableError (not built yet) or add their column."""
    cls = type("Widget", (), {"__annotations__": {"title": str}, "__dataflow__": {option: True}})
    try:
        db.model(cls)
    except FeatureNotAvailableError as exc:
        assert option in str(exc)
        assert "WidgetCreateNode" not in db.nodes
        return
    assert column in columns(db, "widgets")


def test_disabled_model_options_are_accepted(db: DataFlow) -> None:
    """An option explicitly set to False is not an error: the model registers and works."""

    @db.model
    class Widget:
        title: str
        __dataflow__ = {"soft_delete": False, "versioned": False, "multi_tenant": False}  # noqa: RUF012

    run_node(db, "WidgetCreateNode", {"title": "t"})
    assert count(db, "Widget") == 1


@pytest.mark.parametrize("hint", [set, tuple, complex, int | str], ids=["set", "tuple", "complex", "union"])
def test_unsupported_field_type_is_model_error(db: DataFlow, hint: Any) -> None:
    """A field type outside the supported list (or a union other than Optional) is a ModelError naming the field."""
    cls = type("Widget", (), {"__annotations__": {"odd": hint}})
    with pytest.raises(ModelError, match="odd"):
        db.model(cls)


def test_bad_default_is_model_error(db: DataFlow) -> None:
    """A default that does not fit the field's type is a ModelError at registration."""
    with pytest.raises(ModelError, match="qty"):

        @db.model
        class Widget:
            qty: int = "many"  # type: ignore[assignment]


def test_index_name_used_by_another_model_is_refused(memdb: Any) -> None:
    """Two models may not share an index name (PostgreSQL would silently skip the second index)."""

    @memdb.model
    class Shelf:
        label: str
        __indexes__ = [{"name": "idx_label", "fields": ["label"], "unique": True}]

    with pytest.raises(ModelError, match="idx_label"):

        @memdb.model
        class Bin:
            label: str
            __indexes__ = [{"name": "idx_label", "fields": ["label"], "unique": True}]
