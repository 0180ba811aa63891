"""list_filtered: 100 Item rows out of 100,000 by category, first with no index (the
database scans the table), then with an index on category.

The raw and peer contenders read one table loaded with executemany; DataFlow reads
its own table, created by its model and loaded with ``ItemBulkCreateNode`` (loading
is not timed).  The index is added to both between the two measurements.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import _peers
from ._engines import Engine
from ._harness import Config, Contender, Group, measure

NAME = "list_filtered"
ENGINES = ("sqlite", "postgresql", "mysql")


class Data:
    """The table contents and the category each op asks for."""

    def __init__(self, quick: bool) -> None:
        self.rows, self.categories = (10_000, 100) if quick else (100_000, 1000)
        self.matches = self.rows // self.categories

    def records(self) -> list[dict[str, Any]]:
        return [{"name": f"item{i}", "category": f"c{i % self.categories}",
                 "price": (i % 997) / 10} for i in range(self.rows)]

    def category(self, i: int) -> str:
        return f"c{(i * 37) % self.categories}"

    def check(self, records: list[Any]) -> None:
        if len(records) != self.matches:
            raise AssertionError(f"{len(records)} records, expected {self.matches}")


def _dataflow(engine: Engine, table: str, index: str | None) -> tuple[Any, Any, Any]:
    """A DataFlow instance with the Item model on ``table``, its index when ``index``."""
    from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

    db = DataFlow(engine.dataflow_url())
    try:
        @db.model
        class Item:
            name: str
            category: str
            price: float
            __tablename__ = table
            if index:
                __indexes__ = [{"name": index, "fields": ["category"]}]
    except BaseException:
        db.close()
        raise
    return db, LocalRuntime(), WorkflowBuilder


def load_dataflow(engine: Engine, table: str, data: Data) -> None:
    db, rt, WorkflowBuilder = _dataflow(engine, table, None)
    try:
        wf = WorkflowBuilder()
        wf.add_node("ItemBulkCreateNode", "load", {"records": data.records()})
        results, _ = rt.execute(wf.build())
        if results["load"]["inserted"] != data.rows:
            raise AssertionError(f"loaded {results['load']['inserted']} rows of {data.rows}")
    finally:
        db.close()
    engine.analyze(table, file="dataflow")


def dataflow(engine: Engine, table: str, data: Data, index: str | None) -> tuple[Any, Any]:
    db, rt, WorkflowBuilder = _dataflow(engine, table, index)
    try:
        if index and not engine.has_index_on(table, "category", file="dataflow"):
            raise AssertionError(f"no index on {table}.category after registering the model")
        if index:
            engine.analyze(table, file="dataflow")
        wf = WorkflowBuilder()
        wf.add_node("ItemListNode", "list", {"filter": {"category": "c17"}})
        built = wf.build()
    except BaseException:
        db.close()
        raise

    def op(i: int) -> None:
        params = {"list": {"filter": {"category": data.category(i)}}}
        results, _run_id = rt.execute(built, parameters=params)
        data.check(results["list"]["records"])

    return op, db.close


def raw(engine: Engine, table: str, data: Data) -> tuple[Any, Any]:
    conn = engine.connect()  # autocommit: one statement, no BEGIN/COMMIT
    cursor = conn.cursor()
    sql = f"SELECT * FROM {table} WHERE category = {engine.param}"

    def op(i: int) -> None:
        cursor.execute(sql, (data.category(i),))
        columns = [d[0] for d in cursor.description]
        # The raw baseline builds dicts because that is what the user gets from DataFlow.
        data.check([dict(zip(columns, row)) for row in cursor.fetchall()])

    return op, conn.close


def sqlalchemy_core(engine: Engine, table: str, data: Data) -> tuple[Any, Any]:
    sa = _peers.sqlalchemy_engine(engine)
    from sqlalchemy import bindparam, select

    t = _peers.sqlalchemy_table(table, _peers.ITEM)
    query = select(t).where(t.c.category == bindparam("cat"))

    def op(i: int) -> None:
        with sa.connect() as conn:
            data.check(conn.execute(query, {"cat": data.category(i)}).mappings().all())

    return op, sa.dispose


def sqlalchemy_orm(engine: Engine, table: str, data: Data) -> tuple[Any, Any]:
    sa = _peers.sqlalchemy_engine(engine)
    from sqlalchemy import bindparam, select
    from sqlalchemy.orm import Session

    Row = _peers.sqlalchemy_class(_peers.sqlalchemy_table(table, _peers.ITEM))
    query = select(Row).where(Row.category == bindparam("cat"))

    def op(i: int) -> None:
        with Session(sa) as session:
            data.check(session.scalars(query, {"cat": data.category(i)}).all())

    return op, sa.dispose


def django(engine: Engine, table: str, data: Data) -> tuple[Any, Any]:
    objects = _peers.django_model(table, _peers.ITEM, managed=False).objects.using(engine.name)

    def op(i: int) -> None:
        data.check(list(objects.filter(category=data.category(i))))

    return op, lambda: _peers.django_close(engine.name)


def groups(engine: Engine, cfg: Config) -> Iterator[Group]:
    data = Data(cfg.quick)
    table, df_table = engine.table("items"), engine.table("items_df")
    engine.create_table(table, _peers.ITEM)
    try:
        engine.load(table, ("name", "category", "price"),
                    [tuple(r.values()) for r in data.records()])
        engine.analyze(table)
        df_error: Exception | None = None
        try:
            load_dataflow(engine, df_table, data)
        except Exception as exc:  # noqa: BLE001 - reported in DataFlow's rows
            df_error = exc
        for indexed in (False, True):
            if indexed:  # index names are per schema on PostgreSQL: the two must differ
                engine.run(f"CREATE INDEX {engine.table('idx_items')} ON {table} (category)")
                engine.analyze(table)
            df_index = engine.table("idx_items_df") if indexed else None
            yield _measure(engine, cfg, data, table, df_table, df_index, df_error)
    finally:
        engine.drop(table)
        engine.drop(df_table, file="dataflow")


def _measure(engine: Engine, cfg: Config, data: Data, table: str, df_table: str,
             index: str | None, df_error: Exception | None) -> Group:
    def df_setup() -> tuple[Any, Any]:
        if df_error:
            raise RuntimeError(f"loading the DataFlow table failed: {df_error}") from df_error
        return dataflow(engine, df_table, data, index)

    note = "timestamps stay text" if engine.name == "sqlite" else ""
    contenders = [Contender(engine.raw_label, lambda: raw(engine, table, data), note),
                  Contender("DataFlow", df_setup)]
    if cfg.peers:
        contenders += [Contender(name, lambda make=make: make(engine, table, data))
                       for name, make in (("SQLAlchemy Core", sqlalchemy_core),
                                          ("SQLAlchemy ORM", sqlalchemy_orm),
                                          ("Django", django))]
    n = (300 if index else 30) // (10 if cfg.quick else 1)
    outcomes = measure(contenders, n=n, reps=cfg.reps, warmup=max(n // 10, 2))
    kind = "index on category" if index else "no index (scan)"
    return Group(f"list_filtered · {engine.name} · {data.matches} of {data.rows:,} rows, "
                 f"{kind} · {n} ops × {cfg.reps} reps, median", outcomes)
