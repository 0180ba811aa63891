"""Every field type round-trips as the declared Python type, identically on every engine.

The rules are in docs/adr/0003-types.md: a naive datetime stays naive, an
aware one comes back aware (in UTC) and equal; a Decimal comes back exact,
without trailing fractional zeros; JSON comes back equal; bytes keep NULs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from dataflow import DataFlow
from tests.integration.helpers import list_records, run_node

PLUS2 = timezone(timedelta(hours=2))
MINUS5 = timezone(timedelta(hours=-5, minutes=-30))

VALUES: dict[str, Any] = {
    "s": "héllo wörld ✓ \U0001F600 'quoted' \"double\" back\\slash %s ?",
    "i": -(2**62),
    "f": 0.1,
    "b": True,
    "d": Decimal("12345678901234567890.123456789012"),
    "dt": datetime(2024, 2, 29, 23, 59, 58, 123456),
    "day": date(1999, 12, 31),
    "raw": b"\x00\x01\xff\x00end",
    "doc": {"a": 1, "nested": {"list": [1, 2.5, "x", None, True], "empty": {}}, "unicode": "é✓"},
    "items": [1, "two", {"three": [3]}, [], None, False],
}


def _types_model(db: DataFlow) -> None:
    @db.model
    class Sample:
        s: str
        i: int
        f: float
        b: bool
        d: Decimal
        dt: datetime
        day: date
        raw: bytes
        doc: dict
        items: list
        os: str | None = None
        oi: int | None = None
        of: float | None = None
        ob: bool | None = None
        od: Decimal | None = None
        odt: datetime | None = None
        oday: date | None = None
        oraw: bytes | None = None
        odoc: dict | None = None
        oitems: list | None = None


def _same(got: Any, want: Any) -> None:
    assert got == want
    assert type(got) is type(want), f"{got!r} is a {type(got).__name__}, wanted {type(want).__name__}"


def test_every_type_round_trips(db: DataFlow) -> None:
    _types_model(db)
    created = run_node(db, "SampleCreateNode", dict(VALUES))
    read = run_node(db, "SampleReadNode", {"id": created["id"]})
    listed = list_records(db, "Sample")
    assert len(listed) == 1
    for record in (read, listed[0]):
        for name, want in VALUES.items():
            _same(record[name], want)


def test_optional_fields_hold_values_and_none(db: DataFlow) -> None:
    _types_model(db)
    optional = {"o" + k: v for k, v in VALUES.items()}  # os, oi, …, oitems
    full = run_node(db, "SampleCreateNode", {**VALUES, **optional})
    empty = run_node(db, "SampleCreateNode", dict(VALUES))
    got_full = run_node(db, "SampleReadNode", {"id": full["id"]})
    got_empty = run_node(db, "SampleReadNode", {"id": empty["id"]})
    for name, want in optional.items():
        _same(got_full[name], want)
        assert got_empty[name] is None
    # None is found by IS NULL on every engine
    assert [r["id"] for r in list_records(db, "Sample", filter={"odt": None})] == [empty["id"]]
    assert [r["id"] for r in list_records(db, "Sample", filter={"oraw": {"$exists": True}})] == [full["id"]]


def test_bool_comes_back_a_bool(db: DataFlow) -> None:
    @db.model
    class Flag:
        on: bool

    run_node(db, "FlagBulkCreateNode", {"records": [{"on": True}, {"on": False}]})
    got = list_records(db, "Flag", order_by=["id"])
    assert [r["on"] for r in got] == [True, False]
    assert all(type(r["on"]) is bool for r in got)
    assert [r["on"] for r in list_records(db, "Flag", filter={"on": False})] == [False]


def test_datetimes_naive_stays_naive_aware_stays_aware(db: DataFlow) -> None:
    @db.model
    class Event:
        label: str
        at: datetime

    naive = datetime(2024, 6, 1, 12, 0, 0)
    naive_us = datetime(2024, 6, 1, 12, 0, 0, 1)
    aware_utc = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
    aware_plus2 = datetime(2024, 6, 1, 14, 0, 0, 500000, tzinfo=PLUS2)
    aware_minus = datetime(1970, 1, 1, 0, 0, 0, tzinfo=MINUS5)
    given = {"naive": naive, "naive_us": naive_us, "utc": aware_utc, "plus2": aware_plus2, "minus": aware_minus}
    ids = {label: run_node(db, "EventCreateNode", {"label": label, "at": at})["id"] for label, at in given.items()}
    for label, at in given.items():
        got = run_node(db, "EventReadNode", {"id": ids[label]})["at"]
        assert type(got) is datetime
        assert got == at
        if at.tzinfo is None:
            assert got.tzinfo is None
        else:
            assert got.tzinfo is not None
            assert got.utcoffset() == timedelta(0)  # aware values come back in UTC
            assert got.astimezone(at.tzinfo) == at


def test_aware_datetimes_order_and_filter_as_instants(db: DataFlow) -> None:
    @db.model
    class Tick:
        n: int
        at: datetime

    base = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    # written in three different offsets, out of order
    moments = [(2, base + timedelta(hours=2)), (0, base.astimezone(PLUS2)), (1, (base + timedelta(minutes=1)).astimezone(MINUS5)),
               (3, base + timedelta(days=1, microseconds=1))]
    run_node(db, "TickBulkCreateNode", {"records": [{"n": n, "at": at} for n, at in moments]})
    assert [r["n"] for r in list_records(db, "Tick", order_by=["at"])] == [0, 1, 2, 3]
    later = list_records(db, "Tick", filter={"at": {"$gt": base.astimezone(MINUS5)}}, order_by=["-at"])
    assert [r["n"] for r in later] == [3, 2, 1]
    assert [r["n"] for r in list_records(db, "Tick", filter={"at": base.astimezone(PLUS2)})] == [0]


def test_managed_timestamps_are_aware_utc(db: DataFlow) -> None:
    @db.model
    class Note:
        text: str

    before = datetime.now(UTC)
    created = run_node(db, "NoteCreateNode", {"text": "x"})
    got = run_node(db, "NoteReadNode", {"id": created["id"]})
    for name in ("created_at", "updated_at"):
        assert got[name].utcoffset() == timedelta(0)
        assert before - timedelta(seconds=5) <= got[name] <= datetime.now(UTC)
        assert got[name] == created[name]


@pytest.mark.parametrize("value", [
    Decimal(0), Decimal("-0.000001"), Decimal("19.99"), Decimal("1E+2"),
    Decimal("99999999999999999999999999999999999.999999999999999999999999999999"),
    Decimal("0.000000000000000000000000000001"),
], ids=["zero", "tiny-negative", "money", "exponent", "max-precision", "min-scale"])
def test_decimal_precision_is_exact(db: DataFlow, value: Decimal) -> None:
    @db.model
    class Amount:
        v: Decimal

    created = run_node(db, "AmountCreateNode", {"v": value})
    got = run_node(db, "AmountReadNode", {"id": created["id"]})["v"]
    assert type(got) is Decimal
    assert got == value
    assert got.as_tuple().exponent <= 0  # 1E+2 comes back as 100
    assert [r["id"] for r in list_records(db, "Amount", filter={"v": value})] == [created["id"]]


def test_decimal_form_is_the_same_everywhere(db: DataFlow) -> None:
    @db.model
    class Price:
        v: Decimal

    for text in ("1.50", "2.000", "10", "0.10"):
        run_node(db, "PriceCreateNode", {"v": Decimal(text)})
    got = [str(r["v"]) for r in list_records(db, "Price", order_by=["v"])]
    assert got == ["0.1", "1.5", "2", "10"]  # numeric order; trailing fractional zeros dropped
    assert [str(r["v"]) for r in list_records(db, "Price", filter={"v": {"$gt": Decimal("1.5")}}, order_by=["v"])] == ["2", "10"]


def test_bytes_with_nul_and_every_byte_value(db: DataFlow) -> None:
    @db.model
    class Blob:
        data: bytes

    every = bytes(range(256)) * 4
    for value in (b"", b"\x00", b"a\x00b\x00", every):
        created = run_node(db, "BlobCreateNode", {"data": value})
        got = run_node(db, "BlobReadNode", {"id": created["id"]})["data"]
        _same(got, value)


def test_json_nested_and_equal(db: DataFlow) -> None:
    @db.model
    class Doc:
        body: dict
        tags: list

    body = {"z": 1, "a": {"deep": [{"x": [1, [2, [3]]]}]}, "s": "quote\"s and \\ and \\u0000 as text", "n": None,
            "f": 1.5, "big": 2**53, "t": True}
    tags = [{"k": "v"}, [1, 2], "str", 3, 0.25, None]
    created = run_node(db, "DocCreateNode", {"body": body, "tags": tags})
    got = run_node(db, "DocReadNode", {"id": created["id"]})
    assert got["body"] == body
    assert got["tags"] == tags
    assert type(got["body"]["big"]) is int and type(got["body"]["f"]) is float


def test_text_round_trips_verbatim(db: DataFlow) -> None:
    @db.model
    class Text:
        v: str

    for value in ("", " ", "trailing  ", "Mixed Case", "a%b_c", "línea\nnueva\ttab", "x" * 70000, "\U0001F600" * 10):
        created = run_node(db, "TextCreateNode", {"v": value})
        _same(run_node(db, "TextReadNode", {"id": created["id"]})["v"], value)
    # trailing spaces matter in comparisons on every engine
    assert [r["v"] for r in list_records(db, "Text", filter={"v": "trailing"})] == []
    assert [r["v"] for r in list_records(db, "Text", filter={"v": " "})] == [" "]


def test_integers_are_64_bit(db: DataFlow) -> None:
    @db.model
    class Big:
        v: int

    for value in (2**63 - 1, -(2**63), 0):
        created = run_node(db, "BigCreateNode", {"v": value})
        _same(run_node(db, "BigReadNode", {"id": created["id"]})["v"], value)


def test_floats_round_trip_exactly(db: DataFlow) -> None:
    @db.model
    class Real:
        v: float

    for value in (0.1, 1 / 3, -2.5e-300, 1.7976931348623157e308, 0.0):
        created = run_node(db, "RealCreateNode", {"v": value})
        _same(run_node(db, "RealReadNode", {"id": created["id"]})["v"], value)


def test_string_id_and_indexed_text(db: DataFlow) -> None:
    @db.model
    class Sku:
        id: str
        code: str
        note: str
        __indexes__ = [{"name": "idx_sku_code", "fields": ["code"], "unique": True}]

    run_node(db, "SkuCreateNode", {"id": "ABC-1", "code": "c" * 255, "note": "n" * 100000})
    got = run_node(db, "SkuReadNode", {"id": "ABC-1"})
    assert got["code"] == "c" * 255 and got["note"] == "n" * 100000
    assert run_node(db, "SkuReadNode", {"id": "abc-1", "raise_on_not_found": False}) == {"found": False}
