"""DataFlow(bulk_optimization_mode=...): "balanced" (the default) and "speed", a documented trade."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dataflow import ConfigurationError, DataFlow, IntegrityError, WorkflowFailed
from tests.bulk.conftest import bulk, define_item, item, items_gen, stored


@pytest.fixture
def speed_items(engine_url: str) -> Iterator[DataFlow]:
    """An ``Item`` model on a DataFlow in "speed" mode."""
    db = define_item(DataFlow(engine_url, bulk_optimization_mode="speed"))
    try:
        yield db
    finally:
        db.close()


@pytest.mark.parametrize("mode", ["fast", "SPEED", "", None, 1])
def test_unknown_modes_are_errors(mode: Any) -> None:
    """Anything but "balanced" or "speed" is a ConfigurationError naming the choices."""
    with pytest.raises(ConfigurationError, match="'balanced', 'speed'"):
        DataFlow(bulk_optimization_mode=mode)


def test_balanced_is_the_default() -> None:
    """Without the option a DataFlow is in "balanced" mode."""
    with DataFlow() as db:
        assert db.bulk_optimization_mode == "balanced"
    with DataFlow(bulk_optimization_mode="speed") as db:
        assert db.bulk_optimization_mode == "speed"


def test_both_modes_use_the_backends_chunk_size(
        items: DataFlow, speed_items: DataFlow, fast_chunks: Callable[[DataFlow, int], None]) -> None:
    """Both modes chunk at the backend's default (larger chunks were measured not to pay); chunk_size wins."""
    fast_chunks(items, 10)
    assert bulk(items, "ItemBulkCreateNode", {"records": items_gen(80)})["chunks"] == 8
    assert bulk(speed_items, "ItemBulkCreateNode", {"records": items_gen(80, start=100)})["chunks"] == 8
    assert bulk(speed_items, "ItemBulkCreateNode", {"records": items_gen(80, start=200), "chunk_size": 20})[
        "chunks"] == 4


def _with_clash(n: int, at: int) -> list[dict[str, Any]]:
    records = [item(i) for i in range(n)]
    records[at] = item(0)
    return records


def test_speed_continue_rejects_a_refused_chunk_whole(speed_items: DataFlow) -> None:
    """speed + continue: a chunk the database refuses is rolled back and every record of it reported."""
    out = bulk(speed_items, "ItemBulkCreateNode", {"records": _with_clash(100, 45), "chunk_size": 20,
                                                   "error_strategy": "continue"})
    assert (out["inserted"], out["failed"]) == (80, 20)
    assert [e["index"] for e in out["errors"]] == list(range(40, 60))
    assert "records[40..59]" in out["errors"][0]["error"]
    assert stored(speed_items) == 80


def test_speed_continue_still_isolates_invalid_records(speed_items: DataFlow) -> None:
    """Validation is per record in every mode: an invalid record fails alone."""
    records: list[Any] = [item(i) for i in range(50)]
    records[7] = {"sku": "x", "name": 1}
    out = bulk(speed_items, "ItemBulkCreateNode", {"records": records, "error_strategy": "continue",
                                                   "chunk_size": 20})
    assert (out["inserted"], out["failed"], [e["index"] for e in out["errors"]]) == (49, 1, [7])


def test_speed_fail_fast_names_the_record_or_its_chunk(speed_items: DataFlow) -> None:
    """speed + fail_fast: nothing is written; the error names the record where the driver says which
    (a PostgreSQL COPY), else the chunk's range."""
    with pytest.raises(WorkflowFailed) as info:
        bulk(speed_items, "ItemBulkCreateNode", {"records": _with_clash(100, 45), "chunk_size": 20})
    assert isinstance(info.value.__cause__, IntegrityError)
    where = "records[45]:" if speed_items.dialect.name == "postgresql" else "records[40..59]:"
    assert where in str(info.value.__cause__)
    assert stored(speed_items) == 0


def test_speed_and_balanced_store_the_same(items: DataFlow, speed_items: DataFlow) -> None:
    """On clean input both modes write the same rows and report the same counts."""
    a = bulk(items, "ItemBulkCreateNode", {"records": items_gen(3000), "chunk_size": 500})
    b = bulk(speed_items, "ItemBulkCreateNode", {"records": items_gen(3000, start=5000), "chunk_size": 500})
    assert a == b and stored(items) == 6000
