"""What each dialect says in its own SQL gives the same results on every engine:
text matching, upserts, row counts, error mapping, connection errors, pool sizing."""

from __future__ import annotations

import re
import sys
import traceback
from typing import Any

import pytest

from actors import TxState
from dataflow import (
    ConfigurationError,
    ConnectionLostError,
    DataFlow,
    IntegrityError,
    ProgrammingError,
    TransientError,
    WorkflowFailed,
)
from dataflow.dialects import dialect_for, parse_url
from tests.integration.helpers import list_records, run_node

WORDS = ["apple", "Apple", "APPLE", "apricot", "banana", "a%b", "a_b", "axb", "cherry7", "Ünïcode", "trailing "]


@pytest.fixture
def words(db: DataFlow) -> DataFlow:
    @db.model
    class Word:
        w: str

    run_node(db, "WordBulkCreateNode", {"records": [{"w": w} for w in WORDS]})
    return db


def matching(db: DataFlow, op: str, pattern: str) -> list[str]:
    return sorted(r["w"] for r in list_records(db, "Word", filter={"w": {op: pattern}}))


@pytest.mark.parametrize(("pattern", "expected"), [
    ("apple", ["apple"]),
    ("a%", ["a%b", "a_b", "apple", "apricot", "axb"]),
    ("A%", ["APPLE", "Apple"]),
    ("%e", ["Apple", "apple", "Ünïcode"]),
    ("a_b", ["a%b", "a_b", "axb"]),
    ("a\\%b", ["a%b"]),
    ("a\\_b", ["a_b"]),
    ("trailing", []),
    ("trailing ", ["trailing "]),
    ("Ü%", ["Ünïcode"]),
])
def test_like_is_case_sensitive_everywhere(words: DataFlow, pattern: str, expected: list[str]) -> None:
    assert matching(words, "$like", pattern) == sorted(expected)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("apple", ["APPLE", "Apple", "apple"]),
    ("AP%", ["APPLE", "Apple", "apple", "apricot"]),
    ("%CHERRY_", ["cherry7"]),
    ("a\\%B", ["a%b"]),
])
def test_ilike_ignores_case_everywhere(words: DataFlow, pattern: str, expected: list[str]) -> None:
    assert matching(words, "$ilike", pattern) == sorted(expected)


@pytest.mark.parametrize("pattern", [
    "^ap", "^A", "an", "e$", "^(apple|cherry7)$", "a.b", "p{2}", "\\d", "[0-9]$", "^[A-Z]+$", "^a[%_]b$", "ï",
])
def test_regex_matches_as_python_re_search(words: DataFlow, pattern: str) -> None:
    expected = sorted(w for w in WORDS if re.search(pattern, w))
    assert matching(words, "$regex", pattern) == expected


# -- upserts and counts ------------------------------------------------------------


@pytest.fixture
def items(db: DataFlow) -> DataFlow:
    @db.model
    class Item:
        sku: str
        qty: int
        note: str = ""
        __indexes__ = [{"name": "idx_item_sku", "fields": ["sku"], "unique": True}]

    return db


def test_bulk_upsert_inserts_then_updates(items: DataFlow) -> None:
    first = run_node(items, "ItemBulkUpsertNode", {
        "records": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}], "conflict_on": ["sku"]})
    assert first == {"inserted": 2, "updated": 0}
    second = run_node(items, "ItemBulkUpsertNode", {
        "records": [{"sku": "a", "qty": 10}, {"sku": "c", "qty": 3}, {"sku": "b", "qty": 2}], "conflict_on": ["sku"]})
    assert second == {"inserted": 1, "updated": 2}
    got = {r["sku"]: r["qty"] for r in list_records(items, "Item")}
    assert got == {"a": 10, "b": 2, "c": 3}


def test_bulk_upsert_updates_only_the_named_fields(items: DataFlow) -> None:
    run_node(items, "ItemBulkCreateNode", {"records": [{"sku": "a", "qty": 1, "note": "keep"}]})
    run_node(items, "ItemBulkUpsertNode", {
        "records": [{"sku": "a", "qty": 5, "note": "lost"}], "conflict_on": ["sku"], "update_fields": ["qty"]})
    (row,) = list_records(items, "Item")
    assert (row["qty"], row["note"]) == (5, "keep")


def test_bulk_create_skip_counts_what_the_database_inserted(items: DataFlow) -> None:
    run_node(items, "ItemBulkCreateNode", {"records": [{"sku": "a", "qty": 1}]})
    out = run_node(items, "ItemBulkCreateNode", {
        "records": [{"sku": "a", "qty": 9}, {"sku": "b", "qty": 2}, {"sku": "b", "qty": 3}],
        "conflict_resolution": "skip"})
    assert (out["inserted"], out["skipped"], out["failed"]) == (1, 2, 0)
    assert {r["sku"]: r["qty"] for r in list_records(items, "Item")} == {"a": 1, "b": 2}


def test_skipping_never_hides_other_errors(items: DataFlow) -> None:
    # MySQL's INSERT IGNORE would clip an out-of-range value with a warning;
    # DataFlow refuses it like the other engines do.
    with pytest.raises(WorkflowFailed):
        run_node(items, "ItemBulkCreateNode", {
            "records": [{"sku": "z", "qty": 2**70}], "conflict_resolution": "skip"})
    assert list_records(items, "Item") == []


def test_update_counts_matched_rows_even_when_nothing_changes(items: DataFlow) -> None:
    run_node(items, "ItemBulkCreateNode", {"records": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 1}]})
    same = run_node(items, "ItemUpdateNode", {"filter": {"sku": "a"}, "fields": {"qty": 1}})
    assert (same["rows_affected"], same["updated"]) == (1, True)
    assert same["record"]["sku"] == "a" and same["record"]["qty"] == 1
    both = run_node(items, "ItemUpdateNode", {"filter": {"qty": 1}, "fields": {"qty": 1}})
    assert (both["rows_affected"], both["record"]) == (2, None)
    none = run_node(items, "ItemUpdateNode", {"filter": {"sku": "zzz"}, "fields": {"qty": 5}})
    assert (none["rows_affected"], none["updated"], none["record"]) == (0, False, None)
    assert run_node(items, "ItemBulkUpdateNode", {"filter": {"qty": 1}, "fields": {"qty": 1}}) == {"updated": 2}
    assert run_node(items, "ItemDeleteNode", {"filter": {"sku": "a"}}) == {"deleted": True, "rows_affected": 1}
    assert run_node(items, "ItemBulkDeleteNode", {"filter": {"qty": 1}}) == {"deleted": 1}


def test_create_returns_increasing_ids(items: DataFlow) -> None:
    ids = [run_node(items, "ItemCreateNode", {"sku": s, "qty": 0})["id"] for s in "abc"]
    assert ids == sorted(ids) and len(set(ids)) == 3 and all(type(i) is int for i in ids)


def test_long_text_in_a_key_is_stored_or_refused_never_cut(items: DataFlow) -> None:
    long_sku = "s" * 300
    try:
        run_node(items, "ItemCreateNode", {"sku": long_sku, "qty": 1})
    except WorkflowFailed:
        assert items.dialect.name == "mysql"  # keyed text is VARCHAR(255) there (docs/adr/0003-types.md)
        assert list_records(items, "Item") == []
    else:
        assert [r["sku"] for r in list_records(items, "Item")] == [long_sku]


# -- errors --------------------------------------------------------------------------


def test_unique_violation_is_an_integrity_error_with_the_driver_error_chained(items: DataFlow) -> None:
    run_node(items, "ItemCreateNode", {"sku": "a", "qty": 1})
    with pytest.raises(WorkflowFailed) as info:
        run_node(items, "ItemCreateNode", {"sku": "a", "qty": 2})
    cause = info.value.__cause__
    assert isinstance(cause, IntegrityError)
    assert cause.dialect == items.dialect.name
    driver_error = cause.__cause__
    assert driver_error is not None
    assert type(driver_error).__module__.split(".")[0] in ("sqlite3", "psycopg", "pymysql")
    if items.dialect.name == "postgresql":
        assert cause.sqlstate == "23505"
    assert len(list_records(items, "Item")) == 1


def test_sql_the_database_rejects_is_a_programming_error(db: DataFlow) -> None:
    def body(conn: Any) -> None:
        db.dialect.execute(conn, "SELECT nope FROM no_such_table")

    with pytest.raises(Exception) as info:
        db.engine.run(body)
    mapped = db.engine.map(info.value)
    if db.dialect.name == "sqlite":
        assert mapped.__class__.__name__ in ("OperationalError", "ProgrammingError")
    else:
        assert isinstance(mapped, ProgrammingError)
    assert mapped.__cause__ is info.value


def test_transaction_state_follows_begin_commit_rollback(db: DataFlow) -> None:
    dialect = db.dialect
    with db.engine.checkout() as lease:
        conn = lease.connection
        assert dialect.transaction_state(conn) is TxState.IDLE
        dialect.begin(conn)
        assert dialect.transaction_state(conn) is TxState.INTRANS
        dialect.commit(conn)
        assert dialect.transaction_state(conn) is TxState.IDLE
        dialect.begin(conn)
        with pytest.raises(Exception):  # noqa: B017 - each driver raises its own class
            dialect.execute(conn, "SELECT * FROM no_such_table")
        # PostgreSQL aborts the transaction; the others keep it open
        assert dialect.transaction_state(conn) in (TxState.INTRANS, TxState.INERROR)
        dialect.rollback(conn)
        assert dialect.transaction_state(conn) is TxState.IDLE
        assert dialect.ping(conn)


def test_closed_connection_state_is_unknown(engine_url: str) -> None:
    if engine_url.startswith("sqlite"):
        pytest.skip("an embedded database has no connection to lose")
    dialect = dialect_for(parse_url(engine_url))
    conn = dialect.connect()
    dialect.close(conn)
    assert dialect.transaction_state(conn) is TxState.UNKNOWN
    assert not dialect.ping(conn)
    with pytest.raises(Exception) as info:
        dialect.execute(conn, "SELECT 1")
    assert dialect.is_disconnect(info.value)
    assert isinstance(dialect.map_error(info.value), ConnectionLostError)
    dialect.close(conn)  # closing twice is harmless
    dialect.shutdown()


SECRET = "s3cr3t-Pa55w0rd"


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_wrong_password_is_a_configuration_error_that_never_shows_it(
    engine: str, server_urls: dict[str, str]
) -> None:
    url = server_urls.get(engine)
    if url is None:
        pytest.skip(f"no {engine} server")
    parts = parse_url(url)
    # PostgreSQL here trusts local connections, so a role that does not exist is refused instead.
    user = "no_such_role" if engine == "postgresql" else (parts.user or "root")
    bad = f"{engine}://{user}:{SECRET}@{parts.host}:{parts.port}/{parts.database}"
    with pytest.raises(ConfigurationError) as info:
        DataFlow(bad)
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert SECRET not in shown
    assert "***" in str(info.value) or user in str(info.value)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_an_unreachable_server_is_a_configuration_error_that_never_shows_the_password(engine: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        DataFlow(f"{engine}://user:{SECRET}@127.0.0.1:1/db")
    assert SECRET not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize(("scheme", "module", "extra"), [
    ("postgresql", "psycopg", "postgres"), ("mysql", "pymysql", "mysql"),
])
def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch, scheme: str, module: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, f"dataflow.dialects.{'postgresql' if scheme == 'postgresql' else 'mysql'}",
                        raising=False)
    with pytest.raises(ConfigurationError, match=rf"dataflow-actors\[{extra}\]"):
        DataFlow(f"{scheme}://u:{SECRET}@127.0.0.1:1/db")


def test_driver_errors_are_classified_by_code() -> None:
    pytest.importorskip("psycopg")
    pytest.importorskip("pymysql")
    import psycopg
    import pymysql

    pg = dialect_for(parse_url("postgresql://u@h/db"))
    for exc, kind in [
        (psycopg.errors.UniqueViolation(), IntegrityError),
        (psycopg.errors.ForeignKeyViolation(), IntegrityError),
        (psycopg.errors.SerializationFailure(), TransientError),
        (psycopg.errors.DeadlockDetected(), TransientError),
        (psycopg.errors.AdminShutdown(), ConnectionLostError),
        (psycopg.OperationalError("the connection is closed"), ConnectionLostError),
        (psycopg.errors.UndefinedTable(), ProgrammingError),
        (psycopg.errors.SyntaxError(), ProgrammingError),
    ]:
        assert isinstance(pg.map_error(exc), kind), exc
    assert pg.is_transient(psycopg.errors.DeadlockDetected())
    assert not pg.is_transient(psycopg.errors.UniqueViolation())
    assert pg.is_disconnect(psycopg.errors.AdminShutdown())
    assert not pg.is_disconnect(psycopg.errors.UniqueViolation())
    assert pg.map_error(ValueError("x")) is None

    my = dialect_for(parse_url("mysql://u@h/db"))
    err = pymysql.err
    for exc, kind in [
        (err.IntegrityError(1062, "Duplicate entry"), IntegrityError),
        (err.IntegrityError(1451, "fk parent"), IntegrityError),
        (err.IntegrityError(1452, "fk child"), IntegrityError),
        (err.IntegrityError(1048, "cannot be null"), IntegrityError),
        (err.OperationalError(1213, "Deadlock"), TransientError),
        (err.OperationalError(1205, "Lock wait timeout"), TransientError),
        (err.OperationalError(2006, "gone away"), ConnectionLostError),
        (err.OperationalError(2013, "lost"), ConnectionLostError),
        (err.OperationalError(2003, "can't connect"), ConnectionLostError),
        (err.InterfaceError(0, ""), ConnectionLostError),
        (err.ProgrammingError(1064, "syntax"), ProgrammingError),
        (err.ProgrammingError(1146, "no table"), ProgrammingError),
        (err.OperationalError(1054, "unknown column"), ProgrammingError),
    ]:
        assert isinstance(my.map_error(exc), kind), exc
    # the message text plays no part: a deadlock worded otherwise is still one
    assert my.is_transient(err.OperationalError(1213, "anything at all"))
    assert not my.is_transient(err.OperationalError(1062, "Deadlock found"))
    assert my.map_error(ValueError("x")) is None


def test_errors_never_show_the_password() -> None:
    pytest.importorskip("pymysql")
    import pymysql

    my = dialect_for(parse_url(f"mysql://u:{SECRET}@h/db"))
    mapped = my.map_error(pymysql.err.OperationalError(1045, f"Access denied, you said {SECRET}"))
    assert mapped is not None and SECRET not in str(mapped)


# -- pool policy -----------------------------------------------------------------------


def test_pool_settings_become_the_policy(engine_url: str) -> None:
    with DataFlow(engine_url, pool_size=3, pool_timeout=7.5, pool_recycle=120) as db:
        policy = db.supervisor.policy
        if not engine_url.startswith("sqlite") or "memory" not in engine_url:
            assert policy.max_size == 3
        assert policy.checkout_timeout == 7.5
        assert policy.max_lifetime == 120


def test_pool_size_never_exceeds_what_the_server_allows(engine_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if engine_url.startswith("sqlite"):
        pytest.skip("SQLite has no connection limit")
    with DataFlow(engine_url, pool_size=100_000) as db:
        assert 1 <= db.supervisor.policy.max_size < 100_000
        assert db.pool_stats()["size"] >= 1
    monkeypatch.setenv("DB_POOL_SIZE", "2")
    with DataFlow(engine_url) as db:
        assert db.supervisor.policy.max_size == 2
    monkeypatch.delenv("DB_POOL_SIZE")
    with DataFlow(engine_url) as db:
        from dataflow.dialects.base import default_pool_size

        assert db.supervisor.policy.max_size <= default_pool_size()
