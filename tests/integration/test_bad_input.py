"""Bad input: each case is a DataFlowError naming node, model and field, raised before anything is written."""

from __future__ import annotations

from typing import Any

import pytest

from dataflow import (
    DataFlow,
    DataFlowError,
    NodeParameterError,
    UnknownNodeError,
    WorkflowBuilder,
    WorkflowFailed,
)
from tests.integration.helpers import count, run_node, run_wf, table_count


@pytest.fixture
def widgets(db: DataFlow) -> DataFlow:
    """``db`` with a Widget model holding one row."""

    @db.model
    class Widget:
        name: str
        size: int
        weight: float = 1.0
        label: str | None = None

    run_node(db, "WidgetCreateNode", {"name": "seed", "size": 1})
    return db


def _assert_untouched(db: DataFlow) -> None:
    assert count(db, "Widget") == 1
    assert table_count(db, "widgets") == 1
    assert count(db, "Widget", {"name": "seed", "size": 1}) == 1


def _expect_rejected(db: DataFlow, node_type: str, params: dict[str, Any], field: str) -> NodeParameterError:
    wf = WorkflowBuilder(db)
    wf.add_node(node_type, "bad_node", params)
    with pytest.raises(NodeParameterError) as info:
        run_wf(wf)  # build() and execute(): whichever catches it, nothing may be written
    err = info.value
    assert isinstance(err, DataFlowError)
    assert (err.node, err.node_type, err.model, err.field) == ("bad_node", node_type, "Widget", field)
    text = str(err)
    for part in ("bad_node", node_type, "Widget", field):
        assert part in text, (part, text)
    assert "\x1b" not in text and "<" not in text.split(":")[0]  # plain text
    _assert_untouched(db)
    return err


CASES = [
    ("WidgetCreateNode", {"name": "a", "size": 1, "colour": "red"}, "colour", "unknown field"),
    ("WidgetCreateNode", {"name": "a", "size": "big"}, "size", "wrong type str for int"),
    ("WidgetCreateNode", {"name": 5, "size": 1}, "name", "wrong type int for str"),
    ("WidgetCreateNode", {"name": "a", "size": 5.7}, "size", "lossy float into int"),
    ("WidgetCreateNode", {"name": "a", "size": True}, "size", "bool into int"),
    ("WidgetCreateNode", {"name": "a", "size": 1, "weight": "heavy"}, "weight", "str into float"),
    ("WidgetCreateNode", {"name": "a"}, "size", "missing required field"),
    ("WidgetCreateNode", {"name": None, "size": 1}, "name", "None for a required field"),
    ("WidgetUpdateNode", {"filter": {"name": "seed"}, "fields": {"size": 2.5}}, "size", "update lossy"),
    ("WidgetUpdateNode", {"filter": {"name": "seed"}, "fields": {"size": None}}, "size", "update None required"),
    ("WidgetUpdateNode", {"filter": {"name": "seed"}, "fields": {"nope": 1}}, "nope", "update unknown field"),
    ("WidgetUpdateNode", {"id": 1, "colour": "x"}, "colour", "flat update unknown field"),
    ("WidgetListNode", {"filter": {"colour": "red"}}, "colour", "unknown filter field"),
    ("WidgetListNode", {"filter": {"size": {"$between": [1, 2]}}}, "size", "unknown filter operator"),
    ("WidgetListNode", {"filter": {"size": "many"}}, "size", "wrong-typed filter value"),
    ("WidgetListNode", {"filter": {"size": {"$in": [1, "two"]}}}, "size", "wrong-typed $in element"),
    ("WidgetListNode", {"filter": {"size": {"$like": "1%"}}}, "size", "$like on a non-text field"),
    ("WidgetListNode", {"limt": 5}, "limt", "unknown option key"),
    ("WidgetListNode", {"limit": -1}, "limit", "negative limit"),
    ("WidgetListNode", {"order_by": ["colour"]}, "colour", "unknown order_by field"),
    ("WidgetListNode", {"fields": ["name", "colour"]}, "colour", "unknown projection field"),
    ("WidgetReadNode", {"id": "one"}, "id", "wrong-typed id"),
    ("WidgetReadNode", {"id": 1, "raise_on_not_found": "no"}, "raise_on_not_found", "non-bool option"),
    ("WidgetDeleteNode", {"filter": {"colour": "red"}}, "colour", "delete unknown filter field"),
    ("WidgetBulkDeleteNode", {"filter": {"size": {"$gt": "x"}}}, "size", "bulk delete bad value"),
    ("WidgetBulkUpdateNode", {"filter": {"size": 1}, "fields": {"size": "x"}}, "size", "bulk update bad value"),
    ("WidgetBulkCreateNode", {"records": [], "chunksize": 10}, "chunksize", "bulk unknown option"),
    ("WidgetBulkCreateNode", {"records": [], "error_strategy": "ignore"}, "error_strategy", "bad choice"),
    ("WidgetBulkUpsertNode", {"records": [], "update_fields": ["colour"]}, "update_fields", "upsert unknown field"),
]


@pytest.mark.parametrize(("node_type", "params", "field", "why"), CASES, ids=[c[3] for c in CASES])
def test_bad_parameter_is_rejected_before_any_write(
    widgets: DataFlow, node_type: str, params: dict[str, Any], field: str, why: str
) -> None:
    """Each bad parameter is a NodeParameterError naming node id, node type, model and field; nothing is written."""
    _expect_rejected(widgets, node_type, params, field)


def test_unknown_option_suggests_the_right_one(widgets: DataFlow) -> None:
    """A misspelt option key suggests the closest known one."""
    err = _expect_rejected(widgets, "WidgetListNode", {"order_bye": ["name"]}, "order_bye")
    assert "order_by" in str(err).replace("order_bye", "")


def test_unknown_node_type_is_rejected_before_any_write(widgets: DataFlow) -> None:
    """An unknown node type is an UnknownNodeError naming node id and type, with the closest names suggested."""
    wf = WorkflowBuilder(widgets)
    wf.add_node("WidgetCreateNode", "good", {"name": "never", "size": 2})
    wf.add_node("WidgetDeletNode", "bad_node", {"id": 1})
    with pytest.raises(UnknownNodeError) as info:
        run_wf(wf)
    assert isinstance(info.value, DataFlowError)
    assert "bad_node" in str(info.value) and "WidgetDeletNode" in str(info.value)
    assert "WidgetDeleteNode" in info.value.suggestions
    _assert_untouched(widgets)


def test_bad_node_after_good_ones_stops_the_whole_workflow(widgets: DataFlow) -> None:
    """A bad parameter in a later node stops the workflow at build: the earlier good nodes never run."""
    wf = WorkflowBuilder(widgets)
    wf.add_node("WidgetCreateNode", "good", {"name": "never", "size": 2})
    wf.add_node("WidgetCreateNode", "bad_node", {"name": "x", "size": 5.7})
    with pytest.raises(NodeParameterError) as info:
        wf.build()
    assert info.value.node == "bad_node" and info.value.field == "size"
    _assert_untouched(widgets)


def test_bad_runtime_parameter_is_rejected_before_any_write(widgets: DataFlow) -> None:
    """A bad value given as a runtime parameter is refused before anything runs."""
    from dataflow import LocalRuntime

    wf = WorkflowBuilder(widgets)
    wf.add_node("WidgetCreateNode", "good", {"name": "never", "size": 2})
    wf.add_node("WidgetCreateNode", "bad_node", {"name": "x", "size": 3})
    built = wf.build()
    with pytest.raises(NodeParameterError) as info:
        LocalRuntime().execute(built, parameters={"bad_node": {"size": "three"}})
    assert (info.value.node, info.value.model, info.value.field) == ("bad_node", "Widget", "size")
    _assert_untouched(widgets)


def test_bad_value_through_a_connection_fails_and_rolls_back(widgets: DataFlow) -> None:
    """A wrong-typed value arriving through a connection fails the workflow naming the node and field; earlier writes roll back."""
    widgets.register_node("MakeSize", lambda: {"size": "not an int"})
    wf = WorkflowBuilder(widgets)
    wf.add_node("WidgetCreateNode", "good", {"name": "never", "size": 2})
    wf.add_node("MakeSize", "src", {})
    wf.add_node("WidgetCreateNode", "bad_node", {"name": "x"})
    wf.add_connection("src", "size", "bad_node", "size")
    with pytest.raises(WorkflowFailed) as info:
        run_wf(wf)
    cause = info.value.__cause__
    assert info.value.node == "bad_node" and isinstance(cause, NodeParameterError)
    assert (cause.node, cause.model, cause.field) == ("bad_node", "Widget", "size")
    _assert_untouched(widgets)


def test_invalid_bulk_record_names_its_index(widgets: DataFlow) -> None:
    """An invalid record in a bulk create fails the workflow naming the node, model, field and record index."""
    records = [{"name": "ok", "size": 1}, {"name": "ok2", "size": 2}, {"name": "bad", "size": 2.5}]
    wf = WorkflowBuilder(widgets)
    wf.add_node("WidgetBulkCreateNode", "bad_node", {"records": records})
    with pytest.raises(DataFlowError) as info:
        run_wf(wf)
    err = info.value.__cause__ if isinstance(info.value, WorkflowFailed) else info.value
    assert isinstance(err, NodeParameterError)
    assert (err.node, err.model, err.field) == ("bad_node", "Widget", "size")
    assert "records[2]" in str(err)
    _assert_untouched(widgets)


def test_int_into_float_is_accepted(widgets: DataFlow) -> None:
    """An int given for a float field is not lossy and is accepted (stored as a float)."""
    created = run_node(widgets, "WidgetCreateNode", {"name": "f", "size": 2, "weight": 3})
    assert created["weight"] == 3.0
    assert isinstance(run_node(widgets, "WidgetReadNode", {"id": created["id"]})["weight"], float)
