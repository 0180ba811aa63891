"""rw_concurrent: 8 threads each run 500 read-update-commit transactions on a pool of 4
connections (PostgreSQL and MySQL only).  µs/op is the wall time of all 4,000 over 4,000.

Each contender has its own Product table, seeded with one row per transaction of a
repetition so that no two threads touch the same row at the same time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple

from . import _peers
from ._engines import Engine
from ._harness import Config, Contender, Group, measure, require

NAME = "rw_concurrent"
ENGINES = ("postgresql", "mysql")
THREADS, POOL = 8, 4
Workflow = Callable[[int, int], None]  # (id, new stock)


class Parts(NamedTuple):
    """What a contender's set-up returns: its workflow, the ids it may use, and clean-up."""

    workflow: Workflow
    ids: list[int]
    close: Callable[[], None]
    per_thread_close: Callable[[], None] | None = None  # run once on each worker thread


def _seed(engine: Engine, table: str, rows: int) -> list[int]:
    engine.load(table, ("name", "price", "stock"), [(f"p{i}", 1.5, 0) for i in range(rows)])
    engine.analyze(table)
    with engine.admin() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT id FROM {table} ORDER BY id")
        return [r[0] for r in cur.fetchall()]


def _check(record: Any, pk: int) -> None:
    if record is None or record["id"] != pk:
        raise AssertionError(f"read {record!r} for id {pk}")


def _batch(parts: Parts, per_thread: int) -> tuple[Any, Any]:
    """op(i): THREADS workers, each running ``per_thread`` workflows on its own ids."""
    workflow, ids, close, per_thread_close = parts
    executor = ThreadPoolExecutor(THREADS, thread_name_prefix="bench")

    def worker(t: int, stock: int) -> None:
        for pk in ids[t * per_thread:(t + 1) * per_thread]:
            workflow(pk, stock)

    def op(i: int) -> None:
        for future in [executor.submit(worker, t, i) for t in range(THREADS)]:
            future.result()

    def cleanup() -> None:
        try:
            if per_thread_close:  # the barrier puts one task on each worker thread
                barrier = threading.Barrier(THREADS, timeout=30)
                tasks = [executor.submit(lambda: (barrier.wait(), per_thread_close()))
                         for _ in range(THREADS)]
                for task in tasks:
                    task.result()
        finally:
            executor.shutdown()
            close()

    return op, cleanup


def raw(engine: Engine, table: str, rows: int) -> Parts:
    engine.create_table(table, _peers.PRODUCT)
    ids = _seed(engine, table, rows)
    select = f"SELECT * FROM {table} WHERE id = %s"
    update = f"UPDATE {table} SET stock = %s, updated_at = %s WHERE id = %s"
    if engine.name == "postgresql":
        require("psycopg_pool")
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(engine.url, min_size=POOL, max_size=POOL, open=True)
        pool.wait()

        def workflow(pk: int, stock: int) -> None:
            with pool.connection() as conn:  # BEGIN on first statement, COMMIT on exit
                cur = conn.execute(select, (pk,))
                record = dict(zip([d[0] for d in cur.description], cur.fetchone()))
                conn.execute(update, (stock, datetime.now(), pk))
            _check(record, pk)

        return Parts(workflow, ids, pool.close)

    conns: queue.Queue[Any] = queue.Queue()
    for _ in range(POOL):
        conns.put(engine.connect())

    def workflow(pk: int, stock: int) -> None:
        conn = conns.get()
        try:
            conn.begin()
            cur = conn.cursor()
            cur.execute(select, (pk,))
            record = dict(zip([d[0] for d in cur.description], cur.fetchone()))
            cur.execute(update, (stock, datetime.now(), pk))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conns.put(conn)
        _check(record, pk)

    def close() -> None:
        while not conns.empty():
            conns.get().close()

    return Parts(workflow, ids, close)


def dataflow(engine: Engine, table: str, rows: int) -> Parts:
    from dataflow import DataFlow, LocalRuntime, WorkflowBuilder

    db = DataFlow(engine.url, pool_size=POOL)
    try:
        @db.model
        class Product:
            name: str
            price: float
            stock: int = 0
            __tablename__ = table

        ids = _seed(engine, table, rows)
        wf = WorkflowBuilder()
        wf.add_node("ProductReadNode", "read", {})
        wf.add_node("ProductUpdateNode", "update", {"filter": {"id": 0}, "fields": {"stock": 0}})
        built = wf.build()
        rt = LocalRuntime()
    except BaseException:
        db.close()
        raise

    def workflow(pk: int, stock: int) -> None:
        params = {"read": {"id": pk}, "update": {"filter": {"id": pk}, "fields": {"stock": stock}}}
        results, _run_id = rt.execute(built, parameters=params)
        _check(results["read"], pk)
        if not results["update"]["updated"]:
            raise AssertionError(f"update of id {pk} reported {results['update']!r}")

    return Parts(workflow, ids, db.close)


def sqlalchemy_core(engine: Engine, table: str, rows: int) -> Parts:
    sa = _peers.sqlalchemy_engine(engine, pool_size=POOL, max_overflow=0)
    from sqlalchemy import bindparam, select

    t = _peers.sqlalchemy_table(table, _peers.PRODUCT)
    t.create(sa)
    ids = _seed(engine, table, rows)
    query = select(t).where(t.c.id == bindparam("pk"))
    update = t.update().where(t.c.id == bindparam("pk")).values(stock=bindparam("new_stock"))

    def workflow(pk: int, stock: int) -> None:
        with sa.begin() as conn:
            record = conn.execute(query, {"pk": pk}).mappings().one()
            conn.execute(update, {"pk": pk, "new_stock": stock})
        _check(record, pk)

    return Parts(workflow, ids, sa.dispose)


def django(engine: Engine, table: str, rows: int) -> Parts:
    model = _peers.django_model(table, _peers.PRODUCT)
    from django.db import transaction

    alias = engine.name
    _peers.django_create_table(alias, model)
    ids = _seed(engine, table, rows)
    objects = model.objects.using(alias)

    def workflow(pk: int, stock: int) -> None:
        with transaction.atomic(using=alias):
            record = objects.get(id=pk)
            record.stock = stock
            record.save(update_fields=["stock", "updated_at"])
        if record.id != pk:
            raise AssertionError(f"read id {record.id} for id {pk}")

    return Parts(workflow, ids, lambda: None, lambda: _peers.django_close(alias))


def groups(engine: Engine, cfg: Config) -> Iterator[Group]:
    per_thread = 25 if cfg.quick else 500
    rows = THREADS * per_thread
    tables: list[str] = []

    def contender(name: str, make: Any, stem: str, note: str = "") -> Contender:
        table = engine.table(f"rw_{stem}")
        tables.append(table)

        return Contender(name, lambda: _batch(make(engine, table, rows), per_thread), note)

    raw_note = "psycopg_pool" if engine.name == "postgresql" else "queue of PyMySQL connections"
    contenders = [contender(engine.raw_label, raw, "raw", raw_note),
                  contender("DataFlow", dataflow, "df", "pool_size=4")]
    if cfg.peers:
        contenders += [contender("SQLAlchemy Core", sqlalchemy_core, "core", "QueuePool 4"),
                       contender("Django", django, "django",
                                 "no pool: one connection per thread (8)")]
    try:
        outcomes = measure(contenders, n=1, reps=cfg.reps, warmup=1, ops_per_call=rows)
    finally:
        engine.drop(*tables)
    yield Group(f"rw_concurrent · {engine.name} · {THREADS} threads × {per_thread} "
                f"read-update-commit, pool of {POOL} · {cfg.reps} reps, median", outcomes, rows)
