"""BulkCreate on every engine: inputs of any kind, each error strategy × conflict mode, poisoned records.

Every count a node reports is checked against ``SELECT count(*)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors.chunker import BulkChunker
from dataflow import DataFlow, IntegrityError, NodeParameterError, WorkflowFailed
from dataflow.nodes import _bulk
from tests.bulk.conftest import bulk, item, items_gen, stored
from tests.integration.helpers import list_records


class Countdown:
    """An iterable that is not a list, a generator or Sized: only ``__iter__``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (item(i) for i in range(self.n))


INPUTS: dict[str, Callable[[int], Any]] = {
    "list": lambda n: [item(i) for i in range(n)],
    "tuple": lambda n: tuple(item(i) for i in range(n)),
    "generator": lambda n: items_gen(n),
    "map": lambda n: map(item, range(n)),
    "iterable": Countdown,
    "chain": lambda n: itertools.chain(items_gen(n // 2), items_gen(n - n // 2, start=n // 2)),
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_records_of_any_iterable(items: DataFlow, kind: str) -> None:
    """records may be a list, tuple, generator, map or any iterable; each record lands once."""
    out = bulk(items, "ItemBulkCreateNode", {"records": INPUTS[kind](250), "chunk_size": 60})
    assert out == {"inserted": 250, "updated": 0, "skipped": 0, "failed": 0, "errors": [], "chunks": 5}
    assert stored(items) == 250
    assert [r["sku"] for r in list_records(items, "Item", order_by=["id"])][:3] == ["k0", "k1", "k2"]


def test_empty_records(items: DataFlow) -> None:
    """No records: nothing written, zero chunks."""
    assert bulk(items, "ItemBulkCreateNode", {"records": iter(())}) == {
        "inserted": 0, "updated": 0, "skipped": 0, "failed": 0, "errors": [], "chunks": 0}


def test_many_chunks_count_what_the_database_holds(items: DataFlow) -> None:
    """25,000 records in chunks of 1,000: the reported count is the database's, every value as given."""
    out = bulk(items, "ItemBulkCreateNode", {"records": items_gen(25_000), "chunk_size": 1000})
    assert (out["inserted"], out["chunks"]) == (25_000, 25)
    assert stored(items) == 25_000
    rows = list_records(items, "Item", filter={"sku": {"$in": ["k0", "k12345", "k24999"]}}, order_by=["qty"])
    assert [(r["sku"], r["qty"], r["price"], r["note"]) for r in rows] == [
        ("k0", 0, 1.0, None), ("k12345", 12345, 1.0, None), ("k24999", 24999, 1.0, None)]


def test_default_chunk_size_is_the_dialects(items: DataFlow) -> None:
    """Without chunk_size the chunks are the backend's default size."""
    size = items.dialect.bulk_chunk_size
    out = bulk(items, "ItemBulkCreateNode", {"records": items_gen(size + 1)})
    assert (out["inserted"], out["chunks"]) == (size + 1, 2)


# -- each error strategy × conflict resolution ----------------------------------------------------

#: records 0..9; 3 clashes with the stored "k100"; 6 is invalid; 8 repeats 1's sku
def _mixed() -> list[dict[str, Any]]:
    records = [item(i) for i in range(10)]
    records[3] = item(100, name="clash")
    records[6] = item(6, qty="six")
    records[8] = item(1, name="repeat")
    return records


EXPECTED = {
    # strategy, conflict: result (errors by index), rows stored after (1 seeded + written)
    ("continue", "error"): ({"inserted": 7, "updated": 0, "skipped": 0, "failed": 3}, [3, 6, 8], 8),
    ("continue", "skip"): ({"inserted": 7, "updated": 0, "skipped": 2, "failed": 1}, [6], 8),
    ("continue", "update"): ({"inserted": 7, "updated": 2, "skipped": 0, "failed": 1}, [6], 8),
}


@pytest.mark.parametrize(("strategy", "conflict"), list(EXPECTED))
@pytest.mark.parametrize("chunk_size", [4, 100])
def test_continue_with_each_conflict_mode(items: DataFlow, strategy: str, conflict: str, chunk_size: int) -> None:
    """continue: good records land; clashes are refused, skipped or update per conflict_resolution; invalid ones fail."""
    bulk(items, "ItemCreateNode", {"sku": "k100", "name": "stored"})
    out = bulk(items, "ItemBulkCreateNode", {"records": _mixed(), "error_strategy": strategy,
                                             "conflict_resolution": conflict, "chunk_size": chunk_size})
    counts, failed, rows = EXPECTED[strategy, conflict]
    assert {k: out[k] for k in counts} == counts
    assert [e["index"] for e in out["errors"]] == failed
    assert all(e["error"] for e in out["errors"])
    assert stored(items) == rows
    by_sku = {r["sku"]: r for r in list_records(items, "Item")}
    assert by_sku["k100"]["name"] == ("clash" if conflict == "update" else "stored")
    assert by_sku["k1"]["name"] == ("repeat" if conflict == "update" else "item 1")


@pytest.mark.parametrize("conflict", ["error", "skip", "update"])
def test_fail_fast_invalid_record_writes_nothing(items: DataFlow, conflict: str) -> None:
    """fail_fast: an invalid record fails the workflow, names records[6] and its field, and nothing lands."""
    with pytest.raises(WorkflowFailed) as info:
        bulk(items, "ItemBulkCreateNode", {"records": _mixed(), "conflict_resolution": conflict, "chunk_size": 4})
    cause = info.value.__cause__
    assert isinstance(cause, NodeParameterError)
    assert "records[6]" in str(cause) and cause.field == "qty"
    assert stored(items) == 0


def test_fail_fast_clash_names_the_record(items: DataFlow) -> None:
    """fail_fast + error: a clash with a stored row names records[3]; the workflow writes nothing."""
    bulk(items, "ItemCreateNode", {"sku": "k100", "name": "stored"})
    records = [item(i) for i in range(10)]
    records[3] = item(100)
    with pytest.raises(WorkflowFailed) as info:
        bulk(items, "ItemBulkCreateNode", {"records": records, "chunk_size": 4})
    assert isinstance(info.value.__cause__, IntegrityError)
    assert "records[3]:" in str(info.value.__cause__)
    assert stored(items) == 1


@pytest.mark.parametrize("chunk_size", [3, 100])
def test_fail_fast_repeat_in_the_input_names_the_later_record(items: DataFlow, chunk_size: int) -> None:
    """fail_fast + error: two records with one sku name the second (in or across chunks)."""
    records = [item(i) for i in range(10)]
    records[8] = item(1)
    with pytest.raises(WorkflowFailed) as info:
        bulk(items, "ItemBulkCreateNode", {"records": records, "chunk_size": chunk_size})
    assert "records[8]:" in str(info.value.__cause__)
    assert stored(items) == 0


@pytest.mark.parametrize("conflict", ["skip", "update"])
def test_fail_fast_skip_and_update_write_everything_else(items: DataFlow, conflict: str) -> None:
    """fail_fast with skip or update: clashes are not errors; the counts say what happened to each."""
    bulk(items, "ItemCreateNode", {"sku": "k100", "name": "stored"})
    records = [item(i) for i in range(10)]
    records[3] = item(100, name="clash")
    records[8] = item(1, name="repeat")
    out = bulk(items, "ItemBulkCreateNode", {"records": records, "conflict_resolution": conflict, "chunk_size": 4})
    expected = {"skip": (8, 0, 2), "update": (8, 2, 0)}[conflict]
    assert (out["inserted"], out["updated"], out["skipped"], out["failed"]) == (*expected, 0)
    assert stored(items) == 9


# -- a poisoned record in the middle of many ------------------------------------------------------

def _poisoned(n: int, kind: str) -> Iterator[dict[str, Any]]:
    """``n`` good records with one bad one at n // 2: invalid, or a repeat of record 0's sku."""
    middle = n // 2
    for i in range(n):
        if i == middle:
            yield item(i, qty=1.5) if kind == "invalid" else item(0, name="repeat")
        else:
            yield item(i)


def _poison_case(db: DataFlow, n: int, kind: str, strategy: str) -> None:
    params = {"records": _poisoned(n, kind), "error_strategy": strategy}
    if strategy == "fail_fast":
        with pytest.raises(WorkflowFailed) as info:
            bulk(db, "ItemBulkCreateNode", params)
        cause = info.value.__cause__
        assert isinstance(cause, NodeParameterError if kind == "invalid" else IntegrityError)
        assert f"records[{n // 2}]" in str(cause)
        assert stored(db) == 0
        return
    out = bulk(db, "ItemBulkCreateNode", params)
    assert (out["inserted"], out["failed"]) == (n - 1, 1)
    assert [e["index"] for e in out["errors"]] == [n // 2]
    assert stored(db) == n - 1


@pytest.mark.parametrize("kind", ["invalid", "clash"])
@pytest.mark.parametrize("strategy", ["fail_fast", "continue"])
def test_poisoned_record_in_20k(items: DataFlow, kind: str, strategy: str) -> None:
    """One bad record in the middle of 20,000: fail_fast writes nothing and names it; continue writes 19,999."""
    _poison_case(items, 20_000, kind, strategy)


# Each of these takes 1-4 s per engine here (MariaDB the slowest), well under the ~10 s
# that would earn a "slow" mark, so they stay in the default run next to the 20k ones.
@pytest.mark.parametrize("kind", ["invalid", "clash"])
@pytest.mark.parametrize("strategy", ["fail_fast", "continue"])
def test_poisoned_record_in_200k(items: DataFlow, kind: str, strategy: str) -> None:
    """One bad record in the middle of 200,000: fail_fast writes nothing and names it; continue writes 199,999."""
    _poison_case(items, 200_000, kind, strategy)


# -- the chunker underneath -----------------------------------------------------------------------

class _Spy(BulkChunker[Any]):
    """A BulkChunker that keeps its last statistics."""

    last: Any = None

    def close(self, timeout: float = 5.0) -> None:
        super().close(timeout)
        _Spy.last = self.statistics()


def test_chunker_thread_only_where_it_pays(items: DataFlow, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL validates ahead on the chunker's thread (at most 2 chunks in flight); SQLite and MySQL, where
    a thread was measured not to pay, stay inline; a job of one chunk never starts a thread."""
    monkeypatch.setattr(_bulk, "BulkChunker", _Spy)
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(5000), "chunk_size": 500})
    stats = _Spy.last
    assert stats.threaded == items.dialect.bulk_overlap == (items.dialect.name == "postgresql")
    assert stats.peak_in_flight <= _bulk.MAX_IN_FLIGHT and stats.chunks_acked == 10
    bulk(items, "ItemBulkCreateNode", {"records": items_gen(100, start=5000), "chunk_size": 500})
    assert not _Spy.last.threaded


def test_generator_is_read_at_most_two_chunks_ahead(items: DataFlow) -> None:
    """Backpressure through the node: records are pulled at most MAX_IN_FLIGHT chunks ahead of what is written."""
    pulled = 0
    ahead: list[int] = []

    def records() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(6000):
            pulled = i + 1
            yield item(i)

    bulk(items, "ItemBulkCreateNode", {"records": records(), "chunk_size": 300,
                                       "on_progress": lambda ev: ahead.append(pulled - ev.done)})
    assert len(ahead) == 21  # 20 chunks and the final event
    assert max(ahead) <= _bulk.MAX_IN_FLIGHT * 300
    assert stored(items) == 6000
