"""The generated fast path of bulk validation agrees with pydantic on every record, good or bad."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import DataFlow, NodeParameterError
from dataflow.nodes._rows import row_builder
from dataflow.nodes._spec import NodeContext

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class StrSub(str):
    pass


class IntSub(int):
    pass


@pytest.fixture
def wide() -> Iterator[DataFlow]:
    """A model with a field of every supported type (required, defaulted and optional)."""
    db = DataFlow()

    @db.model
    class Wide:
        s: str
        i: int
        f: float
        b: bool = False
        d: Decimal = Decimal("1.5")
        dt: datetime | None = None
        day: date | None = None
        raw: bytes | None = None
        meta: dict = {"k": [1]}  # noqa: RUF012 - a mutable default is copied per record
        tags: list | None = None
        note: str | None = None

    try:
        yield db
    finally:
        db.close()


VALUES = st.one_of(
    st.text(max_size=5), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.booleans(), st.none(),
    st.decimals(allow_nan=True, allow_infinity=True, places=3), st.datetimes(), st.dates(), st.binary(max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.lists(st.integers(), max_size=2),
    st.builds(StrSub, st.text(max_size=3)), st.builds(IntSub, st.integers(0, 9)),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=1),
)
KEYS = ["s", "i", "f", "b", "d", "dt", "day", "raw", "meta", "tags", "note", "extra", "created_at"]


def good_record() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"s": st.text(max_size=5), "i": st.integers(-(2**62), 2**62), "f": st.floats(allow_nan=False)},
        optional={"b": st.booleans(), "d": st.decimals(allow_nan=False, allow_infinity=False, places=2),
                  "dt": st.none() | st.datetimes(), "day": st.none() | st.dates(), "raw": st.binary(max_size=4),
                  "meta": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                  "tags": st.lists(st.integers(), max_size=2), "note": st.none() | st.text(max_size=3)},
    )


RECORDS = st.lists(st.one_of(good_record(), st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8),
                             st.integers(), st.none()), max_size=12)


def reference(db: DataFlow, ctx: NodeContext, records: list[Any]) -> tuple[list[Any], list[tuple[int, str]]]:
    """Rows and errors with pydantic alone, one record at a time."""
    builder = row_builder(db.table("Wide"))
    rows, errors = [], []
    for i, record in enumerate(records):
        try:
            rows.append(builder._slow(ctx, record, i, NOW, None))
        except NodeParameterError as exc:
            errors.append((i, str(exc)))
    return rows, errors


def typed(rows: list[Any]) -> list[Any]:
    """Rows with each value's type next to it (1 == 1.0 == True would hide a difference)."""
    return [[(type(v), v) for v in row] for row in rows]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS)
def test_fast_path_agrees_with_pydantic(wide: DataFlow, records: list[Any]) -> None:
    """For any mix of records, the chunk validator gives pydantic's rows and pydantic's errors."""
    ctx = NodeContext("n", "WideBulkCreateNode", "Wide")
    builder = row_builder(wide.table("Wide"))
    got = builder.prepare(ctx, records, 0, NOW, None, collect=True)
    rows, errors = reference(wide, ctx, records)
    assert typed(got.rows) == typed(rows)
    assert [(e["index"], e["error"]) for e in got.errors] == errors
    assert list(got.indexes) == [i for i in range(len(records)) if i not in {e[0] for e in errors}]


def test_fail_fast_raises_pydantics_error_for_the_first_bad_record(wide: DataFlow) -> None:
    """Without collect, the first bad record raises the very error pydantic gives, named by its index."""
    ctx = NodeContext("n", "WideBulkCreateNode", "Wide")
    records: list[Any] = [{"s": "a", "i": 1, "f": 1.0}] * 3 + [{"s": "a", "i": True, "f": 1.0}, {"s": 1}]
    with pytest.raises(NodeParameterError) as info:
        row_builder(wide.table("Wide")).prepare(ctx, records, 10, NOW, None, collect=False)
    assert "records[13]" in str(info.value) and info.value.field == "i"


def test_mutable_defaults_are_fresh_per_record(wide: DataFlow) -> None:
    """Two records that omit a dict field get equal but separate default values."""
    ctx = NodeContext("n", "WideBulkCreateNode", "Wide")
    builder = row_builder(wide.table("Wide"))
    table = wide.table("Wide")
    pos = table.insert_columns.index("meta")
    rows = builder.prepare(ctx, [{"s": "a", "i": 1, "f": 1.0}] * 2, 0, NOW, None, collect=False).rows
    assert rows[0][pos] == rows[1][pos] == table.binders["meta"]({"k": [1]})


def test_plain_records_take_the_fast_path(wide: DataFlow) -> None:
    """Records of exactly the declared types skip pydantic; others are left to it."""
    fast = row_builder(wide.table("Wide"))._fast
    good = [{"s": "a", "i": 1, "f": 1.0}, {"s": "b", "i": 2, "f": 2.5, "d": Decimal(2), "note": None,
                                            "dt": datetime(2020, 1, 1), "meta": {"x": 1}, "tags": [1]}]
    unsure = [{"s": "a", "i": 1, "f": 1}, {"s": StrSub("a"), "i": 1, "f": 1.0}, {"s": "a", "i": True, "f": 1.0},
              {"s": "a", "i": 1, "f": 1.0, "d": Decimal("NaN")}, {"s": "a", "i": 1, "f": 1.0, "extra": 1},
              {"s": "a", "f": 1.0}, {"s": "a", "i": 1, "f": 1.0, "day": datetime(2020, 1, 1)}]
    rows, slow, _missing = fast(good + unsure, NOW, None)
    assert slow == list(range(2, 2 + len(unsure)))
    assert rows[0] is not None and rows[1] is not None
