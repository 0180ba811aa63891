"""The filter language: every operator, NULL semantics, verbatim values, hostile identifiers."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import DataFlow, NodeParameterError, WorkflowBuilder
from tests.integration.helpers import count, list_records, run_node, table_count

ROWS: list[dict[str, Any]] = [
    {"name": "apple", "price": 1.0, "stock": 0, "note": "red"},
    {"name": "Apricot", "price": 2.5, "stock": 5, "note": None},
    {"name": "banana", "price": 0.5, "stock": 12, "note": "yellow"},
    {"name": "cherry", "price": 10.0, "stock": 3, "note": None},
    {"name": "date", "price": 7.0, "stock": 0, "note": "brown"},
    {"name": "ab123", "price": 3.0, "stock": 1, "note": "code"},
]


@pytest.fixture
def fruit(db: DataFlow) -> DataFlow:
    """``db`` with a Fruit model holding ROWS."""

    @db.model
    class Fruit:
        name: str
        price: float
        stock: int
        note: str | None = None

    run_node(db, "FruitBulkCreateNode", {"records": ROWS})
    return db


def names(db: DataFlow, flt: dict[str, Any]) -> set[str]:
    """Names of the fruit matching ``flt``; the database's count must agree."""
    got = {r["name"] for r in list_records(db, "Fruit", filter=flt, fields=["name"])}
    assert count(db, "Fruit", flt) == len(got)
    return got


def expect(pred: Any) -> set[str]:
    return {r["name"] for r in ROWS if pred(r)}


@pytest.mark.parametrize(("flt", "pred"), [
    ({"stock": 0}, lambda r: r["stock"] == 0),
    ({"stock": {"$eq": 5}}, lambda r: r["stock"] == 5),
    ({"price": {"$gt": 2.5}}, lambda r: r["price"] > 2.5),
    ({"price": {"$gte": 2.5}}, lambda r: r["price"] >= 2.5),
    ({"price": {"$lt": 2.5}}, lambda r: r["price"] < 2.5),
    ({"price": {"$lte": 2.5}}, lambda r: r["price"] <= 2.5),
    ({"price": {"$gt": 1.0, "$lt": 8.0}}, lambda r: 1.0 < r["price"] < 8.0),
    ({"stock": {"$in": [0, 3]}}, lambda r: r["stock"] in (0, 3)),
    ({"stock": {"$nin": [0, 3]}}, lambda r: r["stock"] not in (0, 3)),
    ({"name": {"$ne": "apple"}}, lambda r: r["name"] != "apple"),
    ({"stock": 0, "price": {"$gt": 5}}, lambda r: r["stock"] == 0 and r["price"] > 5),
], ids=["implicit-eq", "eq", "gt", "gte", "lt", "lte", "range", "in", "nin", "ne", "implicit-and"])
def test_comparison_operators(fruit: DataFlow, flt: dict[str, Any], pred: Any) -> None:
    """Each comparison operator (and implicit equality/AND) selects exactly the rows Python would."""
    assert names(fruit, flt) == expect(pred)


def test_like_is_case_sensitive(fruit: DataFlow) -> None:
    """$like matches SQL wildcards with case: "a%" finds apple and ab123, not Apricot."""
    assert names(fruit, {"name": {"$like": "a%"}}) == {"apple", "ab123"}
    assert names(fruit, {"name": {"$like": "_a%"}}) == {"banana", "date"}


def test_ilike_ignores_case(fruit: DataFlow) -> None:
    """$ilike matches regardless of case."""
    assert names(fruit, {"name": {"$ilike": "A%"}}) == {"apple", "Apricot", "ab123"}
    assert names(fruit, {"name": {"$ilike": "%RR%"}}) == {"cherry"}


def test_regex(fruit: DataFlow) -> None:
    """$regex matches a regular expression anywhere in the value."""
    assert names(fruit, {"name": {"$regex": "^ab[0-9]+$"}}) == {"ab123"}
    assert names(fruit, {"name": {"$regex": "an"}}) == {"banana"}


def test_exists(fruit: DataFlow) -> None:
    """$exists True selects non-NULL values, False selects NULLs."""
    assert names(fruit, {"note": {"$exists": True}}) == expect(lambda r: r["note"] is not None)
    assert names(fruit, {"note": {"$exists": False}}) == expect(lambda r: r["note"] is None)


def test_none_means_is_null(fruit: DataFlow) -> None:
    """A None value (implicit or $eq) means IS NULL, and {"$ne": None} means IS NOT NULL."""
    null = expect(lambda r: r["note"] is None)
    assert names(fruit, {"note": None}) == null
    assert names(fruit, {"note": {"$eq": None}}) == null
    assert names(fruit, {"note": {"$ne": None}}) == expect(lambda r: r["note"] is not None)


def test_ne_and_nin_include_null_rows(fruit: DataFlow) -> None:
    """$ne/$nin on a nullable field also match NULL rows: NULL is "not equal" to any value (not SQL's unknown)."""
    assert names(fruit, {"note": {"$ne": "red"}}) == expect(lambda r: r["note"] != "red")
    assert names(fruit, {"note": {"$nin": ["red", "code"]}}) == expect(lambda r: r["note"] not in ("red", "code"))


def test_not_is_the_complement(fruit: DataFlow) -> None:
    """$not (on a field or a whole filter) matches exactly the rows the inner condition does not, NULLs included."""
    everything = {r["name"] for r in ROWS}
    for inner in ({"note": "red"}, {"note": {"$like": "%e%"}}, {"price": {"$gt": 2}}, {"note": None}):
        matched = names(fruit, inner)
        assert names(fruit, {"$not": inner}) == everything - matched, inner
        field, cond = next(iter(inner.items()))
        op_form = cond if isinstance(cond, dict) else {"$eq": cond}
        assert names(fruit, {field: {"$not": op_form}}) == everything - matched, inner
    assert names(fruit, {"note": {"$not": {"$eq": "red"}}}) == names(fruit, {"note": {"$ne": "red"}})


def test_empty_in_matches_nothing_and_empty_nin_everything(fruit: DataFlow) -> None:
    """An empty $in matches no row; an empty $nin matches every row."""
    assert names(fruit, {"stock": {"$in": []}}) == set()
    assert names(fruit, {"stock": {"$nin": []}}) == {r["name"] for r in ROWS}


def test_or_and_nested(fruit: DataFlow) -> None:
    """$or, $and and their nesting combine conditions as boolean logic."""
    flt = {"$or": [{"stock": 0}, {"$and": [{"price": {"$gte": 3}}, {"note": None}]}]}
    assert names(fruit, flt) == expect(lambda r: r["stock"] == 0 or (r["price"] >= 3 and r["note"] is None))
    flt = {"price": {"$lt": 8}, "$or": [{"name": {"$like": "a%"}}, {"$or": [{"stock": 12}, {"stock": 5}]}]}
    assert names(fruit, flt) == expect(
        lambda r: r["price"] < 8 and (r["name"].startswith("a") or r["stock"] in (12, 5)))
    assert names(fruit, {"$and": [{"stock": {"$gte": 1}}, {"stock": {"$lte": 3}}]}) == expect(lambda r: 1 <= r["stock"] <= 3)


def test_filters_apply_to_update_and_delete(fruit: DataFlow) -> None:
    """The same filter selects the same rows in BulkUpdate and BulkDelete as in List."""
    flt = {"$or": [{"note": None}, {"price": {"$lt": 1}}]}
    matched = names(fruit, flt)
    assert run_node(fruit, "FruitBulkUpdateNode", {"filter": flt, "fields": {"stock": 99}}) == {"updated": len(matched)}
    assert names(fruit, {"stock": 99}) == matched
    assert run_node(fruit, "FruitBulkDeleteNode", {"filter": flt}) == {"deleted": len(matched)}
    assert count(fruit, "Fruit") == len(ROWS) - len(matched)


HOSTILE_VALUES = ["'; DROP TABLE fruits; --", "%_\\", 'quote " and \' both', "Robert'); DELETE FROM fruits;--", "\u00e9\u4e2d\U0001f600"]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_values_are_stored_verbatim_and_match_exactly(fruit: DataFlow, value: str) -> None:
    """A value full of SQL metacharacters is stored as given and matched only by itself."""
    created = run_node(fruit, "FruitCreateNode", {"name": value, "price": 1.0, "stock": 1, "note": value})
    assert run_node(fruit, "FruitReadNode", {"id": created["id"]})["name"] == value
    assert [r["id"] for r in list_records(fruit, "Fruit", filter={"name": value})] == [created["id"]]
    assert [r["id"] for r in list_records(fruit, "Fruit", filter={"note": {"$in": [value]}})] == [created["id"]]
    assert count(fruit, "Fruit") == len(ROWS) + 1
    assert table_count(fruit, "fruits") == len(ROWS) + 1


@pytest.mark.parametrize("key", ["name; DROP TABLE fruits", 'id"--', "name' OR '1'='1", "fruits.name", ""])
def test_hostile_filter_keys_are_rejected(fruit: DataFlow, key: str) -> None:
    """A filter key that is not a field is a NodeParameterError naming node, model and key; the table is untouched."""
    for node_type, params in (("FruitListNode", {"filter": {key: 1}}),
                              ("FruitBulkDeleteNode", {"filter": {key: 1}}),
                              ("FruitUpdateNode", {"filter": {key: 1}, "fields": {"stock": 0}})):
        wf = WorkflowBuilder(fruit)
        wf.add_node(node_type, "evil", params)
        with pytest.raises(NodeParameterError) as info:
            wf.build()
        err = info.value
        assert (err.node, err.model, err.field) == ("evil", "Fruit", key)
        assert "evil" in str(err) and "Fruit" in str(err) and repr(key) in str(err)
    assert table_count(fruit, "fruits") == len(ROWS)


@pytest.mark.parametrize("option", ["order_by", "fields"])
@pytest.mark.parametrize("key", ["name; DROP TABLE fruits", 'id"--', "price DESC, (SELECT 1)"])
def test_hostile_order_by_and_fields_are_rejected(fruit: DataFlow, option: str, key: str) -> None:
    """An order_by or fields entry that is not a field is a NodeParameterError naming node, model and field."""
    wf = WorkflowBuilder(fruit)
    wf.add_node("FruitListNode", "evil", {option: [key]})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    err = info.value
    assert (err.node, err.model, err.field) == ("evil", "Fruit", key)
    assert "evil" in str(err) and "Fruit" in str(err) and repr(key) in str(err)
    assert table_count(fruit, "fruits") == len(ROWS)


def test_hostile_descending_order_by_is_rejected(fruit: DataFlow) -> None:
    """A "-" prefixed hostile order_by entry is rejected as well."""
    wf = WorkflowBuilder(fruit)
    wf.add_node("FruitListNode", "evil", {"order_by": ['-name"; DROP TABLE fruits; --']})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert info.value.node == "evil" and info.value.model == "Fruit"
    assert table_count(fruit, "fruits") == len(ROWS)


@pytest.mark.parametrize("op", ["$regexp", "$contains", "$where", "$expr"])
def test_unknown_operator_is_rejected(fruit: DataFlow, op: str) -> None:
    """An unknown operator on a field is a NodeParameterError naming node, model and field."""
    wf = WorkflowBuilder(fruit)
    wf.add_node("FruitListNode", "q", {"filter": {"name": {op: "x"}}})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert (info.value.node, info.value.model, info.value.field) == ("q", "Fruit", "name")
    assert op in str(info.value)


def test_unknown_top_level_operator_is_rejected(fruit: DataFlow) -> None:
    """An unknown top-level operator ($nor) is a NodeParameterError naming node and model."""
    wf = WorkflowBuilder(fruit)
    wf.add_node("FruitListNode", "q", {"filter": {"$nor": [{"stock": 0}]}})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert info.value.node == "q" and info.value.model == "Fruit" and "$nor" in str(info.value)
