"""create_read: one transaction that creates one Product row and reads it back by id.

Every contender writes the same columns (``created_at`` / ``updated_at`` set from
Python) and checks the name it reads back.  The raw baselines turn the row into a
dict, as DataFlow returns one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from . import _peers
from ._engines import Engine
from ._harness import Config, Contender, Group, measure

NAME = "create_read"
ENGINES = ("sqlite", "postgresql", "mysql")
COLUMNS = "name, price, stock, created_at, updated_at"


def _check(record: Any, i: int) -> None:
    name = record["name"] if isinstance(record, Mapping) else record.name
    if name != f"p{i}":
        raise AssertionError(f"read back {name!r}, expected 'p{i}'")


def raw(engine: Engine, table: str) -> tuple[Any, Any]:
    engine.create_table(table, _peers.PRODUCT)
    p = engine.param
    insert = f"INSERT INTO {table} ({COLUMNS}) VALUES ({p}, {p}, {p}, {p}, {p})"
    select = f"SELECT * FROM {table} WHERE id = {p}"
    conn = engine.connect()  # autocommit; each op is an explicit transaction

    if engine.name == "sqlite":
        def op(i: int) -> None:
            now = engine.now()
            conn.execute("BEGIN")
            cur = conn.execute(insert, (f"p{i}", 1.5, i, now, now))
            cur = conn.execute(select, (cur.lastrowid,))
            record = dict(zip([d[0] for d in cur.description], cur.fetchone()))
            conn.execute("COMMIT")
            _check(record, i)

    elif engine.name == "postgresql":
        insert += " RETURNING id"

        def op(i: int) -> None:
            now = datetime.now()
            with conn.transaction():
                (pk,) = conn.execute(insert, (f"p{i}", 1.5, i, now, now)).fetchone()
                cur = conn.execute(select, (pk,))
                record = dict(zip([c.name for c in cur.description], cur.fetchone()))
            _check(record, i)

    else:
        cursor = conn.cursor()

        def op(i: int) -> None:
            now = datetime.now()
            conn.begin()
            cursor.execute(insert, (f"p{i}", 1.5, i, now, now))
            cursor.execute(select, (cursor.lastrowid,))
            record = dict(zip([d[0] for d in cursor.description], cursor.fetchone()))
            conn.commit()
            _check(record, i)

    return op, conn.close


def dataflow(engine: Engine, table: str) -> tuple[Any, Any]:
    from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

    db = DataFlow(engine.dataflow_url())
    try:
        @db.model
        class Product:
            name: str
            price: float
            stock: int = 0
            __tablename__ = table

        wf = WorkflowBuilder()
        wf.add_node("ProductCreateNode", "create", {"name": "pen", "price": 1.5})
        wf.add_node("ProductReadNode", "read", {})
        wf.add_connection("create", "id", "read", "id")
        built = wf.build()
        rt = LocalRuntime()
    except BaseException:
        db.close()
        raise

    def op(i: int) -> None:
        results, _run_id = rt.execute(
            built, parameters={"create": {"name": f"p{i}", "price": 1.5, "stock": i}}
        )
        _check(results["read"], i)

    return op, db.close


def sqlalchemy_core(engine: Engine, table: str) -> tuple[Any, Any]:
    sa = _peers.sqlalchemy_engine(engine)
    from sqlalchemy import bindparam, select

    t = _peers.sqlalchemy_table(table, _peers.PRODUCT)
    t.create(sa)
    insert, query = t.insert(), select(t).where(t.c.id == bindparam("pk"))

    def op(i: int) -> None:
        with sa.begin() as conn:
            result = conn.execute(insert, {"name": f"p{i}", "price": 1.5, "stock": i})
            record = conn.execute(query, {"pk": result.inserted_primary_key[0]}).mappings().one()
        _check(record, i)

    return op, sa.dispose


def sqlalchemy_orm(engine: Engine, table: str) -> tuple[Any, Any]:
    sa = _peers.sqlalchemy_engine(engine)
    from sqlalchemy.orm import Session

    t = _peers.sqlalchemy_table(table, _peers.PRODUCT)
    t.create(sa)
    Row = _peers.sqlalchemy_class(t)

    def op(i: int) -> None:
        with Session(sa) as session:
            row = Row(name=f"p{i}", price=1.5, stock=i)
            session.add(row)
            session.commit()
            # row.id reloads the row expired by the commit: that SELECT is the read-back.
            record = session.get(Row, row.id)
        _check(record, i)

    return op, sa.dispose


def django(engine: Engine, table: str) -> tuple[Any, Any]:
    model = _peers.django_model(table, _peers.PRODUCT)
    from django.db import transaction

    alias = engine.name
    _peers.django_create_table(alias, model)
    objects = model.objects.using(alias)

    def op(i: int) -> None:
        with transaction.atomic(using=alias):
            created = objects.create(name=f"p{i}", price=1.5, stock=i)
            record = objects.get(id=created.id)
        _check(record, i)

    return op, lambda: _peers.django_close(alias)


def groups(engine: Engine, cfg: Config) -> Iterator[Group]:
    n = (2000 if engine.name == "sqlite" else 1000) // (10 if cfg.quick else 1)
    tables: dict[str, str] = {}

    def contender(name: str, make: Any, stem: str) -> Contender:
        tables[stem] = engine.table(f"cr_{stem}")
        return Contender(name, lambda: make(engine, tables[stem]))

    contenders = [contender(engine.raw_label, raw, "raw"), contender("DataFlow", dataflow, "df")]
    if cfg.peers:
        contenders += [contender("SQLAlchemy Core", sqlalchemy_core, "core"),
                       contender("SQLAlchemy ORM", sqlalchemy_orm, "orm"),
                       contender("Django", django, "django")]
    try:
        outcomes = measure(contenders, n=n, reps=cfg.reps, warmup=max(n // 10, 5))
    finally:
        df_table = tables.pop("df")
        engine.drop(*tables.values())
        engine.drop(df_table, file="dataflow")
    yield Group(f"create_read · {engine.name} · {n} ops × {cfg.reps} reps, median", outcomes)
